//! `safe-exec grade SUITE SUBMISSION...`: grade Python submissions against a Kattis-format test
//! suite, every case in its own fresh sandbox, and report for people, CI and course tools.
//!
//! Rooms:
//!
//! - [`crate::files`]: submissions and suite files are opened only as regular files, never through a
//!   link;
//! - [`suite`]: parse and validate the suite (Kattis package or bare directory);
//! - [`compare`]: the Kattis default output validator, reading numbers as [`number`] says;
//! - [`compile`]: the in-sandbox compile check run once per submission;
//! - [`verdict`]: outcome + comparison → verdict, with redaction of secret cases;
//! - [`score`]: group and submission scores;
//! - [`batch`]: the worker pool that runs everything through [`Sandbox::run`];
//! - [`report`]: table, JSON, JUnit, Gradescope, GitHub step summary;
//! - [`destination`]: the report files, claimed up front and written at the end (replaced whole
//!   where possible).
//!
//! Order of business: the signal handlers are installed (so that an interrupt from here on drops
//! the claims below and exits 128+N), paths are checked and every submission is opened, as a
//! regular file only (exit [`exit_codes::MISSING_PATH`]: a symbolic link, FIFO, device or
//! directory is refused, and so, once the suite is read, is a submission that is one of the
//! suite's own files, such as a hard link to an answer), every
//! report destination is claimed (exit [`exit_codes::CANNOT_CREATE`]), the suite is validated (exit
//! [`exit_codes::MALFORMED_SUITE`]), the engine is asked whether it is ready (exit
//! [`exit_codes::SANDBOX_ERROR`]); only then does anything run. With `--server URL` the server's
//! `/healthz` is asked instead of the engine, and the case limits must be within the server's own
//! (exit [`exit_codes::SANDBOX_ERROR`], naming the flag to raise); every case then runs there
//! with the case limits asked for, so verdicts are those of a local grade. Exit codes afterwards:
//! [`exit_codes::CANNOT_CREATE`] when a report could not be written (every other report is
//! written regardless; this wins over the rest, even `--exit-zero`: a CI job must not pass
//! without its report), else [`exit_codes::SANDBOX_ERROR`] when a case ended in a judge error
//! (even with `--exit-zero`: the grades are not trustworthy), else 0 when every submission is
//! accepted (or with `--exit-zero`) and [`exit_codes::GRADE_NOT_ACCEPTED`] when one is not; 130
//! (128+N) when interrupted, in which case no report is written and no container is left.
//!
//! Everything printed that came from outside (paths, names, engine messages) goes through
//! [`crate::sanitize`].

pub mod batch;
pub mod compare;
pub mod compile;
pub mod destination;
pub mod number;
pub mod report;
pub mod score;
pub mod suite;
pub mod verdict;

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use thiserror::Error;

use crate::cli::GradeArgs;
use crate::client::{ClientError, Remote};
use crate::exit_codes;
use crate::files::{self, FileId, FileKind, OpenError};
use crate::limits::{human_bytes, human_secs, LimitOverrides, Limits};
use crate::runner::{CancelToken, EngineError, Engines, Fleet};
use crate::sanitize;
use crate::source::{describe_io, Program, RejectReason};
use batch::{Batch, Executor, Progress, Submission};
use destination::{Destination, DestinationError};
use score::SubmissionResult;
use suite::{Suite, SuiteError};
use verdict::Verdict;

/// What `grade` was asked to do, in domain terms (no clap types past this point).
#[derive(Debug, Clone)]
pub struct GradeOptions {
    pub suite: PathBuf,
    pub submissions: Vec<PathBuf>,
    pub jobs: usize,
    pub json: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    pub gradescope: Option<PathBuf>,
    pub fail_fast: bool,
    pub exit_zero: bool,
    pub limits: LimitOverrides,
    pub image: Option<String>,
    pub pool: crate::runner::pool::PoolConfig,
    /// `--pool` as given: with several engines each gets its own capacity when it is not.
    pub pool_given: Option<usize>,
    pub engines: Engines,
    /// `--server URL` and `--server-ca PEM`: grade through a running `safe-exec serve`.
    pub server: Option<(String, Option<PathBuf>)>,
}

impl GradeOptions {
    pub fn from_args(args: GradeArgs) -> Result<GradeOptions, GradeError> {
        let engines = args.engines.engines()?;
        Ok(GradeOptions {
            engines,
            pool_given: args.pool.pool.map(|size| size as usize),
            limits: args.limits.overrides(),
            image: args.image.image,
            suite: args.suite,
            submissions: args.submissions,
            jobs: args.jobs.map_or_else(default_jobs, |jobs| jobs as usize),
            pool: args
                .pool
                .config(args.jobs.map_or_else(default_jobs, |jobs| jobs as usize)),
            json: args.json,
            junit: args.junit,
            gradescope: args.gradescope,
            fail_fast: args.fail_fast,
            exit_zero: args.exit_zero,
            server: args.server.server.map(|url| (url, args.server.server_ca)),
        })
    }
}

/// The number of CPUs, the default for `--jobs`.
pub fn default_jobs() -> usize {
    crate::sync::available_cpus()
}

/// Why grading did not start (or its reports could not be written). Each maps to an exit code.
#[derive(Debug, Error)]
pub enum GradeError {
    #[error("--gradescope writes the result of one submission, but {0} were given: grade them one at a time")]
    GradescopeNeedsOne(usize),
    #[error("submission {}: {}", sanitize::path(.path), sanitize::text(.message))]
    Submission { path: PathBuf, message: String },
    /// Report destinations that cannot be written, all of them.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Reports(Vec<DestinationError>),
    #[error("{first} and {second} both write {}: give each report its own file", sanitize::path(.path))]
    SameReport {
        first: &'static str,
        second: &'static str,
        path: PathBuf,
    },
    #[error("{flag} {}: refusing to overwrite Python source with a report (did {flag} take a submission as its path?)", sanitize::path(.path))]
    ReportOverSource { flag: &'static str, path: PathBuf },
    #[error(transparent)]
    Suite(#[from] SuiteError),
    #[error("{0}")]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Engines(#[from] crate::runner::engine::EngineSpecError),
    /// A `--server` URL or CA that cannot work.
    #[error("{0}")]
    ServerSetup(ClientError),
    #[error("{0}")]
    Server(ClientError),
    #[error(
        "the server at {url} cannot run programs now ({why}): check it with `curl {url}/healthz`"
    )]
    ServerNotReady { url: String, why: String },
    #[error(
        "the cases need {what} {needed}, but the server at {url} allows at most {allowed}: start it \
         with a larger {flag}, or grade without --server"
    )]
    ServerLimit {
        url: String,
        what: &'static str,
        flag: &'static str,
        needed: String,
        allowed: String,
    },
    #[error(
        "the suite has files/ to place beside every submission, and the server at {url} takes \
         no files (it is older than files over HTTP): upgrade it, or grade this suite without \
         --server"
    )]
    ServerNoFiles { url: String },
}

impl GradeError {
    pub fn exit_code(&self) -> u8 {
        match self {
            GradeError::GradescopeNeedsOne(_)
            | GradeError::Engines(_)
            | GradeError::SameReport { .. }
            | GradeError::ReportOverSource { .. } => exit_codes::USAGE,
            GradeError::Submission { .. } => exit_codes::MISSING_PATH,
            GradeError::Reports(_) => exit_codes::CANNOT_CREATE,
            GradeError::Suite(error) => error.exit_code(),
            GradeError::Engine(_)
            | GradeError::Server(_)
            | GradeError::ServerNotReady { .. }
            | GradeError::ServerLimit { .. } => exit_codes::SANDBOX_ERROR,
            GradeError::ServerSetup(_) | GradeError::ServerNoFiles { .. } => exit_codes::USAGE,
        }
    }
}

pub fn execute(args: GradeArgs) -> anyhow::Result<u8> {
    match GradeOptions::from_args(args).and_then(|options| grade(&options)) {
        Ok(code) => Ok(code),
        Err(error) => {
            // One line per problem (several reports can be unwritable at once). Each part of a
            // message was shown safely already; engine messages are made safe here too.
            for line in error.to_string().lines() {
                eprintln!("safe-exec: {}", sanitize::text(line));
            }
            Ok(error.exit_code())
        }
    }
}

/// Everything checked before any container exists.
struct Prepared {
    suite: Suite,
    submissions: Vec<Submission>,
    limits: Limits,
    reports: Reports,
}

/// The claimed report destinations.
#[derive(Debug, Default)]
struct Reports {
    json: Option<Destination>,
    junit: Option<Destination>,
    gradescope: Option<Destination>,
}

fn prepare(options: &GradeOptions) -> Result<Prepared, GradeError> {
    if options.gradescope.is_some() && options.submissions.len() != 1 {
        return Err(GradeError::GradescopeNeedsOne(options.submissions.len()));
    }
    // Paths first: a typo in a path is reported as such before the suite's contents are judged.
    if !options.suite.exists() {
        return Err(SuiteError::NotFound {
            path: options.suite.clone(),
        }
        .into());
    }
    let opened: Vec<(File, FileId)> = options
        .submissions
        .iter()
        .map(|path| open_submission(path))
        .collect::<Result<_, _>>()?;
    let reports = claim_reports(options)?;
    let suite = Suite::load(&options.suite)?;
    let limits = case_limits(&suite.limits, &options.limits);
    let submissions = options
        .submissions
        .iter()
        .zip(opened)
        .map(|(path, (file, id))| {
            let problem = |message: String| GradeError::Submission {
                path: path.clone(),
                message,
            };
            // A hard link to an answer (or the suite's path spelled differently) is a regular
            // file, but compiling it would quote the answer in every report.
            if let Some(suite_file) = suite.file_with_id(id) {
                return Err(problem(format!(
                    "it is a file of the suite ({}), not a submission: pass the student's own file",
                    suite_file.display()
                )));
            }
            let shown = sanitize::path(path);
            let program = match Program::from_reader(file, limits.max_code_chars, &shown) {
                Err(RejectReason::Unreadable { message, .. }) => return Err(problem(message)),
                program => program.map(|program| {
                    let name = path.file_name().and_then(|name| name.to_str());
                    program.named(name.unwrap_or(""))
                }),
            };
            Ok(Submission {
                path: path.clone(),
                program,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Prepared {
        suite,
        submissions,
        limits,
        reports,
    })
}

/// Claim every report destination, before anything runs: all of them, so that every unusable one
/// is reported at once.
fn claim_reports(options: &GradeOptions) -> Result<Reports, GradeError> {
    let requested = [
        ("--json", &options.json),
        ("--junit", &options.junit),
        ("--gradescope", &options.gradescope),
    ];
    for (flag, path) in requested {
        if let Some(path) = path {
            // `--junit *.py` makes the first submission the report's path: overwriting a
            // student's file with XML is never what was meant.
            let python = path.extension().is_some_and(|extension| extension == "py");
            if python && path.is_file() {
                return Err(GradeError::ReportOverSource {
                    flag,
                    path: path.clone(),
                });
            }
        }
    }
    let mut claimed = Vec::new();
    let mut errors = Vec::new();
    for (flag, path) in requested {
        match path.as_deref().map(|path| Destination::claim(flag, path)) {
            Some(Ok(destination)) => claimed.push(Some(destination)),
            Some(Err(error)) => {
                errors.push(error);
                claimed.push(None);
            }
            None => claimed.push(None),
        }
    }
    if !errors.is_empty() {
        return Err(GradeError::Reports(errors));
    }
    let replaced: Vec<(&'static str, PathBuf)> = claimed
        .iter()
        .flatten()
        .filter_map(|destination| Some((destination.flag(), destination.replaces()?)))
        .collect();
    for (index, (second, path)) in replaced.iter().enumerate() {
        if let Some((first, _)) = replaced[..index].iter().find(|(_, other)| other == path) {
            return Err(GradeError::SameReport {
                first,
                second,
                path: path.clone(),
            });
        }
    }
    let mut claimed = claimed.into_iter();
    Ok(Reports {
        json: claimed.next().flatten(),
        junit: claimed.next().flatten(),
        gradescope: claimed.next().flatten(),
    })
}

/// The limits every case runs with: defaults, then the suite's own, then the command line's. The
/// time limit counts from the program's start (the runner's start marker), so a suite's
/// `time_limit` applies as written: container start-up is not charged to the submission.
pub fn case_limits(suite: &LimitOverrides, command_line: &LimitOverrides) -> Limits {
    Limits::default().with(suite).with(command_line)
}

/// Open a submission to read: a regular file, not through a link in its last component; see
/// [`files::open_regular`].
fn open_submission(path: &Path) -> Result<(File, FileId), GradeError> {
    files::open_regular(path).map_err(|error| GradeError::Submission {
        path: path.to_path_buf(),
        message: match error {
            OpenError::Kind(FileKind::Directory) => {
                "it is a directory: pass the submission's .py file".to_owned()
            }
            OpenError::Kind(FileKind::Symlink) => {
                "it is a symbolic link: a submission is read only as a regular file, never through a link (copy the file instead)".to_owned()
            }
            OpenError::Kind(kind) => format!(
                "it is {}: a submission must be a regular .py file",
                kind.describe()
            ),
            other => other.to_string(),
        },
    })
}

/// How long grading waits at the end for the last containers to be removed.
const REMOVALS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn grade(options: &GradeOptions) -> Result<u8, GradeError> {
    let jobs = options.jobs.max(1);
    let fleet = Fleet::on(&options.engines, options.image.clone(), jobs);
    let remote = match &options.server {
        Some((url, ca)) => Some(Remote::new(url, ca.as_deref()).map_err(GradeError::ServerSetup)?),
        None => None,
    };
    // Before the claims: a Ctrl-C while the suite loads or the engine is asked (seconds) must
    // still drop the claims, so that no temporary report file is left behind.
    let token = CancelToken::new();
    crate::run_command::stop_runs_on_signals(&token).map_err(|error| EngineError::Failed {
        command: "(signal handlers)".to_owned(),
        detail: error.to_string(),
    })?;
    let prepared = prepare(options);
    if let Some(code) = interrupted_before_grading(&token) {
        return Ok(code);
    }
    let Prepared {
        suite,
        submissions,
        limits,
        reports,
    } = prepared?;
    let server = match &remote {
        Some(remote) => {
            let health = remote.health();
            if let Some(code) = interrupted_before_grading(&token) {
                return Ok(code);
            }
            let health = health.map_err(GradeError::Server)?;
            if !suite.input_files.is_empty() && health.files.is_none() {
                return Err(GradeError::ServerNoFiles {
                    url: remote.url().to_owned(),
                });
            }
            Some(server_fits(remote, health, &limits)?)
        }
        None => {
            let ready = fleet.check_ready();
            // The docker client runs in its own process group, so a Ctrl-C does not reach it:
            // the check ends by itself (within its timeout), and whatever it found, the
            // interruption wins.
            if let Some(code) = interrupted_before_grading(&token) {
                return Ok(code);
            }
            // With several engines, those that do not answer are left out (and asked again
            // while the batch runs); the batch is refused only when none answers.
            for (name, error) in ready? {
                eprintln!(
                    "safe-exec: engine {} left out until it answers: {}",
                    sanitize::text(&name),
                    sanitize::text(&error.to_string())
                );
            }
            None
        }
    };
    // Warm containers only once the suite, the submissions and the engine are known to be fine:
    // nothing starts for a batch that is refused. A server has its own.
    let fleet = match &remote {
        Some(_) => fleet,
        None => {
            let fleet = fleet.with_pools(|capacity| crate::runner::pool::PoolConfig {
                size: if options.pool.size == 0 {
                    0
                } else {
                    options.pool_given.unwrap_or(capacity)
                },
                ..options.pool
            });
            // As many as the batch will use: its cases, and one compile check per submission.
            fleet.expect_runs(&[
                (limits, submissions.len() * suite.cases.len()),
                (compile::checker_limits(&limits), submissions.len()),
            ]);
            fleet
        }
    };
    let (executor, workers) = match (&remote, server) {
        (Some(remote), Some((server, max_stdin))) => (
            Executor::Remote {
                remote,
                server,
                max_stdin,
            },
            jobs,
        ),
        _ => (Executor::Local(&fleet), fleet.capacity()),
    };
    let engines = fleet.names();
    eprintln!(
        "safe-exec: grading {} submission(s) on {} case(s) of {} with {workers} job(s){}; per case: {} of CPU time, {} memory",
        submissions.len(),
        suite.cases.len(),
        sanitize::text(&suite.name),
        match &remote {
            Some(remote) => format!(" on the server at {}", remote.url()),
            None if engines.len() > 1 => {
                format!(" on {} engines ({})", engines.len(), sanitize::text(&engines.join(", ")))
            }
            None => String::new(),
        },
        human_secs(limits.timeout),
        human_bytes(limits.memory_bytes)
    );
    let batch = Batch {
        suite: &suite,
        submissions,
        limits,
        jobs: workers,
        fail_fast: options.fail_fast,
    };
    let bar = Bar::new();
    let outcome = batch.run(&executor, &token, &bar);
    bar.0.finish_and_clear();
    fleet.shutdown_pools();
    // Containers of finished cases are removed in the background while later cases run; what is
    // still pending goes now (the reaper has the rest should this time out).
    crate::runner::registry::wait_for_removals(std::time::Instant::now() + REMOVALS_TIMEOUT);
    let results = match outcome {
        Ok(results) => results,
        Err(interrupted) => {
            eprintln!(
                "safe-exec: interrupted after {} of {} runs; every container was removed and no report was written",
                interrupted.finished, interrupted.total
            );
            return Ok(interrupted
                .signal
                .map_or(exit_codes::INTERRUPTED, exit_codes::for_signal));
        }
    };
    let failed = write_reports(reports, &suite, &limits, &results);
    if !failed.is_empty() {
        for error in &failed {
            eprintln!("safe-exec: {error}");
        }
        eprintln!(
            "safe-exec: grading finished (the results are on standard output), but {} report(s) could not be written",
            failed.len()
        );
        return Ok(exit_codes::CANNOT_CREATE);
    }
    Ok(exit_code(&results, options.exit_zero))
}

/// The server's own limits and stdin cap, once it said it is ready and that it allows the case
/// limits; otherwise why not.
fn server_fits(
    remote: &Remote,
    health: crate::client::Health,
    limits: &Limits,
) -> Result<(Option<Limits>, Option<u64>), GradeError> {
    let url = remote.url().to_owned();
    if health.status != "ok" {
        return Err(GradeError::ServerNotReady {
            url,
            why: sanitize::text(&match health.engine {
                Some(engine) => format!("{}: {engine}", health.status),
                None => health.status,
            })
            .into_owned(),
        });
    }
    let Some(server) = health.limits.as_ref().map(|applied| applied.to_limits()) else {
        return Ok((None, health.max_stdin_bytes));
    };
    let over = |what, flag, needed: String, allowed: String| GradeError::ServerLimit {
        url: url.clone(),
        what,
        flag,
        needed,
        allowed,
    };
    if limits.timeout > server.timeout {
        return Err(over(
            "a time limit of",
            "--timeout",
            human_secs(limits.timeout),
            human_secs(server.timeout),
        ));
    }
    if limits.wall_timeout > server.wall_timeout {
        return Err(over(
            "a wall-clock limit of",
            "--wall-timeout",
            human_secs(limits.wall_timeout),
            human_secs(server.wall_timeout),
        ));
    }
    if limits.memory_bytes > server.memory_bytes {
        return Err(over(
            "a memory limit of",
            "--memory",
            human_bytes(limits.memory_bytes),
            human_bytes(server.memory_bytes),
        ));
    }
    if limits.cpus > server.cpus {
        return Err(over(
            "a CPU quota of",
            "--cpus",
            limits.cpus.to_string(),
            server.cpus.to_string(),
        ));
    }
    if limits.pids > server.pids {
        return Err(over(
            "a pids limit of",
            "--pids-limit",
            limits.pids.to_string(),
            server.pids.to_string(),
        ));
    }
    if limits.max_output_bytes > server.max_output_bytes {
        return Err(over(
            "an output cap of",
            "--max-output",
            human_bytes(limits.max_output_bytes),
            human_bytes(server.max_output_bytes),
        ));
    }
    Ok((Some(server), health.max_stdin_bytes))
}

/// The exit code when a signal came before grading started (the claims are dropped on return,
/// removing their temporary files); `None` when none came.
fn interrupted_before_grading(token: &CancelToken) -> Option<u8> {
    if !token.is_cancelled() {
        return None;
    }
    eprintln!(
        "safe-exec: interrupted before grading started; nothing ran and no report was written"
    );
    Some(
        token
            .signal()
            .map_or(exit_codes::INTERRUPTED, exit_codes::for_signal),
    )
}

/// The exit code for a finished batch; see the module docs.
pub fn exit_code(results: &[SubmissionResult], exit_zero: bool) -> u8 {
    let judge_error = results
        .iter()
        .any(|result| result.cases.iter().any(|case| case.verdict == Verdict::JE));
    if judge_error {
        exit_codes::SANDBOX_ERROR
    } else if exit_zero || results.iter().all(SubmissionResult::accepted) {
        exit_codes::SUCCESS
    } else {
        exit_codes::GRADE_NOT_ACCEPTED
    }
}

/// Print the table and write every report; the reports that could not be written. One failure
/// does not stop the others: each is independent, and a CI job may need just one of them.
fn write_reports(
    reports: Reports,
    suite: &Suite,
    limits: &Limits,
    results: &[SubmissionResult],
) -> Vec<DestinationError> {
    let github = std::env::var("GITHUB_ACTIONS").is_ok_and(|value| value == "true");
    let table = report::table::render(suite, results);
    let mut stdout_text = if github {
        match report::github::new_token() {
            Some(token) => report::github::stop_commands(&token, &table),
            None => {
                // Without an unguessable token the table cannot be protected: the reports and
                // the step summary still have everything.
                eprintln!("safe-exec: warning: no random source for the log's stop-commands token; the table is not printed (see the reports and the step summary)");
                String::new()
            }
        }
    } else {
        table
    };
    if github {
        for line in report::github::annotations(results) {
            stdout_text.push_str(&line);
            stdout_text.push('\n');
        }
    }
    print_stdout(&stdout_text);

    let Reports {
        json,
        junit,
        gradescope,
    } = reports;
    let rendered = [
        json.map(|destination| {
            let text = report::json::GradeReport::new(suite, limits, results).to_json();
            (destination, text)
        }),
        junit.map(|destination| (destination, report::junit::render(suite, results))),
        gradescope.map(|destination| (destination, report::gradescope::render(suite, &results[0]))),
    ];
    let failed = write_each(rendered.into_iter().flatten());
    if github {
        if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|path| !path.is_empty())
        {
            let summary = report::github::summary(suite, results);
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut file| file.write_all(summary.as_bytes()));
            if let Err(error) = appended {
                // The grades stand; a summary we could not append is worth a warning, not a failure.
                eprintln!(
                    "safe-exec: warning: cannot append to $GITHUB_STEP_SUMMARY ({}): {}",
                    sanitize::path(Path::new(&path)),
                    describe_io(&error)
                );
            }
        }
    }
    failed
}

/// Write every report, whatever happens to the others; the failures.
fn write_each(reports: impl IntoIterator<Item = (Destination, String)>) -> Vec<DestinationError> {
    reports
        .into_iter()
        .filter_map(|(destination, text)| destination.write(text.as_bytes()).err())
        .collect()
}

/// Print to stdout; a reader that went away (`| head`) is not our failure.
fn print_stdout(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// The live progress bar on stderr (hidden when stderr is not a terminal).
struct Bar(ProgressBar);

impl Bar {
    fn new() -> Bar {
        if !std::io::stderr().is_terminal() {
            return Bar(ProgressBar::hidden());
        }
        let bar = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed}] {bar:30} {pos}/{len} runs  {wide_msg}",
        ) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar(bar)
    }
}

impl Progress for Bar {
    fn started(&self, total: u64) {
        self.0.set_length(total);
    }

    fn finished(&self, label: &str) {
        self.0.set_message(sanitize::text(label).into_owned());
        self.0.inc(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grade::verdict::CaseResult;

    fn result(verdicts: &[Verdict]) -> SubmissionResult {
        SubmissionResult {
            path: "x.py".into(),
            verdict: Verdict::worst(verdicts.iter().copied()),
            score: 0.0,
            max_score: 100.0,
            message: None,
            cases: verdicts
                .iter()
                .map(|&verdict| CaseResult::not_run(verdict, ""))
                .collect(),
            case_scores: vec![0.0; verdicts.len()],
            groups: Vec::new(),
        }
    }

    #[test]
    fn exit_codes_follow_the_docs() {
        use Verdict::*;
        assert_eq!(
            exit_code(&[result(&[AC]), result(&[AC, AC])], false),
            exit_codes::SUCCESS
        );
        assert_eq!(
            exit_code(&[result(&[AC]), result(&[WA])], false),
            exit_codes::GRADE_NOT_ACCEPTED
        );
        assert_eq!(
            exit_code(&[result(&[CE])], false),
            exit_codes::GRADE_NOT_ACCEPTED
        );
        assert_eq!(exit_code(&[result(&[WA])], true), exit_codes::SUCCESS);
        assert_eq!(
            exit_code(&[result(&[AC, JE])], false),
            exit_codes::SANDBOX_ERROR
        );
        assert_eq!(exit_code(&[result(&[JE])], true), exit_codes::SANDBOX_ERROR);
    }

    #[test]
    fn command_line_limits_override_the_suite_s() {
        let suite = LimitOverrides {
            timeout: Some(Duration::from_secs(2)),
            memory_bytes: Some(64 << 20),
            ..LimitOverrides::default()
        };
        let limits = case_limits(&suite, &LimitOverrides::default());
        assert_eq!(limits.timeout, Duration::from_secs(2));
        assert_eq!(limits.memory_bytes, 64 << 20);
        let command_line = LimitOverrides {
            timeout: Some(Duration::from_millis(1500)),
            memory_bytes: Some(256 << 20),
            ..LimitOverrides::default()
        };
        let limits = case_limits(&suite, &command_line);
        assert_eq!(limits.timeout, Duration::from_millis(1500));
        assert_eq!(limits.memory_bytes, 256 << 20);
        let defaults = case_limits(&LimitOverrides::default(), &LimitOverrides::default());
        assert_eq!(defaults, Limits::default());
    }

    #[test]
    fn pre_run_errors_map_to_their_exit_codes() {
        assert_eq!(
            GradeError::GradescopeNeedsOne(2).exit_code(),
            exit_codes::USAGE
        );
        let missing = GradeError::Submission {
            path: "x.py".into(),
            message: "no such file".into(),
        };
        assert_eq!(missing.exit_code(), exit_codes::MISSING_PATH);
        assert_eq!(missing.to_string(), "submission x.py: no such file");
        let malformed = GradeError::Suite(SuiteError::Malformed {
            file: "s/1.in".into(),
            problem: "x".into(),
        });
        assert_eq!(malformed.exit_code(), exit_codes::MALFORMED_SUITE);
        let engine = GradeError::Engine(EngineError::ImageMissing { image: "i".into() });
        assert_eq!(engine.exit_code(), exit_codes::SANDBOX_ERROR);
        let same = GradeError::SameReport {
            first: "--json",
            second: "--junit",
            path: "r".into(),
        };
        assert_eq!(same.exit_code(), exit_codes::USAGE);
        let unwritable = GradeError::Reports(Vec::new());
        assert_eq!(unwritable.exit_code(), exit_codes::CANNOT_CREATE);
    }

    fn options(
        json: Option<&Path>,
        junit: Option<&Path>,
        gradescope: Option<&Path>,
    ) -> GradeOptions {
        GradeOptions {
            suite: "suite".into(),
            submissions: vec!["a.py".into()],
            jobs: 1,
            json: json.map(Path::to_path_buf),
            junit: junit.map(Path::to_path_buf),
            gradescope: gradescope.map(Path::to_path_buf),
            fail_fast: false,
            exit_zero: false,
            limits: LimitOverrides::default(),
            image: None,
            pool: crate::runner::pool::PoolConfig::default(),
            pool_given: None,
            engines: Engines(vec![crate::runner::Engine::default()]),
            server: None,
        }
    }

    #[test]
    fn every_unusable_report_is_named_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.json");
        let missing = dir.path().join("missing/x.xml");
        let error =
            claim_reports(&options(Some(&good), Some(&missing), Some(dir.path()))).unwrap_err();
        let GradeError::Reports(errors) = &error else {
            panic!("{error:?}");
        };
        let flags: Vec<&str> = errors.iter().map(|error| error.flag).collect();
        assert_eq!(flags, ["--junit", "--gradescope"]);
        let lines: Vec<String> = error.to_string().lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains(&missing.display().to_string()));
        // The claim on the good one was dropped: nothing is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn two_reports_in_one_file_or_a_report_over_source_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("report");
        let same = claim_reports(&options(
            Some(&report),
            None,
            Some(&dir.path().join(".").join("report")),
        ))
        .unwrap_err();
        assert!(
            matches!(
                same,
                GradeError::SameReport {
                    first: "--json",
                    second: "--gradescope",
                    ..
                }
            ),
            "{same:?}"
        );
        let source = dir.path().join("a.py");
        std::fs::write(&source, "print(1)\n").unwrap();
        let over = claim_reports(&options(None, Some(&source), None)).unwrap_err();
        assert!(
            matches!(
                over,
                GradeError::ReportOverSource {
                    flag: "--junit",
                    ..
                }
            ),
            "{over:?}"
        );
        assert_eq!(std::fs::read_to_string(&source).unwrap(), "print(1)\n");
        let fine = claim_reports(&options(
            Some(&report),
            Some(&dir.path().join("r.xml")),
            None,
        ))
        .unwrap();
        assert!(fine.json.is_some() && fine.junit.is_some() && fine.gradescope.is_none());
    }

    #[test]
    fn a_report_that_fails_does_not_stop_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let after = dir.path().join("after.xml");
        let failed = write_each([
            (
                Destination::claim("--json", Path::new("/dev/full")).unwrap(),
                "{}".to_owned(),
            ),
            (
                Destination::claim("--junit", &after).unwrap(),
                "<testsuites/>".to_owned(),
            ),
        ]);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].flag, "--json");
        assert_eq!(std::fs::read_to_string(&after).unwrap(), "<testsuites/>");
    }
}
