//! Verdicts: what one run of one case means for the student, and what may be shown about it.
//!
//! [`judge`] turns the supervisor's [`Outcome`] (decided by our deadline, our output cap and
//! `docker inspect`) plus the comparison with the answer file into a [`CaseResult`]. Redaction
//! happens here, once: for a case without full feedback (every secret case unless its group or
//! its `NAME.yaml` sets `full_feedback: true`) the result holds no expected output, no input, no
//! program output and no diff, only a message that reveals nothing of the answer. Reports can
//! therefore render a [`CaseResult`] as it is.
//!
//! This module reads no files and runs nothing: the answer comes in as a stream, and the files
//! shown as feedback as their first bytes ([`Head`]).

use std::fmt;
use std::io::BufRead;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::compare::compare_stream;
use super::suite::Case;
use crate::report::{status_message, Outcome, Status};
use crate::source::describe_io;

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
    /// Time limit exceeded: CPU time over the time limit, or wall-clock time over the backstop.
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
    /// The judged time: CPU time of the run (its wall-clock time when the launcher could not
    /// report it); `None` when the case did not run.
    pub time: Option<Duration>,
    /// Wall-clock time of the run; `None` when the case did not run.
    pub wall_time: Option<Duration>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// One line, safe to show the student.
    pub message: String,
    /// Present only for failed cases with full feedback.
    pub feedback: Option<Feedback>,
    /// The engine that ran the case (its context's name, `default` or `podman`); `None` when
    /// it did not run.
    pub engine: Option<String>,
}

impl CaseResult {
    /// A case that did not run, with the same `verdict` and `message` as its submission.
    pub fn not_run(verdict: Verdict, message: impl Into<String>) -> CaseResult {
        CaseResult {
            verdict,
            time: None,
            wall_time: None,
            exit_code: None,
            signal: None,
            message: message.into(),
            feedback: None,
            engine: None,
        }
    }
}

/// The start of a file shown as feedback (`.in`, `.ans`), and the whole file's length: feedback
/// shows at most [`EXCERPT_BYTES`], so a file is never read further than that for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    /// The first bytes of the file: at most [`Head::BYTES`].
    pub bytes: Vec<u8>,
    /// The length of the whole file.
    pub len: u64,
}

impl Head {
    /// How much of a file a [`Head`] keeps: one byte past the excerpt, to tell whether the
    /// excerpt's last character is whole.
    pub const BYTES: usize = EXCERPT_BYTES + 1;

    /// The head of bytes already in memory.
    pub fn of(bytes: &[u8]) -> Head {
        Head {
            bytes: bytes[..bytes.len().min(Head::BYTES)].to_vec(),
            len: bytes.len() as u64,
        }
    }

    /// The excerpt shown to the student; see [`excerpt`].
    pub fn excerpt(&self) -> String {
        excerpt_of(&self.bytes, self.len)
    }
}

/// The files of a case with full feedback, as far as feedback shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shown {
    pub input: Head,
    /// Empty when the answer file could not be read.
    pub answer: Head,
}

/// The verdict for `case` from how its run ended. `answer` streams the `.ans` file (or says why
/// it could not be opened); it is read only when the program ended normally, and only as far as
/// the comparison needs. `shown` holds the files' heads when the case has full feedback.
pub fn judge(
    case: &Case,
    outcome: &Outcome,
    answer: Result<&mut dyn BufRead, String>,
    shown: Option<&Shown>,
) -> CaseResult {
    let mut result = CaseResult {
        verdict: Verdict::AC,
        time: Some(outcome.cpu_time.unwrap_or(outcome.duration)),
        wall_time: Some(outcome.duration),
        exit_code: outcome.exit_code,
        signal: outcome.signal,
        message: String::new(),
        feedback: None,
        engine: None,
    };
    let (verdict, message) = match outcome.status {
        Status::Ok => match answer.and_then(|answer| {
            compare_stream(answer, &outcome.stdout.bytes, &case.compare)
                .map_err(|error| describe_io(&error))
        }) {
            Ok(Ok(())) => (Verdict::AC, "accepted".to_owned()),
            Ok(Err(mismatch)) => (Verdict::WA, mismatch.describe(case.full_feedback)),
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
        let shown = shown.cloned().unwrap_or_default();
        result.feedback = Some(Feedback {
            input: shown.input.excerpt(),
            expected: shown.answer.excerpt(),
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
    excerpt_of(bytes, bytes.len() as u64)
}

/// [`excerpt`] of a file of `len` bytes that starts with `head` (at least [`Head::BYTES`] of it,
/// or all of it).
fn excerpt_of(head: &[u8], len: u64) -> String {
    if len <= EXCERPT_BYTES as u64 {
        return String::from_utf8_lossy(head).into_owned();
    }
    let mut cut = EXCERPT_BYTES.min(head.len());
    // Do not split a UTF-8 sequence: back up to a character boundary (at most 3 bytes).
    while cut > EXCERPT_BYTES - 4 && head.get(cut).is_some_and(|byte| byte & 0xC0 == 0x80) {
        cut -= 1;
    }
    format!(
        "{}\n… ({} more bytes not shown)",
        String::from_utf8_lossy(&head[..cut]),
        len.saturating_sub(cut as u64)
    )
}

/// [`judge`] with the case's files in memory (for tests).
#[cfg(test)]
pub(crate) fn judge_in_memory(
    case: &Case,
    outcome: &Outcome,
    answer: Result<&[u8], String>,
    input: Option<&[u8]>,
) -> CaseResult {
    let shown = Shown {
        input: input.map(Head::of).unwrap_or_default(),
        answer: answer.as_deref().map(Head::of).unwrap_or_default(),
    };
    let mut reader = answer.as_ref().map(|answer| *answer);
    judge(
        case,
        outcome,
        reader
            .as_mut()
            .map(|reader| reader as &mut dyn BufRead)
            .map_err(|error| error.clone()),
        case.full_feedback.then_some(&shown),
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
        let judged = |status, stdout| {
            judge_in_memory(&secret, &outcome(status, stdout), Ok(b"42\n"), None).verdict
        };
        assert_eq!(judged(Status::Ok, "42"), Verdict::AC);
        assert_eq!(judged(Status::Ok, "41"), Verdict::WA);
        assert_eq!(judged(Status::RuntimeError, "42"), Verdict::RTE);
        assert_eq!(judged(Status::Timeout, "42"), Verdict::TLE);
        assert_eq!(judged(Status::MemoryLimit, ""), Verdict::MLE);
        assert_eq!(judged(Status::OutputLimit, "42"), Verdict::OLE);
        assert_eq!(judged(Status::SandboxError, ""), Verdict::JE);
        let unreadable = judge_in_memory(
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
        let result = judge_in_memory(&case(false), &killed, Ok(b""), None);
        assert_eq!(result.time, Some(Duration::from_millis(120)));
        assert_eq!(result.signal, Some(11));
        assert!(result.message.contains("SIGSEGV"), "{}", result.message);
        let timeout = judge_in_memory(&case(false), &outcome(Status::Timeout, ""), Ok(b""), None);
        assert!(
            timeout.message.contains("time limit"),
            "{}",
            timeout.message
        );
    }

    #[test]
    fn secret_cases_carry_no_feedback_and_no_answer_in_the_message() {
        let result = judge_in_memory(
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
        let result = judge_in_memory(
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
        let passed = judge_in_memory(
            &case(true),
            &outcome(Status::Ok, "ANSWER"),
            Ok(b"ANSWER\n"),
            Some(b"INPUT"),
        );
        assert!(passed.feedback.is_none(), "nothing to explain on AC");
    }

    #[test]
    fn a_head_excerpts_like_the_whole_file() {
        for text in [
            "short".to_owned(),
            "é".repeat(EXCERPT_BYTES),
            "x".repeat(EXCERPT_BYTES),
        ] {
            assert_eq!(
                Head::of(text.as_bytes()).excerpt(),
                excerpt(text.as_bytes())
            );
        }
        // A file of 1 GiB: only its head is in memory, and the note counts the rest.
        let head = Head {
            bytes: vec![b'7'; Head::BYTES],
            len: 1 << 30,
        };
        let text = head.excerpt();
        assert!(text.starts_with(&"7".repeat(EXCERPT_BYTES)));
        assert!(
            text.ends_with(&format!(
                "({} more bytes not shown)",
                (1u64 << 30) - EXCERPT_BYTES as u64
            )),
            "{}",
            &text[EXCERPT_BYTES..]
        );
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
