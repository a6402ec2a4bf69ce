//! `safe-exec run` and `safe-exec gc`: turn the parsed command line into a validated [`Job`], run
//! it through the supervisor (or, with `--server`, through a running `safe-exec serve`: see
//! [`crate::client`]), and report in text or JSON. Both ways end in the same [`Outcome`] and the
//! same reporting, so exit codes, text output and the JSON document do not depend on where the
//! program ran.

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::Context;

use crate::cli::{GcArgs, RunArgs};
use crate::client::{self, read_stdin, Remote};
use crate::exit_codes;
use crate::limits::{LimitOverrides, Limits};
use crate::report::{describe, Outcome, RunReport, Status};
use crate::runner::{gc, Job, ProgramStdin, RunIo, Sandbox};
use crate::runner::{registry, CancelToken, DockerCli};
use crate::source::{describe_io, Program, RejectReason};

pub fn execute(args: RunArgs) -> anyhow::Result<u8> {
    let limits = Limits::default().with(&args.limits.overrides());
    if let Some(url) = &args.server.server {
        return execute_remote(&args, url, limits);
    }
    let sandbox = Sandbox::new(args.image.image.clone());
    let outcome = match prepare(&args, limits) {
        Ok(job) => {
            let token = CancelToken::new();
            stop_runs_on_signals(&token, sandbox.docker())
                .context("cannot install signal handlers")?;
            let sweeper = sweep_stale_in_background(&sandbox);
            let io = if args.json {
                RunIo::capture()
            } else {
                RunIo::passthrough()
            };
            let outcome = sandbox.run(job, io, &token);
            drop(sweeper);
            outcome
        }
        Err(reason) => Outcome::not_run(Status::Rejected, reason.to_string(), limits),
    };
    let exit_code = outcome.exit_code();
    report(outcome, args.json)?;
    Ok(exit_code)
}

/// `run --server URL`: the same checks of the input as a local run, then the program goes to
/// the server, and its answer is reported exactly as a local run's outcome would be.
fn execute_remote(args: &RunArgs, url: &str, limits: Limits) -> anyhow::Result<u8> {
    let remote = match Remote::new(url, args.server.server_ca.as_deref()) {
        Ok(remote) => remote,
        Err(error) => {
            // A URL or CA file that cannot work is a usage error, like a bad flag value.
            eprintln!("safe-exec: {error}");
            return Ok(exit_codes::USAGE);
        }
    };
    // Only the limits given are asked for; the server's apply to the rest. The code limit is
    // checked here (and again by the server, with its own).
    let asked = LimitOverrides {
        max_code_chars: None,
        ..args.limits.overrides()
    };
    let outcome = match prepare(args, limits) {
        Ok(job) => {
            let token = CancelToken::new();
            let cancel = token.clone();
            crate::signals::on_stop_signals(
                move |signal| cancel.cancel_by_signal(signal),
                |signal| std::process::exit(i32::from(exit_codes::for_signal(signal))),
            )
            .context("cannot install signal handlers")?;
            // A program cannot talk to a terminal through the server: it reads nothing then.
            let stdin = match job.stdin {
                ProgramStdin::Inherit if std::io::stdin().is_terminal() => ProgramStdin::Empty,
                stdin => stdin,
            };
            match read_stdin(stdin, client::MAX_SENT_STDIN) {
                Ok(stdin) => {
                    let request = client::Request {
                        program: &job.program,
                        stdin: &stdin,
                        limits: asked,
                    };
                    remote.run(&request, limits, &token)
                }
                Err(message) => Outcome::not_run(Status::Rejected, message, limits),
            }
        }
        Err(reason) => Outcome::not_run(Status::Rejected, reason.to_string(), limits),
    };
    if !args.json {
        // What a local run streams as it comes, all at once (stdout first).
        let _ = std::io::stdout()
            .lock()
            .write_all(&outcome.stdout.bytes)
            .and_then(|()| std::io::stdout().lock().flush());
        let _ = std::io::stderr().lock().write_all(&outcome.stderr.bytes);
    }
    let exit_code = outcome.exit_code();
    report(outcome, args.json)?;
    Ok(exit_code)
}

/// The validated job, or why the input is refused. Nothing has been started yet.
fn prepare(args: &RunArgs, limits: Limits) -> Result<Job, RejectReason> {
    let max_chars = limits.max_code_chars;
    let from_stdin = args.code.is_none()
        && args
            .file
            .as_deref()
            .is_none_or(|file| file == Path::new("-"));
    let program = if let Some(code) = &args.code {
        use std::os::unix::ffi::OsStrExt;
        Program::from_bytes(code.as_bytes(), max_chars)?
    } else if from_stdin {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            eprintln!("safe-exec: reading the program from standard input; end it with Ctrl-D");
        }
        Program::from_reader(stdin.lock(), max_chars, "standard input")?
    } else {
        let path = args.file.as_deref().unwrap_or(Path::new("-"));
        Program::from_file(path, max_chars)?
    };
    let stdin = match &args.stdin {
        Some(path) => ProgramStdin::File(open_stdin_file(path)?),
        None if from_stdin => ProgramStdin::Empty,
        None => ProgramStdin::Inherit,
    };
    Ok(Job {
        program,
        stdin,
        limits,
    })
}

fn open_stdin_file(path: &Path) -> Result<std::fs::File, RejectReason> {
    let unreadable = |message: String| RejectReason::Unreadable {
        path: format!("--stdin {}", crate::sanitize::path(path)),
        message,
    };
    let file = std::fs::File::open(path).map_err(|error| unreadable(describe_io(&error)))?;
    match file.metadata() {
        Ok(metadata) if metadata.is_dir() => Err(unreadable("it is a directory".to_owned())),
        Ok(_) => Ok(file),
        Err(error) => Err(unreadable(describe_io(&error))),
    }
}

/// The first SIGINT/SIGTERM/SIGHUP cancels `token` (every run watching it stops and removes its
/// container); a second starts removing every live container without waiting and exits 128+N.
pub(crate) fn stop_runs_on_signals(token: &CancelToken, docker: &DockerCli) -> std::io::Result<()> {
    let token = token.clone();
    let docker = docker.clone();
    crate::signals::on_stop_signals(
        move |signal| token.cancel_by_signal(signal),
        move |signal| {
            registry::remove_all_detached(&docker);
            std::process::exit(i32::from(exit_codes::for_signal(signal)));
        },
    )
}

/// How long the closing `safe-exec:` line may wait for a stalled reader of our stderr.
const FINAL_LINE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Print the outcome: one JSON document on stdout, or one `safe-exec:` line on stderr.
fn report(outcome: Outcome, json: bool) -> anyhow::Result<()> {
    if json {
        let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
        let written = serde_json::to_writer_pretty(&mut stdout, &RunReport::from(outcome))
            .map_err(std::io::Error::from)
            .and_then(|()| stdout.write_all(b"\n"))
            .and_then(|()| stdout.flush());
        // A reader that went away (`| head`) is not our failure.
        if let Err(error) = written {
            if error.kind() != std::io::ErrorKind::BrokenPipe {
                return Err(error).context("cannot write the JSON report to stdout");
            }
        }
    } else if let Some(line) = describe(&outcome) {
        // Engine and launcher text can reach this line: printed through the sanitiser.
        let line = crate::sanitize::text(&line).into_owned();
        // Our stderr's reader may have stopped reading (and a drain of the program's stderr,
        // stuck writing to it, may hold its lock): worth a moment, never a hang or a panic.
        let (done, written) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = writeln!(std::io::stderr(), "{line}");
            let _ = done.send(());
        });
        let _ = written.recv_timeout(FINAL_LINE_WAIT);
    }
    Ok(())
}

/// Remove containers orphaned by earlier runs whose supervisor was killed, so nothing piles up on
/// a host that only ever uses `safe-exec run`. At most once a minute per user (a stamp file's
/// age decides), and off the critical path: the sweep is abandoned if this run ends first, and
/// the removals it started finish on their own.
fn sweep_stale_in_background(sandbox: &Sandbox) -> Option<std::thread::JoinHandle<()>> {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(60);
    let stamp = std::env::temp_dir().join(format!("safe-exec-gc-{}.stamp", effective_uid()));
    let due = std::fs::metadata(&stamp)
        .and_then(|metadata| metadata.modified())
        .map_or(true, |modified| {
            modified.elapsed().map_or(true, |age| age >= EVERY)
        });
    if !due || touch_without_following(&stamp).is_err() {
        return None;
    }
    let sandbox = sandbox.clone();
    Some(std::thread::spawn(move || {
        let _ = sandbox.collect_garbage(gc::Scope::Stale);
    }))
}

/// Update the stamp's time; refuses a symlink planted in a shared temp dir (it would make us
/// truncate whatever it points at).
fn touch_without_following(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    file.set_modified(std::time::SystemTime::now())
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() }
}

pub fn collect_garbage(args: GcArgs) -> anyhow::Result<u8> {
    let sandbox = Sandbox::new(None);
    let scope = if args.all {
        gc::Scope::All
    } else {
        gc::Scope::Stale
    };
    match sandbox.collect_garbage(scope) {
        Ok(removed) => {
            println!("removed {} container(s)", removed.len());
            for name in removed {
                println!("  {}", crate::sanitize::text(&name));
            }
            Ok(exit_codes::SUCCESS)
        }
        Err(error) => {
            eprintln!("safe-exec: {}", crate::sanitize::text(&error.to_string()));
            Ok(exit_codes::SANDBOX_ERROR)
        }
    }
}
