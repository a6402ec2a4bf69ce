//! Renderings of a graded batch: the terminal table, the versioned JSON document, JUnit XML,
//! Gradescope's `results.json` and the GitHub Actions step summary.
//!
//! Every writer renders [`SubmissionResult`]s as they are: redaction of secret cases already
//! happened when each case was judged (see [`super::verdict`]), so no writer can leak an expected
//! answer by accident. Writers are pure (`String` out); [`super`] decides where the text goes.

pub mod github;
pub mod gradescope;
pub mod json;
pub mod junit;
pub mod table;

use std::time::Duration;

use super::score::SubmissionResult;
use super::suite::Suite;
use super::verdict::{CaseResult, Verdict};

/// Seconds with millisecond precision, as reports show times.
pub fn seconds(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Text explaining one case to a student: the message, the hint when it failed, and (only for
/// cases with full feedback) the input, expected output and the program's output.
pub fn case_details(suite: &Suite, case: usize, result: &CaseResult) -> String {
    let mut text = format!("{}: {}", result.verdict, result.message);
    let failed = !matches!(result.verdict, Verdict::AC | Verdict::Skipped);
    if failed {
        if let Some(hint) = &suite.cases[case].hint {
            text.push_str(&format!("\nhint: {hint}"));
        }
    }
    if let Some(feedback) = &result.feedback {
        for (title, body) in [
            ("input", &feedback.input),
            ("expected output", &feedback.expected),
            ("your output", &feedback.stdout),
            ("your stderr", &feedback.stderr),
        ] {
            if !body.is_empty() || title == "your output" {
                text.push_str(&format!("\n--- {title} ---\n{body}"));
                if !body.ends_with('\n') {
                    text.push('\n');
                }
            }
        }
    }
    text
}

/// Counts over a submission's cases, for summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: usize,
    pub accepted: usize,
    /// WA, TLE, MLE, OLE.
    pub failures: usize,
    /// RTE, CE, JE.
    pub errors: usize,
    pub skipped: usize,
}

impl Counts {
    pub fn of(result: &SubmissionResult) -> Counts {
        let mut counts = Counts {
            total: result.cases.len(),
            ..Counts::default()
        };
        for case in &result.cases {
            match case.verdict {
                Verdict::AC => counts.accepted += 1,
                Verdict::Skipped => counts.skipped += 1,
                verdict if verdict.is_failure() => counts.failures += 1,
                _ => counts.errors += 1,
            }
        }
        counts
    }
}

/// A graded batch for the writers' tests: a package with a sample, a pass-fail group with a hint
/// and a full-feedback sum group, and submissions covering the verdicts. The secret answer and
/// input contain `SECRET` so tests can check that no report shows them.
#[cfg(test)]
pub(crate) mod fixture {
    use std::fs;
    use std::path::PathBuf;
    use std::time::Duration;

    use crate::grade::score::{summarize, SubmissionResult};
    use crate::grade::suite::Suite;
    use crate::grade::verdict::{judge_in_memory, CaseResult, Verdict};
    use crate::limits::Limits;
    use crate::report::{Captured, Outcome, Status};

    pub fn suite() -> Suite {
        let dir = tempfile::tempdir().unwrap();
        for (path, contents) in [
            ("problem.yaml", "name: Fixture <&> \"quoted\"\n"),
            ("data/sample/1.in", "1 2\n"),
            ("data/sample/1.ans", "3\n"),
            ("data/secret/g1/test_group.yaml", "max_score: 40\n"),
            ("data/secret/g1/1.in", "SECRET-INPUT\n"),
            ("data/secret/g1/1.ans", "SECRET-ANSWER\n"),
            ("data/secret/g1/2.in", "SECRET-INPUT\n"),
            ("data/secret/g1/2.ans", "SECRET-ANSWER\n"),
            ("data/secret/g1/2.yaml", "hint: mind the overflow\n"),
            (
                "data/secret/g2/test_group.yaml",
                "max_score: 60\nscore_aggregation: sum\nfull_feedback: true\n",
            ),
            ("data/secret/g2/1.in", "open input\n"),
            ("data/secret/g2/1.ans", "open answer\n"),
        ] {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, contents).unwrap();
        }
        let mut suite = Suite::load(dir.path()).unwrap();
        suite.root = PathBuf::from("suites/fixture");
        suite
    }

    fn outcome(status: Status, stdout: &str, stderr: &str, millis: u64) -> Outcome {
        let captured = |text: &str| Captured {
            bytes: text.as_bytes().to_vec(),
            seen: text.len() as u64,
            truncated: false,
        };
        Outcome {
            status,
            exit_code: match status {
                Status::Ok => Some(0),
                Status::RuntimeError => Some(1),
                _ => None,
            },
            stdout: captured(stdout),
            stderr: captured(stderr),
            duration: Duration::from_millis(millis),
            error: None,
            ..Outcome::not_run(status, "", Limits::default())
        }
    }

    fn run(suite: &Suite, case: usize, outcome: Outcome) -> CaseResult {
        let answer = fixture_answer(case).as_bytes();
        judge_in_memory(
            &suite.cases[case],
            &outcome,
            Ok(answer),
            Some(fixture_input(case).as_bytes()),
        )
    }

    // The fixture's directory is gone once loaded; its files are known.
    fn fixture_answer(case: usize) -> &'static str {
        ["3\n", "SECRET-ANSWER\n", "SECRET-ANSWER\n", "open answer\n"][case]
    }

    fn fixture_input(case: usize) -> &'static str {
        ["1 2\n", "SECRET-INPUT\n", "SECRET-INPUT\n", "open input\n"][case]
    }

    /// Submissions: `ac.py` (all AC), `mixed.py` (sample WA, secret WA + TLE, open case RTE with
    /// control characters and a forged workflow command in its output), `ce.py` (compile error),
    /// `fast.py` (JE then skipped).
    pub fn results(suite: &Suite) -> Vec<SubmissionResult> {
        let ac = (0..4)
            .map(|case| {
                run(
                    suite,
                    case,
                    outcome(Status::Ok, fixture_answer(case), "", 40 + case as u64),
                )
            })
            .collect();
        let mixed = vec![
            run(suite, 0, outcome(Status::Ok, "4\n", "", 50)),
            run(
                suite,
                1,
                outcome(Status::Ok, "guess SECRET-ANSWER-NOT\n", "", 60),
            ),
            run(suite, 2, outcome(Status::Timeout, "", "", 1000)),
            run(
                suite,
                3,
                outcome(
                    Status::RuntimeError,
                    "::error::forged\n\u{1b}[31mred\u{7}\n",
                    "Traceback: ```` </system-err> ]]> | pipe\n",
                    70,
                ),
            ),
        ];
        let ce =
            vec![CaseResult::not_run(Verdict::CE, "not run: the submission does not compile"); 4];
        let fast = vec![
            CaseResult::not_run(
                Verdict::JE,
                "judge error (not the submission's fault): engine gone",
            ),
            CaseResult::not_run(
                Verdict::Skipped,
                "not run: --fail-fast stopped at an earlier failed case",
            ),
            CaseResult::not_run(
                Verdict::Skipped,
                "not run: --fail-fast stopped at an earlier failed case",
            ),
            CaseResult::not_run(
                Verdict::Skipped,
                "not run: --fail-fast stopped at an earlier failed case",
            ),
        ];
        vec![
            summarize(suite, "subs/ac.py".into(), ac, None),
            summarize(suite, "subs/mixed.py".into(), mixed, None),
            summarize(
                suite,
                "subs/ce.py".into(),
                ce,
                Some("File \"ce.py\", line 1\n    print(\n         ^\nSyntaxError: '(' was never closed".into()),
            ),
            summarize(suite, "subs/fast.py".into(), fast, None),
        ]
    }

    #[test]
    fn fixture_verdicts() {
        let suite = suite();
        let results = results(&suite);
        let verdicts: Vec<Verdict> = results.iter().map(|result| result.verdict).collect();
        assert_eq!(
            verdicts,
            [Verdict::AC, Verdict::RTE, Verdict::CE, Verdict::JE]
        );
        assert_eq!(results[0].score, 100.0);
        assert_eq!(results[1].score, 0.0);
        assert!(results[1].cases[1].feedback.is_none());
        assert!(results[1].cases[3].feedback.is_some());
    }
}
