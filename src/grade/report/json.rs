//! `--json PATH`: the whole result as one JSON document, format version [`FORMAT_VERSION`].
//!
//! Additive changes (new fields) keep the version; anything that renames, removes or changes the
//! meaning of a field bumps it. Shape:
//!
//! ```text
//! {
//!   "format_version": 1,
//!   "suite": {
//!     "path": "examples/suites/sum", "name": "Sum of Two", "kind": "kattis-package" | "directory",
//!     "max_score": 100, "limits": { timeout_secs, wall_timeout_secs, memory_bytes, cpus, pids, max_code_chars, max_output_bytes },
//!     "groups": [ { "name": "secret/group1", "aggregation": "pass-fail" | "sum" | "min", "max_score": 40 } ],
//!     "cases": [ "sample/1", "secret/group1/01", ... ]
//!   },
//!   "submissions": [ {
//!     "submission": "ac.py",            // the path as given
//!     "verdict": "AC",                  // AC WA TLE MLE OLE RTE CE JE: the worst case's
//!     "score": 100, "max_score": 100,
//!     "time_s": 0.061,                  // slowest case's CPU time, seconds; null if nothing ran
//!     "message": null,                  // compile error for CE, else the first failure
//!     "groups": [ { "name", "verdict", "score", "max_score", "note" } ],
//!     "cases": [ {
//!       "name": "secret/group1/01", "group": "secret/group1",
//!       "verdict": "WA",                // or SKIPPED (not run, --fail-fast)
//!       "score": 0, "max_score": 20,    // max_score 0: scored with its group (pass-fail) or a sample
//!       "time_s": 0.052,                // CPU time (what the time limit judges); null when not run
//!       "wall_time_s": 0.060,           // wall-clock time; null when not run
//!       "exit_code": 0, "signal": null,
//!       "message": "wrong answer on line 1 of the output",
//!       "hint": null,                   // from NAME.yaml / NAME.hint, on failure
//!       "feedback": null,               // { input, expected, stdout, stderr } only for failed
//!                                       // cases with full feedback (samples, full_feedback: true)
//!       "engine": "default"             // the engine that ran it (a --context name, `default`,
//!                                       // `podman`); absent when the case did not run
//!     } ]
//!   } ]
//! }
//! ```

use serde::{Deserialize, Serialize};

use super::seconds;
use crate::grade::score::SubmissionResult;
use crate::grade::suite::{Aggregation, Suite, SuiteKind};
use crate::grade::verdict::{Feedback, Verdict};
use crate::limits::{AppliedLimits, Limits};

/// Version of the grade JSON document; see the module docs.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradeReport {
    pub format_version: u32,
    pub suite: SuiteReport,
    pub submissions: Vec<SubmissionReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteReport {
    pub path: String,
    pub name: String,
    /// `kattis-package` or `directory`.
    pub kind: String,
    pub max_score: f64,
    /// The limits every case ran with (the suite's, with command-line overrides).
    pub limits: AppliedLimits,
    pub groups: Vec<GroupInfo>,
    /// Case names in run order.
    pub cases: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub name: String,
    pub aggregation: Aggregation,
    pub max_score: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmissionReport {
    pub submission: String,
    pub verdict: Verdict,
    pub score: f64,
    pub max_score: f64,
    pub time_s: Option<f64>,
    pub message: Option<String>,
    pub groups: Vec<GroupReport>,
    pub cases: Vec<CaseReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupReport {
    pub name: String,
    pub verdict: Verdict,
    pub score: f64,
    pub max_score: f64,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseReport {
    pub name: String,
    pub group: String,
    pub verdict: Verdict,
    pub score: f64,
    pub max_score: f64,
    pub time_s: Option<f64>,
    pub wall_time_s: Option<f64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub message: String,
    pub hint: Option<String>,
    pub feedback: Option<Feedback>,
    /// The engine that ran the case; absent when it did not run (added in format 1: additive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
}

impl GradeReport {
    pub fn new(suite: &Suite, limits: &Limits, results: &[SubmissionResult]) -> GradeReport {
        GradeReport {
            format_version: FORMAT_VERSION,
            suite: SuiteReport {
                path: suite.root.display().to_string(),
                name: suite.name.clone(),
                kind: match suite.kind {
                    SuiteKind::Package => "kattis-package",
                    SuiteKind::Directory => "directory",
                }
                .to_owned(),
                max_score: suite.max_score(),
                limits: limits.applied(),
                groups: suite
                    .groups
                    .iter()
                    .map(|group| GroupInfo {
                        name: group.name.clone(),
                        aggregation: group.aggregation,
                        max_score: group.max_score,
                    })
                    .collect(),
                cases: suite.cases.iter().map(|case| case.name.clone()).collect(),
            },
            submissions: results
                .iter()
                .map(|result| submission(suite, result))
                .collect(),
        }
    }

    /// The document as pretty-printed JSON with a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("the report serializes");
        text.push('\n');
        text
    }
}

fn submission(suite: &Suite, result: &SubmissionResult) -> SubmissionReport {
    SubmissionReport {
        submission: result.name(),
        verdict: result.verdict,
        score: result.score,
        max_score: result.max_score,
        time_s: result.slowest().map(seconds),
        message: result.message.clone(),
        groups: result
            .groups
            .iter()
            .map(|group| GroupReport {
                name: suite.groups[group.group].name.clone(),
                verdict: group.verdict,
                score: group.score,
                max_score: group.max_score,
                note: group.note.clone(),
            })
            .collect(),
        cases: result
            .cases
            .iter()
            .enumerate()
            .map(|(index, case)| {
                let spec = &suite.cases[index];
                let failed = !matches!(case.verdict, Verdict::AC | Verdict::Skipped);
                CaseReport {
                    name: spec.name.clone(),
                    group: suite.groups[spec.group].name.clone(),
                    verdict: case.verdict,
                    score: result.case_scores[index],
                    max_score: spec.max_score,
                    time_s: case.time.map(seconds),
                    wall_time_s: case.wall_time.map(seconds),
                    exit_code: case.exit_code,
                    signal: case.signal,
                    message: case.message.clone(),
                    hint: spec.hint.clone().filter(|_| failed),
                    feedback: case.feedback.clone(),
                    engine: case.engine.clone(),
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grade::report::fixture;

    #[test]
    fn document_round_trips_through_typed_structs() {
        let suite = fixture::suite();
        let results = fixture::results(&suite);
        let text = GradeReport::new(&suite, &Limits::default(), &results).to_json();
        let report: GradeReport = serde_json::from_str(&text).unwrap();
        assert_eq!(report.format_version, FORMAT_VERSION);
        assert_eq!(report.suite.kind, "kattis-package");
        assert_eq!(
            report.suite.cases,
            ["sample/1", "secret/g1/1", "secret/g1/2", "secret/g2/1"]
        );
        assert_eq!(report.suite.max_score, 100.0);
        assert_eq!(report.suite.limits.memory_bytes, 128 << 20);
        let names: Vec<&str> = report
            .submissions
            .iter()
            .map(|s| s.submission.as_str())
            .collect();
        assert_eq!(
            names,
            ["subs/ac.py", "subs/mixed.py", "subs/ce.py", "subs/fast.py"]
        );

        let ac = &report.submissions[0];
        assert_eq!(
            (ac.verdict, ac.score, ac.max_score),
            (Verdict::AC, 100.0, 100.0)
        );
        assert_eq!(ac.time_s, Some(0.043));
        assert_eq!(ac.cases[3].score, 60.0);
        assert_eq!(ac.cases[3].group, "secret/g2");

        let mixed = &report.submissions[1];
        assert_eq!(mixed.verdict, Verdict::RTE);
        let tle = &mixed.cases[2];
        assert_eq!(
            (tle.verdict, tle.time_s, tle.exit_code),
            (Verdict::TLE, Some(1.0), None)
        );
        assert_eq!(tle.hint.as_deref(), Some("mind the overflow"));
        let rte = &mixed.cases[3];
        assert_eq!((rte.verdict, rte.exit_code), (Verdict::RTE, Some(1)));
        assert_eq!(rte.feedback.as_ref().unwrap().expected, "open answer\n");
        let sample = &mixed.cases[0];
        assert_eq!(sample.feedback.as_ref().unwrap().stdout, "4\n");
        assert!(sample.message.contains("`3`"));
        let g1 = mixed
            .groups
            .iter()
            .find(|group| group.name == "secret/g1")
            .unwrap();
        assert_eq!(
            (g1.verdict, g1.score, g1.max_score),
            (Verdict::TLE, 0.0, 40.0)
        );

        let ce = &report.submissions[2];
        assert_eq!(ce.verdict, Verdict::CE);
        assert!(ce.message.as_deref().unwrap().contains("SyntaxError"));
        assert!(ce.cases.iter().all(|case| case.time_s.is_none()));
        let fast = &report.submissions[3];
        assert_eq!(fast.cases[1].verdict, Verdict::Skipped);
    }

    #[test]
    fn secret_answers_and_inputs_never_appear() {
        let suite = fixture::suite();
        let text =
            GradeReport::new(&suite, &Limits::default(), &fixture::results(&suite)).to_json();
        assert!(!text.contains("SECRET"), "{text}");
        assert!(
            text.contains("open answer"),
            "full-feedback groups do show their answers"
        );
    }
}
