//! Calls to the `docker` CLI that always end: each has its own deadline, after which the client
//! is killed and the call reported as timed out. Errors are classified into what a user can fix.
//!
//! Every docker process is put in its own process group, so a Ctrl-C in the terminal reaches
//! safe-exec alone and we decide what happens to the container.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use thiserror::Error;
use wait_timeout::ChildExt;

use super::cancel::CancelToken;

/// Environment variable naming the docker client to use (default: `docker` on `PATH`).
pub const DOCKER_ENV: &str = "SAFE_EXEC_DOCKER";

/// Why the engine could not do what we asked. Messages say what to do next.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EngineError {
    #[error("the docker client `{program}` was not found: install Docker (scripts/setup.sh does) or point {DOCKER_ENV} at it")]
    CliMissing { program: String },
    #[error("cannot reach the Docker engine{host}: is dockerd running? Try `docker info` (scripts/setup.sh starts it) ({detail})")]
    Unreachable { host: String, detail: String },
    #[error("permission denied talking to the Docker engine: run as root or join the `docker` group ({detail})")]
    PermissionDenied { detail: String },
    #[error("runner image `{image}` not found: build it with `safe-exec image build` (or `scripts/setup.sh`; safe-exec never pulls images)")]
    ImageMissing { image: String },
    #[error("`docker {command}` did not answer within {secs} s: the engine may be overloaded or hung; check `docker info`")]
    Timeout { command: String, secs: u64 },
    #[error("`docker {command}` failed: {detail}")]
    Failed { command: String, detail: String },
    #[error("could not start the docker client `{program}`: {detail}")]
    Spawn { program: String, detail: String },
    #[error("the engine refused a limit: {detail} (lower the limit to what this host has)")]
    LimitRefused { detail: String },
    #[error("cancelled while `docker {command}` was running")]
    Cancelled { command: String },
}

/// What a finished docker call printed.
#[derive(Debug, Clone)]
pub struct CallOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// The docker client we shell out to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerCli {
    program: OsString,
}

impl Default for DockerCli {
    fn default() -> Self {
        DockerCli::from_env()
    }
}

impl DockerCli {
    /// `$SAFE_EXEC_DOCKER`, or `docker` from `PATH`.
    pub fn from_env() -> DockerCli {
        let program = std::env::var_os(DOCKER_ENV)
            .filter(|value| !value.is_empty())
            .unwrap_or_else(|| OsString::from("docker"));
        DockerCli { program }
    }

    pub fn program(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }

    /// A `docker ARGS...` command in its own process group with no stdin; the caller adds pipes.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = Command::new(&self.program);
        command.args(args).stdin(Stdio::null()).process_group(0);
        command
    }

    /// Spawn `command`, mapping a missing client to [`EngineError::CliMissing`].
    pub fn spawn(&self, command: &mut Command) -> Result<Child, EngineError> {
        command.spawn().map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => EngineError::CliMissing {
                program: self.program(),
            },
            _ => EngineError::Spawn {
                program: self.program(),
                detail: error.to_string(),
            },
        })
    }

    /// Run `docker ARGS...` to completion within `timeout`, killing the client past it. A non-zero
    /// exit is classified into an [`EngineError`]; `image` names the image for "no such image".
    pub fn call(
        &self,
        args: &[String],
        timeout: Duration,
        image: Option<&str>,
    ) -> Result<CallOutput, EngineError> {
        let output = self.call_unchecked(args, timeout)?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(classify_failure(&subcommand(args), &output.stderr, image))
        }
    }

    /// As [`DockerCli::call`], but the client is also killed, and [`EngineError::Cancelled`]
    /// returned, as soon as `cancel` is set: a Ctrl-C must not wait for a slow engine.
    pub fn call_cancellable(
        &self,
        args: &[String],
        timeout: Duration,
        image: Option<&str>,
        cancel: &CancelToken,
    ) -> Result<CallOutput, EngineError> {
        let output = self.call_inner(args, timeout, Some(cancel))?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(classify_failure(&subcommand(args), &output.stderr, image))
        }
    }

    /// As [`DockerCli::call`], but a non-zero exit is returned, not classified.
    pub fn call_unchecked(
        &self,
        args: &[String],
        timeout: Duration,
    ) -> Result<CallOutput, EngineError> {
        self.call_inner(args, timeout, None)
    }

    fn call_inner(
        &self,
        args: &[String],
        timeout: Duration,
        cancel: Option<&CancelToken>,
    ) -> Result<CallOutput, EngineError> {
        let deadline = Instant::now() + timeout;
        let mut command = self.command(args);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = self.spawn(&mut command)?;
        // Both pipes reaching end-of-file is how we learn, without polling, that the client is
        // done; only then do we reap it. A cancellation wakes the same wait.
        let (done, finished) = mpsc::channel();
        let stdout = read_in_background(child.stdout.take(), done.clone());
        let stderr = read_in_background(child.stderr.take(), done.clone());
        let _subscription = cancel.map(|token| {
            token.on_cancel(move || {
                let _ = done.send(Wake::Cancelled);
            })
        });
        let mut closed = 0;
        let mut cancelled = false;
        while closed < 2 {
            let left = deadline.saturating_duration_since(Instant::now());
            match finished.recv_timeout(left) {
                Ok(Wake::PipeClosed) => closed += 1,
                Ok(Wake::Cancelled) => {
                    cancelled = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if cancelled {
            kill_group(&mut child);
            return Err(EngineError::Cancelled {
                command: subcommand(args),
            });
        }
        let status = if closed == 2 {
            child
                .wait_timeout(deadline.saturating_duration_since(Instant::now()))
                .ok()
                .flatten()
        } else {
            None
        };
        let Some(status) = status else {
            kill_group(&mut child);
            return Err(EngineError::Timeout {
                command: subcommand(args),
                secs: timeout.as_secs().max(1),
            });
        };
        Ok(CallOutput {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        })
    }
}

/// SIGKILL a docker client and whatever it started (it leads its own process group), then reap it.
pub fn kill_group(child: &mut Child) {
    if let Ok(group) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) has no memory-safety preconditions; a negative pid names the group
        // this child leads (`command` puts it in its own), which holds only what it started.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// What wakes a docker call's wait.
enum Wake {
    PipeClosed,
    Cancelled,
}

fn read_in_background(
    pipe: Option<impl Read + Send + 'static>,
    done: mpsc::Sender<Wake>,
) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut text);
        }
        let _ = done.send(Wake::PipeClosed);
        String::from_utf8_lossy(&text).into_owned()
    })
}

fn subcommand(args: &[String]) -> String {
    args.iter()
        .take_while(|arg| !arg.starts_with('-'))
        .take(2)
        .cloned()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Turn a failed call's stderr into an error a user can act on.
pub fn classify_failure(command: &str, stderr: &str, image: Option<&str>) -> EngineError {
    // docker's own message is its last line, bar the "Run 'docker run --help'" or "See 'docker
    // create --help'" hint it may append.
    let detail = stderr
        .lines()
        .map(str::trim)
        .rfind(|line| {
            !line.is_empty() && !line.starts_with("Run 'docker") && !line.starts_with("See 'docker")
        })
        .unwrap_or("")
        .trim_start_matches("docker: ");
    // The engine's words end up in our messages: never raw.
    let detail = crate::sanitize::text(detail).into_owned();
    let lower = stderr.to_ascii_lowercase();
    if lower.contains("cannot connect to the docker daemon")
        || lower.contains("error during connect")
        || lower.contains("connection refused")
        || (lower.contains("dial unix") && lower.contains("no such file"))
        || lower.contains("is the docker daemon running")
    {
        let host = std::env::var("DOCKER_HOST")
            .map(|host| format!(" at {host}"))
            .unwrap_or_default();
        return EngineError::Unreachable { host, detail };
    }
    if lower.contains("permission denied") && lower.contains("docker") && lower.contains("sock") {
        return EngineError::PermissionDenied { detail };
    }
    // e.g. "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available".
    if lower.contains("range of cpus") || lower.contains("minimum memory limit") {
        let detail = detail
            .strip_prefix("Error response from daemon: ")
            .unwrap_or(&detail)
            .to_owned();
        return EngineError::LimitRefused { detail };
    }
    if let Some(image) = image {
        if lower.contains("no such image") || lower.contains("unable to find image") {
            return EngineError::ImageMissing {
                image: image.to_owned(),
            };
        }
    }
    EngineError::Failed {
        command: command.to_owned(),
        detail: if detail.is_empty() {
            "no error message".to_owned()
        } else {
            detail
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_engine_is_recognised() {
        let stderr = "Cannot connect to the Docker daemon at unix:///nonexistent.sock. Is the docker daemon running?";
        assert!(matches!(
            classify_failure("create", stderr, None),
            EngineError::Unreachable { .. }
        ));
        let stderr = "error during connect: Get \"http://x\": dial unix /nonexistent.sock: connect: no such file or directory";
        assert!(matches!(
            classify_failure("create", stderr, None),
            EngineError::Unreachable { .. }
        ));
    }

    #[test]
    fn missing_image_names_the_fix() {
        let stderr = "Error response from daemon: No such image: safe-exec-python:3.11";
        let error = classify_failure("create", stderr, Some("safe-exec-python:3.11"));
        assert_eq!(
            error,
            EngineError::ImageMissing {
                image: "safe-exec-python:3.11".into()
            }
        );
        assert!(error.to_string().contains("scripts/setup.sh"));
    }

    #[test]
    fn other_failures_keep_docker_s_last_line() {
        let error = classify_failure(
            "create",
            "warning\nError response from daemon: Conflict",
            None,
        );
        assert_eq!(
            error.to_string(),
            "`docker create` failed: Error response from daemon: Conflict"
        );
    }

    #[test]
    fn the_engine_s_words_are_sanitised() {
        let error = classify_failure("run", "Error: \x1b]0;pwned\x07 bad\r::warning::x", None);
        let message = error.to_string();
        assert!(
            !message.contains('\x1b') && !message.contains('\r'),
            "{message}"
        );
    }

    #[test]
    fn docker_s_help_hints_are_not_the_message() {
        for hint in [
            "Run 'docker run --help' for more information",
            "See 'docker create --help'.",
        ] {
            let stderr = format!("docker: Error response from daemon: Conflict\n\n{hint}\n");
            assert_eq!(
                classify_failure("create", &stderr, None).to_string(),
                "`docker create` failed: Error response from daemon: Conflict"
            );
        }
    }

    #[test]
    fn a_limit_the_host_cannot_give_is_refused_not_failed() {
        let stderr = "Error response from daemon: Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available";
        let error = classify_failure("create", stderr, Some("img"));
        assert!(matches!(error, EngineError::LimitRefused { .. }));
        assert!(error.to_string().contains("only 2 CPUs"));
    }

    #[test]
    fn a_cancelled_call_ends_at_once() {
        let docker = DockerCli {
            program: "sleep".into(),
        };
        let cancel = CancelToken::new();
        let canceller = cancel.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            canceller.cancel();
        });
        let started = Instant::now();
        let error = docker
            .call_cancellable(&["5".to_owned()], Duration::from_secs(10), None, &cancel)
            .unwrap_err();
        assert!(matches!(error, EngineError::Cancelled { .. }));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn subcommand_stops_at_options() {
        let args: Vec<String> = ["image", "inspect", "--format", "x"]
            .map(String::from)
            .to_vec();
        assert_eq!(subcommand(&args), "image inspect");
        let args: Vec<String> = ["create", "--interactive"].map(String::from).to_vec();
        assert_eq!(subcommand(&args), "create");
    }

    #[test]
    fn missing_client_is_reported_as_such() {
        let docker = DockerCli {
            program: "/nonexistent/docker".into(),
        };
        let error = docker
            .call(&["version".to_owned()], Duration::from_secs(5), None)
            .unwrap_err();
        assert!(matches!(error, EngineError::CliMissing { .. }));
    }

    #[test]
    fn calls_that_hang_are_killed_at_their_deadline() {
        let docker = DockerCli {
            program: "sleep".into(),
        };
        let started = Instant::now();
        let error = docker
            .call(&["5".to_owned()], Duration::from_millis(200), None)
            .unwrap_err();
        assert!(matches!(error, EngineError::Timeout { .. }));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
