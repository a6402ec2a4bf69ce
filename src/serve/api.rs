//! The HTTP API: the router, the two run endpoints, health, and how outcomes become answers.
//!
//! `POST /run` speaks the original Flask API (`{"output": ..., "status": "success"}`, 400 / 408
//! errors with an `error` string); `POST /api/v1/runs` answers with the `safe-exec run --json`
//! document. Both go through one path: rate limit, token, body (size, time, content type, JSON),
//! [`Program::from_text`], a run slot, then [`Sandbox::run`] on a blocking thread. A client that
//! goes away cancels its run. Nothing here spawns a process except through the supervisor.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http_body_util::BodyExt;
use serde_json::{json, Value};

use super::admission::Refusal;
use super::audit::{self, AuditEntry};
use super::limits::BODY_TIMEOUT;
use super::state::{AppState, Peer};
use super::{assets, hints};
use crate::limits::{human_bytes, Limits};
use crate::report::{Outcome, RunReport, Status};
use crate::runner::{CancelToken, Job, ProgramStdin, RunIo};
use crate::sanitize;
use crate::source::{Program, RejectReason};

/// An over-long body up to this size is read and dropped before the 413, so the client sees the
/// answer instead of a reset connection; past it the connection is simply closed after the 413.
const DRAIN_LIMIT: usize = 1024 * 1024;
/// Retry-After for a run refused or lost because the engine is unavailable.
const ENGINE_RETRY_SECS: u64 = 10;
/// Retry-After while the server shuts down (a restart is expected).
const SHUTDOWN_RETRY_SECS: u64 = 5;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/assets/{file}", get(assets::asset))
        .route("/favicon.svg", get(assets::favicon))
        .route("/openapi.json", get(assets::openapi))
        .route("/healthz", get(healthz))
        .route("/run", post(run_compat))
        .route("/api/v1/runs", post(run_v1))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), check_host))
        .layer(middleware::map_response(assets::security_headers))
        .with_state(state)
}

/// Which answer format a run endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `POST /run`: the original API.
    Compat,
    /// `POST /api/v1/runs`: the run report.
    V1,
}

impl Flavor {
    fn endpoint(self) -> &'static str {
        match self {
            Flavor::Compat => "/run",
            Flavor::V1 => "/api/v1/runs",
        }
    }
}

/// A JSON answer with its status and the few headers that matter.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub retry_after: Option<u64>,
    pub authenticate: bool,
}

impl Answer {
    fn new(status: StatusCode, body: Value) -> Answer {
        Answer {
            status,
            body,
            retry_after: None,
            authenticate: false,
        }
    }

    /// `{"error": message, "status": "error"}`, the error shape of both endpoints.
    fn error(status: StatusCode, message: impl Into<String>) -> Answer {
        Answer::new(
            status,
            json!({ "error": message.into(), "status": "error" }),
        )
    }

    fn retry_after(mut self, secs: u64) -> Answer {
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

/// Why a request was answered before any code was looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refused {
    RateLimited {
        retry_secs: u64,
        per_minute: u32,
    },
    Unauthorized,
    WrongContentType,
    TooLarge {
        limit: usize,
    },
    BodyTimeout,
    BodyUnreadable,
    NotUtf8,
    BadJson(String),
    NotObject,
    MissingCode,
    CodeNotString,
    StdinNotString,
    Busy {
        max_concurrent: usize,
        queue: usize,
        retry_secs: u64,
    },
    Stopping,
}

impl Refused {
    /// The answer. Every answer closes its connection (see [`super::server`]), so a body left
    /// unread cannot be taken for the next request.
    fn answer(&self, flavor: Flavor) -> Answer {
        use StatusCode as S;
        match self {
            Refused::RateLimited { retry_secs, per_minute } => Answer::error(
                S::TOO_MANY_REQUESTS,
                format!("Too many requests: at most {per_minute} runs per minute per client; retry in {retry_secs} s"),
            )
            .retry_after(*retry_secs),
            Refused::Unauthorized => Answer {
                authenticate: true,
                ..Answer::error(
                    S::UNAUTHORIZED,
                    "Missing or invalid token: send the header `Authorization: Bearer <token>`",
                )
            },
            Refused::WrongContentType => Answer::error(
                // The original API answered 400; new clients get the precise status.
                if flavor == Flavor::V1 { S::UNSUPPORTED_MEDIA_TYPE } else { S::BAD_REQUEST },
                "Content-Type must be application/json",
            ),
            Refused::TooLarge { limit } => {
                Answer::error(S::PAYLOAD_TOO_LARGE, format!("Request body too large ({limit} bytes max)"))
            }
            Refused::BodyTimeout => Answer::error(
                S::REQUEST_TIMEOUT,
                format!("Request body not received within {} seconds", BODY_TIMEOUT.as_secs()),
            ),
            Refused::BodyUnreadable => Answer::error(S::BAD_REQUEST, "Could not read the request body"),
            Refused::NotUtf8 => Answer::error(S::BAD_REQUEST, "Invalid JSON: the request body is not valid UTF-8"),
            Refused::BadJson(detail) => Answer::error(S::BAD_REQUEST, format!("Invalid JSON: {detail}")),
            Refused::NotObject => Answer::error(
                S::BAD_REQUEST,
                r#"The request body must be a JSON object, e.g. {"code": "print(1)"}"#,
            ),
            Refused::MissingCode => Answer::error(S::BAD_REQUEST, "No code provided"),
            Refused::CodeNotString => Answer::error(S::BAD_REQUEST, "'code' must be a string"),
            Refused::StdinNotString => Answer::error(S::BAD_REQUEST, "'stdin' must be a string"),
            Refused::Busy {
                max_concurrent,
                queue,
                retry_secs,
            } => Answer::error(
                S::SERVICE_UNAVAILABLE,
                format!(
                    "Server busy: all {max_concurrent} run slots are taken and {queue} requests are waiting; retry later"
                ),
            )
            .retry_after(*retry_secs),
            Refused::Stopping => Answer::error(S::SERVICE_UNAVAILABLE, "The server is shutting down; retry later")
                .retry_after(SHUTDOWN_RETRY_SECS),
        }
    }
}

/// A parsed run request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RunRequest {
    code: String,
    stdin: String,
}

async fn run_compat(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle_run(state, client_ip(peer), headers, body, Flavor::Compat).await
}

async fn run_v1(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle_run(state, client_ip(peer), headers, body, Flavor::V1).await
}

fn client_ip(peer: Option<Extension<Peer>>) -> IpAddr {
    peer.map_or(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        |Extension(Peer(addr))| addr.ip().to_canonical(),
    )
}

async fn handle_run(
    state: Arc<AppState>,
    client: IpAddr,
    headers: HeaderMap,
    body: Body,
    flavor: Flavor,
) -> Response {
    let arrived = SystemTime::now();
    if let Some(limiter) = &state.rate_limiter {
        if let Err(wait) = limiter.check(client, Instant::now()) {
            let retry_secs = wait.as_secs_f64().ceil() as u64;
            let per_minute = state.rate_limit;
            return Refused::RateLimited {
                retry_secs,
                per_minute,
            }
            .answer(flavor)
            .into_response();
        }
    }
    if !state.auth.token_ok(&headers) {
        return Refused::Unauthorized.answer(flavor).into_response();
    }
    // A client still sending its body when shutdown begins is answered at once rather than
    // holding shutdown up for the body timeout.
    let mut shutdown = state.shutdown.subscribe();
    let read = tokio::select! {
        read = read_request(&headers, body, state.body_limit) => read,
        _ = shutdown.wait_for(|stop| *stop) => Err(Refused::Stopping),
    };
    let request = match read {
        Ok(request) => request,
        Err(refused) => return refused.answer(flavor).into_response(),
    };
    let record = Record {
        time: audit::rfc3339(arrived),
        client,
        flavor,
        code_sha256: audit::code_hash(&request.code),
        code_chars: request.code.chars().count(),
        stdin_bytes: request.stdin.len(),
        code: state
            .audit
            .as_ref()
            .filter(|log| log.include_code())
            .map(|_| request.code.clone()),
    };
    let program = match Program::from_text(&request.code, state.limits.max_code_chars) {
        Ok(program) => program,
        Err(reason) => {
            let answer = rejected_answer(&reason, flavor, state.limits);
            let outcome = Outcome::not_run(Status::Rejected, reason.to_string(), state.limits);
            record.write(&state, &outcome, answer.status, Duration::ZERO, None);
            return answer.into_response();
        }
    };
    if state.is_stopping() {
        return Refused::Stopping.answer(flavor).into_response();
    }

    let queued_at = Instant::now();
    let slot = match state.admission.enter().await {
        Ok(slot) => slot,
        Err(Refusal::QueueFull) => {
            let refused = Refused::Busy {
                max_concurrent: state.admission.max_concurrent(),
                queue: state.admission.queue(),
                retry_secs: state.limits.timeout.as_secs_f64().ceil() as u64,
            };
            return refused.answer(flavor).into_response();
        }
        Err(Refusal::Closed) => return Refused::Stopping.answer(flavor).into_response(),
    };
    let queued = queued_at.elapsed();

    let token = CancelToken::new();
    // Dropped with this future when the client disconnects: the run is cancelled and its
    // container killed. Disarmed once the answer is ready.
    let mut cancel_on_drop = CancelOnDrop(Some(token.clone()));
    let job = Job {
        program,
        stdin: if request.stdin.is_empty() {
            ProgramStdin::Empty
        } else {
            ProgramStdin::Bytes(request.stdin.into_bytes())
        },
        limits: state.limits,
    };
    let runner = state.clone();
    let task = tokio::task::spawn_blocking(move || {
        // The slot is held until the run, container removal included, is over, even when the
        // request that asked for it is gone.
        let _slot = slot;
        // Held until the audit line is queued: shutdown waits for the registry to empty before
        // it closes the audit log, so a line queued later would be lost.
        let registration = runner.runs.register(&token);
        let outcome = runner.sandbox.run(job, RunIo::capture(), &token);
        if outcome.status == Status::SandboxError {
            say!(
                "a run failed in the sandbox: {}",
                sanitize::text(outcome.error.as_deref().unwrap_or("unknown error"))
            );
        }
        let hint = hints::hint(&outcome);
        let answer = outcome_answer(&outcome, hint.as_deref(), flavor);
        let cancelled_by = (outcome.status == Status::Interrupted).then(|| match token.signal() {
            Some(_) => "shutdown",
            None => "client",
        });
        record.write(&runner, &outcome, answer.status, queued, cancelled_by);
        drop(registration);
        answer
    });
    let answer = task.await;
    cancel_on_drop.0 = None;
    match answer {
        Ok(answer) => answer.into_response(),
        Err(error) => {
            say!(
                "a run's thread failed: {}",
                sanitize::text(&error.to_string())
            );
            Answer::error(StatusCode::INTERNAL_SERVER_ERROR, "Internal error").into_response()
        }
    }
}

/// Cancels its token when dropped while still holding it.
struct CancelOnDrop(Option<CancelToken>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(token) = self.0.take() {
            token.cancel();
        }
    }
}

/// What the audit line says about the request, captured before the code is moved into the run.
struct Record {
    time: String,
    client: IpAddr,
    flavor: Flavor,
    code_sha256: String,
    code_chars: usize,
    stdin_bytes: usize,
    code: Option<String>,
}

impl Record {
    /// Queue the audit line, if there is an audit log. Never blocks (see [`AuditLog::write`]).
    fn write(
        self,
        state: &AppState,
        outcome: &Outcome,
        http_status: StatusCode,
        queued: Duration,
        cancelled_by: Option<&'static str>,
    ) {
        let Some(log) = &state.audit else {
            return;
        };
        let error = match outcome.status {
            Status::Rejected | Status::SandboxError => outcome.error.clone(),
            _ => None,
        };
        log.write(&AuditEntry {
            time: self.time,
            client: self.client.to_string(),
            endpoint: self.flavor.endpoint(),
            code_sha256: self.code_sha256,
            code_chars: self.code_chars,
            stdin_bytes: self.stdin_bytes,
            status: outcome.status.as_str(),
            http_status: http_status.as_u16(),
            exit_code: outcome.exit_code,
            signal: outcome.signal,
            duration_ms: millis(outcome.duration),
            queued_ms: millis(queued),
            stdout_bytes: outcome.stdout.seen,
            stderr_bytes: outcome.stderr.seen,
            cancelled_by,
            error,
            code: self.code,
        });
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Check the content type, read the body within its size and time limits, and parse it.
async fn read_request(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<RunRequest, Refused> {
    if !is_json(headers) {
        return Err(Refused::WrongContentType);
    }
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit.max(DRAIN_LIMIT) as u64) {
        return Err(Refused::TooLarge { limit });
    }
    let bytes = tokio::time::timeout(BODY_TIMEOUT, collect_body(body, limit))
        .await
        .map_err(|_elapsed| Refused::BodyTimeout)??;
    parse_request(&bytes)
}

/// The body, or [`Refused::TooLarge`] once it passes `limit` (reading on, and dropping, up to
/// [`DRAIN_LIMIT`] so the client can read the answer).
async fn collect_body(mut body: Body, limit: usize) -> Result<Vec<u8>, Refused> {
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Refused::BodyUnreadable)?;
        if let Ok(data) = frame.into_data() {
            seen = seen.saturating_add(data.len());
            if seen <= limit {
                bytes.extend_from_slice(&data);
            } else if seen > limit.max(DRAIN_LIMIT) {
                break;
            }
        }
    }
    if seen > limit {
        Err(Refused::TooLarge { limit })
    } else {
        Ok(bytes)
    }
}

fn parse_request(bytes: &[u8]) -> Result<RunRequest, Refused> {
    let text = std::str::from_utf8(bytes).map_err(|_| Refused::NotUtf8)?;
    let value: Value =
        serde_json::from_str(text).map_err(|error| Refused::BadJson(error.to_string()))?;
    let Value::Object(mut fields) = value else {
        return Err(Refused::NotObject);
    };
    let code = match fields.remove("code") {
        None | Some(Value::Null) => return Err(Refused::MissingCode),
        Some(Value::String(code)) => code,
        Some(_) => return Err(Refused::CodeNotString),
    };
    let stdin = match fields.remove("stdin") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(stdin)) => stdin,
        Some(_) => return Err(Refused::StdinNotString),
    };
    Ok(RunRequest { code, stdin })
}

/// `application/json`, or any `application/*+json`, parameters allowed.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The answer for code refused by [`Program::from_text`]. No container was created.
fn rejected_answer(reason: &RejectReason, flavor: Flavor, limits: Limits) -> Answer {
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
            Answer::new(StatusCode::BAD_REQUEST, report_value(&outcome, None))
        }
    }
}

/// What a client is told when the engine failed: the details stay in the server's log.
const ENGINE_UNAVAILABLE: &str = "The execution engine is unavailable; try again later";

/// The answer for a finished (or cancelled) run.
pub fn outcome_answer(outcome: &Outcome, hint: Option<&str>, flavor: Flavor) -> Answer {
    match flavor {
        Flavor::Compat => compat_answer(outcome, hint),
        Flavor::V1 => {
            let status = match outcome.status {
                Status::Ok
                | Status::RuntimeError
                | Status::Timeout
                | Status::MemoryLimit
                | Status::OutputLimit => StatusCode::OK,
                Status::Rejected => StatusCode::BAD_REQUEST,
                Status::SandboxError | Status::Interrupted => StatusCode::SERVICE_UNAVAILABLE,
            };
            let mut public = outcome.clone();
            if outcome.status == Status::SandboxError {
                public.error = Some(ENGINE_UNAVAILABLE.to_owned());
            }
            let answer = Answer::new(status, report_value(&public, hint));
            match outcome.status {
                Status::SandboxError => answer.retry_after(ENGINE_RETRY_SECS),
                Status::Interrupted => answer.retry_after(SHUTDOWN_RETRY_SECS),
                _ => answer,
            }
        }
    }
}

/// The run report as JSON, with `hint` added when there is one.
fn report_value(outcome: &Outcome, hint: Option<&str>) -> Value {
    let mut value = serde_json::to_value(RunReport::new(outcome)).unwrap_or(Value::Null);
    if let (Some(hint), Value::Object(fields)) = (hint, &mut value) {
        fields.insert("hint".to_owned(), Value::from(hint));
    }
    value
}

/// The original API's answer: `output` is stdout, `status` is `success` or `error`.
fn compat_answer(outcome: &Outcome, hint: Option<&str>) -> Answer {
    let limits = &outcome.limits;
    let (status, error) = match outcome.status {
        Status::Ok => (StatusCode::OK, None),
        Status::RuntimeError => (StatusCode::BAD_REQUEST, Some("Execution failed".to_owned())),
        Status::Timeout => (
            StatusCode::REQUEST_TIMEOUT,
            Some(format!("Execution timed out after {}", seconds(limits.timeout))),
        ),
        Status::MemoryLimit => (
            StatusCode::BAD_REQUEST,
            Some(format!(
                "Memory limit exceeded: the program used more than {} and was killed",
                human_bytes(limits.memory_bytes)
            )),
        ),
        Status::OutputLimit => (
            StatusCode::BAD_REQUEST,
            Some(format!(
                "Output limit exceeded: {} passed {}; the program was stopped and its output truncated",
                outcome.output_limit_stream.map_or("output", |stream| stream.name()),
                human_bytes(limits.max_output_bytes)
            )),
        ),
        Status::Rejected => {
            let message = outcome.error.clone().unwrap_or_else(|| "Code rejected".to_owned());
            return Answer::error(StatusCode::BAD_REQUEST, message);
        }
        Status::SandboxError => {
            return Answer::error(StatusCode::SERVICE_UNAVAILABLE, ENGINE_UNAVAILABLE).retry_after(ENGINE_RETRY_SECS);
        }
        Status::Interrupted => {
            return Answer::error(StatusCode::SERVICE_UNAVAILABLE, "The server is shutting down; the run was cancelled")
                .retry_after(SHUTDOWN_RETRY_SECS);
        }
    };
    let stdout = String::from_utf8_lossy(&outcome.stdout.bytes).into_owned();
    let stderr = String::from_utf8_lossy(&outcome.stderr.bytes).into_owned();
    let mut body = json!({
        "output": stdout,
        "status": if error.is_none() { "success" } else { "error" },
        "stdout": stdout,
        "stderr": stderr,
        "exit_code": outcome.exit_code,
        "duration_ms": millis(outcome.duration),
    });
    let fields = body.as_object_mut().expect("an object");
    if let Some(error) = error {
        fields.insert("error".to_owned(), Value::from(error));
    }
    if let Some(signal) = outcome.signal {
        fields.insert("signal".to_owned(), Value::from(signal));
    }
    if outcome.status == Status::OutputLimit {
        fields.insert(
            "stdout_truncated".to_owned(),
            Value::from(outcome.stdout.truncated),
        );
        fields.insert(
            "stderr_truncated".to_owned(),
            Value::from(outcome.stderr.truncated),
        );
    }
    if let Some(hint) = hint {
        fields.insert("hint".to_owned(), Value::from(hint));
    }
    Answer::new(status, body)
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

/// `GET /healthz`: 200 when the engine answers and the image is there, 503 otherwise.
async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let runs = json!({
        "running": state.admission.running(),
        "queued": state.admission.queued(),
        "max_concurrent": state.admission.max_concurrent(),
        "queue": state.admission.queue(),
    });
    if state.is_stopping() {
        let body = json!({ "status": "stopping", "runs": runs });
        return Answer::new(StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    }
    let (status, body) = match state.health.check(&state.sandbox).await {
        Ok(()) => (
            StatusCode::OK,
            json!({ "status": "ok", "engine": "ready", "image": state.sandbox.image(), "runs": runs }),
        ),
        Err(problem) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "unavailable", "engine": problem, "image": state.sandbox.image(), "runs": runs }),
        ),
    };
    Answer::new(status, body).into_response()
}

async fn not_found(method: Method, uri: Uri) -> Response {
    Answer::error(
        StatusCode::NOT_FOUND,
        format!("Not found: {method} {}", uri.path()),
    )
    .into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    Answer::error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("Method {method} not allowed on {}", uri.path()),
    )
    .into_response()
}

/// Refuse requests for host names a server without a token does not answer to (see
/// [`super::auth`]).
async fn check_host(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if let Err(host) = state.auth.host_ok(request.headers()) {
        let message = format!(
            "Host '{host}' is not allowed: without a token this server answers only to IP \
             addresses, localhost and the names given with --allow-host (protection against DNS \
             rebinding). Use the server's IP address or http://localhost, or start it with \
             --allow-host NAME or --token"
        );
        return Answer::error(StatusCode::FORBIDDEN, message).into_response();
    }
    next.run(request).await
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

    #[test]
    fn success_is_the_original_shape() {
        let mut outcome = ran(Status::Ok, "4\n");
        outcome.exit_code = Some(0);
        let answer = outcome_answer(&outcome, None, Flavor::Compat);
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            answer.body,
            json!({"output": "4\n", "status": "success", "stdout": "4\n", "stderr": "", "exit_code": 0, "duration_ms": 1234})
        );
    }

    #[test]
    fn limits_have_their_own_messages_and_codes() {
        let timeout = outcome_answer(&ran(Status::Timeout, "started\n"), None, Flavor::Compat);
        assert_eq!(timeout.status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(
            timeout.body["error"],
            "Execution timed out after 10 seconds"
        );
        assert_eq!(timeout.body["output"], "started\n");
        let memory = outcome_answer(&ran(Status::MemoryLimit, ""), None, Flavor::Compat);
        assert_eq!(memory.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            memory.body["error"],
            "Memory limit exceeded: the program used more than 128 MiB and was killed"
        );
        let mut flood = ran(Status::OutputLimit, "AAAA");
        flood.output_limit_stream = Some(Stream::Stdout);
        flood.stdout.truncated = true;
        let output = outcome_answer(&flood, None, Flavor::Compat);
        assert_eq!(output.status, StatusCode::BAD_REQUEST);
        assert!(output.body["error"]
            .as_str()
            .unwrap()
            .starts_with("Output limit exceeded: stdout passed 1 MiB"));
        assert_eq!(output.body["stdout_truncated"], true);
        let failed = outcome_answer(
            &ran(Status::RuntimeError, ""),
            Some("Network access is disabled"),
            Flavor::Compat,
        );
        assert_eq!(failed.body["error"], "Execution failed");
        assert_eq!(failed.body["hint"], "Network access is disabled");
    }

    #[test]
    fn engine_failures_are_503_without_internal_details() {
        let outcome = Outcome::not_run(
            Status::SandboxError,
            "cannot reach the Docker engine at unix:///secret.sock",
            Limits::default(),
        );
        for flavor in [Flavor::Compat, Flavor::V1] {
            let answer = outcome_answer(&outcome, None, flavor);
            assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(answer.retry_after.is_some());
            assert!(
                !answer.body.to_string().contains("secret"),
                "{}",
                answer.body
            );
        }
    }

    #[test]
    fn v1_is_the_run_report_with_an_optional_hint() {
        let answer = outcome_answer(&ran(Status::Timeout, "x"), Some("h"), Flavor::V1);
        assert_eq!(answer.status, StatusCode::OK);
        let report: RunReport = serde_json::from_value(answer.body.clone()).unwrap();
        assert_eq!(report.status, Status::Timeout);
        assert_eq!(answer.body["hint"], "h");
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

    #[test]
    fn request_bodies_are_parsed_strictly() {
        assert_eq!(
            parse_request(br#"{"code": "print(1)", "stdin": "x", "extra": 1}"#),
            Ok(RunRequest {
                code: "print(1)".into(),
                stdin: "x".into()
            })
        );
        assert_eq!(
            parse_request(br#"{"stdin": "x"}"#),
            Err(Refused::MissingCode)
        );
        assert_eq!(
            parse_request(br#"{"code": null}"#),
            Err(Refused::MissingCode)
        );
        assert_eq!(
            parse_request(br#"{"code": 1}"#),
            Err(Refused::CodeNotString)
        );
        assert_eq!(
            parse_request(br#"{"code": "1", "stdin": []}"#),
            Err(Refused::StdinNotString)
        );
        assert_eq!(parse_request(br#"["code"]"#), Err(Refused::NotObject));
        assert_eq!(
            parse_request(b"{\"code\": \"\xff\"}"),
            Err(Refused::NotUtf8)
        );
        assert!(matches!(parse_request(b"{"), Err(Refused::BadJson(_))));
        assert!(matches!(
            parse_request(br#"{"code": "\ud800"}"#),
            Err(Refused::BadJson(_))
        ));
    }

    #[test]
    fn content_types() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            is_json(&headers)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/vnd.api+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn seconds_read_naturally() {
        assert_eq!(seconds(Duration::from_secs(10)), "10 seconds");
        assert_eq!(seconds(Duration::from_secs(1)), "1 second");
        assert_eq!(seconds(Duration::from_millis(2500)), "2.5 seconds");
    }
}
