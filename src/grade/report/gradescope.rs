//! `--gradescope PATH`: Gradescope's autograder `results.json` for exactly one submission.
//!
//! `score` is the submission's score and `execution_time` the whole run in (whole, rounded up)
//! seconds. `tests` has one entry per case with `name`, `status` (`passed`/`failed`), `output`
//! (the explanation a student may see: full feedback only for samples and `full_feedback`
//! groups) and `visibility` (`visible`). Only entries that carry score have `score` and
//! `max_score`: the cases of `sum` groups, and one extra entry per `pass-fail` or `min` group
//! (named `GROUP (group, AGGREGATION)`, before its cases), so the scores in `tests` add up to
//! `score`. Samples carry no score.

use serde::{Deserialize, Serialize};

use super::case_details;
use crate::grade::score::{score_items, ScoreItem, SubmissionResult};
use crate::grade::suite::{show_score, Suite};
use crate::grade::verdict::Verdict;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub score: f64,
    pub execution_time: u64,
    pub output: String,
    pub visibility: String,
    pub stdout_visibility: String,
    pub tests: Vec<Test>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Test {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub max_score: Option<f64>,
    pub status: String,
    pub output: String,
    pub visibility: String,
}

const VISIBLE: &str = "visible";

pub fn results(suite: &Suite, result: &SubmissionResult) -> Results {
    let items = score_items(suite);
    let mut tests = Vec::new();
    let mut emitted_groups = Vec::new();
    for (index, case) in result.cases.iter().enumerate() {
        // A scored group's entry goes right before its first case.
        for item in &items {
            if let ScoreItem::Group(group) = *item {
                if !emitted_groups.contains(&group) && suite.cases_in(group).first() == Some(&index)
                {
                    emitted_groups.push(group);
                    let group_result = &result.groups[group];
                    let spec = &suite.groups[group];
                    let mut output = format!(
                        "{}: {} of {} points ({} aggregation)",
                        group_result.verdict,
                        show_score(group_result.score),
                        show_score(group_result.max_score),
                        spec.aggregation.as_str()
                    );
                    if let Some(note) = &group_result.note {
                        output.push_str(&format!("\n{note}"));
                    }
                    tests.push(Test {
                        name: format!("{} (group, {})", spec.name, spec.aggregation.as_str()),
                        score: Some(group_result.score),
                        max_score: Some(group_result.max_score),
                        status: status(
                            group_result.score >= group_result.max_score
                                && group_result.verdict == Verdict::AC,
                        ),
                        output,
                        visibility: VISIBLE.to_owned(),
                    });
                }
            }
        }
        let scored = items.contains(&ScoreItem::Case(index));
        let mut output = case_details(suite, index, case);
        if case.verdict == Verdict::CE {
            if let Some(error) = &result.message {
                output.push_str(&format!("\n{error}"));
            }
        }
        tests.push(Test {
            name: suite.cases[index].name.clone(),
            score: scored.then_some(result.case_scores[index]),
            max_score: scored.then_some(suite.cases[index].max_score),
            status: status(case.verdict == Verdict::AC),
            output,
            visibility: VISIBLE.to_owned(),
        });
    }
    let mut output = result.headline();
    if let Some(message) = &result.message {
        output.push_str(&format!("\n{message}"));
    }
    Results {
        score: result.score,
        execution_time: result.total_time().as_secs_f64().ceil() as u64,
        output,
        visibility: VISIBLE.to_owned(),
        // Our own stdout is for the course staff's logs.
        stdout_visibility: "hidden".to_owned(),
        tests,
    }
}

fn status(passed: bool) -> String {
    if passed { "passed" } else { "failed" }.to_owned()
}

pub fn render(suite: &Suite, result: &SubmissionResult) -> String {
    let mut text =
        serde_json::to_string_pretty(&results(suite, result)).expect("results serialize");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grade::report::fixture;

    fn parsed(which: usize) -> Results {
        let suite = fixture::suite();
        let results = fixture::results(&suite);
        serde_json::from_str(&render(&suite, &results[which])).unwrap()
    }

    #[test]
    fn scores_in_tests_add_up_to_the_total() {
        for which in 0..4 {
            let results = parsed(which);
            let sum: f64 = results.tests.iter().filter_map(|test| test.score).sum();
            assert!(
                (sum - results.score).abs() < 1e-6,
                "{which}: {sum} vs {}",
                results.score
            );
            let max: f64 = results.tests.iter().filter_map(|test| test.max_score).sum();
            assert_eq!(max, 100.0);
        }
    }

    #[test]
    fn accepted_submission() {
        let results = parsed(0);
        assert_eq!(results.score, 100.0);
        assert_eq!(results.execution_time, 1);
        let names: Vec<&str> = results
            .tests
            .iter()
            .map(|test| test.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "sample/1",
                "secret/g1 (group, pass-fail)",
                "secret/g1/1",
                "secret/g1/2",
                "secret/g2/1"
            ]
        );
        assert!(results
            .tests
            .iter()
            .all(|test| test.status == "passed" && test.visibility == "visible"));
        assert_eq!(results.tests[0].score, None, "samples carry no score");
        assert_eq!(results.tests[1].max_score, Some(40.0));
        assert_eq!(results.tests[2].score, None, "scored with its group");
        assert_eq!(results.tests[4].max_score, Some(60.0));
    }

    #[test]
    fn failed_submission_explains_without_leaking() {
        let results = parsed(1);
        assert_eq!(results.score, 0.0);
        assert!(results
            .output
            .starts_with("RTE (run-time error): 0 of 100 points"));
        assert!(results.tests.iter().all(|test| test.status == "failed"));
        assert!(results.tests[0]
            .output
            .contains("--- expected output ---\n3\n"));
        assert!(results.tests[3].output.contains("hint: mind the overflow"));
        let text = serde_json::to_string(&results).unwrap();
        assert!(!text.contains("SECRET"), "{text}");
        let ce = parsed(2);
        assert!(ce.output.contains("SyntaxError"));
        assert!(ce.tests[2].output.starts_with("CE: not run"));
    }
}
