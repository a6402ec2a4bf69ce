//! `safe-exec run` and `safe-exec gc`: turn the parsed command line into a validated [`Job`], run
//! it through the supervisor (or, with `--server`, through a running `safe-exec serve`: see
//! [`crate::client`]), and report in text or JSON. Both ways end in the same [`Outcome`] and the
//! same reporting, so exit codes, text output and the JSON document do not depend on where the
//! program ran.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::{GcArgs, RunArgs};
use crate::client::{self, read_stdin, Remote};
use crate::exit_codes;
use crate::files::{open_regular, OutputDir};
use crate::limits::{LimitOverrides, Limits};
use crate::report::artifacts::SkippedArtifact;
use crate::report::{describe, Outcome, RunReport, Status};
use crate::runner::job::{InputFile, InputFiles, DEFAULT_ARTIFACT_BYTES};
use crate::runner::{gc, Fleet, Job, ProgramStdin, RunIo};
use crate::runner::{registry, CancelToken};
use crate::source::{describe_io, Program, RejectReason};

pub fn execute(args: RunArgs) -> anyhow::Result<u8> {
    let limits = Limits::default().with(&args.limits.overrides());
    if let Some(url) = &args.server.server {
        return execute_remote(&args, url, limits);
    }
    let engines = match args.engines.engines() {
        Ok(engines) => engines,
        Err(error) => {
            eprintln!("safe-exec: {error}");
            return Ok(exit_codes::USAGE);
        }
    };
    let artifact_dir = match claim_artifact_dir(&args) {
        Ok(dir) => dir,
        Err(code) => return Ok(code),
    };
    let fleet = Fleet::on(&engines, args.image.image.clone(), 1);
    let mut outcome = match prepare(&args, limits) {
        Ok(job) => {
            let token = CancelToken::new();
            stop_runs_on_signals(&token).context("cannot install signal handlers")?;
            let sweeper = sweep_stale_in_background(&fleet);
            let mut io = if args.json {
                RunIo::capture()
            } else {
                RunIo::passthrough()
            };
            if args.json || artifact_dir.is_some() {
                io.artifact_bytes = DEFAULT_ARTIFACT_BYTES;
            }
            let outcome = fleet.run(job, io, &token).outcome;
            drop(sweeper);
            outcome
        }
        Err(reason) => Outcome::not_run(Status::Rejected, reason.to_string(), limits),
    };
    if let Some(dir) = &artifact_dir {
        keep_artifacts(dir, &mut outcome, args.json);
    }
    let exit_code = outcome.exit_code();
    report(outcome, args.json, args.artifact_content)?;
    Ok(exit_code)
}

/// `run --server URL`: the same checks of the input as a local run, then the program goes to
/// the server, and its answer is reported exactly as a local run's outcome would be.
fn execute_remote(args: &RunArgs, url: &str, limits: Limits) -> anyhow::Result<u8> {
    let artifact_dir = match claim_artifact_dir(args) {
        Ok(dir) => dir,
        Err(code) => return Ok(code),
    };
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
            match (
                read_stdin(stdin, client::MAX_SENT_STDIN),
                takes_files(&remote, &job.files),
            ) {
                (Err(message), _) => Outcome::not_run(Status::Rejected, message, limits),
                (_, Err(message)) => Outcome::not_run(Status::SandboxError, message, limits),
                (Ok(stdin), Ok(())) => {
                    let request = client::Request {
                        program: &job.program,
                        stdin: &stdin,
                        limits: asked,
                        files: &job.files,
                        artifact_content: artifact_dir.is_some() || args.artifact_content,
                    };
                    remote.run(&request, limits, &token)
                }
            }
        }
        Err(reason) => Outcome::not_run(Status::Rejected, reason.to_string(), limits),
    };
    let mut outcome = outcome;
    if let Some(dir) = &artifact_dir {
        keep_artifacts(dir, &mut outcome, args.json);
    }
    if !args.json {
        // What a local run streams as it comes, all at once (stdout first).
        let _ = std::io::stdout()
            .lock()
            .write_all(&outcome.stdout.bytes)
            .and_then(|()| std::io::stdout().lock().flush());
        let _ = std::io::stderr().lock().write_all(&outcome.stderr.bytes);
    }
    let exit_code = outcome.exit_code();
    report(outcome, args.json, args.artifact_content)?;
    Ok(exit_code)
}

/// Does the server take the job's files? A server older than files over HTTP would ignore them
/// (unknown fields are ignored), so it is asked first, and only when there are files.
fn takes_files(remote: &Remote, files: &[InputFile]) -> Result<(), String> {
    if files.is_empty() {
        return Ok(());
    }
    let health = remote.health().map_err(|error| error.to_string())?;
    match health.files {
        Some(_) => Ok(()),
        None => Err(format!(
            "the server at {} takes no files (it is older than files over HTTP): upgrade it, or run without --server",
            remote.url()
        )),
    }
}

/// The `--artifacts` directory, created before anything runs (a run whose files could not be
/// kept is refused up front), or the exit code after saying why not.
fn claim_artifact_dir(args: &RunArgs) -> Result<Option<OutputDir>, u8> {
    let Some(dir) = &args.artifacts else {
        return Ok(None);
    };
    OutputDir::create(dir).map(Some).map_err(|error| {
        eprintln!(
            "safe-exec: --artifacts {}: {}: give a directory safe-exec can create files in (not a link)",
            crate::sanitize::path(dir),
            crate::sanitize::text(&error.to_string())
        );
        exit_codes::CANNOT_CREATE
    })
}

/// Write the run's artifacts into `dir`. A file that cannot be written there (a link in the way)
/// is listed as skipped, with why, and said on stderr in text mode; the run's status stays the
/// program's.
fn keep_artifacts(dir: &OutputDir, outcome: &mut Outcome, json: bool) {
    let mut written = 0;
    let mut skipped = Vec::new();
    for artifact in &outcome.artifacts.files {
        match dir.write(&artifact.name, &artifact.bytes) {
            Ok(()) => written += 1,
            Err(error) => skipped.push(SkippedArtifact {
                name: artifact.name.clone(),
                reason: format!(
                    "not written to {}: {}",
                    crate::sanitize::path(&dir.path(&artifact.name)),
                    crate::sanitize::text(&error.to_string())
                ),
            }),
        }
    }
    outcome
        .artifacts
        .files
        .retain(|artifact| !skipped.iter().any(|skip| skip.name == artifact.name));
    if !json {
        let artifacts = &outcome.artifacts;
        for skip in artifacts.skipped.iter().chain(&skipped) {
            eprintln!(
                "safe-exec: artifact {}: {}",
                crate::sanitize::text(&skip.name),
                skip.reason
            );
        }
        if written > 0 || artifacts.truncated {
            eprintln!(
                "safe-exec: {written} artifact(s) written to {}{}",
                crate::sanitize::path(&dir.path("")),
                if artifacts.truncated {
                    " (cut short: more than the artifact cap)"
                } else {
                    ""
                }
            );
        }
    }
    outcome.artifacts.skipped.extend(skipped);
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
    let files = read_input_files(&args.files, program.filename())?;
    Ok(Job {
        program,
        files,
        stdin,
        limits,
    })
}

/// The `--file` inputs: regular files only (never through a link, never a directory, FIFO or
/// device), each under its own base name, checked by [`InputFiles`] (`run`'s caps and names).
fn read_input_files(paths: &[PathBuf], program: &str) -> Result<Vec<InputFile>, RejectReason> {
    let mut files =
        InputFiles::new(program, paths.len()).map_err(|error| RejectReason::Unreadable {
            path: "--file".to_owned(),
            message: error.to_string(),
        })?;
    for path in paths {
        let refuse = |message: String| RejectReason::Unreadable {
            path: format!("--file {}", crate::sanitize::path(path)),
            message,
        };
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .ok_or_else(|| refuse("it has no usable file name".to_owned()))?;
        let (mut file, _) = open_regular(path).map_err(|error| refuse(error.to_string()))?;
        let mut bytes = Vec::new();
        std::io::Read::by_ref(&mut file)
            .take(files.room() + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| refuse(describe_io(&error)))?;
        files
            .add(name, bytes)
            .map_err(|error| refuse(error.to_string()))?;
    }
    Ok(files.into_files())
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
pub(crate) fn stop_runs_on_signals(token: &CancelToken) -> std::io::Result<()> {
    let token = token.clone();
    crate::signals::on_stop_signals(
        move |signal| token.cancel_by_signal(signal),
        move |signal| {
            registry::remove_all_detached();
            std::process::exit(i32::from(exit_codes::for_signal(signal)));
        },
    )
}

/// How long the closing `safe-exec:` line may wait for a stalled reader of our stderr.
const FINAL_LINE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Print the outcome: one JSON document on stdout, or one `safe-exec:` line on stderr.
fn report(outcome: Outcome, json: bool, artifact_content: bool) -> anyhow::Result<()> {
    if json {
        let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
        let document = RunReport::with_artifact_content(outcome, artifact_content);
        let written = serde_json::to_writer_pretty(&mut stdout, &document)
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
fn sweep_stale_in_background(fleet: &Fleet) -> Option<std::thread::JoinHandle<()>> {
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
    let fleet = fleet.clone();
    Some(std::thread::spawn(move || {
        let _ = fleet.collect_garbage(gc::Scope::Stale);
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
    let engines = match args.engines.engines() {
        Ok(engines) => engines,
        Err(error) => {
            eprintln!("safe-exec: {error}");
            return Ok(exit_codes::USAGE);
        }
    };
    let sandbox = Fleet::on(&engines, None, 1);
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
