//! How outcomes and refusals become HTTP answers: small JSON answers ([`Answer`]) and run answers
//! ([`RunAnswer`]), whose output is written out while the client reads (see [`super::body`]).
//!
//! `POST /run` keeps the original Flask API's shape (`{"output": ..., "status": "success"}`,
//! 400 / 408 errors with an `error` string, plus `stdout`, `stderr`, `exit_code`, `duration_ms`);
//! `POST /api/v1/runs` answers with the `safe-exec run --json` document. Only statuses and the
//! shape of documents are decided here; nothing in this room runs anything.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::body::{JsonBody, JsonObject};
use crate::limits::{human_bytes, Limits};
use crate::report::{Artifacts, ArtifactsReport, Outcome, RunReport, Status};
use crate::source::RejectReason;

/// Retry-After for a run refused or lost because the engine is unavailable.
pub const ENGINE_RETRY_SECS: u64 = 10;
/// Retry-After while the server shuts down (a restart is expected).
pub const SHUTDOWN_RETRY_SECS: u64 = 5;
/// What a client is told when the engine failed: the details stay in the server's log.
const ENGINE_UNAVAILABLE: &str = "The execution engine is unavailable; try again later";
/// Room in a run answer for everything but the two output streams (status, messages, limits,
/// hint: well under 2 KiB in practice).
const ANSWER_OVERHEAD: u64 = 16 * 1024;

/// Which answer format a run endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `POST /run`: the original API.
    Compat,
    /// `POST /api/v1/runs`: the run report.
    V1,
}

impl Flavor {
    pub fn endpoint(self) -> &'static str {
        match self {
            Flavor::Compat => "/run",
            Flavor::V1 => "/api/v1/runs",
        }
    }
}

/// A small JSON answer with its status and the few headers that matter.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub retry_after: Option<u64>,
    pub authenticate: bool,
}

impl Answer {
    pub fn new(status: StatusCode, body: Value) -> Answer {
        Answer {
            status,
            body,
            retry_after: None,
            authenticate: false,
        }
    }

    /// `{"error": message, "status": "error"}`, the error shape of both endpoints.
    pub fn error(status: StatusCode, message: impl Into<String>) -> Answer {
        Answer::new(
            status,
            json!({ "error": message.into(), "status": "error" }),
        )
    }

    pub fn retry_after(mut self, secs: u64) -> Answer {
        self.retry_after = Some(secs.max(1));
        self
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        let headers = response.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(secs) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.authenticate {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"safe-exec\""),
            );
        }
        response
    }
}

/// The answer for a finished (or cancelled) run: its output is kept as captured and escaped only
/// as the client reads.
#[derive(Debug)]
pub struct RunAnswer {
    pub status: StatusCode,
    pub body: JsonBody,
    pub retry_after: Option<u64>,
}

impl IntoResponse for RunAnswer {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::new(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(secs) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

/// The most memory a run's answer can hold: both streams at the output cap (as base64 in the run
/// report, when they are not UTF-8), the artifacts' bytes when the answer carries them
/// (`artifact_bytes`, kept as bytes and encoded while sent), and room for the rest; for a streamed
/// answer (`live`) also the output on its way as events, at most the cap per stream. Reserved from
/// the client's budget when the run is admitted.
pub fn answer_reserve(limits: &Limits, flavor: Flavor, artifact_bytes: u64, live: bool) -> u64 {
    let stream = match flavor {
        Flavor::Compat => limits.max_output_bytes,
        Flavor::V1 => limits.max_output_bytes.div_ceil(3).saturating_mul(4),
    };
    let queued = if live { limits.max_output_bytes } else { 0 };
    stream
        .saturating_add(queued)
        .saturating_mul(2)
        .saturating_add(artifact_bytes)
        .saturating_add(ANSWER_OVERHEAD)
}

/// The HTTP status of the answer to a run that ended with `status`.
pub fn http_status(status: Status, flavor: Flavor) -> StatusCode {
    match (flavor, status) {
        (_, Status::Rejected) => StatusCode::BAD_REQUEST,
        (_, Status::SandboxError | Status::Interrupted) => StatusCode::SERVICE_UNAVAILABLE,
        (Flavor::V1, _) | (Flavor::Compat, Status::Ok) => StatusCode::OK,
        (Flavor::Compat, Status::Timeout) => StatusCode::REQUEST_TIMEOUT,
        (Flavor::Compat, Status::RuntimeError | Status::MemoryLimit | Status::OutputLimit) => {
            StatusCode::BAD_REQUEST
        }
    }
}

/// The answer for code refused by [`crate::source::Program::from_text`]. No container was
/// created.
pub fn rejected_answer(reason: &RejectReason, flavor: Flavor, limits: Limits) -> Answer {
    match flavor {
        Flavor::Compat => Answer::error(
            StatusCode::BAD_REQUEST,
            match reason {
                RejectReason::TooLong { limit, .. } => {
                    format!("Code too long ({limit} characters max)")
                }
                RejectReason::NulByte { line, column } => {
                    format!("Code contains a NUL byte (line {line}, column {column})")
                }
                RejectReason::Empty => "Code is empty".to_owned(),
                other => other.to_string(),
            },
        ),
        Flavor::V1 => {
            let message = match reason {
                // The CLI's message names a flag; over HTTP the limit is the server's.
                RejectReason::TooLong { chars, limit } => {
                    format!("code is too long: {chars} characters, the limit is {limit}")
                }
                other => other.to_string(),
            };
            let outcome = Outcome::not_run(Status::Rejected, message, limits);
            let report = serde_json::to_value(RunReport::from(outcome)).unwrap_or(Value::Null);
            Answer::new(StatusCode::BAD_REQUEST, report)
        }
    }
}

/// The answer for a finished (or cancelled) run, with the artifacts' bytes when
/// `artifact_content` is set (the run report only). Takes the outcome, so its output is moved
/// into the answer rather than copied.
pub fn outcome_answer(
    outcome: Outcome,
    hint: Option<&str>,
    flavor: Flavor,
    artifact_content: bool,
) -> RunAnswer {
    let status = http_status(outcome.status, flavor);
    let retry_after = match outcome.status {
        Status::SandboxError => Some(ENGINE_RETRY_SECS),
        Status::Interrupted => Some(SHUTDOWN_RETRY_SECS),
        _ => None,
    };
    let body = match flavor {
        Flavor::Compat => compat_body(outcome, hint),
        Flavor::V1 => report_body(outcome, hint, artifact_content),
    };
    RunAnswer {
        status,
        body,
        retry_after,
    }
}

/// The run report, with `hint` added when there is one.
fn report_body(mut outcome: Outcome, hint: Option<&str>, artifact_content: bool) -> JsonBody {
    if outcome.status == Status::SandboxError {
        outcome.error = Some(ENGINE_UNAVAILABLE.to_owned());
    }
    let mut artifacts = std::mem::take(&mut outcome.artifacts);
    let mut report = RunReport::from(outcome);
    let stdout = Bytes::from(std::mem::take(&mut report.stdout).into_bytes());
    let stderr = Bytes::from(std::mem::take(&mut report.stderr).into_bytes());
    let mut object = JsonObject::new();
    if let Ok(Value::Object(fields)) = serde_json::to_value(&report) {
        for (key, value) in fields {
            object = match key.as_str() {
                "stdout" => object.text("stdout", stdout.clone()),
                "stderr" => object.text("stderr", stderr.clone()),
                "artifacts" => object.object(
                    "artifacts",
                    artifacts_object(std::mem::take(&mut artifacts), artifact_content),
                ),
                _ => object.value(&key, value),
            };
        }
    }
    if let Some(hint) = hint {
        object = object.value("hint", hint);
    }
    object.finish()
}

/// The report's `artifacts`, as `run --json` lists them; each file's bytes as `content_base64`
/// when `content` is set, encoded only as the answer is sent.
fn artifacts_object(artifacts: Artifacts, content: bool) -> JsonObject {
    let listed = ArtifactsReport::new(&artifacts, false);
    let files = listed
        .files
        .into_iter()
        .zip(artifacts.files)
        .map(|(entry, artifact)| {
            let file = JsonObject::new()
                .value("name", entry.name)
                .value("size", entry.size)
                .value("media_type", entry.media_type)
                .value("truncated", entry.truncated);
            if content {
                file.base64("content_base64", Bytes::from(artifact.bytes))
            } else {
                file
            }
        })
        .collect();
    JsonObject::new()
        .array("files", files)
        .value("skipped", listed.skipped)
        .value("truncated", listed.truncated)
}

/// The original API's answer: `output` is stdout, `status` is `success` or `error`.
fn compat_body(outcome: Outcome, hint: Option<&str>) -> JsonBody {
    let limits = &outcome.limits;
    let error = match outcome.status {
        Status::Ok => None,
        Status::RuntimeError => Some("Execution failed".to_owned()),
        Status::Timeout => Some(format!(
            "Execution timed out after {}",
            seconds(limits.timeout)
        )),
        Status::MemoryLimit => Some(format!(
            "Memory limit exceeded: the program used more than {} and was killed",
            human_bytes(limits.memory_bytes)
        )),
        Status::OutputLimit => Some(format!(
            "Output limit exceeded: {} passed {}; the program was stopped and its output truncated",
            outcome
                .output_limit_stream
                .map_or("output", |stream| stream.name()),
            human_bytes(limits.max_output_bytes)
        )),
        Status::Rejected => {
            let message = outcome.error.as_deref().unwrap_or("Code rejected");
            return error_body(message);
        }
        Status::SandboxError => return error_body(ENGINE_UNAVAILABLE),
        Status::Interrupted => {
            return error_body("The server is shutting down; the run was cancelled")
        }
    };
    let stdout = Bytes::from(outcome.stdout.bytes);
    let stderr = Bytes::from(outcome.stderr.bytes);
    let mut object = JsonObject::new()
        .text("output", stdout.clone())
        .value("status", if error.is_none() { "success" } else { "error" })
        .text("stdout", stdout)
        .text("stderr", stderr)
        .value("exit_code", outcome.exit_code)
        .value("duration_ms", millis(outcome.duration));
    if let Some(error) = error {
        object = object.value("error", error);
    }
    if let Some(signal) = outcome.signal {
        object = object.value("signal", signal);
    }
    if outcome.status == Status::OutputLimit {
        object = object
            .value("stdout_truncated", outcome.stdout.truncated)
            .value("stderr_truncated", outcome.stderr.truncated);
    }
    if let Some(hint) = hint {
        object = object.value("hint", hint);
    }
    object.finish()
}

/// `{"error": message, "status": "error"}` as a run answer's body.
fn error_body(message: &str) -> JsonBody {
    JsonObject::new()
        .value("error", message)
        .value("status", "error")
        .finish()
}

pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `10 seconds`, `1 second`, `2.5 seconds`.
fn seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs == 1.0 {
        "1 second".to_owned()
    } else if secs.fract() == 0.0 {
        format!("{secs:.0} seconds")
    } else {
        format!("{} seconds", (secs * 1000.0).round() / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Captured, Stream};

    fn ran(status: Status, stdout: &str) -> Outcome {
        Outcome {
            stdout: Captured {
                bytes: stdout.as_bytes().to_vec(),
                seen: stdout.len() as u64,
                truncated: false,
            },
            duration: Duration::from_millis(1234),
            ..Outcome::not_run(status, "x", Limits::default())
        }
    }

    fn answer(outcome: Outcome, hint: Option<&str>, flavor: Flavor) -> (StatusCode, Value) {
        let answer = outcome_answer(outcome, hint, flavor, false);
        let body = serde_json::from_slice(&answer.body.to_vec()).expect("JSON");
        (answer.status, body)
    }

    #[test]
    fn success_is_the_original_shape() {
        let mut outcome = ran(Status::Ok, "4\n");
        outcome.exit_code = Some(0);
        let (status, body) = answer(outcome, None, Flavor::Compat);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({"output": "4\n", "status": "success", "stdout": "4\n", "stderr": "", "exit_code": 0, "duration_ms": 1234})
        );
    }

    #[test]
    fn limits_have_their_own_messages_and_codes() {
        let (status, timeout) = answer(ran(Status::Timeout, "started\n"), None, Flavor::Compat);
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(timeout["error"], "Execution timed out after 10 seconds");
        assert_eq!(timeout["output"], "started\n");
        let (status, memory) = answer(ran(Status::MemoryLimit, ""), None, Flavor::Compat);
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            memory["error"],
            "Memory limit exceeded: the program used more than 128 MiB and was killed"
        );
        let mut flood = ran(Status::OutputLimit, "AAAA");
        flood.output_limit_stream = Some(Stream::Stdout);
        flood.stdout.truncated = true;
        let (status, output) = answer(flood, None, Flavor::Compat);
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(output["error"]
            .as_str()
            .unwrap()
            .starts_with("Output limit exceeded: stdout passed 1 MiB"));
        assert_eq!(output["stdout_truncated"], true);
        let (_, failed) = answer(
            ran(Status::RuntimeError, ""),
            Some("Network access is disabled"),
            Flavor::Compat,
        );
        assert_eq!(failed["error"], "Execution failed");
        assert_eq!(failed["hint"], "Network access is disabled");
    }

    #[test]
    fn engine_failures_are_503_without_internal_details() {
        for flavor in [Flavor::Compat, Flavor::V1] {
            let outcome = Outcome::not_run(
                Status::SandboxError,
                "cannot reach the Docker engine at unix:///secret.sock",
                Limits::default(),
            );
            let answer = outcome_answer(outcome, None, flavor, false);
            assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(answer.retry_after.is_some());
            let body = String::from_utf8(answer.body.to_vec()).unwrap();
            assert!(!body.contains("secret"), "{body}");
        }
    }

    #[test]
    fn v1_is_the_run_report_with_an_optional_hint() {
        let (status, body) = answer(ran(Status::Timeout, "x"), Some("h"), Flavor::V1);
        assert_eq!(status, StatusCode::OK);
        let report: RunReport = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(report.status, Status::Timeout);
        assert_eq!(report.stdout, "x");
        assert_eq!(body["hint"], "h");
        // Output that is not UTF-8 is base64, as in `run --json`.
        let mut binary = ran(Status::Ok, "");
        binary.stdout.bytes = vec![255, 0, 97];
        let (_, body) = answer(binary, None, Flavor::V1);
        let report: RunReport = serde_json::from_value(body).unwrap();
        assert_eq!(report.stdout_bytes(), vec![255, 0, 97]);
    }

    /// Artifacts are listed as `run --json` lists them, their bytes only when asked for.
    #[test]
    fn v1_lists_artifacts_and_carries_their_bytes_when_asked() {
        let mut outcome = ran(Status::Ok, "");
        outcome.artifacts.files.push(crate::report::Artifact {
            name: "plot.png".into(),
            bytes: vec![0x89, b'P', b'N', b'G'],
            size: 4,
            truncated: false,
        });
        for content in [false, true] {
            let answer = outcome_answer(outcome.clone(), None, Flavor::V1, content);
            let report: RunReport = serde_json::from_slice(&answer.body.to_vec()).unwrap();
            let expected = RunReport::with_artifact_content(outcome.clone(), content);
            assert_eq!(report.artifacts, expected.artifacts, "content: {content}");
        }
    }

    #[test]
    fn rejections_name_the_limit() {
        let too_long = RejectReason::TooLong {
            chars: 5001,
            limit: 5000,
        };
        let compat = rejected_answer(&too_long, Flavor::Compat, Limits::default());
        assert_eq!(
            compat.body,
            json!({"error": "Code too long (5000 characters max)", "status": "error"})
        );
        let v1 = rejected_answer(&too_long, Flavor::V1, Limits::default());
        let report: RunReport = serde_json::from_value(v1.body).unwrap();
        assert_eq!(report.status, Status::Rejected);
        assert!(report.error.unwrap().contains("5000"));
    }

    /// The reservation covers the largest answer a run can give.
    #[test]
    fn the_reservation_covers_the_largest_answer() {
        let limits = Limits::default();
        let cap = limits.max_output_bytes as usize;
        for flavor in [Flavor::Compat, Flavor::V1] {
            let mut outcome = ran(Status::OutputLimit, "");
            outcome.stdout.bytes = vec![0xff; cap];
            outcome.stderr.bytes = vec![0xfe; cap];
            outcome.output_limit_stream = Some(Stream::Stdout);
            outcome.error = Some("e".repeat(1000));
            outcome.artifacts.files.push(crate::report::Artifact {
                name: "plot.png".into(),
                bytes: vec![7; 1000],
                size: 1000,
                truncated: false,
            });
            let held = outcome_answer(outcome, Some("a hint"), flavor, true)
                .body
                .held_bytes();
            let reserved = answer_reserve(&limits, flavor, 1000, false);
            assert!(held <= reserved, "{flavor:?}: {held} > {reserved}");
            assert!(
                reserved - held < 32 * 1024,
                "{flavor:?}: {held} of {reserved}"
            );
        }
    }

    #[test]
    fn seconds_read_naturally() {
        assert_eq!(seconds(Duration::from_secs(10)), "10 seconds");
        assert_eq!(seconds(Duration::from_secs(1)), "1 second");
        assert_eq!(seconds(Duration::from_millis(2500)), "2.5 seconds");
    }
}
