//! Running a batch: every (submission, case) pair through [`Fleet::run`], on a fixed pool of
//! worker threads (the fleet's capacity: `--jobs` per engine), with results collected in a deterministic order.
//!
//! The work list is: one compile check per submission, then each submission's cases in run
//! order. Workers take the first item that is ready (a case waits for its submission's compile
//! check) and record its result in the slot for that (submission, case), so the results never
//! depend on which worker finished first. A submission that does not compile gets `CE` on every
//! case without running them; with `--fail-fast` nothing after a submission's first failed case
//! is started, and afterwards every case after the first failure (in run order) is reported as
//! `SKIPPED`, whatever happened to be in flight, so the result is the same for every `--jobs`.
//!
//! Cancellation: the shared [`CancelToken`] (set by SIGINT/SIGTERM/SIGHUP) stops every run in
//! progress (the supervisor kills and removes its container; a server cancels the run whose
//! request we abandon) and no new run starts.
//!
//! Where the programs run is the [`Executor`]'s business: here, or on a running `safe-exec
//! serve` (`grade --server`), which gives the same outcomes.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::compile::{self, CompileCheck};
use super::score::{summarize, SubmissionResult};
use super::suite::Suite;
use super::verdict::{judge, CaseResult, Head, Shown, Verdict};
use crate::client::Remote;
use crate::files::OpenError;
use crate::limits::Limits;
use crate::report::Status;
use crate::runner::fleet::Ran;
use crate::runner::{CancelToken, Fleet, Job, ProgramStdin, RunIo};
use crate::sanitize;
use crate::source::{Program, RejectReason};
use crate::sync::lock;

/// How long a case waits, in all, for a busy server (429, or 503 with a full queue) to take it.
pub const BUSY_PATIENCE: Duration = Duration::from_secs(300);

/// Where a batch's programs run.
#[derive(Debug, Clone, Copy)]
pub enum Executor<'a> {
    /// Here, through the supervisor, on the fleet's engines.
    Local(&'a Fleet),
    /// On a running `safe-exec serve`, with each case's limits asked for.
    Remote {
        remote: &'a Remote,
        /// The server's own limits, when it said (the most a request may ask for).
        server: Option<Limits>,
        /// The most stdin the server takes, when it said.
        max_stdin: Option<u64>,
    },
}

impl Executor<'_> {
    /// Run `job` to its end, capturing its output; and on which engine it ran.
    pub fn run(&self, job: Job, cancel: &CancelToken) -> Ran {
        match self {
            Executor::Local(fleet) => fleet.run(job, RunIo::capture(), cancel),
            Executor::Remote {
                remote, max_stdin, ..
            } => Ran {
                outcome: remote.run_job(job, *max_stdin, cancel, BUSY_PATIENCE),
                // Where it ran, for the report: the server, as its URL is shown (no token).
                engine: Some(remote.url().to_owned()),
            },
        }
    }

    /// `limits` as this executor grants them: a server's at most its own, each.
    pub fn fit(&self, limits: Limits) -> Limits {
        match self {
            Executor::Remote {
                server: Some(server),
                ..
            } => Limits {
                timeout: limits.timeout.min(server.timeout),
                wall_timeout: limits.wall_timeout.min(server.wall_timeout),
                memory_bytes: limits.memory_bytes.min(server.memory_bytes),
                cpus: limits.cpus.min(server.cpus),
                pids: limits.pids.min(server.pids),
                max_code_chars: limits.max_code_chars,
                max_output_bytes: limits.max_output_bytes.min(server.max_output_bytes),
            },
            _ => limits,
        }
    }
}

/// One submission to grade.
#[derive(Debug, Clone)]
pub struct Submission {
    /// As given on the command line.
    pub path: PathBuf,
    /// The validated program, or why it is not acceptable source (graded `CE`).
    pub program: Result<Program, RejectReason>,
}

/// Everything a batch needs besides the sandbox.
#[derive(Debug)]
pub struct Batch<'a> {
    pub suite: &'a Suite,
    pub submissions: Vec<Submission>,
    pub limits: Limits,
    pub jobs: usize,
    pub fail_fast: bool,
}

/// Told about each finished item (for a progress bar). `label` names what just finished.
pub trait Progress: Sync {
    fn started(&self, total: u64);
    fn finished(&self, label: &str);
}

/// No progress display.
pub struct Quiet;

impl Progress for Quiet {
    fn started(&self, _total: u64) {}
    fn finished(&self, _label: &str) {}
}

/// The batch was cancelled; nothing of it is left running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted {
    /// The signal that cancelled it, if one did.
    pub signal: Option<i32>,
    /// Items that had finished.
    pub finished: usize,
    pub total: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Check(usize),
    Case(usize, usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Check {
    Pending,
    Compiles,
    Error(String),
    Broken(String),
}

struct State {
    items: Vec<Item>,
    taken: Vec<bool>,
    /// Items before this index are all taken.
    first_open: usize,
    finished: usize,
    checks: Vec<Check>,
    /// Per submission: the index of its first failed case found so far.
    first_failure: Vec<Option<usize>>,
    results: Vec<Vec<Option<CaseResult>>>,
}

/// What a worker does next.
enum Next {
    Run(Item),
    Wait,
    Done,
}

impl Batch<'_> {
    /// Grade every submission; `Err` when cancelled (every container is gone by then).
    pub fn run(
        &self,
        executor: &Executor<'_>,
        cancel: &CancelToken,
        progress: &dyn Progress,
    ) -> Result<Vec<SubmissionResult>, Interrupted> {
        let submissions = self.submissions.len();
        let cases = self.suite.cases.len();
        let mut items: Vec<Item> = (0..submissions).map(Item::Check).collect();
        items.extend(
            (0..submissions).flat_map(|sub| (0..cases).map(move |case| Item::Case(sub, case))),
        );
        let checks = self
            .submissions
            .iter()
            .map(|submission| match &submission.program {
                Ok(_) => Check::Pending,
                Err(reason) => Check::Error(reason.to_string()),
            })
            .collect();
        let total = items.len();
        let state = Mutex::new(State {
            taken: vec![false; total],
            items,
            first_open: 0,
            finished: 0,
            checks,
            first_failure: vec![None; submissions],
            results: vec![vec![None; cases]; submissions],
        });
        let changed = Condvar::new();
        progress.started(total as u64);
        std::thread::scope(|scope| {
            for _ in 0..self.jobs.clamp(1, total.max(1)) {
                scope.spawn(|| self.work(executor, cancel, progress, &state, &changed));
            }
        });
        let state = state
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if cancel.is_cancelled() {
            return Err(Interrupted {
                signal: cancel.signal(),
                finished: state.finished,
                total,
            });
        }
        Ok(self.collect(state))
    }

    fn work(
        &self,
        executor: &Executor<'_>,
        cancel: &CancelToken,
        progress: &dyn Progress,
        state: &Mutex<State>,
        changed: &Condvar,
    ) {
        loop {
            let item = {
                let mut guard = lock(state);
                loop {
                    if cancel.is_cancelled() {
                        changed.notify_all();
                        return;
                    }
                    match self.next(&mut guard, progress) {
                        Next::Run(item) => break item,
                        Next::Done => {
                            changed.notify_all();
                            return;
                        }
                        // A case waits for its compile check; look at the cancel flag now and then.
                        Next::Wait => {
                            guard = changed
                                .wait_timeout(guard, Duration::from_millis(100))
                                .map(|(guard, _)| guard)
                                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
                        }
                    }
                }
            };
            let label = self.label(item);
            match item {
                Item::Check(sub) => {
                    let check = self.compile_check(sub, executor, cancel);
                    let mut guard = lock(state);
                    match check {
                        CompileCheck::Compiles => guard.checks[sub] = Check::Compiles,
                        CompileCheck::Error(error) => guard.checks[sub] = Check::Error(error),
                        CompileCheck::Broken(error) => guard.checks[sub] = Check::Broken(error),
                        CompileCheck::Interrupted => return,
                    }
                    guard.finished += 1;
                }
                Item::Case(sub, case) => {
                    let Some(result) = self.run_case(sub, case, executor, cancel) else {
                        return;
                    };
                    let mut guard = lock(state);
                    record(&mut guard, sub, case, result);
                }
            }
            progress.finished(&label);
            changed.notify_all();
        }
    }

    /// Pick the next item, settling on the way every item that needs no run.
    fn next(&self, state: &mut State, progress: &dyn Progress) -> Next {
        while state.first_open < state.items.len() && state.taken[state.first_open] {
            state.first_open += 1;
        }
        if state.first_open == state.items.len() {
            return Next::Done;
        }
        for index in state.first_open..state.items.len() {
            if state.taken[index] {
                continue;
            }
            let item = state.items[index];
            let settled = match item {
                Item::Check(sub) => {
                    if state.checks[sub] == Check::Pending {
                        state.taken[index] = true;
                        return Next::Run(item);
                    }
                    // Refused before any run (not acceptable source): nothing to check.
                    None
                }
                Item::Case(sub, case) => match &state.checks[sub] {
                    Check::Pending => continue,
                    Check::Error(_) => Some(CaseResult::not_run(
                        Verdict::CE,
                        "not run: the submission does not compile",
                    )),
                    Check::Broken(error) => Some(CaseResult::not_run(
                        Verdict::JE,
                        format!("not run: {error}"),
                    )),
                    Check::Compiles => {
                        if self.fail_fast
                            && state.first_failure[sub].is_some_and(|failed| failed < case)
                        {
                            Some(CaseResult::not_run(
                                Verdict::Skipped,
                                "not run: --fail-fast stopped at an earlier failed case",
                            ))
                        } else {
                            state.taken[index] = true;
                            return Next::Run(item);
                        }
                    }
                },
            };
            state.taken[index] = true;
            match (item, settled) {
                (Item::Case(sub, case), Some(result)) => record(state, sub, case, result),
                _ => state.finished += 1,
            }
            progress.finished(&self.label(item));
        }
        Next::Wait
    }

    /// What an item is, briefly (a progress line is narrow): file name and case.
    fn label(&self, item: Item) -> String {
        let file = |sub: usize| {
            let path = &self.submissions[sub].path;
            path.file_name().map_or_else(
                || path.display().to_string(),
                |name| name.to_string_lossy().into_owned(),
            )
        };
        match item {
            Item::Check(sub) => format!("{} (compile check)", file(sub)),
            Item::Case(sub, case) => format!("{} {}", file(sub), self.suite.cases[case].name),
        }
    }

    fn compile_check(
        &self,
        sub: usize,
        executor: &Executor<'_>,
        cancel: &CancelToken,
    ) -> CompileCheck {
        let Ok(program) = &self.submissions[sub].program else {
            unreachable!("only valid programs are checked");
        };
        let job = Job {
            files: Vec::new(),
            program: compile::checker(program.filename()),
            stdin: ProgramStdin::Bytes(program.source().as_bytes().to_vec()),
            limits: executor.fit(compile::checker_limits(&self.limits)),
        };
        compile::interpret(&executor.run(job, cancel).outcome)
    }

    /// Run one case; `None` when the batch is being cancelled.
    fn run_case(
        &self,
        sub: usize,
        case: usize,
        executor: &Executor<'_>,
        cancel: &CancelToken,
    ) -> Option<CaseResult> {
        let Ok(program) = &self.submissions[sub].program else {
            unreachable!("only valid programs run");
        };
        let spec = &self.suite.cases[case];
        if let Some(clash) = self
            .suite
            .input_files
            .iter()
            .find(|file| file.name() == program.filename())
        {
            return Some(CaseResult::not_run(
                Verdict::JE,
                format!(
                    "judge error: the suite's files/ has a file called `{}`, like the submission: rename one of them",
                    sanitize::text(clash.name())
                ),
            ));
        }
        let input = match self.suite.open(&spec.input) {
            Ok(file) => file,
            Err(error) => {
                return Some(CaseResult::not_run(
                    Verdict::JE,
                    format!(
                        "judge error: cannot open {}: {error}",
                        sanitize::path(&self.suite.path(&spec.input)),
                    ),
                ))
            }
        };
        let job = Job {
            files: self.suite.input_files.clone(),
            program: program.clone(),
            stdin: ProgramStdin::File(input),
            limits: self.limits,
        };
        let ran = executor.run(job, cancel);
        let outcome = ran.outcome;
        if outcome.status == Status::Interrupted {
            return None;
        }
        // The answer is streamed through the comparison and the feedback files are read only as
        // far as feedback shows them: neither is bounded by anything but the suite's author.
        let mut answer = self
            .suite
            .open(&spec.answer)
            .map(|file| BufReader::with_capacity(ANSWER_BUFFER_BYTES, file))
            .map_err(|error| {
                format!(
                    "{}: {error}",
                    sanitize::path(&self.suite.path(&spec.answer))
                )
            });
        let shown = spec.full_feedback.then(|| Shown {
            input: head(self.suite.open(&spec.input)),
            answer: head(self.suite.open(&spec.answer)),
        });
        let mut result = judge(
            spec,
            &outcome,
            answer
                .as_mut()
                .map(|reader| reader as &mut dyn BufRead)
                .map_err(|error| error.clone()),
            shown.as_ref(),
        );
        result.engine = ran.engine;
        Some(result)
    }

    fn collect(&self, mut state: State) -> Vec<SubmissionResult> {
        let mut results = Vec::with_capacity(self.submissions.len());
        for (sub, submission) in self.submissions.iter().enumerate() {
            let first_failure = state.first_failure[sub];
            let cases: Vec<CaseResult> = std::mem::take(&mut state.results[sub])
                .into_iter()
                .enumerate()
                .map(|(case, result)| {
                    let result =
                        result.expect("every case has a result when the batch was not cancelled");
                    match first_failure {
                        Some(failed) if self.fail_fast && case > failed => CaseResult::not_run(
                            Verdict::Skipped,
                            "not run: --fail-fast stopped at an earlier failed case",
                        ),
                        _ => result,
                    }
                })
                .collect();
            let compile_error = match &state.checks[sub] {
                Check::Error(error) => Some(error.clone()),
                _ => None,
            };
            results.push(summarize(
                self.suite,
                submission.path.clone(),
                cases,
                compile_error,
            ));
        }
        results
    }
}

/// Read buffer for answer files (the comparison reads them once, front to back).
const ANSWER_BUFFER_BYTES: usize = 64 * 1024;

/// The first [`Head::BYTES`] of a suite file and its length; empty when it cannot be read (the
/// comparison reports an unreadable answer; an unreadable input never ran).
fn head(opened: Result<File, OpenError>) -> Head {
    let read = || -> std::io::Result<Head> {
        let file = opened.map_err(std::io::Error::other)?;
        let len = file.metadata()?.len();
        let mut bytes = Vec::with_capacity(Head::BYTES);
        file.take(Head::BYTES as u64).read_to_end(&mut bytes)?;
        Ok(Head {
            len: len.max(bytes.len() as u64),
            bytes,
        })
    };
    read().unwrap_or_default()
}

fn record(state: &mut State, sub: usize, case: usize, result: CaseResult) {
    if result.verdict != Verdict::AC && result.verdict != Verdict::Skipped {
        let first = state.first_failure[sub].map_or(case, |failed| failed.min(case));
        state.first_failure[sub] = Some(first);
    }
    state.results[sub][case] = Some(result);
    state.finished += 1;
}
