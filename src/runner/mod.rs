//! The supervisor: the one path by which a program runs.
//!
//! [`Sandbox::run`] creates a named, labelled container (`docker create`), starts it attached
//! (`docker start -ai`), feeds the program and its stdin on one thread, drains stdout and stderr
//! on one thread each in fixed-size chunks up to the cap, and watches three things: the client
//! exiting, our own deadline, the output cap and cancellation. Whatever happens, the container is
//! killed and removed (`docker rm --force`), with [`guard::ContainerGuard`] as the last line of
//! defence. The status comes from our deadline, our cap and `docker inspect` — never from what the
//! program printed.
//!
//! This module does not print; callers choose where output goes through [`RunIo`].

pub mod cancel;
pub mod docker_cli;
pub mod gc;
pub mod guard;
pub mod reaper;
mod trailer;

use std::fs::File;
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

pub use cancel::CancelToken;
pub use docker_cli::{DockerCli, EngineError};

use crate::limits::Limits;
use crate::report::{status_message, Captured, Outcome, Status, Stream};
use crate::sandbox::docker::{CreateArgs, EXPIRY_MARGIN, WATCHDOG_GRACE};
use crate::sandbox::{
    protocol_header, ContainerSpec, CODE_WAIT_SECS, DEFAULT_IMAGE, STARTED_MARKER,
};
use crate::source::Program;
use guard::ContainerGuard;
use trailer::{LauncherReport, ProgramEnd, TrailerScanner};

/// Environment variable: a value for the session label on every container, so a test or CI job
/// can find exactly its own containers.
pub const SESSION_ENV: &str = "SAFE_EXEC_LABEL";

const CREATE_TIMEOUT: Duration = Duration::from_secs(30);
const INSPECT_TIMEOUT: Duration = Duration::from_secs(10);
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the container may take to start the program (the launcher's marker) before the run
/// is a sandbox error: the engine is overloaded or broken, the program is not at fault.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// After we kill a container, how long its attached client may take to notice.
const CLIENT_EXIT_GRACE: Duration = Duration::from_secs(3);
/// After a run we stopped (time or output limit, cancellation), how long a stalled reader of our
/// own output (`| sleep 10`) may hold up our exit; the container is already gone by then. A
/// program that ended by itself gets its output delivered however long the reader takes, as
/// `python3 script.py | reader` would.
const STALLED_READER_GRACE: Duration = Duration::from_secs(2);

/// How many more times, and how far apart, a SIGKILLed container's state is read for a late OOM
/// record (see `classify_exit`).
const OOM_RECHECKS: u32 = 5;
const OOM_RECHECK_PAUSE: Duration = Duration::from_millis(100);
/// How often the supervisor looks at the client, the clock and the cancel flag.
const POLL: Duration = Duration::from_millis(5);
/// Output is read in chunks of this size, never line by line.
const CHUNK: usize = 8 * 1024;

/// What the program reads on its standard input.
#[derive(Debug)]
pub enum ProgramStdin {
    /// Nothing: the first read gets end-of-file.
    Empty,
    /// These bytes, then end-of-file.
    Bytes(Vec<u8>),
    /// The contents of an open file, then end-of-file.
    File(File),
    /// safe-exec's own standard input, as `python3 script.py` would read it.
    Inherit,
}

/// One program to run, with its input and limits. Built only from validated parts.
#[derive(Debug)]
pub struct Job {
    pub program: Program,
    pub stdin: ProgramStdin,
    pub limits: Limits,
}

/// Where the program's output goes while it runs.
pub struct RunIo {
    /// Written to as stdout arrives (text mode streams to our own stdout).
    pub stdout: Option<Box<dyn Write + Send>>,
    /// Written to as stderr arrives.
    pub stderr: Option<Box<dyn Write + Send>>,
    /// Keep the bytes (up to the cap) in the [`Outcome`]; without it only counts are kept.
    pub keep: bool,
}

impl RunIo {
    /// Keep everything in memory (up to the cap): for `--json`, grading and HTTP.
    pub fn capture() -> RunIo {
        RunIo {
            stdout: None,
            stderr: None,
            keep: true,
        }
    }

    /// Stream to our own stdout and stderr as the bytes arrive, keeping nothing.
    pub fn passthrough() -> RunIo {
        RunIo {
            stdout: Some(Box::new(std::io::stdout())),
            stderr: Some(Box::new(std::io::stderr())),
            keep: false,
        }
    }
}

/// The engine, image and labels runs use. Cheap to clone; share one across threads.
#[derive(Debug, Clone)]
pub struct Sandbox {
    docker: DockerCli,
    image: String,
    session: Option<String>,
}

impl Sandbox {
    /// A sandbox on `image` (default [`DEFAULT_IMAGE`]), with the docker client from
    /// `SAFE_EXEC_DOCKER` and the session label from `SAFE_EXEC_LABEL`.
    pub fn new(image: Option<String>) -> Sandbox {
        Sandbox {
            docker: DockerCli::from_env(),
            image: image.unwrap_or_else(|| DEFAULT_IMAGE.to_owned()),
            session: std::env::var(SESSION_ENV)
                .ok()
                .filter(|value| is_label_value(value)),
        }
    }

    pub fn image(&self) -> &str {
        &self.image
    }

    pub fn docker(&self) -> &DockerCli {
        &self.docker
    }

    /// Remove our containers in `scope` (only this session's, when `SAFE_EXEC_LABEL` is set).
    pub fn collect_garbage(&self, scope: gc::Scope) -> Result<Vec<String>, EngineError> {
        gc::collect(&self.docker, self.session.as_deref(), scope)
    }

    /// Is the engine reachable and the image present? One quick call, for health checks and for
    /// refusing a batch before it starts.
    pub fn check_ready(&self) -> Result<(), EngineError> {
        let args = [
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            self.image.as_str(),
        ]
        .map(String::from);
        self.docker
            .call(&args, READY_TIMEOUT, Some(&self.image))
            .map(|_| ())
    }

    /// Run `job` to its end and say what happened. Never panics on engine trouble: that is a
    /// `sandbox_error` outcome. Returns `interrupted` as soon as `cancel` is set.
    pub fn run(&self, job: Job, io: RunIo, cancel: &CancelToken) -> Outcome {
        let limits = job.limits;
        if cancel.is_cancelled() {
            return interrupted_before_start(cancel, limits);
        }
        let spec = ContainerSpec {
            name: unique_name(),
            image: self.image.clone(),
            expires_at: gc::unix_now()
                + CODE_WAIT_SECS
                + (limits.timeout + WATCHDOG_GRACE + EXPIRY_MARGIN).as_secs(),
            session: self.session.clone(),
        };
        let mut container = ContainerGuard::new(self.docker.clone(), spec.name.clone());
        let create = CreateArgs::build(&spec, &limits);
        match self
            .docker
            .call_cancellable(&create.0, CREATE_TIMEOUT, Some(&self.image), cancel)
        {
            Ok(_) => {}
            Err(error) => {
                if matches!(
                    error,
                    EngineError::Timeout { .. } | EngineError::Cancelled { .. }
                ) {
                    container.abandon_uncertain();
                } else {
                    container.disarm();
                }
                return match error {
                    EngineError::Cancelled { .. } => interrupted_before_start(cancel, limits),
                    EngineError::LimitRefused { .. } => {
                        Outcome::not_run(Status::Rejected, error.to_string(), limits)
                    }
                    error => sandbox_error(error, limits),
                };
            }
        }
        if cancel.is_cancelled() {
            drop(container);
            return interrupted_before_start(cancel, limits);
        }
        let mut outcome = self.supervise(&mut container, job, io, cancel);
        if let Err(error) = container.remove() {
            if outcome.status != Status::SandboxError {
                outcome.status = Status::SandboxError;
                outcome.error = Some(format!(
                    "the run ended but its container could not be removed: {error}"
                ));
            }
        }
        if outcome.error.is_none() {
            outcome.error = status_message(&outcome);
        }
        outcome
    }

    fn supervise(
        &self,
        container: &mut ContainerGuard,
        job: Job,
        io: RunIo,
        cancel: &CancelToken,
    ) -> Outcome {
        let limits = job.limits;
        let start = ["start", "--attach", "--interactive", container.name()];
        let mut command = self.docker.command(start);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut client = match self.docker.spawn(&mut command) {
            Ok(client) => client,
            Err(error) => return sandbox_error(error, limits),
        };
        let (events, watch) = mpsc::channel();
        let key = trailer::new_key();
        if let Some(stdin) = client.stdin.take() {
            feed(stdin, job.program, job.stdin, key.clone());
        }
        let cap = limits.max_output_bytes;
        let stdout = client.stdout.take().map(|pipe| {
            let sink = Sink::new(Stream::Stdout, cap, io.stdout, io.keep, events.clone());
            drain(pipe, sink, None, None)
        });
        let stderr = client.stderr.take().map(|pipe| {
            let sink = Sink::new(Stream::Stderr, cap, io.stderr, io.keep, events);
            let trailer = TrailerScanner::new(&key);
            drain(pipe, sink, Some(STARTED_MARKER), Some(trailer))
        });

        let (ending, program_started, program_ended) =
            watch_run(&mut client, &watch, started, limits.timeout, cancel);
        let ended = program_ended.unwrap_or_else(Instant::now);
        // `docker start --attach` exits with the container's exit code.
        let client_exit_code = match ending {
            Ending::Exited => client
                .try_wait()
                .ok()
                .flatten()
                .and_then(|status| status.code()),
            _ => None,
        };
        if !matches!(ending, Ending::Exited) {
            // Kill first, then collect: the attached client ends once the container is gone.
            let _ = container.remove();
            if docker_cli::wait_until(&mut client, Instant::now() + CLIENT_EXIT_GRACE).is_none() {
                let _ = client.kill();
                let _ = client.wait();
            }
        }
        let reader_grace = match ending {
            Ending::Exited => None,
            _ => Some(STALLED_READER_GRACE),
        };
        let reader_deadline = reader_grace.map(|grace| Instant::now() + grace);
        let (stdout, _) = join_drain(stdout, reader_deadline);
        let (stderr, launcher) = join_drain(stderr, reader_deadline);
        // The start marker may have been read just as the client exited: the drained stream
        // has told the channel by now.
        let program_started = program_started.or_else(|| {
            watch.try_iter().find_map(|event| match event {
                Event::Started(at) => Some(at),
                Event::Ended(_) | Event::OutputLimit(_) => None,
            })
        });
        // The program's own run time; container start-up is not part of it.
        let duration = ended.saturating_duration_since(program_started.unwrap_or(started));
        // A program that passed the cap and exited before the supervisor saw the reader's news
        // still passed the cap.
        let ending = match ending {
            Ending::Exited if stdout.truncated => Ending::OutputLimit(Stream::Stdout),
            Ending::Exited if stderr.truncated => Ending::OutputLimit(Stream::Stderr),
            ending => ending,
        };
        let mut outcome = Outcome {
            status: Status::Ok,
            exit_code: None,
            signal: None,
            stdout,
            stderr,
            duration,
            error: None,
            limits,
            output_limit_stream: None,
            interrupt_signal: None,
        };
        match ending {
            Ending::Timeout => outcome.status = Status::Timeout,
            Ending::ClientStuck => {
                outcome.status = Status::SandboxError;
                outcome.error = Some(format!(
                    "the program ended but the docker client did not exit within {} s; the container was removed: check `docker info`",
                    STARTUP_TIMEOUT.as_secs()
                ));
            }
            Ending::StartupTimeout => {
                outcome.status = Status::SandboxError;
                outcome.error = Some(format!(
                    "the container did not start the program within {} s: the engine may be overloaded or broken; check `docker info`",
                    STARTUP_TIMEOUT.as_secs()
                ));
            }
            Ending::OutputLimit(stream) => {
                outcome.status = Status::OutputLimit;
                outcome.output_limit_stream = Some(stream);
            }
            Ending::Cancelled => {
                outcome.status = Status::Interrupted;
                outcome.interrupt_signal = cancel.signal();
                outcome.error = Some(match cancel.signal() {
                    Some(signal) => format!("interrupted by signal {signal}: the run was stopped and its container removed"),
                    None => "cancelled: the run was stopped and its container removed".to_owned(),
                });
            }
            // The launcher ended without starting the program: an image whose launcher speaks
            // another protocol version, or a broken one. Not the program's doing.
            Ending::Exited if program_started.is_none() && launcher.is_none() => {
                self.classify_exit(container.name(), None, &mut outcome);
                if outcome.status != Status::SandboxError {
                    let said = String::from_utf8_lossy(&outcome.stderr.bytes)
                        .trim()
                        .to_owned();
                    outcome.status = Status::SandboxError;
                    outcome.exit_code = None;
                    outcome.signal = None;
                    outcome.error = Some(format!(
                        "the runner image `{}` did not start the program{}: rebuild it with `scripts/setup.sh`",
                        self.image,
                        if said.is_empty() { String::new() } else { format!(" ({said})") }
                    ));
                }
            }
            // A valid trailer that agrees with the attached client's exit code (which is the
            // container's) says everything: the engine need not be asked.
            Ending::Exited => match launcher
                .filter(|report| client_exit_code == Some(report.container_exit_code()))
            {
                Some(report) => classify_from_launcher(report, &mut outcome),
                None => self.classify_exit(container.name(), launcher, &mut outcome),
            },
        }
        outcome
    }

    /// The container's state as the engine reports it.
    fn inspect(&self, name: &str) -> Result<String, EngineError> {
        let format =
            "{{.State.ExitCode}} {{.State.OOMKilled}} {{.State.StartedAt}} {{.State.Running}}";
        let args = ["inspect", "--type", "container", "--format", format, name].map(String::from);
        self.docker
            .call(&args, INSPECT_TIMEOUT, None)
            .map(|output| output.stdout)
    }

    /// After the container ended by itself: ask the engine how, and take the launcher's word on
    /// how the program ended when its (unforgeable) trailer arrived.
    fn classify_exit(&self, name: &str, launcher: Option<LauncherReport>, outcome: &mut Outcome) {
        let mut state = match self.inspect(name) {
            Ok(state) => state,
            Err(error) => {
                outcome.status = Status::SandboxError;
                outcome.error = Some(error.to_string());
                return;
            }
        };
        // The engine records an OOM kill from an event that can trail the exit event on a busy
        // host: a SIGKILL we did not send gets a few more looks before it is called a crash.
        // The launcher's trailer carries the kernel's own OOM count, so it needs no second look.
        // A trailer that disagrees with the engine's exit code is not the launcher's last word.
        let launcher = launcher.filter(|report| {
            parse_state(&state).is_some_and(|state| state.exit_code == report.container_exit_code())
        });
        let rechecks = if launcher.is_some() { 0 } else { OOM_RECHECKS };
        for _ in 0..rechecks {
            let unexplained_kill = matches!(
                parse_state(&state),
                Some(ContainerState {
                    exit_code: 137,
                    oom_killed: false,
                    ..
                })
            );
            if !unexplained_kill {
                break;
            }
            thread::sleep(OOM_RECHECK_PAUSE);
            match self.inspect(name) {
                Ok(again) => state = again,
                Err(_) => break,
            }
        }
        match parse_state(&state) {
            Some(ContainerState { running: true, .. }) => {
                outcome.status = Status::SandboxError;
                outcome.error = Some("the docker client ended while the program was still running; the container was removed".to_owned());
            }
            Some(ContainerState { started: false, .. }) => {
                outcome.status = Status::SandboxError;
                let detail = String::from_utf8_lossy(&outcome.stderr.bytes)
                    .trim()
                    .to_owned();
                outcome.error = Some(format!(
                    "the container was created but never started{}",
                    if detail.is_empty() {
                        String::new()
                    } else {
                        format!(": {detail}")
                    }
                ));
            }
            Some(ContainerState {
                oom_killed: true, ..
            }) => outcome.status = Status::MemoryLimit,
            Some(_) if launcher.is_some() => {
                if let Some(report) = launcher {
                    classify_from_launcher(report, outcome);
                }
            }
            // Below: no trailer (the launcher itself was killed, or an old image). The exit code
            // is init's, which reports death by signal N as 128+N.
            Some(ContainerState { exit_code: 0, .. }) => {
                outcome.status = Status::Ok;
                outcome.exit_code = Some(0);
            }
            // The in-container watchdog fired: our deadline had passed, whoever noticed first.
            Some(ContainerState { exit_code: 137, .. })
                if outcome.duration >= outcome.limits.timeout =>
            {
                outcome.status = Status::Timeout;
            }
            Some(ContainerState { exit_code, .. }) => {
                outcome.status = Status::RuntimeError;
                if (129..=128 + 64).contains(&exit_code) {
                    outcome.signal = Some(exit_code - 128);
                } else {
                    outcome.exit_code = Some(exit_code);
                }
            }
            None => {
                outcome.status = Status::SandboxError;
                outcome.error = Some(format!(
                    "could not read the container's state from `docker inspect`: {state:?}"
                ));
            }
        }
    }
}

/// The status from the launcher's verified trailer: the kernel's OOM count, its watchdog, and the
/// program's own ending.
fn classify_from_launcher(report: LauncherReport, outcome: &mut Outcome) {
    if report.oom_kills > 0 {
        outcome.status = Status::MemoryLimit;
        return;
    }
    match report.ending {
        ProgramEnd::Exited(0) => {
            outcome.status = Status::Ok;
            outcome.exit_code = Some(0);
        }
        // The launcher's watchdog (our deadline, enforced inside, whatever our clock says) or
        // the kernel's CPU limit after the deadline.
        _ if report.timed_out() => outcome.status = Status::Timeout,
        ProgramEnd::Signalled(SIGKILL) if outcome.duration >= outcome.limits.timeout => {
            outcome.status = Status::Timeout;
        }
        ProgramEnd::Exited(code) => {
            outcome.status = Status::RuntimeError;
            outcome.exit_code = Some(code);
        }
        ProgramEnd::Signalled(signal) => {
            outcome.status = Status::RuntimeError;
            outcome.signal = Some(signal);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ContainerState {
    exit_code: i32,
    oom_killed: bool,
    started: bool,
    running: bool,
}

/// `"137 true 2026-11-22T05:00:00.1Z false"` → state. Docker's zero time means never started.
fn parse_state(text: &str) -> Option<ContainerState> {
    let mut fields = text.split_whitespace();
    let exit_code = fields.next()?.parse().ok()?;
    let oom_killed = fields.next()?.parse().ok()?;
    let started_at = fields.next()?;
    let running = fields.next()?.parse().ok()?;
    Some(ContainerState {
        exit_code,
        oom_killed,
        started: !started_at.starts_with("0001-01-01"),
        running,
    })
}

const SIGKILL: i32 = 9;

/// Why the supervisor stopped watching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Exited,
    Timeout,
    StartupTimeout,
    /// The program ended (its trailer arrived) but the docker client did not exit.
    ClientStuck,
    OutputLimit(Stream),
    Cancelled,
}

enum Event {
    /// The launcher's start marker arrived: the program starts now.
    Started(Instant),
    /// The launcher's trailer arrived: the program has ended, whatever docker does next.
    Ended(Instant),
    OutputLimit(Stream),
}

/// Watch the attached client until it exits or we must stop it. The deadline is the time limit
/// counted from the program's start marker; until that arrives, the container gets
/// [`STARTUP_TIMEOUT`] on top. Once the launcher's trailer says the program ended, the time
/// limit no longer applies (docker's teardown is not the program's time); the client then gets
/// [`STARTUP_TIMEOUT`] to exit. Returns why we stopped, and when the program started and ended.
fn watch_run(
    client: &mut Child,
    events: &Receiver<Event>,
    spawned: Instant,
    timeout: Duration,
    cancel: &CancelToken,
) -> (Ending, Option<Instant>, Option<Instant>) {
    let mut program_started = None;
    let mut program_ended = None;
    let mut deadline = spawned + timeout + STARTUP_TIMEOUT;
    loop {
        match events.recv_timeout(POLL) {
            Ok(Event::Started(at)) => {
                program_started = Some(at);
                deadline = at + timeout;
            }
            Ok(Event::Ended(at)) => {
                program_ended = Some(at);
                deadline = at + STARTUP_TIMEOUT;
            }
            Ok(Event::OutputLimit(stream)) => {
                return (Ending::OutputLimit(stream), program_started, program_ended)
            }
            Err(RecvTimeoutError::Timeout) => {}
            // Both readers are done: the client is about to exit. Keep polling it, gently.
            Err(RecvTimeoutError::Disconnected) => thread::sleep(POLL),
        }
        match client.try_wait() {
            Ok(Some(_)) | Err(_) => return (Ending::Exited, program_started, program_ended),
            Ok(None) => {}
        }
        if Instant::now() >= deadline {
            return (
                match (program_started, program_ended) {
                    (_, Some(_)) => Ending::ClientStuck,
                    (Some(_), None) => Ending::Timeout,
                    (None, None) => Ending::StartupTimeout,
                },
                program_started,
                program_ended,
            );
        }
        if cancel.is_cancelled() {
            return (Ending::Cancelled, program_started, program_ended);
        }
    }
}

/// Write the protocol header, the source, then the program's stdin, and close the pipe. Runs on
/// its own thread and is never joined: with [`ProgramStdin::Inherit`] it may wait on a terminal
/// the program never reads, and it ends with the process.
fn feed(mut pipe: ChildStdin, program: Program, stdin: ProgramStdin, key: String) {
    let spawned = thread::Builder::new()
        .name("safe-exec-stdin".into())
        .spawn(move || {
            let header = protocol_header(program.filename(), program.source().len(), &key);
            if pipe.write_all(header.as_bytes()).is_err()
                || pipe.write_all(program.source().as_bytes()).is_err()
            {
                return;
            }
            let _ = match stdin {
                ProgramStdin::Empty => Ok(0),
                ProgramStdin::Bytes(bytes) => pipe.write_all(&bytes).map(|_| 0),
                ProgramStdin::File(mut file) => std::io::copy(&mut file, &mut pipe),
                ProgramStdin::Inherit => std::io::copy(&mut std::io::stdin().lock(), &mut pipe),
            };
        });
    // Without the thread the program gets no source and fails visibly; nothing to add here.
    drop(spawned);
}

/// Where one output stream goes: up to `cap` bytes are passed on and kept; past it the supervisor
/// is told once and the rest is dropped.
struct Sink {
    stream: Stream,
    cap: u64,
    accepted: u64,
    passthrough: Option<Box<dyn Write + Send>>,
    keep: bool,
    captured: Captured,
    events: Sender<Event>,
}

impl Sink {
    fn new(
        stream: Stream,
        cap: u64,
        passthrough: Option<Box<dyn Write + Send>>,
        keep: bool,
        events: Sender<Event>,
    ) -> Sink {
        Sink {
            stream,
            cap,
            accepted: 0,
            passthrough,
            keep,
            captured: Captured::default(),
            events,
        }
    }

    fn accept(&mut self, bytes: &[u8]) {
        self.captured.seen += bytes.len() as u64;
        let room = usize::try_from(self.cap.saturating_sub(self.accepted)).unwrap_or(usize::MAX);
        let take = bytes.len().min(room);
        if take > 0 {
            self.accepted += take as u64;
            if self.keep {
                self.captured.bytes.extend_from_slice(&bytes[..take]);
            }
            if let Some(sink) = self.passthrough.as_mut() {
                // A closed reader of our own stdout (`| head`) is not an error: stop passing on.
                if sink
                    .write_all(&bytes[..take])
                    .and_then(|()| sink.flush())
                    .is_err()
                {
                    self.passthrough = None;
                }
            }
        }
        if take < bytes.len() && !self.captured.truncated {
            self.captured.truncated = true;
            let _ = self.events.send(Event::OutputLimit(self.stream));
        }
    }
}

/// What one drained stream gave: its output and, on stderr, the launcher's trailer.
type Drained = (Captured, Option<LauncherReport>);

/// Read `pipe` to its end in fixed-size chunks into `sink`, so the client never blocks on a full
/// pipe. When `marker` is given and the stream starts with it, it is stripped and reported as
/// [`Event::Started`]; a stream that starts otherwise is all output. With a `trailer` scanner the
/// launcher's trailer is taken out of the stream and returned. The result also arrives on the
/// returned channel, so a caller can stop waiting for a reader of ours that is stalled.
fn drain(
    mut pipe: impl Read + Send + 'static,
    mut sink: Sink,
    marker: Option<&'static [u8]>,
    mut trailer: Option<TrailerScanner>,
) -> Receiver<Drained> {
    let (done, result) = mpsc::channel();
    let _ = thread::Builder::new()
        .name("safe-exec-drain".into())
        .spawn(move || {
            let mut output = Vec::with_capacity(CHUNK);
            let mut deliver =
                |sink: &mut Sink, bytes: &[u8], trailer: &mut Option<TrailerScanner>| match trailer
                    .as_mut()
                {
                    Some(scanner) => {
                        output.clear();
                        let before = scanner.found().is_some();
                        scanner.feed(bytes, &mut output);
                        if !before && scanner.found().is_some() {
                            let _ = sink.events.send(Event::Ended(Instant::now()));
                        }
                        sink.accept(&output);
                    }
                    None => sink.accept(bytes),
                };
            let mut marker = marker;
            let mut matched = 0;
            let mut chunk = vec![0u8; CHUNK];
            loop {
                let read = match pipe.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(read) => read,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let mut bytes = &chunk[..read];
                if let Some(expected) = marker {
                    let n = bytes.len().min(expected.len() - matched);
                    if bytes[..n] == expected[matched..matched + n] {
                        matched += n;
                        bytes = &bytes[n..];
                        if matched < expected.len() {
                            continue;
                        }
                        let _ = sink.events.send(Event::Started(Instant::now()));
                    } else {
                        // Not the marker after all: what matched so far was output.
                        deliver(&mut sink, &expected[..matched], &mut trailer);
                    }
                    marker = None;
                }
                deliver(&mut sink, bytes, &mut trailer);
            }
            if let Some(expected) = marker {
                deliver(&mut sink, &expected[..matched], &mut trailer);
            }
            let report = trailer.as_mut().and_then(|scanner| {
                let mut rest = Vec::new();
                let found = scanner.finish(&mut rest);
                sink.accept(&rest);
                found
            });
            let _ = done.send((sink.captured, report));
        });
    result
}

/// The drained stream's result; with a `deadline`, give up waiting then (the reader of our output
/// is stalled) and report what we know: nothing.
fn join_drain(drained: Option<Receiver<Drained>>, deadline: Option<Instant>) -> Drained {
    let Some(drained) = drained else {
        return Default::default();
    };
    match deadline {
        Some(deadline) => drained
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_default(),
        None => drained.recv().unwrap_or_default(),
    }
}

fn sandbox_error(error: EngineError, limits: Limits) -> Outcome {
    Outcome::not_run(Status::SandboxError, error.to_string(), limits)
}

fn interrupted_before_start(cancel: &CancelToken, limits: Limits) -> Outcome {
    Outcome {
        interrupt_signal: cancel.signal(),
        ..Outcome::not_run(
            Status::Interrupted,
            "interrupted before the program started",
            limits,
        )
    }
}

/// `safe-exec-<pid>-<counter>-<nanos>`: unique on this host across processes and over time.
fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    format!("safe-exec-{}-{count}-{nanos:09}", std::process::id())
}

fn is_label_value(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_state_is_parsed() {
        assert_eq!(
            parse_state("137 true 2026-11-22T05:00:00.123Z false\n"),
            Some(ContainerState {
                exit_code: 137,
                oom_killed: true,
                started: true,
                running: false,
            })
        );
        assert_eq!(
            parse_state("0 false 0001-01-01T00:00:00Z false"),
            Some(ContainerState {
                exit_code: 0,
                oom_killed: false,
                started: false,
                running: false,
            })
        );
        assert!(
            parse_state("0 false 2026-11-22T05:00:00Z true")
                .unwrap()
                .running
        );
        assert_eq!(parse_state("garbage"), None);
    }

    /// A reader that hands out one byte per read, to split the marker across chunks.
    struct Trickle(std::io::Cursor<Vec<u8>>);

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let len = buf.len().min(1);
            self.0.read(&mut buf[..len])
        }
    }

    fn drain_bytes(input: &[u8], cap: u64, trickle: bool) -> (Captured, Vec<&'static str>) {
        let (events, watch) = mpsc::channel();
        let sink = Sink::new(Stream::Stderr, cap, None, true, events);
        let cursor = std::io::Cursor::new(input.to_vec());
        let (captured, _) = if trickle {
            drain(Trickle(cursor), sink, Some(STARTED_MARKER), None)
                .recv()
                .unwrap()
        } else {
            drain(cursor, sink, Some(STARTED_MARKER), None)
                .recv()
                .unwrap()
        };
        let seen = watch
            .try_iter()
            .map(|event| match event {
                Event::Started(_) => "started",
                Event::Ended(_) => "ended",
                Event::OutputLimit(_) => "limit",
            })
            .collect();
        (captured, seen)
    }

    #[test]
    fn the_start_marker_is_stripped_and_reported_however_it_is_split() {
        let mut input = STARTED_MARKER.to_vec();
        input.extend_from_slice(b"Traceback\n");
        for trickle in [false, true] {
            let (captured, events) = drain_bytes(&input, 1024, trickle);
            assert_eq!(captured.bytes, b"Traceback\n");
            assert_eq!(events, ["started"]);
        }
    }

    #[test]
    fn a_stream_without_the_marker_is_all_output() {
        for input in [
            &b"safe-exec launcher: malformed"[..],
            &STARTED_MARKER[..5],
            b"",
        ] {
            let (captured, events) = drain_bytes(input, 1024, true);
            assert_eq!(captured.bytes, input);
            assert!(events.is_empty());
        }
    }

    #[test]
    fn the_trailer_reports_the_program_s_end_the_moment_it_arrives() {
        let key = "00112233445566778899aabbccddeeff";
        let mut input = STARTED_MARKER.to_vec();
        input.extend_from_slice(b"out\n");
        input.extend(trailer::signed_line("exit 3 oom 0 watchdog 0", key));
        let (events, watch) = mpsc::channel();
        let sink = Sink::new(Stream::Stderr, 1024, None, true, events);
        let cursor = std::io::Cursor::new(input);
        let (captured, report) = drain(
            cursor,
            sink,
            Some(STARTED_MARKER),
            Some(TrailerScanner::new(key)),
        )
        .recv()
        .unwrap();
        assert_eq!(captured.bytes, b"out\n");
        assert_eq!(
            report.map(|report| report.ending),
            Some(ProgramEnd::Exited(3))
        );
        let seen: Vec<&str> = watch
            .try_iter()
            .map(|event| match event {
                Event::Started(_) => "started",
                Event::Ended(_) => "ended",
                Event::OutputLimit(_) => "limit",
            })
            .collect();
        assert_eq!(seen, ["started", "ended"]);
    }

    #[test]
    fn output_past_the_cap_is_counted_reported_once_and_dropped() {
        let mut input = STARTED_MARKER.to_vec();
        input.extend_from_slice(&[b'x'; 100]);
        let (captured, events) = drain_bytes(&input, 10, false);
        assert_eq!(captured.bytes, [b'x'; 10]);
        assert_eq!(captured.seen, 100);
        assert!(captured.truncated);
        assert_eq!(events, ["started", "limit"]);
    }

    #[test]
    fn names_are_unique_and_valid_for_docker() {
        let names: std::collections::HashSet<String> = (0..1000).map(|_| unique_name()).collect();
        assert_eq!(names.len(), 1000);
        assert!(names
            .iter()
            .all(|name| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')));
    }

    #[test]
    fn session_labels_are_restricted() {
        assert!(is_label_value("test-123_a.b"));
        assert!(!is_label_value("a b"));
        assert!(!is_label_value(""));
    }
}
