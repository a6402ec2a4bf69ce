//! `safe-exec serve`: the HTTP API (`POST /run`, `POST /api/v1/runs`), health, the OpenAPI
//! description and the web page, on the same supervisor as `safe-exec run`.
//!
//! Rooms: [`api`] (routes, handlers), [`answers`] (statuses and documents), [`body`] (answers
//! escaped as they are sent), [`events`] (live output as server-sent events), [`state`] (what the handlers share), [`listen`] (TCP, TLS or a unix
//! socket), [`warm`] (which per-request limits are served from the warm pool),
//! [`admission`] (run slots, queue, the registry of runs in progress), [`clients`] (what one
//! client may hold: connections, answer memory, rate budget), [`limits`] (the server's fixed caps,
//! deadlines and defaults), [`auth`] (token, public-address rule, Host check), [`audit`] (the JSON-lines log),
//! [`health`], [`hints`], [`assets`] (the embedded page and spec), [`server`] (the connection
//! loop). This module turns the command line into a running server and owns
//! shutdown: on SIGTERM, SIGINT or SIGHUP it stops accepting, closes connections with no request
//! in progress, cancels queued and running runs, waits until every container is gone (a run
//! counts as gone once its audit line is queued), closes the audit log's queue and waits
//! (bounded) for its writer thread to write what is queued, and exits 0; a second signal removes
//! what is left at once and exits 128+N.
//!
//! Runs never execute on the async runtime: each goes through [`Fleet::run`] on a blocking
//! thread, holding a run slot until its container is removed. With `--context a,b,...` the fleet
//! spreads runs over several engines, each with its own warm pool.

/// `eprintln!("safe-exec serve: ...")` that never panics: a server whose stderr is gone (its
/// terminal closed) keeps serving, and its shutdown still removes every container.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "safe-exec serve: {}", format_args!($($arg)*));
    }};
}

pub mod admission;
pub mod answers;
pub mod api;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod body;
pub mod clients;
pub mod events;
pub mod health;
pub mod hints;
pub mod limits;
pub mod listen;
pub mod server;
pub mod state;
pub mod warm;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use crate::cli::ServeArgs;
use crate::exit_codes;
use crate::limits::{human_bytes, human_secs, Limits};
use crate::runner::{gc, registry};
use crate::runner::{Engines, Fleet};
use admission::{Admission, RunRegistry};
use audit::AuditLog;
use auth::{Auth, AuthConfigError, Exposure};
use clients::AnswerBudget;
use clients::{RateLimiter, MAX_TRACKED_CLIENTS};
use limits::{
    body_limit, DEFAULT_MAX_STDIN, DEFAULT_QUEUE, DEFAULT_RATE_LIMIT, DEFAULT_SEND_TIMEOUT,
    MAX_ANSWER_BYTES_PER_CLIENT,
};
use listen::{Endpoint, Listener};
use state::AppState;

/// For tests only: a smaller table for the rate limiter (at most [`MAX_TRACKED_CLIENTS`]), so a
/// flood of addresses past it takes seconds rather than the minute in which budgets refill.
const TRACKED_CLIENTS_ENV: &str = "SAFE_EXEC_SERVE_TRACKED_CLIENTS";
/// How long shutdown waits for cancelled runs to remove their containers. Each removal has its
/// own 15 s deadline in the supervisor.
const RUNS_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often orphaned containers of earlier runs are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// The validated server configuration.
#[derive(Debug)]
struct Config {
    endpoint: Endpoint,
    /// The certificate and key, when the server speaks TLS.
    tls: Option<(PathBuf, PathBuf)>,
    limits: Limits,
    max_stdin: usize,
    max_concurrent: usize,
    queue: usize,
    rate_limit: u32,
    /// Connections one client may have open; `None`: no per-client caps (neither this nor the
    /// answer budget).
    max_connections_per_client: Option<usize>,
    send_timeout: Duration,
    /// Clients the rate limiter tracks at most.
    tracked_clients: usize,
    auth: Auth,
    audit_log: Option<PathBuf>,
    audit_code: bool,
    image: Option<String>,
    pool: crate::runner::pool::PoolConfig,
    /// `--pool` as given: without it each engine keeps as many warm as it takes runs at once.
    pool_given: Option<usize>,
    /// Runs at once on each engine without an `=N` of its own: `--max-concurrent`, or the CPUs.
    per_engine: usize,
    engines: Engines,
}

/// Why the command line was refused.
#[derive(Debug, thiserror::Error)]
enum ConfigError {
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    #[error(transparent)]
    Engines(#[from] crate::runner::engine::EngineSpecError),
}

impl Config {
    fn from_args(args: ServeArgs) -> Result<Config, ConfigError> {
        let engines = args.engines.engines()?;
        let endpoint = match &args.unix {
            Some(path) => Endpoint::Unix(path.clone()),
            None => Endpoint::Tcp(args.addr),
        };
        let tls = args.tls_cert.clone().zip(args.tls_key.clone());
        let exposure = match endpoint {
            Endpoint::Unix(_) => Exposure::Unix,
            Endpoint::Tcp(addr) => Exposure::Tcp {
                addr,
                tls: tls.is_some(),
                behind_tls_proxy: args.behind_tls_proxy,
            },
        };
        // An empty --token or SAFE_EXEC_TOKEN is refused in Auth::new, not read as "no token": a
        // variable that was meant to hold a secret and came out empty must not open the server.
        let auth = Auth::new(
            exposure,
            args.token.as_deref(),
            args.allow_unauthenticated,
            &args.allow_host,
        )?;
        let cpus = crate::sync::available_cpus();
        let each = args.max_concurrent.map_or(cpus, |n| n as usize);
        // On the unix socket every client is this user (or root): no rate limit unless asked.
        let default_rate_limit = match endpoint {
            Endpoint::Unix(_) => 0,
            Endpoint::Tcp(_) => DEFAULT_RATE_LIMIT,
        };
        Ok(Config {
            endpoint,
            tls,
            limits: Limits::default().with(&args.limits.overrides()),
            // One engine: --max-concurrent. Several: what they take at once together.
            max_concurrent: engines.capacities(each).iter().sum::<usize>().max(1),
            per_engine: each,
            pool_given: args.pool.pool.map(|size| size as usize),
            engines,
            max_stdin: args
                .max_stdin
                .map_or(DEFAULT_MAX_STDIN, |bytes| bytes as usize),
            queue: args.queue.map_or(DEFAULT_QUEUE, |n| n as usize),
            rate_limit: args.rate_limit.unwrap_or(default_rate_limit),
            max_connections_per_client: match args.max_connections_per_client {
                None => Some(limits::MAX_CONNECTIONS_PER_CLIENT),
                Some(0) => None,
                Some(n) => Some(n as usize),
            },
            send_timeout: args
                .send_timeout
                .map_or(DEFAULT_SEND_TIMEOUT, Duration::from_secs),
            tracked_clients: std::env::var(TRACKED_CLIENTS_ENV)
                .ok()
                .and_then(|value| value.parse().ok())
                .filter(|n| (1..=MAX_TRACKED_CLIENTS).contains(n))
                .unwrap_or(MAX_TRACKED_CLIENTS),
            auth,
            audit_log: args.audit_log,
            audit_code: args.audit_code,
            image: args.image.image,
            pool: args
                .pool
                .config(args.max_concurrent.map_or(cpus, |n| n as usize)),
        })
    }
}

pub fn execute(args: ServeArgs) -> anyhow::Result<u8> {
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("safe-exec: {error}");
            return Ok(exit_codes::USAGE);
        }
    };
    // The certificate and key are read before anything starts: a typo is a usage error.
    let tls = match &config.tls {
        Some((cert, key)) => match crate::tls::server_config(cert, key) {
            Ok(tls) => Some(tls),
            Err(error) => {
                eprintln!("safe-exec: {error}");
                return Ok(exit_codes::USAGE);
            }
        },
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("safe-exec-serve")
        // One blocking thread per run slot, plus room for health checks and container sweeps,
        // so a run that holds a slot never waits for a thread. (Audit lines have a thread of
        // their own.)
        .max_blocking_threads(config.max_concurrent + 32)
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(serve(config, tls));
    // Every run has ended by now; do not wait long for a stale-container sweep in progress.
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

async fn serve(config: Config, tls: Option<Arc<rustls::ServerConfig>>) -> anyhow::Result<u8> {
    let audit = match &config.audit_log {
        Some(path) => Some(AuditLog::open(path, config.audit_code)?),
        None => None,
    };
    let listener = match Listener::bind(&config.endpoint, tls).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("safe-exec: {error}");
            return Ok(exit_codes::SANDBOX_ERROR);
        }
    };
    let limits = config.limits;
    // Warm containers for the server's limits from the start, on every engine; an engine may
    // still be coming up (its pool backs off and tries again).
    let each = config.per_engine;
    let pool = config.pool;
    let pool_given = config.pool_given;
    let fleet = Fleet::on(&config.engines, config.image.clone(), each).with_pools(|capacity| {
        crate::runner::pool::PoolConfig {
            size: if pool.size == 0 {
                0
            } else {
                pool_given.unwrap_or(capacity)
            },
            ..pool
        }
    });
    fleet.prepare_pools(&limits);
    let state = Arc::new(AppState {
        limits,
        admission: Admission::new(config.max_concurrent, config.queue),
        rate_limit: config.rate_limit,
        rate_limiter: (config.rate_limit > 0)
            .then(|| RateLimiter::new(config.rate_limit, config.tracked_clients)),
        auth: config.auth.clone(),
        audit,
        runs: RunRegistry::default(),
        answers: AnswerBudget::new(
            config
                .max_connections_per_client
                .map(|_| MAX_ANSWER_BYTES_PER_CLIENT),
        ),
        send_timeout: config.send_timeout,
        health: health::HealthCache::default(),
        body_limit: body_limit(limits.max_code_chars, config.max_stdin),
        bodies: Arc::new(tokio::sync::Semaphore::new(limits::BODIES_IN_FLIGHT)),
        max_stdin: config.max_stdin,
        warm: warm::WarmKeys::new(limits, config.pool.idle),
        page: assets::render_page(&limits),
        openapi: assets::render_openapi(&limits, config.max_stdin),
        stopping: AtomicBool::new(false),
        shutdown: watch::channel(false).0,
        fleet,
    });

    // Before the listening line: a supervisor may send SIGTERM the moment it reads it.
    watch_signals(state.clone()).context("cannot install signal handlers")?;

    // Not fatal: the engine may come up later; until then runs get 503 and /healthz says why.
    let probe = state.fleet.clone();
    match tokio::task::spawn_blocking(move || probe.check_ready()).await {
        Ok(Err(error)) => say!(
            "warning: {}; runs will be answered with 503 until this is fixed",
            crate::sanitize::text(&error.to_string())
        ),
        Ok(Ok(down)) => {
            for (name, error) in down {
                say!(
                    "warning: engine {} left out until it answers: {}",
                    crate::sanitize::text(&name),
                    crate::sanitize::text(&error.to_string())
                );
            }
        }
        Err(_) => {}
    }
    say!(
        "listening on {} ({} run(s) at once, {} warm, queue {}, {}, {}, answers sent within {}, timeout {}, memory {}, {})",
        listener.url(),
        config.max_concurrent,
        state.fleet.pool_size(),
        config.queue,
        match config.rate_limit {
            0 => "no rate limit".to_owned(),
            n => format!("{n} runs/min per client"),
        },
        match config.max_connections_per_client {
            None => "no per-client caps".to_owned(),
            Some(n) => format!(
                "{n} connections and {} of answers per client",
                human_bytes(MAX_ANSWER_BYTES_PER_CLIENT)
            ),
        },
        human_secs(config.send_timeout),
        human_secs(limits.timeout),
        human_bytes(limits.memory_bytes),
        if state.auth.requires_token() {
            "token required"
        } else {
            "no token"
        },
    );

    let sweeper = sweep_stale_periodically(state.fleet.clone());
    let drop_reporter = report_audit_drops_periodically(state.clone());
    let stopped = state.shutdown.subscribe();
    server::serve(
        &listener,
        api::router(state.clone()),
        config.max_connections_per_client,
        config.send_timeout,
        stopped,
    )
    .await;
    sweeper.abort();
    // The socket file goes now: nothing connects to a server that stopped accepting.
    drop(listener);
    let runs_ended = state.runs.wait_idle(RUNS_DRAIN_TIMEOUT).await;
    let pools = state.fleet.clone();
    let _ = tokio::task::spawn_blocking(move || pools.shutdown_pools()).await;
    let clean = runs_ended
        && tokio::task::spawn_blocking(|| {
            registry::wait_for_removals(std::time::Instant::now() + RUNS_DRAIN_TIMEOUT)
        })
        .await
        .unwrap_or(false);
    drop_reporter.abort();
    if let Some(audit) = &state.audit {
        audit.finish(audit::FINISH_TIMEOUT).await;
    }
    if clean {
        say!("stopped; no runs left");
    } else {
        say!(
            "stopped with {} run(s) still being removed; `safe-exec gc` cleans up what is left",
            state.runs.len()
        );
    }
    Ok(exit_codes::SUCCESS)
}

/// Remove containers orphaned by earlier runs whose supervisor was killed (say, a server stopped
/// with SIGKILL), at startup and then every [`SWEEP_INTERVAL`], off the runtime. Only containers
/// past their expiry label are touched, so runs of other processes on this host are safe.
fn sweep_stale_periodically(fleet: Fleet) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            interval.tick().await;
            let sweeper = fleet.clone();
            let swept =
                tokio::task::spawn_blocking(move || sweeper.collect_garbage(gc::Scope::Stale))
                    .await;
            if let Ok(Ok(removed)) = swept {
                if !removed.is_empty() {
                    say!(
                        "removed {} stale container(s) left by earlier runs",
                        removed.len()
                    );
                }
            }
        }
    })
}

/// Say how many audit lines were dropped, every [`audit::DROP_REPORT_INTERVAL`] while some are:
/// the writer thread cannot say it while its destination is stalled.
fn report_audit_drops_periodically(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(audit) = &state.audit else { return };
        let mut interval = tokio::time::interval(audit::DROP_REPORT_INTERVAL);
        loop {
            interval.tick().await;
            audit.report_drops();
        }
    })
}

/// On the first SIGTERM/SIGINT/SIGHUP: stop accepting, close idle connections and cancel every
/// run. On a second: remove every container at once and exit 128+N.
fn watch_signals(state: Arc<AppState>) -> std::io::Result<()> {
    crate::signals::on_stop_signals(
        move |first| {
            say!(
                "received {}: stopping; running and queued runs are cancelled (again to exit at once)",
                crate::signals::name(first)
            );
            state.stop(first);
        },
        move |second| {
            say!(
                "received {} again: removing containers and exiting",
                crate::signals::name(second)
            );
            registry::remove_all_detached();
            std::process::exit(i32::from(exit_codes::for_signal(second)));
        },
    )
}
