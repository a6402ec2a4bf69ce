//! The outcome of one run and how it is reported: the versioned JSON document (`--json`), the
//! one-line text messages, and the exit code.
//!
//! # The JSON report, schema version 1
//!
//! `safe-exec run --json` prints exactly one document, [`RunReport`], on stdout:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `schema_version` | integer | `1`. Additive changes keep it; breaking ones bump it. |
//! | `status` | string | one of [`Status`]: `ok`, `runtime_error`, `timeout`, `memory_limit`, `output_limit`, `rejected`, `sandbox_error`, `interrupted` |
//! | `exit_code` | integer or null | the program's exit code; null when it did not end by itself (killed by a signal or by us, or never started) |
//! | `signal` | integer or null | the signal that ended the program, when not one of our limits (e.g. 9, 11) |
//! | `stdout`, `stderr` | string | what the program wrote, up to the cap |
//! | `stdout_encoding`, `stderr_encoding` | string | `utf-8` when the bytes were valid UTF-8 (the string is the text); `base64` otherwise (the string is the exact bytes, base64-encoded) |
//! | `stdout_truncated`, `stderr_truncated` | bool | the stream passed `--max-output` and was cut there |
//! | `duration_ms` | integer | wall-clock time from the program's start to its end, in milliseconds (container start-up is not part of it) |
//! | `cpu_time_ms` | integer or null | CPU time of all the program's processes, in milliseconds; what `timeout_secs` limits; null when the program did not start or its end was not reported |
//! | `limits` | object | the limits applied ([`AppliedLimits`]) |
//! | `error` | string or null | a human message when `status` is not `ok` |
//! | `artifacts` | object | what the program left in `out/`: `files` (each `name`, `size`, `media_type`, `truncated`, and `content_base64` when asked for), `skipped` (each `name`, `reason`), `truncated` |

pub mod artifacts;
mod text;

use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::exit_codes;
use crate::limits::{AppliedLimits, Limits};

pub use artifacts::{Artifact, Artifacts, ArtifactsReport};
pub use text::{describe, status_message};

/// Version of the JSON report format; see the module docs.
pub const SCHEMA_VERSION: u32 = 1;

/// How a run ended. Decided by [`crate::runner::rules`] from the launcher's signed end report, our
/// own deadlines and caps and the engine's record — never from what the program printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The program exited 0.
    Ok,
    /// Non-zero exit, or death by a signal that none of our limits caused.
    RuntimeError,
    /// The program used more CPU time than the time limit, or ran past the wall-clock backstop.
    Timeout,
    /// The kernel's OOM killer killed the program (or a process it started).
    MemoryLimit,
    /// stdout or stderr passed the cap; the container was killed.
    OutputLimit,
    /// The input was refused before anything ran; no container was created.
    Rejected,
    /// The engine or image is missing or failed; the program may not have run.
    SandboxError,
    /// safe-exec received SIGINT/SIGTERM/SIGHUP (or its caller cancelled) and killed the run.
    Interrupted,
}

impl Status {
    /// Every status, in the order the docs list them.
    pub const ALL: [Status; 8] = [
        Status::Ok,
        Status::RuntimeError,
        Status::Timeout,
        Status::MemoryLimit,
        Status::OutputLimit,
        Status::Rejected,
        Status::SandboxError,
        Status::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::RuntimeError => "runtime_error",
            Status::Timeout => "timeout",
            Status::MemoryLimit => "memory_limit",
            Status::OutputLimit => "output_limit",
            Status::Rejected => "rejected",
            Status::SandboxError => "sandbox_error",
            Status::Interrupted => "interrupted",
        }
    }
}

/// Which output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// What was kept of one output stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// The bytes kept (empty when the caller asked for pass-through only).
    pub bytes: Vec<u8>,
    /// Total bytes the program wrote that we read, including any beyond the cap.
    pub seen: u64,
    /// The stream passed the cap.
    pub truncated: bool,
}

/// Everything known about one run, in domain terms. Rendered by [`RunReport::new`] and
/// [`describe`], mapped to an exit code by [`Outcome::exit_code`].
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: Captured,
    pub stderr: Captured,
    /// Wall-clock time from the program's start to its end.
    pub duration: Duration,
    /// CPU time of all the program's processes, when the launcher reported it.
    pub cpu_time: Option<Duration>,
    /// A human message for anything but `ok`.
    pub error: Option<String>,
    pub limits: Limits,
    /// Which stream passed the cap, for `output_limit`.
    pub output_limit_stream: Option<Stream>,
    /// The signal we received, for `interrupted`.
    pub interrupt_signal: Option<i32>,
    /// What the program left in `out/`, when the run asked for it.
    pub artifacts: Artifacts,
}

impl Outcome {
    /// An outcome for a run that never started a program (`rejected`, `sandbox_error`, an early
    /// `interrupted`).
    pub fn not_run(status: Status, error: impl Into<String>, limits: Limits) -> Outcome {
        Outcome {
            status,
            exit_code: None,
            signal: None,
            stdout: Captured::default(),
            stderr: Captured::default(),
            duration: Duration::ZERO,
            cpu_time: None,
            error: Some(error.into()),
            limits,
            output_limit_stream: None,
            interrupt_signal: None,
            artifacts: Artifacts::default(),
        }
    }

    /// The process exit code `safe-exec run` uses for this outcome (see [`crate::exit_codes`]).
    pub fn exit_code(&self) -> u8 {
        match self.status {
            Status::Ok => exit_codes::SUCCESS,
            Status::RuntimeError => match (self.exit_code, self.signal) {
                (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
                (None, Some(signal)) => exit_codes::for_signal(signal),
                (None, None) => 1,
            },
            Status::Timeout => exit_codes::TIMEOUT,
            Status::MemoryLimit => exit_codes::MEMORY_LIMIT,
            Status::OutputLimit => exit_codes::OUTPUT_LIMIT,
            Status::Rejected => exit_codes::REJECTED,
            Status::SandboxError => exit_codes::SANDBOX_ERROR,
            Status::Interrupted => match self.interrupt_signal {
                Some(signal) => exit_codes::for_signal(signal),
                None => exit_codes::INTERRUPTED,
            },
        }
    }
}

/// The `--json` document, schema version [`SCHEMA_VERSION`]. See the module docs for each field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub schema_version: u32,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stdout_encoding: Encoding,
    pub stdout_truncated: bool,
    pub stderr: String,
    pub stderr_encoding: Encoding,
    pub stderr_truncated: bool,
    pub duration_ms: u64,
    pub cpu_time_ms: Option<u64>,
    pub limits: AppliedLimits,
    pub error: Option<String>,
    /// What the program left in `out/` (empty when the run did not collect it).
    #[serde(default)]
    pub artifacts: ArtifactsReport,
}

/// How an output string in the report is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Encoding {
    /// The bytes were valid UTF-8; the string is the text itself.
    #[serde(rename = "utf-8")]
    Utf8,
    /// The bytes were not valid UTF-8; the string is their standard base64 encoding.
    #[serde(rename = "base64")]
    Base64,
}

impl Outcome {
    /// The outcome a run report describes: the way back from [`RunReport::from`], for a report
    /// that came from elsewhere (`safe-exec serve` answering `run --server`). Rendering it again
    /// gives the same document, the same `safe-exec:` line and the same exit code.
    ///
    /// What a report does not carry is rebuilt: which stream passed the output cap (the one whose
    /// message is the report's `error`), the bytes seen beyond the cap (only what was kept is
    /// known), and the signal behind an `interrupted` (none: the run was cancelled elsewhere).
    pub fn from_report(report: RunReport) -> Outcome {
        let stdout = Captured {
            bytes: report.stdout_bytes(),
            seen: 0,
            truncated: report.stdout_truncated,
        };
        let stderr = Captured {
            bytes: report.stderr_bytes(),
            seen: 0,
            truncated: report.stderr_truncated,
        };
        let mut outcome = Outcome {
            status: report.status,
            exit_code: report.exit_code,
            signal: report.signal,
            stdout: Captured {
                seen: stdout.bytes.len() as u64,
                ..stdout
            },
            stderr: Captured {
                seen: stderr.bytes.len() as u64,
                ..stderr
            },
            duration: Duration::from_millis(report.duration_ms),
            cpu_time: report.cpu_time_ms.map(Duration::from_millis),
            error: report.error,
            limits: report.limits.to_limits(),
            output_limit_stream: None,
            interrupt_signal: None,
            artifacts: artifacts_of(report.artifacts),
        };
        if outcome.status == Status::OutputLimit {
            let mut candidates = Vec::new();
            if outcome.stdout.truncated {
                candidates.push(Stream::Stdout);
            }
            if outcome.stderr.truncated {
                candidates.push(Stream::Stderr);
            }
            candidates.extend([Stream::Stdout, Stream::Stderr]);
            let said = outcome.error.clone();
            outcome.output_limit_stream = candidates
                .iter()
                .copied()
                .find(|&stream| {
                    let mut probe = outcome.clone();
                    probe.output_limit_stream = Some(stream);
                    text::status_message(&probe) == said
                })
                .or(candidates.first().copied());
        }
        outcome
    }
}

/// The artifacts a report lists, with their bytes when it carries them (`content_base64`). A name
/// that is not a plain relative path is listed as skipped instead.
fn artifacts_of(report: ArtifactsReport) -> Artifacts {
    let mut skipped = report.skipped;
    let mut files = Vec::new();
    for entry in report.files {
        if !artifacts::valid_path(&entry.name) {
            skipped.push(artifacts::SkippedArtifact {
                name: crate::sanitize::text(&entry.name).into_owned(),
                reason: "not a plain relative path".to_owned(),
            });
            continue;
        }
        let bytes = entry
            .content_base64
            .and_then(|content| {
                base64::engine::general_purpose::STANDARD
                    .decode(content)
                    .ok()
            })
            .unwrap_or_default();
        files.push(Artifact {
            name: entry.name,
            bytes,
            size: entry.size,
            truncated: entry.truncated,
        });
    }
    Artifacts {
        files,
        skipped,
        truncated: report.truncated,
    }
}

impl RunReport {
    pub fn new(outcome: &Outcome) -> RunReport {
        RunReport::from(outcome.clone())
    }

    /// The report of `outcome`, with every artifact's bytes in base64 when `content` is set.
    pub fn with_artifact_content(outcome: Outcome, content: bool) -> RunReport {
        let artifacts = ArtifactsReport::new(&outcome.artifacts, content);
        RunReport {
            artifacts,
            ..RunReport::from(outcome)
        }
    }

    /// The bytes of `stdout` as the program wrote them (decoding base64 when needed).
    pub fn stdout_bytes(&self) -> Vec<u8> {
        decode_output(&self.stdout, self.stdout_encoding)
    }

    /// The bytes of `stderr` as the program wrote them (decoding base64 when needed).
    pub fn stderr_bytes(&self) -> Vec<u8> {
        decode_output(&self.stderr, self.stderr_encoding)
    }
}

/// Moves the output into the report without copying it when it is UTF-8 (a 64 MiB cap must not
/// cost three times that in memory).
impl From<Outcome> for RunReport {
    fn from(outcome: Outcome) -> RunReport {
        let duration_ms = u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX);
        let (stdout_truncated, stderr_truncated) =
            (outcome.stdout.truncated, outcome.stderr.truncated);
        let (stdout, stdout_encoding) = encode_output(outcome.stdout);
        let (stderr, stderr_encoding) = encode_output(outcome.stderr);
        RunReport {
            schema_version: SCHEMA_VERSION,
            status: outcome.status,
            exit_code: outcome.exit_code,
            signal: outcome.signal,
            stdout,
            stdout_encoding,
            stdout_truncated,
            stderr,
            stderr_encoding,
            stderr_truncated,
            duration_ms,
            cpu_time_ms: outcome
                .cpu_time
                .map(|cpu| u64::try_from(cpu.as_millis()).unwrap_or(u64::MAX)),
            limits: outcome.limits.applied(),
            error: outcome.error,
            artifacts: ArtifactsReport::new(&outcome.artifacts, false),
        }
    }
}

/// Output as a JSON string: text when it is UTF-8, base64 otherwise. A stream we truncated may end
/// in the middle of a character; those trailing bytes are dropped rather than turning the whole
/// stream into base64.
pub fn encode_output(captured: Captured) -> (String, Encoding) {
    let mut bytes = captured.bytes;
    match std::str::from_utf8(&bytes) {
        Ok(_) => {}
        Err(error) if captured.truncated && error.error_len().is_none() => {
            bytes.truncate(error.valid_up_to())
        }
        Err(_) => {
            return (
                base64::engine::general_purpose::STANDARD.encode(&bytes),
                Encoding::Base64,
            )
        }
    }
    match String::from_utf8(bytes) {
        Ok(text) => (text, Encoding::Utf8),
        Err(error) => (
            String::from_utf8_lossy(error.as_bytes()).into_owned(),
            Encoding::Utf8,
        ),
    }
}

fn decode_output(text: &str, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Utf8 => text.as_bytes().to_vec(),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: Status) -> Outcome {
        Outcome {
            status,
            ..Outcome::not_run(status, "x", Limits::default())
        }
    }

    #[test]
    fn exit_codes_follow_the_table() {
        assert_eq!(outcome(Status::Ok).exit_code(), 0);
        assert_eq!(outcome(Status::Timeout).exit_code(), 124);
        assert_eq!(outcome(Status::SandboxError).exit_code(), 125);
        assert_eq!(outcome(Status::MemoryLimit).exit_code(), 121);
        assert_eq!(outcome(Status::OutputLimit).exit_code(), 122);
        assert_eq!(outcome(Status::Rejected).exit_code(), 123);
        assert_eq!(outcome(Status::Interrupted).exit_code(), 130);
        let terminated = Outcome {
            interrupt_signal: Some(15),
            ..outcome(Status::Interrupted)
        };
        assert_eq!(terminated.exit_code(), 143);
        let failed = Outcome {
            exit_code: Some(3),
            ..outcome(Status::RuntimeError)
        };
        assert_eq!(failed.exit_code(), 3);
        let segfault = Outcome {
            signal: Some(11),
            ..outcome(Status::RuntimeError)
        };
        assert_eq!(segfault.exit_code(), 139);
    }

    #[test]
    fn status_names_match_serde() {
        for status in Status::ALL {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
    }

    #[test]
    fn binary_output_is_base64_and_round_trips() {
        let captured = Captured {
            bytes: vec![0xff, 0x00, b'a'],
            seen: 3,
            truncated: false,
        };
        let (text, encoding) = encode_output(captured.clone());
        assert_eq!(encoding, Encoding::Base64);
        assert_eq!(decode_output(&text, encoding), captured.bytes);
    }

    #[test]
    fn a_character_cut_by_the_cap_keeps_the_text_readable() {
        let mut bytes = "héllo".as_bytes().to_vec();
        bytes.extend_from_slice(&"é".as_bytes()[..1]);
        let captured = Captured {
            bytes,
            seen: 100,
            truncated: true,
        };
        assert_eq!(
            encode_output(captured),
            ("héllo".to_owned(), Encoding::Utf8)
        );
    }

    /// A report read back renders as the same document, line and exit code.
    #[test]
    fn a_report_read_back_is_the_same_outcome_as_far_as_it_shows() {
        let limits = Limits::default();
        let mut samples = vec![
            Outcome {
                exit_code: Some(3),
                stdout: Captured {
                    bytes: vec![0xff, 0, b'a'],
                    seen: 3,
                    truncated: false,
                },
                stderr: Captured {
                    bytes: b"Traceback\n".to_vec(),
                    seen: 10,
                    truncated: false,
                },
                duration: Duration::from_millis(1234),
                cpu_time: Some(Duration::from_millis(20)),
                ..outcome(Status::RuntimeError)
            },
            Outcome {
                signal: Some(11),
                ..outcome(Status::RuntimeError)
            },
            Outcome {
                cpu_time: Some(Duration::from_millis(10_001)),
                ..Outcome::not_run(Status::Timeout, "", limits)
            },
            Outcome {
                cpu_time: Some(Duration::from_millis(30)),
                duration: Duration::from_millis(21_003),
                ..Outcome::not_run(Status::Timeout, "", limits)
            },
            outcome(Status::MemoryLimit),
            outcome(Status::Rejected),
            outcome(Status::SandboxError),
        ];
        for stream in [Stream::Stdout, Stream::Stderr] {
            let mut flood = outcome(Status::OutputLimit);
            flood.output_limit_stream = Some(stream);
            flood.stdout.truncated = true;
            flood.stderr.truncated = stream == Stream::Stderr;
            samples.push(flood);
        }
        for mut sample in samples {
            if sample.status != Status::Rejected && sample.status != Status::SandboxError {
                sample.error = text::status_message(&sample);
            }
            let report = RunReport::new(&sample);
            let back = Outcome::from_report(report.clone());
            assert_eq!(RunReport::new(&back), report, "{sample:?}");
            assert_eq!(back.exit_code(), sample.exit_code(), "{sample:?}");
            assert_eq!(text::describe(&back), text::describe(&sample), "{sample:?}");
            assert_eq!(back.stdout.bytes, sample.stdout.bytes);
        }
    }

    #[test]
    fn report_has_every_documented_field() {
        let report = RunReport::new(&outcome(Status::Rejected));
        let value = serde_json::to_value(&report).unwrap();
        for field in [
            "schema_version",
            "status",
            "exit_code",
            "signal",
            "stdout",
            "stdout_encoding",
            "stdout_truncated",
            "stderr",
            "stderr_encoding",
            "stderr_truncated",
            "duration_ms",
            "cpu_time_ms",
            "limits",
            "error",
        ] {
            assert!(value.get(field).is_some(), "missing {field}");
        }
        assert_eq!(value["schema_version"], 1);
        assert_eq!(value["limits"]["memory_bytes"], 134217728);
    }
}
