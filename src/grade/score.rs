//! Scores: from each case's verdict to group scores and the submission's score and verdict.
//!
//! Follows the problem package format's result aggregation: a case scores its `max_score` when
//! accepted, 0 otherwise; a `pass-fail` group scores its `max_score` when every case in it (at any
//! depth) is accepted; a `sum` group adds up its children; a `min` group takes the smallest. A
//! group whose `require_pass` groups are not all accepted scores 0. `sample` always scores 0. The
//! submission's score is the score of `secret`; its verdict is the worst of all its cases
//! (samples included), see [`Verdict::worst`].
//!
//! Pure functions over a [`Suite`] and [`CaseResult`]s.

use std::path::PathBuf;
use std::time::Duration;

use super::suite::{Aggregation, Child, Suite};
use super::verdict::{CaseResult, Verdict};

/// Scores are rounded to this many decimal places in results.
const SCORE_DECIMALS: f64 = 1e6;

/// The result of one group for one submission.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupResult {
    /// Index into [`Suite::groups`].
    pub group: usize,
    /// The worst verdict among the group's cases.
    pub verdict: Verdict,
    pub score: f64,
    pub max_score: f64,
    /// Why the group scored 0 despite its cases, when `require_pass` was not met.
    pub note: Option<String>,
}

/// The full result of one submission.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmissionResult {
    /// The path as given on the command line.
    pub path: PathBuf,
    pub verdict: Verdict,
    pub score: f64,
    pub max_score: f64,
    /// The compile error for `CE`; otherwise the first failed case and why; `None` for `AC`.
    pub message: Option<String>,
    /// One per case of the suite, in run order.
    pub cases: Vec<CaseResult>,
    /// The score of each case (in [`SubmissionResult::cases`] order).
    pub case_scores: Vec<f64>,
    /// One per group of the suite, in [`Suite::groups`] order.
    pub groups: Vec<GroupResult>,
}

impl SubmissionResult {
    pub fn name(&self) -> String {
        self.path.display().to_string()
    }

    pub fn accepted(&self) -> bool {
        self.verdict == Verdict::AC
    }

    /// The slowest case's time.
    pub fn slowest(&self) -> Option<Duration> {
        self.cases.iter().filter_map(|case| case.time).max()
    }

    /// The total time of all cases that ran.
    pub fn total_time(&self) -> Duration {
        self.cases.iter().filter_map(|case| case.time).sum()
    }

    /// `WA (wrong answer): 40 of 100 points`, the one-line summary reports lead with.
    pub fn headline(&self) -> String {
        format!(
            "{} ({}): {} of {} points",
            self.verdict,
            self.verdict.describe(),
            crate::grade::suite::show_score(self.score),
            crate::grade::suite::show_score(self.max_score)
        )
    }
}

/// Score `cases` (one per suite case, in order) and wrap them up. `compile_error` is the message
/// when the submission did not compile.
pub fn summarize(
    suite: &Suite,
    path: PathBuf,
    cases: Vec<CaseResult>,
    compile_error: Option<String>,
) -> SubmissionResult {
    assert_eq!(cases.len(), suite.cases.len(), "one result per case");
    let scorer = Scorer::new(suite, &cases);
    let groups: Vec<GroupResult> = (0..suite.groups.len())
        .map(|group| GroupResult {
            group,
            verdict: Verdict::worst(
                suite
                    .cases_in(group)
                    .into_iter()
                    .map(|case| cases[case].verdict),
            ),
            score: round(scorer.group_score(group)),
            max_score: suite.groups[group].max_score,
            note: scorer.blocked_by(group).map(|required| {
                format!(
                    "scored 0: requires every case of `{}` to be accepted",
                    suite.groups[required].name
                )
            }),
        })
        .collect();
    let case_scores = (0..cases.len())
        .map(|case| round(scorer.case_score(case)))
        .collect();
    let verdict = Verdict::worst(cases.iter().map(|case| case.verdict));
    let message = match (verdict, compile_error) {
        (Verdict::CE, Some(error)) => Some(error),
        (Verdict::AC, _) => None,
        (_, _) => cases
            .iter()
            .zip(&suite.cases)
            .find(|(result, _)| result.verdict != Verdict::AC && result.verdict != Verdict::Skipped)
            .map(|(result, case)| {
                format!("{} on {}: {}", result.verdict, case.name, result.message)
            }),
    };
    SubmissionResult {
        path,
        verdict,
        score: groups[suite.secret].score,
        max_score: suite.max_score(),
        message,
        cases,
        case_scores,
        groups,
    }
}

/// What carries the score in a report that lists scored items (Gradescope's `tests`): the cases
/// of `sum` groups, and whole groups elsewhere, so that the items add up to the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreItem {
    Case(usize),
    Group(usize),
}

/// The scored items of `suite`, in run order. Their maximum scores add up to the suite's.
pub fn score_items(suite: &Suite) -> Vec<ScoreItem> {
    let mut items = Vec::new();
    collect_items(suite, suite.secret, &mut items);
    items
}

fn collect_items(suite: &Suite, group: usize, items: &mut Vec<ScoreItem>) {
    let g = &suite.groups[group];
    if g.aggregation != Aggregation::Sum || !g.require_pass.is_empty() {
        items.push(ScoreItem::Group(group));
        return;
    }
    for child in &g.children {
        match *child {
            Child::Case(case) => items.push(ScoreItem::Case(case)),
            Child::Group(sub) => collect_items(suite, sub, items),
        }
    }
}

fn round(score: f64) -> f64 {
    (score * SCORE_DECIMALS).round() / SCORE_DECIMALS
}

struct Scorer<'a> {
    suite: &'a Suite,
    cases: &'a [CaseResult],
    /// For each group: the first `require_pass` group that was not fully accepted.
    blocked: Vec<Option<usize>>,
}

impl<'a> Scorer<'a> {
    fn new(suite: &'a Suite, cases: &'a [CaseResult]) -> Scorer<'a> {
        let mut scorer = Scorer {
            suite,
            cases,
            blocked: Vec::new(),
        };
        scorer.blocked = suite
            .groups
            .iter()
            .map(|group| {
                group
                    .require_pass
                    .iter()
                    .copied()
                    .find(|&required| !scorer.all_accepted(required))
            })
            .collect();
        scorer
    }

    fn all_accepted(&self, group: usize) -> bool {
        self.suite
            .cases_in(group)
            .into_iter()
            .all(|case| self.cases[case].verdict == Verdict::AC)
    }

    fn blocked_by(&self, group: usize) -> Option<usize> {
        self.blocked[group]
    }

    /// Is `group` or one of its ancestors blocked by `require_pass`?
    fn blocked_at_or_above(&self, group: usize) -> bool {
        let mut current = Some(group);
        while let Some(index) = current {
            if self.blocked[index].is_some() {
                return true;
            }
            current = self.suite.groups[index].parent;
        }
        false
    }

    fn case_score(&self, case: usize) -> f64 {
        let group = self.suite.cases[case].group;
        if !self.suite.groups[group].scored
            || self.cases[case].verdict != Verdict::AC
            || self.blocked_at_or_above(group)
        {
            return 0.0;
        }
        self.suite.cases[case].max_score
    }

    fn group_score(&self, group: usize) -> f64 {
        let g = &self.suite.groups[group];
        if !g.scored || self.blocked[group].is_some() {
            return 0.0;
        }
        let child_score = |child: &Child| match *child {
            Child::Case(case) => {
                if self.cases[case].verdict == Verdict::AC {
                    self.suite.cases[case].max_score
                } else {
                    0.0
                }
            }
            Child::Group(sub) => self.group_score(sub),
        };
        let score = match g.aggregation {
            Aggregation::PassFail => {
                if self.all_accepted(group) {
                    g.max_score
                } else {
                    0.0
                }
            }
            Aggregation::Sum => g.children.iter().map(child_score).sum(),
            Aggregation::Min => g
                .children
                .iter()
                .map(child_score)
                .fold(f64::INFINITY, f64::min),
        };
        // Shares like 100/3 do not add up exactly; never report more than the maximum.
        if score.is_finite() {
            score.min(g.max_score)
        } else {
            g.max_score
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grade::suite::Suite;
    use std::fs;

    fn suite(files: &[(&str, &str)]) -> Suite {
        let dir = tempfile::tempdir().unwrap();
        for (path, contents) in files {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, contents).unwrap();
        }
        Suite::load(dir.path()).unwrap()
    }

    fn results(verdicts: &[Verdict]) -> Vec<CaseResult> {
        verdicts
            .iter()
            .map(|&verdict| CaseResult::not_run(verdict, verdict.describe()))
            .collect()
    }

    fn cases(names: &[&str]) -> Vec<(String, &'static str)> {
        names
            .iter()
            .flat_map(|name| [(format!("{name}.in"), ""), (format!("{name}.ans"), "")])
            .collect()
    }

    fn with(files: Vec<(String, &'static str)>, extra: &[(&'static str, &'static str)]) -> Suite {
        let mut all: Vec<(&str, &str)> = files
            .iter()
            .map(|(path, contents)| (path.as_str(), *contents))
            .collect();
        all.extend_from_slice(extra);
        suite(&all)
    }

    use Verdict::*;

    #[test]
    fn bare_directory_sums_equal_shares() {
        let suite = with(cases(&["1", "2", "3"]), &[]);
        let all = summarize(&suite, "ac.py".into(), results(&[AC, AC, AC]), None);
        assert_eq!((all.verdict, all.score, all.max_score), (AC, 100.0, 100.0));
        assert_eq!(all.message, None);
        let two = summarize(&suite, "wa.py".into(), results(&[AC, WA, AC]), None);
        assert_eq!(two.verdict, WA);
        assert!((two.score - 66.666667).abs() < 1e-9, "{}", two.score);
        assert_eq!(two.case_scores, vec![33.333333, 0.0, 33.333333]);
        assert_eq!(two.message.as_deref(), Some("WA on secret/2: wrong answer"));
    }

    #[test]
    fn samples_count_for_the_verdict_but_score_nothing() {
        let mut files = cases(&["data/sample/1", "data/secret/1"]);
        files.push(("problem.yaml".into(), ""));
        let suite = with(files, &[]);
        let result = summarize(&suite, "s.py".into(), results(&[WA, AC]), None);
        assert_eq!(result.verdict, WA);
        assert_eq!(result.score, 100.0);
        assert_eq!(result.case_scores, vec![0.0, 100.0]);
        assert_eq!(result.groups[suite.sample.unwrap()].score, 0.0);
        assert_eq!(result.groups[suite.sample.unwrap()].verdict, WA);
    }

    #[test]
    fn groups_aggregate_pass_fail_sum_and_min() {
        let suite = with(
            cases(&["a/1", "a/2", "b/1", "b/2", "c/1", "c/2"]),
            &[
                ("a/test_group.yaml", "max_score: 20\n"),
                (
                    "b/test_group.yaml",
                    "max_score: 30\nscore_aggregation: sum\n",
                ),
                (
                    "c/test_group.yaml",
                    "max_score: 50\nscore_aggregation: min\n",
                ),
            ],
        );
        let score =
            |verdicts: &[Verdict]| summarize(&suite, "x.py".into(), results(verdicts), None).score;
        assert_eq!(score(&[AC, AC, AC, AC, AC, AC]), 100.0);
        assert_eq!(
            score(&[AC, WA, AC, AC, AC, AC]),
            80.0,
            "pass-fail group a lost"
        );
        assert_eq!(
            score(&[AC, AC, AC, TLE, AC, AC]),
            85.0,
            "half of sum group b"
        );
        assert_eq!(
            score(&[AC, AC, AC, AC, AC, RTE]),
            50.0,
            "min group c gives 0"
        );
        assert_eq!(score(&[WA, WA, WA, WA, WA, WA]), 0.0);
        let result = summarize(
            &suite,
            "x.py".into(),
            results(&[AC, WA, AC, TLE, AC, AC]),
            None,
        );
        let group = |name: &str| {
            let index = suite
                .groups
                .iter()
                .position(|group| group.name == name)
                .unwrap();
            &result.groups[index]
        };
        assert_eq!(
            (group("secret/a").score, group("secret/a").verdict),
            (0.0, WA)
        );
        assert_eq!(
            (group("secret/b").score, group("secret/b").verdict),
            (15.0, TLE)
        );
        assert_eq!(
            (group("secret/c").score, group("secret/c").max_score),
            (50.0, 50.0)
        );
        assert_eq!(result.verdict, TLE);
    }

    #[test]
    fn nested_groups_and_secret_min() {
        let suite = with(
            cases(&["g/x/1", "g/y/1", "h/1"]),
            &[
                ("test_group.yaml", "score_aggregation: min\nmax_score: 10\n"),
                ("g/test_group.yaml", "score_aggregation: sum\n"),
            ],
        );
        let score =
            |verdicts: &[Verdict]| summarize(&suite, "x.py".into(), results(verdicts), None).score;
        assert_eq!(score(&[AC, AC, AC]), 10.0);
        // g is worth 10 (min parent); x and y share it; min(5, 10) = 5.
        assert_eq!(score(&[AC, WA, AC]), 5.0);
        assert_eq!(score(&[AC, AC, WA]), 0.0);
    }

    #[test]
    fn require_pass_zeroes_a_group() {
        let mut files = cases(&["data/sample/1", "data/secret/a/1", "data/secret/b/1"]);
        files.push(("problem.yaml".into(), ""));
        let suite = with(
            files,
            &[
                ("data/secret/a/test_group.yaml", "max_score: 40\n"),
                (
                    "data/secret/b/test_group.yaml",
                    "max_score: 60\nscore_aggregation: sum\nrequire_pass: [sample, secret/a]\n",
                ),
            ],
        );
        let all = summarize(&suite, "x.py".into(), results(&[AC, AC, AC]), None);
        assert_eq!(all.score, 100.0);
        let failed_a = summarize(&suite, "x.py".into(), results(&[AC, WA, AC]), None);
        assert_eq!(failed_a.score, 0.0);
        assert_eq!(failed_a.case_scores, vec![0.0, 0.0, 0.0]);
        let b = suite
            .groups
            .iter()
            .position(|group| group.name == "secret/b")
            .unwrap();
        assert!(failed_a.groups[b]
            .note
            .as_deref()
            .unwrap()
            .contains("secret/a"));
        let failed_sample = summarize(&suite, "x.py".into(), results(&[WA, AC, AC]), None);
        assert_eq!(failed_sample.score, 40.0);
        assert!(failed_sample.groups[b]
            .note
            .as_deref()
            .unwrap()
            .contains("sample"));
    }

    #[test]
    fn compile_errors_and_skipped_cases() {
        let suite = with(cases(&["1", "2"]), &[]);
        let ce = summarize(
            &suite,
            "x.py".into(),
            results(&[CE, CE]),
            Some("SyntaxError: x".into()),
        );
        assert_eq!((ce.verdict, ce.score), (CE, 0.0));
        assert_eq!(ce.message.as_deref(), Some("SyntaxError: x"));
        let fast = summarize(&suite, "x.py".into(), results(&[WA, Skipped]), None);
        assert_eq!((fast.verdict, fast.score), (WA, 0.0));
        let je = summarize(&suite, "x.py".into(), results(&[AC, JE]), None);
        assert_eq!(je.verdict, JE);
    }

    #[test]
    fn score_items_add_up_to_the_total() {
        let suite = with(
            cases(&["a/1", "a/2", "b/1", "b/2", "c/1"]),
            &[
                ("a/test_group.yaml", "max_score: 20\n"),
                (
                    "b/test_group.yaml",
                    "max_score: 30\nscore_aggregation: sum\n",
                ),
                (
                    "c/test_group.yaml",
                    "max_score: 50\nscore_aggregation: min\n",
                ),
            ],
        );
        let items = score_items(&suite);
        let group = |name: &str| {
            suite
                .groups
                .iter()
                .position(|group| group.name == name)
                .unwrap()
        };
        assert_eq!(
            items,
            vec![
                ScoreItem::Group(group("secret/a")),
                ScoreItem::Case(2),
                ScoreItem::Case(3),
                ScoreItem::Group(group("secret/c")),
            ]
        );
        let total: f64 = items
            .iter()
            .map(|item| match *item {
                ScoreItem::Case(case) => suite.cases[case].max_score,
                ScoreItem::Group(group) => suite.groups[group].max_score,
            })
            .sum();
        assert_eq!(total, 100.0);
    }
}
