//! Verdicts: what one run of one case means for the student, and what may be shown about it.
//!
//! [`judge`] turns the supervisor's [`Outcome`] (decided by our deadline, our output cap and
//! `docker inspect`) plus the comparison with the answer file into a [`CaseResult`]. Redaction
//! happens here, once: for a case without full feedback (every secret case unless its group or
//! its `NAME.yaml` sets `full_feedback: true`) the result holds no expected output, no input, no
//! program output and no diff, only a message that reveals nothing of the answer. Reports can
//! therefore render a [`CaseResult`] as it is.
//!
//! This module is pure: it reads no files and runs nothing.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::compare::compare;
use super::suite::Case;
use crate::report::{status_message, Outcome, Status};

/// The verdict of a case or a submission. A submission's verdict is its worst case's, in the
/// order JE, CE, RTE, MLE, TLE, OLE, WA, AC ([`Verdict::worst`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Verdict {
    /// Accepted: the output matches the answer.
    AC,
    /// Wrong answer: the program ended normally but its output does not match.
    WA,
    /// Output limit exceeded: stdout or stderr passed the cap and the program was stopped.
    OLE,
    /// Time limit exceeded: killed at the wall-clock limit.
    TLE,
    /// Memory limit exceeded: the engine reports the container was OOM-killed.
    MLE,
    /// Run-time error: non-zero exit or death by a signal none of our limits caused.
    RTE,
    /// Compile error: the submission does not compile (checked once, in the sandbox), or is not
    /// acceptable source (too long, not UTF-8, NUL bytes, empty).
    CE,
    /// Judge error: the engine or safe-exec failed. Never the student's fault; grade again.
    JE,
    /// Not run: `--fail-fast` stopped the submission at an earlier failed case. Only cases are
    /// ever skipped; a submission's verdict is never `SKIPPED`.
    #[serde(rename = "SKIPPED")]
    Skipped,
}

impl Verdict {
    /// Higher is worse. `SKIPPED` ranks below `AC` so it never decides a submission's verdict.
    pub fn severity(self) -> u8 {
        match self {
            Verdict::Skipped => 0,
            Verdict::AC => 1,
            Verdict::WA => 2,
            Verdict::OLE => 3,
            Verdict::TLE => 4,
            Verdict::MLE => 5,
            Verdict::RTE => 6,
            Verdict::CE => 7,
            Verdict::JE => 8,
        }
    }

    /// The worst of `verdicts`; `AC` when there are none.
    pub fn worst(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        verdicts
            .into_iter()
            .max_by_key(|verdict| verdict.severity())
            .unwrap_or(Verdict::AC)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::AC => "AC",
            Verdict::WA => "WA",
            Verdict::OLE => "OLE",
            Verdict::TLE => "TLE",
            Verdict::MLE => "MLE",
            Verdict::RTE => "RTE",
            Verdict::CE => "CE",
            Verdict::JE => "JE",
            Verdict::Skipped => "SKIPPED",
        }
    }

    /// In words, for people who do not know the abbreviations.
    pub fn describe(self) -> &'static str {
        match self {
            Verdict::AC => "accepted",
            Verdict::WA => "wrong answer",
            Verdict::OLE => "output limit exceeded",
            Verdict::TLE => "time limit exceeded",
            Verdict::MLE => "memory limit exceeded",
            Verdict::RTE => "run-time error",
            Verdict::CE => "compile error",
            Verdict::JE => "judge error",
            Verdict::Skipped => "skipped",
        }
    }

    /// A test failure (the program's fault) as opposed to an error (it could not be judged or did
    /// not run properly). JUnit reports the first kind as `<failure>`, the second as `<error>`.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Verdict::WA | Verdict::TLE | Verdict::MLE | Verdict::OLE
        )
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the student may see of a failed case with full feedback (samples, `full_feedback`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Feedback {
    /// The case's input (`.in`), shortened.
    pub input: String,
    /// The expected answer (`.ans`), shortened.
    pub expected: String,
    /// What the program wrote on stdout, shortened.
    pub stdout: String,
    /// What the program wrote on stderr, shortened.
    pub stderr: String,
}

/// Longest excerpt of a file or stream kept in [`Feedback`].
pub const EXCERPT_BYTES: usize = 2048;

/// The result of one case for one submission.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    pub verdict: Verdict,
    /// Wall-clock time of the run; `None` when the case did not run.
    pub time: Option<Duration>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// One line, safe to show the student.
    pub message: String,
    /// Present only for failed cases with full feedback.
    pub feedback: Option<Feedback>,
}

impl CaseResult {
    /// A case that did not run, with the same `verdict` and `message` as its submission.
    pub fn not_run(verdict: Verdict, message: impl Into<String>) -> CaseResult {
        CaseResult {
            verdict,
            time: None,
            exit_code: None,
            signal: None,
            message: message.into(),
            feedback: None,
        }
    }
}

/// The verdict for `case` from how its run ended. `answer` is the `.ans` file (or why it could not
/// be read); `input` is the `.in` file when the case has full feedback.
pub fn judge(
    case: &Case,
    outcome: &Outcome,
    answer: Result<&[u8], String>,
    input: Option<&[u8]>,
) -> CaseResult {
    let mut result = CaseResult {
        verdict: Verdict::AC,
        time: Some(outcome.duration),
        exit_code: outcome.exit_code,
        signal: outcome.signal,
        message: String::new(),
        feedback: None,
    };
    let (verdict, message) = match outcome.status {
        Status::Ok => match &answer {
            Ok(answer) => match compare(answer, &outcome.stdout.bytes, &case.compare) {
                Ok(()) => (Verdict::AC, "accepted".to_owned()),
                Err(mismatch) => (Verdict::WA, mismatch.describe(case.full_feedback)),
            },
            Err(error) => (
                Verdict::JE,
                format!("judge error: cannot read the answer file: {error}"),
            ),
        },
        Status::RuntimeError => (Verdict::RTE, message_for(outcome)),
        Status::Timeout => (Verdict::TLE, message_for(outcome)),
        Status::MemoryLimit => (Verdict::MLE, message_for(outcome)),
        Status::OutputLimit => (Verdict::OLE, message_for(outcome)),
        Status::SandboxError | Status::Rejected | Status::Interrupted => (
            Verdict::JE,
            format!(
                "judge error (not the submission's fault): {}",
                message_for(outcome)
            ),
        ),
    };
    result.verdict = verdict;
    result.message = message;
    if verdict != Verdict::AC && verdict != Verdict::JE && case.full_feedback {
        result.feedback = Some(Feedback {
            input: input.map(excerpt).unwrap_or_default(),
            expected: answer
                .as_ref()
                .map(|answer| excerpt(answer))
                .unwrap_or_default(),
            stdout: excerpt(&outcome.stdout.bytes),
            stderr: excerpt(&outcome.stderr.bytes),
        });
    }
    result
}

fn message_for(outcome: &Outcome) -> String {
    status_message(outcome)
        .or_else(|| outcome.error.clone())
        .unwrap_or_else(|| outcome.status.as_str().to_owned())
}

/// The first [`EXCERPT_BYTES`] of `bytes` as text (invalid UTF-8 replaced), with a note saying
/// how much was left out.
pub fn excerpt(bytes: &[u8]) -> String {
    if bytes.len() <= EXCERPT_BYTES {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let mut cut = EXCERPT_BYTES;
    // Do not split a UTF-8 sequence: back up to a character boundary (at most 3 bytes).
    while cut > EXCERPT_BYTES - 4 && bytes.get(cut).is_some_and(|byte| byte & 0xC0 == 0x80) {
        cut -= 1;
    }
    format!(
        "{}\n… ({} more bytes not shown)",
        String::from_utf8_lossy(&bytes[..cut]),
        bytes.len() - cut
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grade::compare::CompareOptions;
    use crate::limits::Limits;
    use crate::report::Captured;
    use std::path::PathBuf;

    fn case(full_feedback: bool) -> Case {
        Case {
            name: "secret/1".into(),
            group: 0,
            input: PathBuf::from("1.in"),
            answer: PathBuf::from("1.ans"),
            compare: CompareOptions::default(),
            full_feedback,
            max_score: 10.0,
            hint: None,
            description: None,
        }
    }

    fn outcome(status: Status, stdout: &str) -> Outcome {
        Outcome {
            status,
            exit_code: (status == Status::Ok).then_some(0),
            stdout: Captured {
                bytes: stdout.as_bytes().to_vec(),
                seen: stdout.len() as u64,
                truncated: false,
            },
            duration: Duration::from_millis(120),
            error: None,
            ..Outcome::not_run(status, "", Limits::default())
        }
    }

    #[test]
    fn worst_follows_the_documented_order() {
        use Verdict::*;
        let order = [AC, WA, OLE, TLE, MLE, RTE, CE, JE];
        for pair in order.windows(2) {
            assert!(pair[0].severity() < pair[1].severity(), "{:?}", pair);
            assert_eq!(Verdict::worst(pair.iter().copied()), pair[1]);
        }
        assert_eq!(Verdict::worst([AC, WA, JE, CE]), JE);
        assert_eq!(Verdict::worst([AC, Skipped, WA, Skipped]), WA);
        assert_eq!(Verdict::worst([]), AC);
        assert!(Skipped.severity() < AC.severity());
    }

    #[test]
    fn verdicts_serialize_as_their_abbreviations() {
        for verdict in [
            Verdict::AC,
            Verdict::WA,
            Verdict::OLE,
            Verdict::TLE,
            Verdict::MLE,
            Verdict::RTE,
            Verdict::CE,
            Verdict::JE,
            Verdict::Skipped,
        ] {
            assert_eq!(
                serde_json::to_string(&verdict).unwrap(),
                format!("\"{verdict}\"")
            );
        }
        assert!(Verdict::WA.is_failure() && Verdict::OLE.is_failure());
        assert!(
            !Verdict::RTE.is_failure() && !Verdict::CE.is_failure() && !Verdict::JE.is_failure()
        );
    }

    #[test]
    fn outcomes_map_to_verdicts() {
        let secret = case(false);
        let judged =
            |status, stdout| judge(&secret, &outcome(status, stdout), Ok(b"42\n"), None).verdict;
        assert_eq!(judged(Status::Ok, "42"), Verdict::AC);
        assert_eq!(judged(Status::Ok, "41"), Verdict::WA);
        assert_eq!(judged(Status::RuntimeError, "42"), Verdict::RTE);
        assert_eq!(judged(Status::Timeout, "42"), Verdict::TLE);
        assert_eq!(judged(Status::MemoryLimit, ""), Verdict::MLE);
        assert_eq!(judged(Status::OutputLimit, "42"), Verdict::OLE);
        assert_eq!(judged(Status::SandboxError, ""), Verdict::JE);
        let unreadable = judge(
            &secret,
            &outcome(Status::Ok, "42"),
            Err("gone".into()),
            None,
        );
        assert_eq!(unreadable.verdict, Verdict::JE);
        assert!(unreadable.message.contains("gone"));
    }

    #[test]
    fn results_record_time_exit_code_and_signal() {
        let killed = Outcome {
            signal: Some(11),
            ..outcome(Status::RuntimeError, "")
        };
        let result = judge(&case(false), &killed, Ok(b""), None);
        assert_eq!(result.time, Some(Duration::from_millis(120)));
        assert_eq!(result.signal, Some(11));
        assert!(result.message.contains("SIGSEGV"), "{}", result.message);
        let timeout = judge(&case(false), &outcome(Status::Timeout, ""), Ok(b""), None);
        assert!(
            timeout.message.contains("time limit"),
            "{}",
            timeout.message
        );
    }

    #[test]
    fn secret_cases_carry_no_feedback_and_no_answer_in_the_message() {
        let result = judge(
            &case(false),
            &outcome(Status::Ok, "guess\n"),
            Ok(b"SECRET-ANSWER\n"),
            Some(b"SECRET-INPUT"),
        );
        assert_eq!(result.verdict, Verdict::WA);
        assert!(result.feedback.is_none());
        assert!(!result.message.contains("SECRET"), "{}", result.message);
        assert!(!result.message.contains("guess"), "{}", result.message);
    }

    #[test]
    fn full_feedback_cases_show_everything_when_they_fail() {
        let result = judge(
            &case(true),
            &outcome(Status::Ok, "guess\n"),
            Ok(b"ANSWER\n"),
            Some(b"INPUT"),
        );
        assert!(result.message.contains("`ANSWER`") && result.message.contains("`guess`"));
        let feedback = result.feedback.unwrap();
        assert_eq!(feedback.expected, "ANSWER\n");
        assert_eq!(feedback.input, "INPUT");
        assert_eq!(feedback.stdout, "guess\n");
        let passed = judge(
            &case(true),
            &outcome(Status::Ok, "ANSWER"),
            Ok(b"ANSWER\n"),
            Some(b"INPUT"),
        );
        assert!(passed.feedback.is_none(), "nothing to explain on AC");
    }

    #[test]
    fn excerpts_are_bounded_and_keep_characters_whole() {
        assert_eq!(excerpt(b"short"), "short");
        let long = "é".repeat(EXCERPT_BYTES);
        let text = excerpt(long.as_bytes());
        assert!(text.len() < EXCERPT_BYTES + 64);
        assert!(!text.contains('\u{fffd}'));
        assert!(text.ends_with("more bytes not shown)"));
    }
}
