//! The HTTP API: the router, the two run endpoints and health.
//!
//! `POST /run` speaks the original Flask API; `POST /api/v1/runs` answers with the
//! `safe-exec run --json` document (the answers themselves are [`super::answers`]). Both go
//! through one path: rate limit, token, body (size, time, content type, JSON; the per-request
//! `limits`, each at most the server's own, `stdin` or `stdin_base64` within `--max-stdin`, and
//! `files`, checked by the same [`InputFiles`] as `run --file`), the code's length as sent and
//! [`Program::from_text`], room in the client's answer budget, a run slot, then
//! [`crate::runner::Fleet::run`] on a blocking thread. `/api/v1/runs` also collects the run's
//! artifacts (their bytes when asked for), and with `Accept: text/event-stream` answers with
//! the output as it comes ([`super::events`]). A client that goes away cancels its run. Nothing
//! here spawns a process except through the supervisor.

use std::net::Ipv4Addr;
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
use base64::Engine as _;
use http_body_util::BodyExt;
use serde_json::{json, Map, Value};

use super::admission::Refusal;
use super::answers::{
    answer_reserve, http_status, millis, outcome_answer, rejected_answer, Answer, Flavor,
    SHUTDOWN_RETRY_SECS,
};
use super::audit::{self, AuditEntry};
use super::clients::Client;
use super::limits::BODY_TIMEOUT;
use super::state::{AppState, Peer};
use super::{assets, events, hints};
use crate::limits::{default_wall_timeout, human_bytes, LimitOverrides, Limits};
use crate::report::{Outcome, Status};
use crate::runner::job::{
    InputFile, InputFiles, InputFilesError, DEFAULT_ARTIFACT_BYTES, MAX_INPUT_BYTES,
    MAX_INPUT_FILES,
};
use crate::runner::{CancelToken, Job, ProgramStdin, RunIo};
use crate::sanitize;
use crate::source::{Program, RejectReason};

/// An over-long body up to this much past the limit is read and dropped before the 413, so the
/// client sees the answer instead of a reset connection; past it the connection is simply closed
/// after the 413.
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
    /// The bodies being read, over every connection, hold the server's whole budget for them.
    BodiesInFlight,
    NotUtf8,
    BadJson(String),
    NotObject,
    MissingCode,
    CodeNotString,
    StdinNotString,
    /// `stdin_base64` is not a string of standard base64.
    StdinNotBase64,
    /// Both `stdin` and `stdin_base64`.
    StdinTwice,
    StdinTooLarge {
        bytes: usize,
        limit: usize,
    },
    /// `limits` is not an object of known limits within the server's own (the message says
    /// which and why).
    BadLimits(String),
    FilenameNotString,
    /// `files` is not a list of usable files (the message says which and why).
    BadFiles(String),
    /// The files come to more than [`MAX_INPUT_BYTES`].
    FilesTooLarge,
    ArtifactContentNotBool,
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
            Refused::StdinNotBase64 => Answer::error(
                S::BAD_REQUEST,
                "'stdin_base64' must be a string of standard base64 (with padding)",
            ),
            Refused::StdinTwice => Answer::error(
                S::BAD_REQUEST,
                "Give the program's input as 'stdin' or as 'stdin_base64', not both",
            ),
            Refused::StdinTooLarge { bytes, limit } => Answer::error(
                S::PAYLOAD_TOO_LARGE,
                format!(
                    "stdin too large: {bytes} bytes, this server takes at most {limit} (safe-exec serve --max-stdin)"
                ),
            ),
            Refused::BadLimits(message) => Answer::error(S::BAD_REQUEST, message.clone()),
            Refused::FilenameNotString => Answer::error(S::BAD_REQUEST, "'filename' must be a string"),
            Refused::BadFiles(message) => Answer::error(S::BAD_REQUEST, message.clone()),
            Refused::FilesTooLarge => Answer::error(
                S::PAYLOAD_TOO_LARGE,
                format!(
                    "files too large: they come to more than {} in all, the most a program can be given",
                    human_bytes(MAX_INPUT_BYTES)
                ),
            ),
            Refused::ArtifactContentNotBool => {
                Answer::error(S::BAD_REQUEST, "'artifact_content' must be true or false")
            }
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
            Refused::BodiesInFlight => Answer::error(
                S::SERVICE_UNAVAILABLE,
                format!(
                    "Server busy: requests being received already hold {} of bodies; retry later",
                    human_bytes(super::limits::BODIES_IN_FLIGHT as u64)
                ),
            )
            .retry_after(1),
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
#[derive(Debug, Clone, PartialEq)]
struct RunRequest {
    code: String,
    stdin: Vec<u8>,
    /// The limits asked for (each at most the server's own).
    limits: LimitOverrides,
    /// The base name the program runs under, when one was given.
    filename: Option<String>,
    /// Files placed beside the program, checked as `run --file`'s are.
    files: Vec<InputFile>,
    /// Send the artifacts' bytes (`content_base64`) with the report.
    artifact_content: bool,
}

/// What a request may ask of this server: its limits are the most a request may ask for.
#[derive(Debug, Clone, Copy)]
struct Caps {
    limits: Limits,
    max_stdin: usize,
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

fn client_ip(peer: Option<Extension<Peer>>) -> Client {
    peer.map_or(
        Client::Ip(Ipv4Addr::UNSPECIFIED.into()),
        |Extension(Peer(client))| client,
    )
}

async fn handle_run(
    state: Arc<AppState>,
    client: Client,
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
    let caps = Caps {
        limits: state.limits,
        max_stdin: state.max_stdin,
    };
    let read = tokio::select! {
        read = read_request(&headers, body, state.body_limit, &state.bodies, &caps) => read,
        _ = shutdown.wait_for(|stop| *stop) => Err(Refused::Stopping),
    };
    let request = match read {
        Ok(request) => request,
        Err(refused) => return refused.answer(flavor).into_response(),
    };
    let limits = effective_limits(&state.limits, &request.limits);
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
    let limit = limits.max_code_chars;
    let checked = if record.code_chars > limit {
        Err(RejectReason::TooLong {
            chars: record.code_chars,
            limit,
        })
    } else {
        Program::from_text(&request.code, limit)
    };
    let program = match checked {
        Ok(program) => match &request.filename {
            Some(name) => program.named(name),
            None => program,
        },
        Err(reason) => {
            let answer = rejected_answer(&reason, flavor, limits);
            let outcome = Outcome::not_run(Status::Rejected, reason.to_string(), limits);
            record.write(&state, &outcome, answer.status, Duration::ZERO, None);
            return answer.into_response();
        }
    };
    if state.is_stopping() {
        return Refused::Stopping.answer(flavor).into_response();
    }
    // The run report lists what the program left in `out/` (as `run --json` does); its bytes
    // are kept only when the answer carries them.
    let artifact_bytes = match flavor {
        Flavor::V1 => DEFAULT_ARTIFACT_BYTES,
        Flavor::Compat => 0,
    };
    let artifact_content = flavor == Flavor::V1 && request.artifact_content;
    let live = flavor == Flavor::V1 && events::wants_events(&headers);
    // Room for the largest answer this run could give, before it waits for a slot: a client that
    // does not read its answers cannot make the server hold more than its budget.
    let reserve = answer_reserve(
        &limits,
        flavor,
        if artifact_content { artifact_bytes } else { 0 },
        live,
    );
    let charge = match state.answers.reserve(client, reserve) {
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
                retry_secs: limits.timeout.as_secs_f64().ceil() as u64,
            };
            return refused.answer(flavor).into_response();
        }
        Err(Refusal::Closed) => return Refused::Stopping.answer(flavor).into_response(),
    };
    let queued = queued_at.elapsed();

    let token = CancelToken::new();
    // Dropped with this future when the client disconnects: the run is cancelled and its
    // container killed. Disarmed once the answer is ready (or the events' body took it over).
    let mut cancel_on_drop = CancelOnDrop(Some(token.clone()));
    let job = Job {
        files: request.files,
        program,
        stdin: if request.stdin.is_empty() {
            ProgramStdin::Empty
        } else {
            ProgramStdin::Bytes(request.stdin)
        },
        limits,
    };
    let mut stream = None;
    let (io, charge) = if live {
        let (queue_in, queue) = tokio::sync::mpsc::unbounded_channel();
        stream = Some((queue, charge));
        (
            events::live_io(queue_in, artifact_bytes, artifact_content),
            None,
        )
    } else {
        let io = RunIo {
            artifact_bytes,
            keep_artifacts: artifact_content,
            ..RunIo::capture()
        };
        (io, Some(charge))
    };
    let warm = state.warm.is_warm(&limits);
    let runner = state.clone();
    let run_token = token.clone();
    let task = tokio::task::spawn_blocking(move || {
        let token = run_token;
        // The slot is held until the run, container removal included, is over, even when the
        // request that asked for it is gone; so is the reservation for its answer.
        let _slot = slot;
        // Held until the audit line is queued: shutdown waits for the registry to empty before
        // it closes the audit log, so a line queued later would be lost.
        let registration = runner.runs.register(&token);
        let ran = if warm {
            runner.fleet.run(job, io, &token)
        } else {
            runner.fleet.run_cold(job, io, &token)
        };
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
        // A streamed answer went out as 200 before the run ended, whatever its report says.
        let status = if live {
            StatusCode::OK
        } else {
            http_status(outcome.status, flavor)
        };
        let audited = runner
            .audit
            .is_some()
            .then(|| record.entry(&outcome, status, queued, cancelled_by))
            .map(|entry| entry.ran_on(ran.engine));
        let mut answer = outcome_answer(outcome, hint.as_deref(), flavor, artifact_content);
        // From now until it is sent (or dropped at the send deadline), the answer holds its
        // real size of the client's budget; given back before the audit line says the run is
        // over, so a client that saw the line can start another. (A streamed answer's body
        // holds the whole reservation instead, its events included.)
        if let Some(mut charge) = charge {
            charge.shrink_to(answer.body.held_bytes());
            answer.body.hold(charge);
        }
        if let (Some(log), Some(entry)) = (&runner.audit, audited) {
            log.write(&entry);
        }
        drop(registration);
        answer
    });
    if let Some((queue, charge)) = stream {
        // The head goes now; the events follow as the run writes, then its result. The send
        // deadline starts when the run is over, whether or not the client is reading.
        let (result_in, result) = tokio::sync::oneshot::channel();
        let (deadline_in, deadline) = tokio::sync::watch::channel(None);
        let send_timeout = state.send_timeout;
        tokio::spawn(async move {
            let answer = task.await;
            deadline_in.send_replace(Some(std::time::Instant::now() + send_timeout));
            match answer {
                Ok(answer) => drop(result_in.send(answer.body)),
                Err(error) => say!(
                    "a run's thread failed: {}",
                    sanitize::text(&error.to_string())
                ),
            }
        });
        cancel_on_drop.0 = None;
        return events::EventStream::new(queue, result, token, charge).respond(deadline);
    }
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
    client: Client,
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
    bodies: &tokio::sync::Semaphore,
    caps: &Caps,
) -> Result<RunRequest, Refused> {
    if !is_json(headers) {
        return Err(Refused::WrongContentType);
    }
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit.saturating_add(DRAIN_LIMIT) as u64) {
        return Err(Refused::TooLarge { limit });
    }
    let bytes = tokio::time::timeout(BODY_TIMEOUT, collect_body(body, limit, bodies))
        .await
        .map_err(|_elapsed| Refused::BodyTimeout)??;
    parse_request(&bytes, caps)
}

/// The body, or [`Refused::TooLarge`] once it passes `limit` (reading on, and dropping, up to
/// [`DRAIN_LIMIT`] past it, so the client can read the answer). What is kept is taken from
/// `bodies`, the server's budget for bodies being read, until the body is parsed;
/// [`Refused::BodiesInFlight`] when it has no room left.
async fn collect_body(
    mut body: Body,
    limit: usize,
    bodies: &tokio::sync::Semaphore,
) -> Result<Vec<u8>, Refused> {
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    let mut held = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Refused::BodyUnreadable)?;
        if let Ok(data) = frame.into_data() {
            seen = seen.saturating_add(data.len());
            if seen <= limit {
                let size = u32::try_from(data.len()).map_err(|_| Refused::BodiesInFlight)?;
                held.push(
                    bodies
                        .try_acquire_many(size)
                        .map_err(|_| Refused::BodiesInFlight)?,
                );
                bytes.extend_from_slice(&data);
            } else if seen > limit.saturating_add(DRAIN_LIMIT) {
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

fn parse_request(bytes: &[u8], caps: &Caps) -> Result<RunRequest, Refused> {
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
    if fields.contains_key("stdin") && fields.contains_key("stdin_base64") {
        return Err(Refused::StdinTwice);
    }
    let stdin = match (fields.remove("stdin"), fields.remove("stdin_base64")) {
        (Some(Value::String(stdin)), _) => stdin.into_bytes(),
        (Some(Value::Null), _) | (None, None) => Vec::new(),
        (Some(_), _) => return Err(Refused::StdinNotString),
        (None, Some(Value::String(encoded))) => {
            // Decoding never makes more than 3 bytes of 4: refuse what cannot fit first.
            if encoded.len() / 4 * 3 > caps.max_stdin.saturating_add(2) {
                return Err(Refused::StdinTooLarge {
                    bytes: encoded.len() / 4 * 3,
                    limit: caps.max_stdin,
                });
            }
            BASE64
                .decode(encoded.as_bytes())
                .map_err(|_| Refused::StdinNotBase64)?
        }
        (None, Some(_)) => return Err(Refused::StdinNotBase64),
    };
    if stdin.len() > caps.max_stdin {
        return Err(Refused::StdinTooLarge {
            bytes: stdin.len(),
            limit: caps.max_stdin,
        });
    }
    let limits = match fields.remove("limits") {
        None => LimitOverrides::default(),
        Some(value) => request_limits(value, &caps.limits).map_err(Refused::BadLimits)?,
    };
    let filename = match fields.remove("filename") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name),
        Some(_) => return Err(Refused::FilenameNotString),
    };
    let files = match fields.remove("files") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            request_files(items, crate::source::run_filename(filename.as_deref()))?
        }
        Some(_) => {
            return Err(Refused::BadFiles(
                r#"'files' must be an array of files, e.g. [{"name": "data.csv", "content_base64": "YSwxCg=="}]"#
                    .to_owned(),
            ))
        }
    };
    let artifact_content = match fields.remove("artifact_content") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(content)) => content,
        Some(_) => return Err(Refused::ArtifactContentNotBool),
    };
    Ok(RunRequest {
        code,
        stdin,
        limits,
        filename,
        files,
        artifact_content,
    })
}

/// The request's `files`: each `{"name", "content_base64"}` (or `"content"`, text), checked by
/// [`InputFiles`] as `run --file` is (count, total size, names). Other fields of a file are
/// ignored, so an artifact entry of a report can be sent back as it is.
fn request_files(items: Vec<Value>, program: &str) -> Result<Vec<InputFile>, Refused> {
    let refused = |index: Option<usize>, error: InputFilesError| {
        match (index, error) {
        (_, InputFilesError::TooLarge) => Refused::FilesTooLarge,
        (_, InputFilesError::TooMany { count }) => Refused::BadFiles(format!(
            "too many files: {count} given, at most {MAX_INPUT_FILES} can be placed beside a program"
        )),
        (Some(index), error) => Refused::BadFiles(format!("files[{index}]: {error}")),
        (None, error) => Refused::BadFiles(error.to_string()),
    }
    };
    let mut files = InputFiles::new(program, items.len()).map_err(|error| refused(None, error))?;
    for (index, item) in items.into_iter().enumerate() {
        let at = |message: &str| Refused::BadFiles(format!("files[{index}]: {message}"));
        let Value::Object(mut file) = item else {
            return Err(at(
                r#"a file must be an object, e.g. {"name": "data.csv", "content_base64": "YSwxCg=="}"#,
            ));
        };
        let name = match file.remove("name") {
            Some(Value::String(name)) => name,
            _ => return Err(at("'name' must be a string")),
        };
        let bytes = match (file.remove("content"), file.remove("content_base64")) {
            (Some(Value::String(text)), None) => text.into_bytes(),
            (None, Some(Value::String(encoded))) => {
                // Decoding never makes more than 3 bytes of 4: refuse what cannot fit first.
                if (encoded.len() / 4 * 3) as u64 > files.room().saturating_add(2) {
                    return Err(Refused::FilesTooLarge);
                }
                BASE64.decode(encoded.as_bytes()).map_err(|_| {
                    at("'content_base64' must be a string of standard base64 (with padding)")
                })?
            }
            (Some(_), Some(_)) => {
                return Err(at(
                    "give the file's 'content' or 'content_base64', not both",
                ))
            }
            (None, None) => {
                return Err(at(
                    "the file has no 'content_base64' (or 'content', for text)",
                ))
            }
            _ => return Err(at("'content' and 'content_base64' must be strings")),
        };
        files
            .add(&name, bytes)
            .map_err(|error| refused(Some(index), error))?;
    }
    Ok(files.into_files())
}

/// Standard base64 with padding; bits past the end of the data are ignored, so every string a
/// schema's `format: byte` allows decodes.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// The names of the per-request limits, as the request and the run report spell them.
pub const REQUEST_LIMITS: [&str; 6] = [
    "timeout_secs",
    "wall_timeout_secs",
    "memory_bytes",
    "cpus",
    "pids",
    "max_output_bytes",
];

/// The smallest time limit a request may ask for, in seconds.
pub const MIN_REQUEST_SECS: f64 = 0.001;

/// The per-request `limits` object: each a known limit of the right type, at least its minimum
/// and at most the server's own. The error is the message for the client.
fn request_limits(value: Value, server: &Limits) -> Result<LimitOverrides, String> {
    let Value::Object(fields) = value else {
        return Err(
            r#"'limits' must be an object, e.g. {"timeout_secs": 2, "memory_bytes": 67108864}"#
                .to_owned(),
        );
    };
    if let Some(unknown) = fields
        .keys()
        .find(|key| !REQUEST_LIMITS.contains(&key.as_str()))
    {
        return Err(format!(
            "unknown limit '{}' in 'limits': the limits are {}",
            crate::sanitize::text(unknown),
            REQUEST_LIMITS.join(", ")
        ));
    }
    let number = |fields: &Map<String, Value>, name: &str, min: f64, max: f64, flag: &str| {
        let Some(value) = fields.get(name) else {
            return Ok(None);
        };
        let Some(number) = value.as_f64().filter(|_| value.is_number()) else {
            return Err(format!("limits.{name} must be a number"));
        };
        if number < min {
            return Err(format!("limits.{name} must be at least {min}"));
        }
        if number > max {
            return Err(format!(
                "limits.{name} {number} is above this server's maximum of {max} (safe-exec serve {flag})"
            ));
        }
        Ok(Some(number))
    };
    let integer = |fields: &Map<String, Value>, name: &str, min: u64, max: u64, flag: &str| {
        let Some(value) = fields.get(name) else {
            return Ok(None);
        };
        let Some(number) = value.as_u64() else {
            return Err(format!(
                "limits.{name} must be a whole number, at least {min}"
            ));
        };
        if number < min {
            return Err(format!("limits.{name} must be at least {min}"));
        }
        if number > max {
            return Err(format!(
                "limits.{name} {number} is above this server's maximum of {max} (safe-exec serve {flag})"
            ));
        }
        Ok(Some(number))
    };
    let secs = std::time::Duration::from_secs_f64;
    Ok(LimitOverrides {
        timeout: number(
            &fields,
            "timeout_secs",
            MIN_REQUEST_SECS,
            server.timeout.as_secs_f64(),
            "--timeout",
        )?
        .map(secs),
        wall_timeout: number(
            &fields,
            "wall_timeout_secs",
            MIN_REQUEST_SECS,
            server.wall_timeout.as_secs_f64(),
            "--wall-timeout",
        )?
        .map(secs),
        memory_bytes: integer(
            &fields,
            "memory_bytes",
            crate::limits::MIN_MEMORY_BYTES,
            server.memory_bytes,
            "--memory",
        )?,
        cpus: number(&fields, "cpus", MIN_REQUEST_CPUS, server.cpus, "--cpus")?,
        pids: integer(
            &fields,
            "pids",
            u64::from(MIN_REQUEST_PIDS),
            u64::from(server.pids),
            "--pids-limit",
        )?
        .map(|pids| pids as u32),
        max_code_chars: None,
        max_output_bytes: integer(
            &fields,
            "max_output_bytes",
            1,
            server.max_output_bytes,
            "--max-output",
        )?,
    })
}

/// The smallest CPU quota a request may ask for, as `--cpus` takes.
pub const MIN_REQUEST_CPUS: f64 = 0.01;
/// The smallest pids limit a request may ask for, as `--pids-limit` takes.
pub const MIN_REQUEST_PIDS: u32 = 8;

/// The limits a run gets: the server's, with the request's on top. A time limit asked for without
/// a wall-clock limit brings the default backstop for it (as `safe-exec run --timeout` does), but
/// never more than the server's own backstop.
fn effective_limits(server: &Limits, asked: &LimitOverrides) -> Limits {
    let mut limits = server.with(asked);
    if asked.timeout.is_some() && asked.wall_timeout.is_none() {
        limits.wall_timeout = default_wall_timeout(limits.timeout).min(server.wall_timeout);
    }
    limits
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
    // What a request may ask for at most (`run --server` and `grade --server` read it).
    let limits = state.limits.applied();
    let max_stdin = state.max_stdin;
    // What a request's `files` may hold (`run --server --file` and `grade --server` check that
    // the server takes files at all: an older one would ignore them).
    let files = json!({ "max_count": MAX_INPUT_FILES, "max_bytes": MAX_INPUT_BYTES });
    if state.is_stopping() {
        let body = json!({ "status": "stopping", "runs": runs, "pool": pool, "limits": limits, "max_stdin_bytes": max_stdin, "files": files });
        return Answer::new(StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    }
    let (status, body) = match state.health.check(&state.fleet).await {
        Ok(()) => (
            StatusCode::OK,
            json!({ "status": "ok", "engine": "ready", "image": state.fleet.image(), "runs": runs, "pool": pool, "limits": limits, "max_stdin_bytes": max_stdin, "files": files }),
        ),
        Err(problem) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "unavailable", "engine": problem, "image": state.fleet.image(), "runs": runs, "pool": pool, "limits": limits, "max_stdin_bytes": max_stdin, "files": files }),
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

    const CAPS: Caps = Caps {
        limits: Limits {
            timeout: std::time::Duration::from_secs(10),
            wall_timeout: std::time::Duration::from_secs(21),
            memory_bytes: 128 << 20,
            cpus: 1.0,
            pids: 64,
            max_code_chars: 5000,
            max_output_bytes: 1 << 20,
        },
        max_stdin: 8,
    };

    fn parse_request(bytes: &[u8]) -> Result<RunRequest, Refused> {
        super::parse_request(bytes, &CAPS)
    }

    #[test]
    fn request_bodies_are_parsed_strictly() {
        assert_eq!(
            parse_request(br#"{"code": "print(1)", "stdin": "x", "extra": 1}"#),
            Ok(RunRequest {
                code: "print(1)".into(),
                stdin: b"x".to_vec(),
                limits: LimitOverrides::default(),
                filename: None,
                files: Vec::new(),
                artifact_content: false,
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
    fn stdin_comes_as_text_or_base64_within_the_cap() {
        let stdin = |body: &[u8]| parse_request(body).map(|request| request.stdin);
        assert_eq!(
            stdin(br#"{"code": "1", "stdin_base64": "/wBh"}"#),
            Ok(vec![255, 0, 97])
        );
        assert_eq!(stdin(br#"{"code": "1", "stdin_base64": ""}"#), Ok(vec![]));
        // Bits past the data are ignored (any string `format: byte` allows decodes).
        assert_eq!(
            stdin(br#"{"code": "1", "stdin_base64": "QR=="}"#),
            Ok(b"A".to_vec())
        );
        assert_eq!(
            stdin(br#"{"code": "1", "stdin_base64": "QQ"}"#),
            Err(Refused::StdinNotBase64)
        );
        assert_eq!(
            stdin(br#"{"code": "1", "stdin_base64": "QQ==\n"}"#),
            Err(Refused::StdinNotBase64)
        );
        assert_eq!(
            stdin(br#"{"code": "1", "stdin_base64": 7}"#),
            Err(Refused::StdinNotBase64)
        );
        assert_eq!(
            stdin(br#"{"code": "1", "stdin": null, "stdin_base64": "QQ=="}"#),
            Err(Refused::StdinTwice)
        );
        assert_eq!(
            stdin(br#"{"code": "1", "stdin": "12345678"}"#),
            Ok(b"12345678".to_vec())
        );
        assert_eq!(
            stdin(br#"{"code": "1", "stdin": "123456789"}"#),
            Err(Refused::StdinTooLarge { bytes: 9, limit: 8 })
        );
        assert_eq!(
            stdin(br#"{"code": "1", "stdin_base64": "MTIzNDU2Nzg5"}"#),
            Err(Refused::StdinTooLarge { bytes: 9, limit: 8 })
        );
        assert!(matches!(
            stdin(br#"{"code": "1", "stdin_base64": "MTIzNDU2Nzg5MTIzNDU2Nzg5"}"#),
            Err(Refused::StdinTooLarge { .. })
        ));
    }

    /// Files are checked as `run --file`'s are, each refusal naming the file and the rule.
    #[test]
    fn files_are_checked_as_run_s() {
        let files = |files: Value| {
            let body = json!({"code": "1", "files": files, "filename": "prog.py"});
            parse_request(body.to_string().as_bytes()).map(|request| request.files)
        };
        let message = |given: Value| match files(given) {
            Err(Refused::BadFiles(message)) => message,
            other => panic!("{other:?}"),
        };
        let ok = files(json!([
            {"name": "data.csv", "content_base64": "YSwxCg=="},
            {"name": "notes.txt", "content": "héllo", "media_type": "ignored"},
            {"name": "main.py", "content": ""}
        ]))
        .unwrap();
        assert_eq!(ok[0].name(), "data.csv");
        assert_eq!(ok[0].bytes(), b"a,1\n");
        assert_eq!(ok[1].bytes(), "héllo".as_bytes());
        assert_eq!(files(json!(null)).unwrap(), Vec::new());
        assert!(message(json!({"a": "b"})).contains("must be an array"));
        assert!(message(json!(["x"])).starts_with("files[0]: a file must be an object"));
        assert!(message(json!([{"content": "x"}])).contains("'name' must be a string"));
        assert!(message(json!([{"name": "../x", "content": "x"}]))
            .starts_with("files[0]: `../x` is not a usable file name"));
        assert!(message(json!([{"name": "out", "content": ""}])).contains("not a usable"));
        assert!(message(json!([{"name": "prog.py", "content": ""}])).contains("already called"));
        assert!(
            message(json!([{"name": "a", "content": ""}, {"name": "a", "content": ""}]))
                .starts_with("files[1]: another file")
        );
        assert!(message(json!([{"name": "a", "content_base64": "!!!"}])).contains("base64"));
        assert!(message(json!([{"name": "a", "content_base64": 1}])).contains("must be strings"));
        assert!(message(json!([{"name": "a"}])).contains("no 'content_base64'"));
        assert!(
            message(json!([{"name": "a", "content": "", "content_base64": ""}]))
                .contains("not both")
        );
        let many: Vec<Value> = (0..=MAX_INPUT_FILES)
            .map(|index| json!({"name": format!("f{index}"), "content": ""}))
            .collect();
        assert!(message(Value::Array(many)).starts_with("too many files: 33 given"));
        let big = BASE64.encode(vec![0u8; MAX_INPUT_BYTES as usize / 2 + 1]);
        assert_eq!(
            files(
                json!([{"name": "a", "content_base64": big}, {"name": "b", "content_base64": big}])
            ),
            Err(Refused::FilesTooLarge)
        );
        let exact = BASE64.encode(vec![0u8; MAX_INPUT_BYTES as usize]);
        assert_eq!(
            files(json!([{"name": "a", "content_base64": exact}])).unwrap()[0]
                .bytes()
                .len(),
            MAX_INPUT_BYTES as usize
        );
        // The body limit has room for the most files a request may carry.
        assert_eq!(
            super::super::limits::FILES_ROOM,
            (MAX_INPUT_BYTES as usize).div_ceil(3) * 4 + MAX_INPUT_FILES * 1024
        );
        let request = parse_request(br#"{"code": "1", "artifact_content": true}"#).unwrap();
        assert!(request.artifact_content);
        assert_eq!(
            parse_request(br#"{"code": "1", "artifact_content": "yes"}"#),
            Err(Refused::ArtifactContentNotBool)
        );
    }

    #[test]
    fn limits_are_at_most_the_server_s() {
        let limits = |body: &str| parse_request(body.as_bytes()).map(|request| request.limits);
        let asked = limits(
            r#"{"code": "1", "limits": {"timeout_secs": 2.5, "wall_timeout_secs": 10, "memory_bytes": 67108864, "cpus": 0.5, "pids": 8, "max_output_bytes": 1}}"#,
        )
        .unwrap();
        assert_eq!(asked.timeout, Some(std::time::Duration::from_millis(2500)));
        assert_eq!(asked.wall_timeout, Some(std::time::Duration::from_secs(10)));
        assert_eq!(asked.memory_bytes, Some(64 << 20));
        assert_eq!(asked.cpus, Some(0.5));
        assert_eq!(asked.pids, Some(8));
        assert_eq!(asked.max_output_bytes, Some(1));
        // Exactly the server's own is fine.
        assert!(limits(
            r#"{"code": "1", "limits": {"timeout_secs": 10, "memory_bytes": 134217728}}"#
        )
        .is_ok());
        let refused = |body: &str| match limits(body) {
            Err(Refused::BadLimits(message)) => message,
            other => panic!("{body}: {other:?}"),
        };
        assert_eq!(
            refused(r#"{"code": "1", "limits": {"timeout_secs": 11}}"#),
            "limits.timeout_secs 11 is above this server's maximum of 10 (safe-exec serve --timeout)"
        );
        assert!(
            refused(r#"{"code": "1", "limits": {"memory_bytes": 134217729}}"#)
                .contains("maximum of 134217728")
        );
        assert!(refused(r#"{"code": "1", "limits": {"memory_bytes": 1024}}"#).contains("at least"));
        assert!(
            refused(r#"{"code": "1", "limits": {"memory_bytes": 6.5e7}}"#).contains("whole number")
        );
        assert!(refused(r#"{"code": "1", "limits": {"pids": -1}}"#).contains("whole number"));
        assert!(refused(r#"{"code": "1", "limits": {"cpus": "1"}}"#).contains("a number"));
        assert!(
            refused(r#"{"code": "1", "limits": {"timeout_secs": 0}}"#).contains("at least 0.001")
        );
        assert!(refused(r#"{"code": "1", "limits": {"timeout": 1}}"#)
            .contains("unknown limit 'timeout'"));
        assert!(
            refused(r#"{"code": "1", "limits": {"max_code_chars": 1}}"#).contains("unknown limit")
        );
        assert!(refused(r#"{"code": "1", "limits": [1]}"#).contains("must be an object"));
        assert!(refused(r#"{"code": "1", "limits": null}"#).contains("must be an object"));
    }

    #[test]
    fn effective_limits_keep_the_server_s_backstop() {
        let server = CAPS.limits;
        let asked = LimitOverrides {
            timeout: Some(std::time::Duration::from_secs(2)),
            ..LimitOverrides::default()
        };
        // As `run --timeout 2`: the backstop is 2 x 2 + 1.
        assert_eq!(
            effective_limits(&server, &asked).wall_timeout,
            std::time::Duration::from_secs(5)
        );
        let tight = Limits {
            wall_timeout: std::time::Duration::from_secs(3),
            ..server
        };
        assert_eq!(
            effective_limits(&tight, &asked).wall_timeout,
            std::time::Duration::from_secs(3)
        );
        assert_eq!(
            effective_limits(&server, &LimitOverrides::default()),
            server
        );
    }

    /// Bodies being read take from one server-wide budget, given back once read: a body with no
    /// room left is refused at once (503), and the next fits again.
    #[test]
    fn bodies_in_flight_share_one_budget() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bodies = tokio::sync::Semaphore::new(100);
        runtime.block_on(async {
            let read = collect_body(Body::from(vec![b'x'; 60]), 1000, &bodies).await;
            assert_eq!(read.unwrap().len(), 60);
            assert_eq!(bodies.available_permits(), 100);
            let held = bodies.try_acquire_many(50).unwrap();
            let refused = collect_body(Body::from(vec![b'x'; 60]), 1000, &bodies).await;
            assert_eq!(refused, Err(Refused::BodiesInFlight));
            assert_eq!(bodies.available_permits(), 50);
            drop(held);
            assert!(collect_body(Body::from(vec![b'x'; 60]), 1000, &bodies)
                .await
                .is_ok());
        });
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
