//! `safe-exec mcp`: a Model Context Protocol server on stdin and stdout, for AI assistants. It
//! has one tool, `run_python`, which runs a program through the same supervisor, limits and
//! statuses as `safe-exec run` and answers with its output and the files it left in `out/`.
//!
//! Rooms: [`tool`] (the tool as data: its schemas, the checking of arguments into a job, the
//! result of an outcome; pure) and [`server`] (the protocol handler, run slots, cancellation).
//! This module turns the command line into a running server and owns shutdown.
//!
//! Limits are the server's, set when it starts (the `run` flags); a call may only lower its time
//! limit. Each call gets a fresh container, a warm one when the pool (`--pool`, default 1) has
//! one ready. Runs never execute on the async runtime: each goes through
//! [`Sandbox::run`](crate::runner::Sandbox::run) on a blocking thread.
//!
//! Shutdown: when the client closes our stdin (how MCP ends a stdio session) or on the first
//! SIGTERM, SIGINT or SIGHUP, every run in progress is stopped, the pool is shut down and we wait
//! (bounded) until every container is removed, then exit 0. A second signal removes what is left
//! at once and exits 128+N; the reaper removes containers of a SIGKILLed server.
//!
//! stdout carries the protocol alone: nothing else of ours is ever written there. Messages for
//! people go to stderr, prefixed `safe-exec mcp:` (MCP clients log a server's stderr).

pub mod server;
pub mod tool;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use rmcp::service::{QuitReason, ServerInitializeError};
use rmcp::ServiceExt;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::cli::McpArgs;
use crate::exit_codes;
use crate::limits::{human_bytes, human_secs, Limits};
use crate::runner::pool::PoolConfig;
use crate::runner::{gc, registry, CancelToken, Sandbox};
use server::McpServer;

/// `eprintln!("safe-exec mcp: ...")` that never panics: a server whose stderr is gone keeps
/// serving, and its shutdown still removes every container.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "safe-exec mcp: {}", format_args!($($arg)*));
    }};
}

/// Warm containers kept ready unless `--pool` says otherwise: one, so a call usually starts at
/// once without holding memory for more.
pub const DEFAULT_POOL: usize = 1;
/// How long shutdown waits for stopped runs to end (each removal has its own deadline in the
/// supervisor) and then for their containers' removal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often orphaned containers of earlier runs are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// The validated server configuration.
#[derive(Debug)]
struct Config {
    limits: Limits,
    max_concurrent: usize,
    image: Option<String>,
    pool: PoolConfig,
}

impl Config {
    fn from_args(args: McpArgs) -> Config {
        Config {
            limits: Limits::default().with(&args.limits.overrides()),
            max_concurrent: args
                .max_concurrent
                .map_or_else(crate::sync::available_cpus, |n| n as usize),
            image: args.image.image,
            pool: args.pool.config(DEFAULT_POOL),
        }
    }
}

pub fn execute(args: McpArgs) -> anyhow::Result<u8> {
    let config = Config::from_args(args);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("safe-exec-mcp")
        // One blocking thread per run slot, plus room for stdio, probes and sweeps.
        .max_blocking_threads(config.max_concurrent + 16)
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(serve(config));
    // The thread reading stdin may still be blocked in read(2) (after a signal): do not wait.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

async fn serve(config: Config) -> anyhow::Result<u8> {
    let limits = config.limits;
    let sandbox = Sandbox::new(config.image.clone()).with_pool(config.pool);
    if let Some(pool) = sandbox.pool() {
        pool.prepare(&limits);
    }
    // Stops every run; cancelled at the client's end-of-file and at the first signal.
    let stopping = CancelToken::new();
    // Ends the protocol session (at a signal).
    let quit = CancellationToken::new();
    watch_signals(&stopping, &quit).context("cannot install signal handlers")?;

    // Not fatal: the engine may come up later; until then calls answer sandbox_error.
    let probe = sandbox.clone();
    if let Ok(Err(error)) = tokio::task::spawn_blocking(move || probe.check_ready()).await {
        say!(
            "warning: {}; runs will end in sandbox_error until this is fixed",
            crate::sanitize::text(&error.to_string())
        );
    }
    say!(
        "serving the run_python tool on stdin/stdout ({}, {} run(s) at once, {} warm, timeout {}, memory {})",
        crate::sanitize::text(sandbox.image()),
        config.max_concurrent,
        config.pool.size,
        human_secs(limits.timeout),
        human_bytes(limits.memory_bytes),
    );

    let sweeper = sweep_stale_periodically(sandbox.clone());
    let server = McpServer::new(
        sandbox.clone(),
        limits,
        config.max_concurrent,
        stopping.clone(),
    );
    let runs = server.runs();
    let (stdin, stdout) = rmcp::transport::stdio();
    let stdin = StopAtEnd {
        inner: stdin,
        stopping: stopping.clone(),
    };
    let ended = match server.serve_with_ct((stdin, stdout), quit.clone()).await {
        Ok(running) => match running.waiting().await {
            Ok(QuitReason::Closed) => "the client closed the connection".to_owned(),
            Ok(QuitReason::Cancelled) => "stopped by a signal".to_owned(),
            Ok(QuitReason::JoinError(error)) | Err(error) => {
                format!("the protocol task failed ({error})")
            }
            Ok(_) => "the session ended".to_owned(),
        },
        Err(ServerInitializeError::Cancelled) => "stopped by a signal".to_owned(),
        Err(ServerInitializeError::ConnectionClosed(_)) => {
            "the client closed the connection before initializing".to_owned()
        }
        Err(error) => {
            say!(
                "the client did not open an MCP session ({}): start `safe-exec mcp` from an MCP client (see docs/mcp.md)",
                crate::sanitize::text(&error.to_string())
            );
            "no session".to_owned()
        }
    };

    // Stop what is still running and remove every container before exiting.
    stopping.cancel();
    sweeper.abort();
    let runs_ended = runs.wait(DRAIN_TIMEOUT).await;
    if let Some(pool) = sandbox.pool().cloned() {
        let _ = tokio::task::spawn_blocking(move || pool.shutdown()).await;
    }
    let removed = tokio::task::spawn_blocking(|| {
        registry::wait_for_removals(std::time::Instant::now() + DRAIN_TIMEOUT)
    })
    .await
    .unwrap_or(false);
    if runs_ended && removed {
        say!("{ended}; stopped, no container left");
    } else {
        say!("{ended}; stopped with containers still being removed: `safe-exec gc` cleans up what is left");
    }
    Ok(exit_codes::SUCCESS)
}

/// The client's end of the connection: end-of-file on it stops every run at once (MCP clients
/// end a stdio session by closing the server's stdin, and give it a moment to exit before
/// signalling it).
struct StopAtEnd<R> {
    inner: R,
    stopping: CancelToken,
}

impl<R: AsyncRead + Unpin> AsyncRead for StopAtEnd<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        // A read into a full buffer also returns nothing; only an empty read into room is the end.
        let (before, room) = (buf.filled().len(), buf.remaining() > 0);
        let polled = Pin::new(&mut self.inner).poll_read(context, buf);
        if room && matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() == before {
            self.stopping.cancel();
        }
        polled
    }
}

/// On the first SIGTERM/SIGINT/SIGHUP: stop every run and end the session. On a second: remove
/// every container at once and exit 128+N.
fn watch_signals(stopping: &CancelToken, quit: &CancellationToken) -> std::io::Result<()> {
    let (stopping, quit) = (stopping.clone(), quit.clone());
    crate::signals::on_stop_signals(
        move |first| {
            say!(
                "received {}: stopping; runs in progress are stopped (again to exit at once)",
                crate::signals::name(first)
            );
            stopping.cancel_by_signal(first);
            quit.cancel();
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

/// Remove containers orphaned by earlier runs whose supervisor was killed, at startup and then
/// every [`SWEEP_INTERVAL`], off the runtime. Only containers past their expiry label are
/// touched, so runs of other processes on this host are safe.
fn sweep_stale_periodically(sandbox: Sandbox) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            interval.tick().await;
            let sweeper = sandbox.clone();
            let _ = tokio::task::spawn_blocking(move || sweeper.collect_garbage(gc::Scope::Stale))
                .await;
        }
    })
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn the_end_of_the_client_s_stream_stops_every_run() {
        let stopping = CancelToken::new();
        let mut stream = StopAtEnd {
            inner: &b"{\"jsonrpc\":\"2.0\"}\n"[..],
            stopping: stopping.clone(),
        };
        let mut line = [0u8; 8];
        stream.read_exact(&mut line).await.unwrap();
        assert!(!stopping.is_cancelled(), "stopped before the end");
        // A read with no room is not the end.
        assert_eq!(stream.read(&mut []).await.unwrap(), 0);
        assert!(!stopping.is_cancelled(), "an empty buffer read as the end");
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        assert!(stopping.is_cancelled());
    }
}
