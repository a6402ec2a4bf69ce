//! The client side of `safe-exec serve`: `run --server URL` and `grade --server URL` send their
//! programs to a running server (whose warm pool answers in tens of milliseconds) instead of
//! starting a container here, and turn its answer back into the same [`Outcome`] a local run
//! gives, so the exit code, the text output and the `--json` document are the same.
//!
//! The server is `http://HOST[:PORT]`, `https://HOST[:PORT]` (rustls with the system's roots plus
//! `--server-ca`) or `unix:/PATH`; an optional path prefix (a proxy's) is kept. One request per
//! connection (the server closes every connection after its answer), HTTP/1.1 through hyper's
//! client on a current-thread tokio runtime. The token, when `SAFE_EXEC_TOKEN` holds one, goes in
//! `Authorization: Bearer`, and only where it cannot be read on the way: over TLS, a unix socket
//! or loopback (as `serve` refuses a token on a public address without TLS).
//!
//! What the answers mean here:
//!
//! | answer | outcome |
//! |---|---|
//! | 200, or 400 with a run report | the report, as it is |
//! | 400 (the request was refused), 413 | `rejected`, with the server's words |
//! | 401, 403 | `sandbox_error`, naming `SAFE_EXEC_TOKEN` / `--allow-host` |
//! | 429, 503, 408 and anything else | `sandbox_error`, with the server's words and its `Retry-After` |
//! | no connection, TLS failure | `sandbox_error`, naming the URL and what to check |
//!
//! Everything the server says is passed through [`crate::sanitize`] before it is shown. This room
//! prints nothing and exits nothing; `run_command` and `grade` decide that.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use crate::limits::{AppliedLimits, LimitOverrides, Limits, MAX_OUTPUT_BYTES};
use crate::report::{Outcome, RunReport, Status};
use crate::runner::job::InputFile;
use crate::runner::{CancelToken, Job, ProgramStdin};
use crate::sandbox::MAX_ARTIFACT_BYTES;
use crate::sanitize;
use crate::source::Program;
use crate::tls::TlsError;

/// Environment variable: the server's bearer token (the same variable `serve` reads).
pub const TOKEN_ENV: &str = "SAFE_EXEC_TOKEN";
/// How long connecting (and a TLS handshake) may take before the server counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `/healthz` may take to answer.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
/// The most bytes of our own stdin `run --server` sends; the server's `--max-stdin` is usually
/// far less, and it refuses more with 413.
pub const MAX_SENT_STDIN: u64 = 256 * 1024 * 1024;

/// Why the client cannot be set up, or the server could not be asked.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error(
        "--server {}: {why}; give http://HOST:PORT, https://HOST:PORT or unix:/PATH/TO.sock",
        sanitize::text(.url)
    )]
    BadUrl { url: String, why: &'static str },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(
        "refusing to send the token in SAFE_EXEC_TOKEN in clear text to {url}: anyone on the \
         network path could read it. Use https:// (the server's --tls-cert), a loopback address, \
         or a unix: socket"
    )]
    TokenInClearText { url: String },
    #[error("cannot reach the server at {url} ({detail}): is `safe-exec serve` running there?")]
    Unreachable { url: String, detail: String },
    #[error(
        "the TLS handshake with {url} failed ({detail}): if the server's certificate comes from a \
         private CA or is self-signed, pass it with --server-ca PEM (or SAFE_EXEC_SERVER_CA)"
    )]
    Handshake { url: String, detail: String },
    #[error("the server at {url} broke off the exchange ({detail}); is it a `safe-exec serve`?")]
    Exchange { url: String, detail: String },
    #[error("cancelled")]
    Cancelled,
}

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Tcp {
        /// As in the URL (an IPv6 address without its brackets).
        host: String,
        port: u16,
        tls: bool,
        /// A proxy's path prefix, without the trailing slash (`""` for none).
        prefix: String,
    },
    Unix(PathBuf),
}

impl Target {
    /// Can a token travel to it without crossing a network in clear text: TLS, a unix socket,
    /// or a loopback address (`127.0.0.0/8`, `::1`, `localhost`, `*.localhost`)?
    fn keeps_secrets(&self) -> bool {
        match self {
            Target::Unix(_) => true,
            Target::Tcp { tls: true, .. } => true,
            Target::Tcp { host, .. } => {
                let name = host.to_ascii_lowercase();
                host.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.to_canonical().is_loopback())
                    || name == "localhost"
                    || name.ends_with(".localhost")
            }
        }
    }
}

/// A server to send runs to. Cheap to clone; share one across threads.
#[derive(Clone)]
pub struct Remote {
    /// The URL as given, safe to print.
    shown: String,
    target: Target,
    token: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.shown)
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .finish()
    }
}

/// An HTTP answer: status, `Retry-After`, body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Vec<u8>,
}

/// What `/healthz` says about the server: whether it can run programs, and the most a request
/// may ask of it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Health {
    /// `ok`, `unavailable`, `stopping`.
    pub status: String,
    /// `ready`, or why not.
    #[serde(default)]
    pub engine: Option<String>,
    /// The server's own limits (absent from servers older than per-request limits).
    #[serde(default)]
    pub limits: Option<AppliedLimits>,
    #[serde(default)]
    pub max_stdin_bytes: Option<u64>,
    /// The files a request may carry (absent from servers older than files over HTTP, which
    /// would ignore them).
    #[serde(default)]
    pub files: Option<FileCaps>,
}

/// What `/healthz` says a request's `files` may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct FileCaps {
    pub max_count: usize,
    pub max_bytes: u64,
}

/// One program to send: the validated code, its input, and the limits to ask for (those left
/// out are the server's).
#[derive(Debug)]
pub struct Request<'a> {
    pub program: &'a Program,
    pub stdin: &'a [u8],
    pub limits: LimitOverrides,
    /// Files to place beside the program (checked here as the server checks them).
    pub files: &'a [InputFile],
    /// Ask for the artifacts' bytes (`artifact_content`).
    pub artifact_content: bool,
}

impl Remote {
    /// The server at `url`, trusting `server_ca` besides the system's roots for https, with the
    /// token from [`TOKEN_ENV`] when it is set and not empty.
    pub fn new(url: &str, server_ca: Option<&Path>) -> Result<Remote, ClientError> {
        let target = parse_url(url)?;
        let tls = match &target {
            Target::Tcp { tls: true, .. } => Some(crate::tls::client_config(server_ca)?),
            _ => None,
        };
        let token = std::env::var(TOKEN_ENV)
            .ok()
            .filter(|token| !token.is_empty());
        let shown = sanitize::text(url.trim_end_matches('/')).into_owned();
        if token.is_some() && !target.keeps_secrets() {
            return Err(ClientError::TokenInClearText { url: shown });
        }
        Ok(Remote {
            shown,
            target,
            token,
            tls,
        })
    }

    /// The URL, safe to print.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// Ask `/healthz`.
    pub fn health(&self) -> Result<Health, ClientError> {
        let answer = self.block_on(
            self.exchange("GET", "/healthz", None),
            &CancelToken::new(),
            Some(HEALTH_TIMEOUT),
        )?;
        serde_json::from_slice(&answer.body).map_err(|error| ClientError::Exchange {
            url: self.shown.clone(),
            detail: format!(
                "/healthz answered HTTP {} with no health document: {error}",
                answer.status
            ),
        })
    }

    /// Run `request` on the server and say what happened, as [`crate::runner::Sandbox::run`]
    /// would: never an error, a `sandbox_error` or `rejected` outcome instead; `interrupted` as
    /// soon as `cancel` is set (dropping the connection makes the server cancel the run).
    /// `fallback` are the limits reported when the server did not say which applied.
    pub fn run(&self, request: &Request<'_>, fallback: Limits, cancel: &CancelToken) -> Outcome {
        self.run_patiently(request, fallback, cancel, Duration::ZERO)
    }

    /// [`Remote::run`], but a server that is busy (429, or 503 without a run report: a full
    /// queue, too many connections) is asked again after its `Retry-After`, for up to `patience`
    /// in all.
    fn run_patiently(
        &self,
        request: &Request<'_>,
        fallback: Limits,
        cancel: &CancelToken,
        patience: Duration,
    ) -> Outcome {
        let body = request_body(request);
        let started = std::time::Instant::now();
        let answer = loop {
            let answer = self.block_on(
                self.exchange("POST", "/api/v1/runs", Some(body.clone())),
                cancel,
                None,
            );
            let busy = match &answer {
                Ok(answer) => {
                    answer.status == 429
                        || (answer.status == 503
                            && serde_json::from_slice::<RunReport>(&answer.body).is_err())
                }
                Err(_) => false,
            };
            let wait = Duration::from_secs(
                answer
                    .as_ref()
                    .ok()
                    .and_then(|answer| answer.retry_after)
                    .unwrap_or(1)
                    .clamp(1, 60),
            );
            if !busy || started.elapsed() + wait > patience {
                break answer;
            }
            let slept = self.block_on(
                async {
                    tokio::time::sleep(wait).await;
                    Ok(())
                },
                cancel,
                None,
            );
            if let Err(cancelled) = slept {
                break Err(cancelled);
            }
        };
        match answer {
            Ok(answer) => self.interpret(answer, fallback),
            Err(ClientError::Cancelled) => Outcome {
                interrupt_signal: cancel.signal(),
                ..Outcome::not_run(
                    Status::Interrupted,
                    match cancel.signal() {
                        Some(signal) => format!(
                            "interrupted by signal {signal}: the request was abandoned and the server cancels its run"
                        ),
                        None => "cancelled: the request was abandoned and the server cancels its run"
                            .to_owned(),
                    },
                    fallback,
                )
            },
            Err(error) => Outcome::not_run(Status::SandboxError, error.to_string(), fallback),
        }
    }

    /// Run `job` on the server asking for exactly its limits (as `grade --server` does); its
    /// input is read here first, and refused when it is over `max_stdin` (the server's cap). A
    /// busy server is asked again for up to `patience`.
    pub fn run_job(
        &self,
        job: Job,
        max_stdin: Option<u64>,
        cancel: &CancelToken,
        patience: Duration,
    ) -> Outcome {
        let limits = job.limits;
        let stdin = match read_stdin(job.stdin, max_stdin.unwrap_or(MAX_SENT_STDIN)) {
            Ok(stdin) => stdin,
            Err(message) => return Outcome::not_run(Status::SandboxError, message, limits),
        };
        let request = Request {
            program: &job.program,
            stdin: &stdin,
            limits: every_limit(&limits),
            files: &job.files,
            artifact_content: false,
        };
        self.run_patiently(&request, limits, cancel, patience)
    }

    /// The outcome an answer describes (see the module docs).
    fn interpret(&self, answer: Answer, fallback: Limits) -> Outcome {
        let url = &self.shown;
        let report = serde_json::from_slice::<RunReport>(&answer.body).ok();
        let words = server_words(&answer.body);
        let retry = answer
            .retry_after
            .map(|secs| format!("; it says to retry in {secs} s"))
            .unwrap_or_default();
        let failed = |message: String| Outcome::not_run(Status::SandboxError, message, fallback);
        match (answer.status, report) {
            (200, Some(report)) | (400, Some(report)) if report.status != Status::SandboxError => {
                Outcome::from_report(report)
            }
            (400 | 413, _) => Outcome::not_run(
                Status::Rejected,
                format!("the server refused the request: {words}"),
                fallback,
            ),
            (401, _) => failed(match self.token {
                Some(_) => format!(
                    "the server at {url} refused the token in SAFE_EXEC_TOKEN ({words}): set it to the server's token"
                ),
                None => format!(
                    "the server at {url} needs a token ({words}): set SAFE_EXEC_TOKEN to the server's token"
                ),
            }),
            (403, _) => failed(format!(
                "the server at {url} refused this request ({words}): reach it by IP address or \
                 localhost, or start it with --allow-host NAME (or with a token, set in SAFE_EXEC_TOKEN)"
            )),
            (429, _) => failed(format!(
                "the server at {url} is rate limiting this client ({words}{retry}); start it \
                 with a higher --rate-limit (0 turns it off), or use its --unix socket"
            )),
            (503, Some(report)) => failed(format!(
                "the server at {url} could not run the program ({}{retry})",
                sanitize::text(report.error.as_deref().unwrap_or("no reason given"))
            )),
            (503, None) => failed(format!(
                "the server at {url} is not taking runs now ({words}{retry})"
            )),
            (status, _) => failed(format!(
                "the server at {url} answered HTTP {status} ({words}{retry})"
            )),
        }
    }

    /// Run `exchange` on a current-thread runtime, given up when `cancel` is set or `deadline`
    /// passes.
    fn block_on<T>(
        &self,
        exchange: impl std::future::Future<Output = Result<T, ClientError>>,
        cancel: &CancelToken,
        deadline: Option<Duration>,
    ) -> Result<T, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| ClientError::Exchange {
                url: self.shown.clone(),
                detail: format!("cannot start the async runtime: {error}"),
            })?;
        let cancelled = Arc::new(tokio::sync::Notify::new());
        let wake = cancelled.clone();
        // notify_one keeps a permit when nobody waits yet: a cancellation is never missed.
        let _subscription = cancel.on_cancel(move || wake.notify_one());
        runtime.block_on(async {
            let timed = async {
                match deadline {
                    Some(deadline) => tokio::time::timeout(deadline, exchange)
                        .await
                        .unwrap_or_else(|_| {
                            Err(ClientError::Exchange {
                                url: self.shown.clone(),
                                detail: format!("no answer within {} s", deadline.as_secs()),
                            })
                        }),
                    None => exchange.await,
                }
            };
            tokio::select! {
                answer = timed => answer,
                () = cancelled.notified() => Err(ClientError::Cancelled),
            }
        })
    }

    /// Connect, send one request, read the whole answer.
    async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, ClientError> {
        let unreachable = |detail: String| ClientError::Unreachable {
            url: self.shown.clone(),
            detail,
        };
        match &self.target {
            Target::Unix(socket) => {
                let stream = tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(socket))
                    .await
                    .map_err(|_| unreachable("no answer to connect".to_owned()))?
                    .map_err(|error| unreachable(connect_problem(&error)))?;
                self.send(stream, "localhost", method, path.to_owned(), body)
                    .await
            }
            Target::Tcp {
                host,
                port,
                tls,
                prefix,
            } => {
                let stream = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    TcpStream::connect((host.as_str(), *port)),
                )
                .await
                .map_err(|_| {
                    unreachable(format!(
                        "no answer to connect within {} s",
                        CONNECT_TIMEOUT.as_secs()
                    ))
                })?
                .map_err(|error| unreachable(connect_problem(&error)))?;
                let _ = stream.set_nodelay(true);
                let authority = if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                };
                let path = format!("{prefix}{path}");
                match (&self.tls, tls) {
                    (Some(config), true) => {
                        let name =
                            rustls_pki_types::ServerName::try_from(host.clone()).map_err(|_| {
                                ClientError::BadUrl {
                                    url: self.shown.clone(),
                                    why: "the host is not a valid name or address for TLS",
                                }
                            })?;
                        let connector = tokio_rustls::TlsConnector::from(config.clone());
                        let stream =
                            tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, stream))
                                .await
                                .map_err(|_| ClientError::Handshake {
                                    url: self.shown.clone(),
                                    detail: "no handshake within the connect timeout".to_owned(),
                                })?
                                .map_err(|error| ClientError::Handshake {
                                    url: self.shown.clone(),
                                    detail: sanitize::text(&error.to_string()).into_owned(),
                                })?;
                        self.send(stream, &authority, method, path, body).await
                    }
                    _ => self.send(stream, &authority, method, path, body).await,
                }
            }
        }
    }

    /// One HTTP/1.1 exchange on `stream`.
    async fn send<S>(
        &self,
        stream: S,
        authority: &str,
        method: &str,
        path: String,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let broken = |detail: String| ClientError::Exchange {
            url: self.shown.clone(),
            detail: sanitize::text(&detail).into_owned(),
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| broken(error.to_string()))?;
        // Drives the connection; ends when the server closes it after the answer.
        tokio::spawn(connection);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::ACCEPT, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("safe-exec/", env!("CARGO_PKG_VERSION")),
            );
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        if let Some(token) = &self.token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|error| broken(error.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| broken(error.to_string()))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse().ok());
        let body = Limited::new(response.into_body(), answer_cap())
            .collect()
            .await
            .map_err(|error| broken(format!("reading the answer: {error}")))?
            .to_bytes()
            .to_vec();
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }
}

/// The largest answer read: both streams at the largest output cap, each escaped as JSON (at most
/// six bytes per byte), the artifacts' bytes as base64, and room for the rest. A server's answers
/// are never near it; a stream that is not a `safe-exec serve` cannot make us hold more.
fn answer_cap() -> usize {
    let artifacts = usize::try_from(MAX_ARTIFACT_BYTES.div_ceil(3) * 4).unwrap_or(usize::MAX);
    usize::try_from(MAX_OUTPUT_BYTES.saturating_mul(12))
        .unwrap_or(usize::MAX)
        .saturating_add(artifacts)
        + 1024 * 1024
}

/// The request's JSON body.
fn request_body(request: &Request<'_>) -> Vec<u8> {
    let mut body = Map::new();
    body.insert("code".into(), request.program.source().into());
    body.insert("filename".into(), request.program.filename().into());
    if !request.stdin.is_empty() {
        body.insert(
            "stdin_base64".into(),
            base64::engine::general_purpose::STANDARD
                .encode(request.stdin)
                .into(),
        );
    }
    let asked = &request.limits;
    let mut limits = Map::new();
    if let Some(timeout) = asked.timeout {
        limits.insert("timeout_secs".into(), timeout.as_secs_f64().into());
    }
    if let Some(wall) = asked.wall_timeout {
        limits.insert("wall_timeout_secs".into(), wall.as_secs_f64().into());
    }
    if let Some(memory) = asked.memory_bytes {
        limits.insert("memory_bytes".into(), memory.into());
    }
    if let Some(cpus) = asked.cpus {
        limits.insert("cpus".into(), cpus.into());
    }
    if let Some(pids) = asked.pids {
        limits.insert("pids".into(), pids.into());
    }
    if let Some(output) = asked.max_output_bytes {
        limits.insert("max_output_bytes".into(), output.into());
    }
    if !limits.is_empty() {
        body.insert("limits".into(), Value::Object(limits));
    }
    if !request.files.is_empty() {
        let files = request
            .files
            .iter()
            .map(|file| {
                json!({
                    "name": file.name(),
                    "content_base64": base64::engine::general_purpose::STANDARD.encode(file.bytes()),
                })
            })
            .collect();
        body.insert("files".into(), Value::Array(files));
    }
    if request.artifact_content {
        body.insert("artifact_content".into(), true.into());
    }
    serde_json::to_vec(&Value::Object(body)).unwrap_or_else(|_| json!({}).to_string().into_bytes())
}

/// Every limit of `limits` as one to ask for (the code limit is checked here, before sending).
pub fn every_limit(limits: &Limits) -> LimitOverrides {
    LimitOverrides {
        timeout: Some(limits.timeout),
        wall_timeout: Some(limits.wall_timeout),
        memory_bytes: Some(limits.memory_bytes),
        cpus: Some(limits.cpus),
        pids: Some(limits.pids),
        max_code_chars: None,
        max_output_bytes: Some(limits.max_output_bytes),
    }
}

/// The bytes of `stdin`, at most `cap` of them (more is refused with a message).
pub fn read_stdin(stdin: ProgramStdin, cap: u64) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let read = match stdin {
        ProgramStdin::Empty => return Ok(bytes),
        ProgramStdin::Bytes(bytes) => {
            if bytes.len() as u64 > cap {
                return Err(too_much_stdin(bytes.len() as u64, cap));
            }
            return Ok(bytes);
        }
        ProgramStdin::File(file) => file.take(cap + 1).read_to_end(&mut bytes),
        ProgramStdin::Inherit => std::io::stdin()
            .lock()
            .take(cap + 1)
            .read_to_end(&mut bytes),
    };
    read.map_err(|error| {
        format!(
            "cannot read the program's input: {}",
            crate::source::describe_io(&error)
        )
    })?;
    if bytes.len() as u64 > cap {
        return Err(too_much_stdin(bytes.len() as u64, cap));
    }
    Ok(bytes)
}

fn too_much_stdin(bytes: u64, cap: u64) -> String {
    let size = if bytes > cap + 1 {
        format!("{bytes} bytes")
    } else {
        format!("more than {cap} bytes")
    };
    format!(
        "the program's input is {size}, and the server takes at most {cap} \
         (safe-exec serve --max-stdin): raise that on the server, or run without --server"
    )
}

/// The `error` of an error answer, or the start of whatever else it was, safe to print.
fn server_words(body: &[u8]) -> String {
    if let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) {
        if let Some(Value::String(error)) = fields.get("error") {
            return sanitize::text(error).into_owned();
        }
    }
    let start = &body[..body.len().min(200)];
    if start.is_empty() {
        "no message".to_owned()
    } else {
        sanitize::bytes(start)
    }
}

/// A connect error as a reader knows it.
fn connect_problem(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        std::io::ErrorKind::NotFound => "no such socket".to_owned(),
        std::io::ErrorKind::PermissionDenied => {
            "permission denied: the socket belongs to another user".to_owned()
        }
        _ => sanitize::text(&error.to_string()).into_owned(),
    }
}

/// `http://HOST[:PORT][/PREFIX]`, `https://...`, `unix:PATH`.
fn parse_url(url: &str) -> Result<Target, ClientError> {
    let bad = |why: &'static str| ClientError::BadUrl {
        url: url.to_owned(),
        why,
    };
    if let Some(path) = url.strip_prefix("unix:") {
        // `unix:/run/x.sock`, and the `unix:///run/x.sock` some tools write.
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() {
            return Err(bad("no socket path after `unix:`"));
        }
        return Ok(Target::Unix(PathBuf::from(path)));
    }
    let (tls, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else {
        return Err(bad("unknown scheme"));
    };
    let (authority, prefix) = match rest.find('/') {
        Some(at) => (&rest[..at], rest[at..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(bad(
            "user names in the URL are not supported (the token comes from SAFE_EXEC_TOKEN)",
        ));
    }
    if prefix.contains(['?', '#']) {
        return Err(bad("a query or fragment has no meaning here"));
    }
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = if let Some(inside) = authority.strip_prefix('[') {
        let (host, after) = inside.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
        let port = match after {
            "" => default_port,
            _ => after
                .strip_prefix(':')
                .and_then(|port| port.parse().ok())
                .ok_or_else(|| bad("the port is not a number"))?,
        };
        (host.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (
                host.to_owned(),
                port.parse().map_err(|_| bad("the port is not a number"))?,
            ),
            None => (authority.to_owned(), default_port),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok(Target::Tcp {
        host,
        port,
        tls,
        prefix: prefix.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16, tls: bool, prefix: &str) -> Target {
        Target::Tcp {
            host: host.to_owned(),
            port,
            tls,
            prefix: prefix.to_owned(),
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://127.0.0.1:5000").unwrap(),
            tcp("127.0.0.1", 5000, false, "")
        );
        assert_eq!(
            parse_url("https://code.example.org/").unwrap(),
            tcp("code.example.org", 443, true, "")
        );
        assert_eq!(
            parse_url("http://[::1]:8080/safe-exec/").unwrap(),
            tcp("::1", 8080, false, "/safe-exec")
        );
        assert_eq!(
            parse_url("http://[::1]").unwrap(),
            tcp("::1", 80, false, "")
        );
        assert_eq!(
            parse_url("unix:/run/safe-exec.sock").unwrap(),
            Target::Unix("/run/safe-exec.sock".into())
        );
        assert_eq!(
            parse_url("unix:///run/safe-exec.sock").unwrap(),
            Target::Unix("/run/safe-exec.sock".into())
        );
        assert_eq!(
            parse_url("unix:serve.sock").unwrap(),
            Target::Unix("serve.sock".into())
        );
        for bad in [
            "localhost:5000",
            "ftp://x",
            "http://",
            "http://host:port",
            "http://[::1",
            "unix:",
            "http://user:pw@host:1",
            "http://host:1/?q",
        ] {
            let error = parse_url(bad).unwrap_err().to_string();
            assert!(error.contains("give http://HOST:PORT"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_token_goes_only_where_it_stays_secret() {
        for url in [
            "https://code.example.org",
            "unix:/run/x.sock",
            "http://127.0.0.1:5000",
            "http://127.1.2.3:5000",
            "http://[::1]:5000",
            "http://localhost:5000",
            "http://app.localhost:5000",
        ] {
            assert!(parse_url(url).unwrap().keeps_secrets(), "{url}");
        }
        for url in [
            "http://192.0.2.7:5000",
            "http://code.example.org",
            "http://localhost.example",
        ] {
            assert!(!parse_url(url).unwrap().keeps_secrets(), "{url}");
        }
    }

    fn remote(token: Option<&str>) -> Remote {
        Remote {
            shown: "http://127.0.0.1:5000".to_owned(),
            target: tcp("127.0.0.1", 5000, false, ""),
            token: token.map(str::to_owned),
            tls: None,
        }
    }

    fn answer(status: u16, retry_after: Option<u64>, body: Value) -> Answer {
        Answer {
            status,
            retry_after,
            body: body.to_string().into_bytes(),
        }
    }

    #[test]
    fn answers_become_outcomes() {
        let remote = remote(None);
        let limits = Limits::default();
        let ran = Outcome {
            exit_code: Some(3),
            error: Some("the program exited with code 3".to_owned()),
            ..Outcome::not_run(Status::RuntimeError, "", limits)
        };
        let mut report = serde_json::to_value(RunReport::new(&ran)).unwrap();
        report["hint"] = "a hint".into();
        let back = remote.interpret(answer(200, None, report), limits);
        assert_eq!(back.status, Status::RuntimeError);
        assert_eq!(back.exit_code(), 3);

        let refused = remote.interpret(
            answer(
                400,
                None,
                json!({"error": "limits.timeout_secs 20 is above this server's maximum of 10 (safe-exec serve --timeout)", "status": "error"}),
            ),
            limits,
        );
        assert_eq!(refused.status, Status::Rejected);
        assert_eq!(refused.exit_code(), 123);
        assert!(refused.error.unwrap().contains("maximum of 10"));

        let big = remote.interpret(
            answer(
                413,
                None,
                json!({"error": "stdin too large: 9 bytes", "status": "error"}),
            ),
            limits,
        );
        assert_eq!(big.status, Status::Rejected);

        let token = remote.interpret(
            answer(401, None, json!({"error": "x", "status": "error"})),
            limits,
        );
        assert_eq!(token.exit_code(), 125);
        assert!(token.error.unwrap().contains("set SAFE_EXEC_TOKEN"));
        let wrong = self::remote(Some("t")).interpret(answer(401, None, json!({})), limits);
        assert!(wrong
            .error
            .unwrap()
            .contains("refused the token in SAFE_EXEC_TOKEN"));
        let host = remote.interpret(
            answer(403, None, json!({"error": "Host", "status": "error"})),
            limits,
        );
        assert!(host.error.unwrap().contains("--allow-host"));
        let busy = remote.interpret(
            answer(
                503,
                Some(7),
                json!({"error": "Server busy", "status": "error"}),
            ),
            limits,
        );
        assert_eq!(busy.exit_code(), 125);
        let message = busy.error.unwrap();
        assert!(
            message.contains("Server busy") && message.contains("retry in 7 s"),
            "{message}"
        );
        let limited = remote.interpret(
            answer(
                429,
                Some(2),
                json!({"error": "Too many", "status": "error"}),
            ),
            limits,
        );
        assert!(limited.error.unwrap().contains("retry in 2 s"));
        let engine = Outcome::not_run(
            Status::SandboxError,
            "The execution engine is unavailable; try again later",
            limits,
        );
        let down = remote.interpret(
            answer(
                503,
                Some(10),
                serde_json::to_value(RunReport::new(&engine)).unwrap(),
            ),
            limits,
        );
        assert_eq!(down.status, Status::SandboxError);
        assert!(down.error.unwrap().contains("engine is unavailable"));
        // Whatever the server says is made safe to print.
        let hostile = remote.interpret(
            answer(
                418,
                None,
                json!({"error": "\u{1b}]0;owned\u{7}", "status": "error"}),
            ),
            limits,
        );
        assert!(!hostile.error.unwrap().contains('\u{1b}'));
    }

    #[test]
    fn the_body_asks_for_what_was_given() {
        let program = Program::from_text("print(1)", 100).unwrap().named("job.py");
        let body = request_body(&Request {
            program: &program,
            stdin: &[0xff, 0],
            limits: LimitOverrides {
                timeout: Some(Duration::from_millis(1500)),
                ..LimitOverrides::default()
            },
            files: &[],
            artifact_content: false,
        });
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            json!({"code": "print(1)", "filename": "job.py", "stdin_base64": "/wA=", "limits": {"timeout_secs": 1.5}})
        );
        let plain = request_body(&Request {
            program: &program,
            stdin: &[],
            limits: LimitOverrides::default(),
            files: &[],
            artifact_content: false,
        });
        let plain: Value = serde_json::from_slice(&plain).unwrap();
        assert!(plain.get("limits").is_none() && plain.get("stdin_base64").is_none());
        assert!(plain.get("files").is_none() && plain.get("artifact_content").is_none());
        let files = [InputFile::new("data.bin", vec![0xff, 0]).unwrap()];
        let with_files = request_body(&Request {
            program: &program,
            stdin: &[],
            limits: LimitOverrides::default(),
            files: &files,
            artifact_content: true,
        });
        let with_files: Value = serde_json::from_slice(&with_files).unwrap();
        assert_eq!(
            with_files["files"],
            json!([{"name": "data.bin", "content_base64": "/wA="}])
        );
        assert_eq!(with_files["artifact_content"], true);
    }

    #[test]
    fn input_over_the_cap_is_refused_before_sending() {
        assert_eq!(
            read_stdin(ProgramStdin::Bytes(vec![1; 4]), 4)
                .unwrap()
                .len(),
            4
        );
        let error = read_stdin(ProgramStdin::Bytes(vec![1; 5]), 4).unwrap_err();
        assert!(error.contains("--max-stdin"), "{error}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        std::fs::write(&path, [7u8; 10]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        assert!(read_stdin(ProgramStdin::File(file), 9).is_err());
        let file = std::fs::File::open(&path).unwrap();
        assert_eq!(read_stdin(ProgramStdin::File(file), 10).unwrap(), [7u8; 10]);
    }
}
