//! The HTTP API: the router, the two run endpoints and health.
//!
//! `POST /run` speaks the original Flask API; `POST /api/v1/runs` answers with the
//! `safe-exec run --json` document (the answers themselves are [`super::answers`]). Both go
//! through one path: rate limit, token, body (size, time, content type, JSON), the code's length
//! as sent and [`Program::from_text`], room in the client's answer budget, a run slot, then
//! [`crate::runner::Sandbox::run`] on a blocking thread. A client that goes away cancels its
//! run. Nothing here spawns a process except through the supervisor.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use http_body_util::BodyExt;
use serde_json::{json, Value};

use super::admission::Refusal;
use super::answers::{
    answer_reserve, http_status, millis, outcome_answer, rejected_answer, Answer, Flavor,
    SHUTDOWN_RETRY_SECS,
};
use super::audit::{self, AuditEntry};
use super::limits::BODY_TIMEOUT;
use super::state::{AppState, Peer};
use super::{assets, hints};
use crate::limits::human_bytes;
use crate::report::{Outcome, Status};
use crate::runner::{CancelToken, Job, ProgramStdin, RunIo};
use crate::sanitize;
use crate::source::{Program, RejectReason};

/// An over-long body up to this size is read and dropped before the 413, so the client sees the
/// answer instead of a reset connection; past it the connection is simply closed after the 413.
const DRAIN_LIMIT: usize = 1024 * 1024;
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
    /// The client's answers (running or not yet read) would hold more than its budget.
    AnswersUnread {
        held: u64,
        cap: u64,
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
            Refused::AnswersUnread { held, cap, retry_secs } => Answer::error(
                S::SERVICE_UNAVAILABLE,
                format!(
                    "Too many answers for this client are running or not yet read ({} held, {} at most); read them, then retry",
                    human_bytes(*held),
                    human_bytes(*cap)
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
    // The limit counts characters as sent (as the original API did, and as a schema's
    // `maxLength` does), before a BOM is dropped and CRLF becomes LF.
    let limit = state.limits.max_code_chars;
    let checked = if record.code_chars > limit {
        Err(RejectReason::TooLong {
            chars: record.code_chars,
            limit,
        })
    } else {
        Program::from_text(&request.code, limit)
    };
    let program = match checked {
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
    // Room for the largest answer this run could give, before it waits for a slot: a client that
    // does not read its answers cannot make the server hold more than its budget.
    let charge = match state
        .answers
        .reserve(client, answer_reserve(&state.limits, flavor))
    {
        Ok(charge) => charge,
        Err(over) => {
            let refused = Refused::AnswersUnread {
                held: over.held,
                cap: over.cap,
                retry_secs: state.send_timeout.as_secs(),
            };
            return refused.answer(flavor).into_response();
        }
    };

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
        files: Vec::new(),
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
        // request that asked for it is gone; so is the reservation for its answer.
        let _slot = slot;
        let mut charge = charge;
        // Held until the audit line is queued: shutdown waits for the registry to empty before
        // it closes the audit log, so a line queued later would be lost.
        let registration = runner.runs.register(&token);
        let ran = runner.fleet.run(job, RunIo::capture(), &token);
        let outcome = ran.outcome;
        if outcome.status == Status::SandboxError {
            say!(
                "a run failed in the sandbox: {}",
                sanitize::text(outcome.error.as_deref().unwrap_or("unknown error"))
            );
        }
        let hint = hints::hint(&outcome);
        let cancelled_by = (outcome.status == Status::Interrupted).then(|| match token.signal() {
            Some(_) => "shutdown",
            None => "client",
        });
        let status = http_status(outcome.status, flavor);
        let audited = runner
            .audit
            .is_some()
            .then(|| record.entry(&outcome, status, queued, cancelled_by))
            .map(|entry| entry.ran_on(ran.engine));
        let mut answer = outcome_answer(outcome, hint.as_deref(), flavor);
        // From now until it is sent (or dropped at the send deadline), the answer holds its
        // real size of the client's budget; given back before the audit line says the run is
        // over, so a client that saw the line can start another.
        charge.shrink_to(answer.body.held_bytes());
        answer.body.hold(charge);
        if let (Some(log), Some(entry)) = (&runner.audit, audited) {
            log.write(&entry);
        }
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
    /// Queue the audit line, if there is an audit log. Never blocks (see
    /// [`super::audit::AuditLog::write`]).
    fn write(
        self,
        state: &AppState,
        outcome: &Outcome,
        http_status: StatusCode,
        queued: Duration,
        cancelled_by: Option<&'static str>,
    ) {
        if let Some(log) = &state.audit {
            log.write(&self.entry(outcome, http_status, queued, cancelled_by));
        }
    }

    /// The audit line for this request.
    fn entry(
        self,
        outcome: &Outcome,
        http_status: StatusCode,
        queued: Duration,
        cancelled_by: Option<&'static str>,
    ) -> AuditEntry {
        let error = match outcome.status {
            Status::Rejected | Status::SandboxError => outcome.error.clone(),
            _ => None,
        };
        AuditEntry {
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
            engine: None,
            code: self.code,
        }
    }
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

/// `GET /healthz`: 200 when the engine answers and the image is there, 503 otherwise.
async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let runs = json!({
        "running": state.admission.running(),
        "queued": state.admission.queued(),
        "max_concurrent": state.admission.max_concurrent(),
        "queue": state.admission.queue(),
    });
    let pool = json!({
        "size": state.fleet.pool_size(),
        "ready": state.fleet.pool_ready(),
    });
    if state.is_stopping() {
        let body = json!({ "status": "stopping", "runs": runs, "pool": pool });
        return Answer::new(StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    }
    let (status, body) = match state.health.check(&state.fleet).await {
        Ok(()) => (
            StatusCode::OK,
            json!({ "status": "ok", "engine": "ready", "image": state.fleet.image(), "runs": runs, "pool": pool }),
        ),
        Err(problem) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "unavailable", "engine": problem, "image": state.fleet.image(), "runs": runs, "pool": pool }),
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
            headers.insert(
                CONTENT_TYPE,
                axum::http::HeaderValue::from_str(value).unwrap(),
            );
            is_json(&headers)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/vnd.api+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
