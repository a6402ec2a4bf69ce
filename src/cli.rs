//! The command line as clap sees it. Only this module knows about clap: every type here is turned
//! into validated domain types (limits, programs, jobs) before anything runs.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::limits::{self, LimitOverrides};

/// Run untrusted Python code in a locked-down Docker container and report exactly what happened.
#[derive(Debug, Parser)]
#[command(
    name = "safe-exec",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one program in a fresh sandbox; its output streams through, its exit code passes on.
    Run(RunArgs),
    /// Grade submissions against a test suite (Kattis problem package format).
    Grade(GradeArgs),
    /// Serve the HTTP API (`POST /run`) and the web page.
    Serve(ServeArgs),
    /// Remove containers left behind by runs whose supervisor was killed.
    Gc(GcArgs),
    /// Check that this machine runs programs as safe-exec promises: engine, image, and a probe
    /// container that checks the hardening from the inside.
    Doctor(DoctorArgs),
    /// Build the runner image from the context inside this binary.
    Image(ImageArgs),
    /// Print shell completions or the man page.
    Generate(GenerateArgs),
    /// Serve the `run_python` tool to AI assistants over stdio (Model Context Protocol).
    Mcp(McpArgs),
}

/// Limits shared by every subcommand. Unset flags keep the defaults (or a suite's own limits).
#[derive(Debug, Clone, Default, Args)]
pub struct LimitArgs {
    /// Time limit in seconds of CPU time, all the program's processes together [default: 10]
    #[arg(long, value_name = "SECS", value_parser = limits::parse_timeout)]
    pub timeout: Option<Duration>,
    /// Wall-clock limit in seconds, for a program that waits instead of computing
    /// [default: 2 × --timeout + 1]
    #[arg(long, value_name = "SECS", value_parser = limits::parse_timeout)]
    pub wall_timeout: Option<Duration>,
    /// Memory limit, swap included, e.g. 128m, 1g [default: 128m]
    #[arg(long, value_name = "SIZE", value_parser = limits::parse_memory)]
    pub memory: Option<u64>,
    /// CPU quota in cores [default: 1]
    #[arg(long, value_name = "N", value_parser = limits::parse_cpus)]
    pub cpus: Option<f64>,
    /// Most processes and threads at once [default: 64]
    #[arg(long, value_name = "N", value_parser = limits::parse_pids)]
    pub pids_limit: Option<u32>,
    /// Longest accepted source, in Unicode characters [default: 5000]
    #[arg(long, value_name = "N", value_parser = limits::parse_code_chars)]
    pub max_code_chars: Option<usize>,
    /// Cap on each of stdout and stderr, e.g. 1m, 64k [default: 1m]
    #[arg(long, value_name = "SIZE", value_parser = limits::parse_output_size)]
    pub max_output: Option<u64>,
}

impl LimitArgs {
    pub fn overrides(&self) -> LimitOverrides {
        LimitOverrides {
            timeout: self.timeout,
            wall_timeout: self.wall_timeout,
            memory_bytes: self.memory,
            cpus: self.cpus,
            pids: self.pids_limit,
            max_code_chars: self.max_code_chars,
            max_output_bytes: self.max_output,
        }
    }
}

/// The warm pool: containers started ahead of time, one program each.
#[derive(Debug, Clone, Default, Args)]
pub struct PoolArgs {
    /// Warm containers kept ready per set of limits; 0 turns the pool off
    /// [default: grade: --jobs; serve: --max-concurrent; mcp: 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=256))]
    pub pool: Option<u32>,
    /// A warm container unused this long is replaced by a fresh one [default: 120]
    #[arg(long, value_name = "SECS", value_parser = limits::parse_timeout)]
    pub pool_idle: Option<Duration>,
}

impl PoolArgs {
    /// The pool's configuration, with `size` when `--pool` is not given.
    pub fn config(&self, size: usize) -> crate::runner::pool::PoolConfig {
        crate::runner::pool::PoolConfig {
            size: self.pool.map_or(size, |n| n as usize),
            idle: self.pool_idle.unwrap_or(crate::runner::pool::DEFAULT_IDLE),
        }
    }
}

/// Which engine(s) runs go to, and with which runtime.
#[derive(Debug, Clone, Default, Args)]
pub struct EngineArgs {
    /// The container engine's client: docker or podman [default: docker]
    #[arg(long, value_name = "NAME", env = "SAFE_EXEC_ENGINE")]
    pub engine: Option<String>,
    /// Docker context(s) to run on (`docker context ls`; ssh:// and tcp:// with TLS work); a
    /// comma-separated list spreads runs over several engines, each taking `=N` runs at once
    /// (`a=4,b=2`) or, without it, --jobs (grade) or --max-concurrent (serve)
    #[arg(long, value_name = "NAME[=N],...", env = "SAFE_EXEC_CONTEXT")]
    pub context: Option<String>,
    /// The OCI runtime containers run under, e.g. runsc for gVisor (registered with the engine:
    /// scripts/setup.sh does with SAFE_EXEC_RUNSC=1) [default: the engine's own]
    #[arg(long, value_name = "NAME", env = "SAFE_EXEC_RUNTIME")]
    pub runtime: Option<String>,
}

impl EngineArgs {
    pub fn engines(
        &self,
    ) -> Result<crate::runner::Engines, crate::runner::engine::EngineSpecError> {
        crate::runner::Engines::parse(
            self.engine.as_deref(),
            self.context.as_deref(),
            self.runtime.as_deref(),
        )
    }
}

/// Where to send runs instead of running them here: a running `safe-exec serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerArgs {
    /// Run through a running `safe-exec serve` instead of starting a container here:
    /// http://HOST:PORT, https://HOST:PORT or unix:/PATH/TO.sock (the token comes from
    /// SAFE_EXEC_TOKEN)
    #[arg(long, value_name = "URL", env = "SAFE_EXEC_SERVER")]
    pub server: Option<String>,
    /// With an https:// --server, also trust the CA certificate(s) in PEM (a private CA, or the
    /// server's self-signed certificate when it is not marked as a CA) besides the system's roots
    #[arg(long, value_name = "PEM", env = "SAFE_EXEC_SERVER_CA")]
    pub server_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct ImageArg {
    /// The runner image, or `ds` for the data-science one (numpy, pandas, matplotlib, scipy)
    /// [default: safe-exec-python:3.11, built by `safe-exec image build`]
    #[arg(long, value_name = "NAME", env = "SAFE_EXEC_IMAGE")]
    pub image: Option<String>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: the program's own code when it ends by itself; 124 timeout, 121 memory limit, \
122 output limit, 123 rejected input, 73 the --artifacts directory cannot be used, 125 sandbox error, \
130 interrupted, 2 usage. See docs/run.md and docs/statuses-and-exit-codes.md."
)]
pub struct RunArgs {
    /// Python file to run; standard input when absent or `-`
    #[arg(value_name = "FILE", conflicts_with = "code")]
    pub file: Option<PathBuf>,
    /// Run CODE instead of a file
    #[arg(short = 'c', long = "code", value_name = "CODE")]
    pub code: Option<OsString>,
    /// File the program reads as its standard input
    #[arg(long = "stdin", value_name = "FILE")]
    pub stdin: Option<PathBuf>,
    /// A file placed beside the program (read-only, under its own name); repeat for more
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Copy the files the program leaves in out/ into DIR (created if missing)
    #[arg(long, value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
    /// With --json, include each artifact's bytes (base64)
    #[arg(long, requires = "json")]
    pub artifact_content: bool,
    /// Print exactly one JSON document (schema_version 1) on stdout instead of streaming
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub image: ImageArg,
    #[command(flatten)]
    pub engines: EngineArgs,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Output is compared as the Kattis default validator does: tokens split on whitespace, \
case-INsensitive unless the suite sets `case_sensitive`. Time limits count from the program's start, not the container's.

Exit status: 0 every submission accepted (or --exit-zero), 1 some not accepted, 65 malformed suite, 66 missing path, 73 a report cannot be written, \
125 engine unavailable or a judge error, 130 interrupted, 2 usage. \
See docs/grading.md and docs/statuses-and-exit-codes.md."
)]
pub struct GradeArgs {
    /// Test suite: a Kattis problem package, or a directory of NAME.in + NAME.ans
    #[arg(value_name = "SUITE")]
    pub suite: PathBuf,
    /// Python files to grade
    #[arg(value_name = "SUBMISSION", required = true)]
    pub submissions: Vec<PathBuf>,
    /// Runs in parallel [default: number of CPUs]
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub jobs: Option<u32>,
    /// Write the full result as JSON (with format_version) to PATH
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Write JUnit XML to PATH
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,
    /// Write a Gradescope results.json to PATH (exactly one submission)
    #[arg(long, value_name = "PATH")]
    pub gradescope: Option<PathBuf>,
    /// Stop a submission at its first failed case
    #[arg(long)]
    pub fail_fast: bool,
    /// Exit 0 even when cases fail (reports are still written)
    #[arg(long)]
    pub exit_zero: bool,
    #[command(flatten)]
    pub pool: PoolArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub image: ImageArg,
    #[command(flatten)]
    pub engines: EngineArgs,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Endpoints: POST /run (the original API), POST /api/v1/runs (the `run --json` document), \
GET /healthz, GET /openapi.json, GET / (the web page). See docs/http-api.md."
)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port); a non-loopback address needs --token,
    /// and a token on one needs --tls-cert (or --behind-tls-proxy)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5000")]
    pub addr: SocketAddr,
    /// Listen on a unix socket at PATH instead of TCP (created mode 0600: only this user and
    /// root can connect; a stale socket file there is replaced, anything else is refused)
    #[arg(long, value_name = "PATH", conflicts_with_all = ["addr", "tls_cert", "tls_key", "behind_tls_proxy"])]
    pub unix: Option<PathBuf>,
    /// Speak TLS (HTTPS) with this certificate chain (PEM); needs --tls-key
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A proxy in front terminates TLS: accept a token on a non-loopback address without
    /// --tls-cert
    #[arg(long)]
    pub behind_tls_proxy: bool,
    /// Most bytes of stdin a run request may carry, e.g. 1m, 64k; the request body limit grows
    /// with it [default: 1m]
    #[arg(long, value_name = "SIZE", value_parser = parse_max_stdin)]
    pub max_stdin: Option<u64>,
    /// Runs at once [default: number of CPUs]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_concurrent: Option<u32>,
    /// Requests waiting for a run slot before new ones get 503 [default: 16]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=4096))]
    pub queue: Option<u32>,
    /// Require `Authorization: Bearer TOKEN` on the API (at least 16 characters)
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SAFE_EXEC_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Run requests per minute per client address (an IPv6 /64 counts as one; on --unix, a
    /// uid); 0 turns it off [default: 60; on --unix: 0]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub rate_limit: Option<u32>,
    /// Connections open at once per client address (an IPv6 /64 counts as one); 0 turns the
    /// per-client caps off, this one and the 64 MiB of answers a client may hold (behind a
    /// reverse proxy every client has the proxy's address) [default: 32]
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(0..=crate::serve::limits::MAX_CONNECTIONS as i64)
    )]
    pub max_connections_per_client: Option<u32>,
    /// Seconds a client has to read an answer once it is ready; one that has not taken it all
    /// by then is disconnected, freeing its place and the answer's memory [default: 30]
    #[arg(
        long,
        value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..=crate::serve::limits::MAX_SEND_TIMEOUT_SECS)
    )]
    pub send_timeout: Option<u64>,
    /// Allow a non-loopback --addr without a token (the Host check stays: see --allow-host)
    #[arg(long)]
    pub allow_unauthenticated: bool,
    /// Without a token, also answer requests for this host name (besides IP addresses and
    /// localhost, which are always answered); repeat for more names. Other names get 403
    /// (protection against DNS rebinding)
    #[arg(long, value_name = "NAME")]
    pub allow_host: Vec<String>,
    /// Append one JSON line per execution to PATH (`-` for standard output)
    #[arg(long, value_name = "PATH")]
    pub audit_log: Option<PathBuf>,
    /// Include the submitted code in the audit log
    #[arg(long, requires = "audit_log")]
    pub audit_code: bool,
    #[command(flatten)]
    pub pool: PoolArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub image: ImageArg,
    #[command(flatten)]
    pub engines: EngineArgs,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Speaks MCP (JSON-RPC) on stdin and stdout, for an MCP client to start: add it to the client's \
`mcpServers` configuration (see docs/mcp.md). Each call runs in a fresh container with the limits the flags above set, \
which a call may lower (its time limit) but never raise.

Exit status: 0 the client closed the connection or a SIGTERM/Ctrl-C shutdown finished, 125 the server \
could not start, 2 usage. See docs/mcp.md."
)]
pub struct McpArgs {
    /// Runs at once; further calls wait for a slot [default: number of CPUs]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_concurrent: Option<u32>,
    #[command(flatten)]
    pub pool: PoolArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub image: ImageArg,
}

/// `--max-stdin`: a size up to [`crate::serve::limits::MAX_MAX_STDIN`].
fn parse_max_stdin(text: &str) -> Result<u64, String> {
    let bytes = limits::parse_size(text)?;
    if bytes > crate::serve::limits::MAX_MAX_STDIN {
        return Err(format!(
            "`{text}`: --max-stdin can be at most {}",
            limits::human_bytes(crate::serve::limits::MAX_MAX_STDIN)
        ));
    }
    Ok(bytes)
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Remove every safe-exec container, even ones whose run may still be in progress
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub engines: EngineArgs,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Each check is a row: ok, FAIL (with the fix on the next line) or skip (it needs \
something that failed above). The probe runs through the same supervisor and hardening as `safe-exec run`.

Exit status: 0 every check passed, 1 a check failed, 130 interrupted, 2 usage. \
See docs/doctor.md."
)]
pub struct DoctorArgs {
    /// Print one JSON document (schema_version 1) on stdout instead of the table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub image: ImageArg,
}

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build the runner image from the context inside this binary; nothing to do when an image
    /// built from the same context is there.
    Build(ImageBuildArgs),
}

#[derive(Debug, Args)]
#[command(
    after_help = "The base is --base (SAFE_EXEC_BASE) when given; else python:3.11-slim when it is \
local or can be pulled within --pull-timeout; else the offline base (--offline-base), made with debootstrap \
when missing (needs root and debootstrap).

Exit status: 0 built or up to date, 125 the build failed, 130 interrupted, 2 usage. \
See docs/install.md."
)]
pub struct ImageBuildArgs {
    /// Name of the runner image to build (`ds`: the data-science image, as --ds)
    /// [default: safe-exec-python:3.11]
    #[arg(long, value_name = "NAME", env = "SAFE_EXEC_IMAGE")]
    pub tag: Option<String>,
    /// Build FROM this local image instead of choosing a base
    #[arg(long, value_name = "IMAGE", env = "SAFE_EXEC_BASE")]
    pub base: Option<String>,
    /// Never try to pull python:3.11-slim (use it only when it is local)
    #[arg(long)]
    pub offline: bool,
    /// Also build the data-science image (numpy, pandas, matplotlib, scipy) on the runner image;
    /// its steps download those, so it needs the network (`--tag ds` does the same)
    #[arg(long)]
    pub ds: bool,
    /// Name of the data-science image [default: safe-exec-python-ds:3.11]
    #[arg(long, value_name = "NAME", requires = "ds")]
    pub ds_tag: Option<String>,
    /// Name of the Debian base made with debootstrap when no Python base is local or can be
    /// pulled; reused when it exists [default: safe-exec-base:bookworm]
    #[arg(long, value_name = "NAME")]
    pub offline_base: Option<String>,
    /// Seconds to try pulling python:3.11-slim before using the offline base [default: 20]
    #[arg(
        long,
        value_name = "SECS",
        env = "SAFE_EXEC_PULL_TIMEOUT",
        value_parser = limits::parse_timeout
    )]
    pub pull_timeout: Option<Duration>,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  safe-exec generate completions bash > /etc/bash_completion.d/safe-exec
  safe-exec generate completions zsh > \"${fpath[1]}/_safe-exec\"
  safe-exec generate completions fish > ~/.config/fish/completions/safe-exec.fish
  safe-exec generate man > /usr/local/share/man/man1/safe-exec.1")]
pub struct GenerateArgs {
    #[command(subcommand)]
    pub what: GenerateCommand,
}

#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Print the completion script for SHELL
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), every subcommand included
    Man,
}
