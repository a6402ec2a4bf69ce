//! One container, started with `docker run --interactive`, and the supervision of its one run.
//!
//! [`Attached::spawn`] registers the name (so the reaper knows it), starts the docker client and
//! one reader thread per client pipe: the frame reader on stdout turns the launcher's frames into
//! output (written to the run's sinks as it arrives) and events, the stderr reader keeps what the
//! client or a failing launcher said. [`Attached::run`] sends the request, then waits on events
//! alone — the launcher's started and end frames, a cancellation, the end of the stream — with
//! one deadline at a time (start-up, then the wall-clock backstop), gathers what was observed and
//! lets [`rules::decide`](super::rules::decide) say what it means. Once the end frame is in, the
//! answer does not wait for docker: the client is killed (the container is ending anyway: its
//! launcher, PID 1, exits right after the frame) and the container removed in the background.
//!
//! A container may be spawned ahead of its run (a warm pool): it waits in its launcher,
//! [`Attached::launcher_up`] tells whoever waits for it when the launcher said it is up (without
//! holding the container, which a run may take meanwhile), and [`Attached::is_alive`] says
//! whether it can still take a run.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

use super::cancel::CancelToken;
use super::docker_cli::{classify_failure, kill_group, DockerCli, EngineError};
use super::frames::{Frame, FrameReader, StreamEnd};
use super::job::{Job, ProgramStdin, RunIo};
use super::launcher_report::{self, LauncherReport, ProgramEnd, Stop};
use super::registry::ContainerGuard;
use super::rules::{self, ContainerState, Observation, WaitEnd};
use crate::limits::Limits;
use crate::report::artifacts::{self, Artifacts};
use crate::report::{Captured, Outcome, Stream};
use crate::sandbox::{
    file_header, request_header, ContainerSpec, RunArgs, MAX_ARTIFACTS, MAX_ARTIFACT_BYTES,
};
use crate::sync::lock;

/// How long a container may take to start its program (the started frame) before the run is a
/// sandbox error: the engine is overloaded or broken, the program is not at fault.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Past the wall-clock backstop, how long the launcher's end frame may take to reach us before
/// our own clock decides.
pub const HOST_GRACE: Duration = Duration::from_secs(3);
/// How long a client whose frame stream ended may take to exit and say why.
const CLIENT_EXIT_GRACE: Duration = Duration::from_secs(5);
/// After a run we stopped (a limit, cancellation), how long a stalled reader of our own output
/// (`| sleep 10`) may hold up our answer. A program that ended by itself gets its output delivered
/// however long the reader takes, as `python3 script.py | reader` would.
const STALLED_READER_GRACE: Duration = Duration::from_secs(2);
const INSPECT_TIMEOUT: Duration = Duration::from_secs(10);
/// What the client's stderr may hold for messages; the rest is dropped.
const STDERR_KEPT: usize = 16 * 1024;

/// What the reader threads and the cancel token tell the supervisor.
enum Event {
    Started(Instant),
    End(Vec<u8>, Instant),
    LauncherFailed(Vec<u8>),
    OverCap,
    FramesEnded(StreamEnd),
    Cancelled,
}

/// Whether a container's launcher came up: its ready frame arrived, or its stream ended first.
/// Shared with the frame reader, so it can be waited for by someone not holding the container.
#[derive(Debug, Default)]
pub struct LauncherUp {
    state: Mutex<Option<bool>>,
    changed: Condvar,
}

impl LauncherUp {
    /// The first news wins: a stream that ends after the ready frame leaves it up.
    fn set(&self, up: bool) {
        let mut state = lock(&self.state);
        if state.is_none() {
            *state = Some(up);
            self.changed.notify_all();
        }
    }

    /// Has the ready frame arrived?
    fn is_up(&self) -> bool {
        *lock(&self.state) == Some(true)
    }

    /// Wait at most `timeout` for the news; whether the launcher is up.
    pub fn wait(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        let mut state = lock(&self.state);
        while state.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .map_or_else(|poisoned| poisoned.into_inner().0, |(guard, _)| guard);
        }
        *state == Some(true)
    }
}

/// A container whose docker client runs attached, with its pipes being read.
pub struct Attached {
    guard: ContainerGuard,
    client: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<Event>,
    events_in: Sender<Event>,
    sinks: Arc<Mutex<Option<Sinks>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_done: Receiver<()>,
    spawned: Instant,
    up: Arc<LauncherUp>,
    frames_ended: Option<StreamEnd>,
}

impl Attached {
    /// Start `spec`'s container with `limits`. It goes on to wait in its launcher for a request.
    pub fn spawn(
        docker: &DockerCli,
        spec: &ContainerSpec,
        limits: &Limits,
    ) -> Result<Attached, EngineError> {
        let guard = ContainerGuard::new(docker.clone(), spec.name.clone());
        let mut command = docker.command(RunArgs::build(spec, limits).0);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut client = docker.spawn(&mut command)?;
        let (events_in, events) = mpsc::channel();
        let sinks = Arc::new(Mutex::new(None));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (stderr_closed, stderr_done) = mpsc::channel();
        let up = Arc::new(LauncherUp::default());
        if let Some(pipe) = client.stdout.take() {
            read_frames(pipe, events_in.clone(), sinks.clone(), up.clone());
        }
        if let Some(pipe) = client.stderr.take() {
            read_stderr(pipe, stderr.clone(), stderr_closed);
        }
        Ok(Attached {
            guard,
            stdin: client.stdin.take(),
            client,
            events,
            events_in,
            sinks,
            stderr,
            stderr_done,
            spawned: Instant::now(),
            up,
            frames_ended: None,
        })
    }

    pub fn name(&self) -> &str {
        self.guard.name()
    }

    /// When the launcher said it is up (or its stream ended first), for whoever waits.
    pub fn launcher_up(&self) -> Arc<LauncherUp> {
        self.up.clone()
    }

    /// Can this container still take a run: its stream open and its client running?
    pub fn is_alive(&mut self) -> bool {
        while let Ok(event) = self.events.try_recv() {
            if let Event::FramesEnded(end) = event {
                self.frames_ended = Some(end);
            }
        }
        self.frames_ended.is_none() && matches!(self.client.try_wait(), Ok(None))
    }

    /// Retire an unused container: kill its client and remove it in the background.
    pub fn discard(mut self) {
        kill_group(&mut self.client);
        self.guard.remove_in_background();
    }

    /// Give the container `job`, supervise it to its end and say what happened. Never panics on
    /// engine trouble: that is a `sandbox_error` outcome.
    pub fn run(self, job: Job, io: RunIo, cancel: &CancelToken, image: &str) -> Outcome {
        self.run_telling_start(job, io, cancel, image).0
    }

    /// As [`Attached::run`], and whether the program was started at all (a warm container whose
    /// launcher turned out to be gone never started it, and the run may go elsewhere).
    pub fn run_telling_start(
        mut self,
        job: Job,
        io: RunIo,
        cancel: &CancelToken,
        image: &str,
    ) -> (Outcome, bool) {
        let limits = job.limits;
        let key = launcher_report::new_key();
        let artifact_bytes = io.artifact_bytes.min(MAX_ARTIFACT_BYTES);
        *lock(&self.sinks) = Some(Sinks::new(io, limits.max_output_bytes));
        let wake = self.events_in.clone();
        let _cancelled = cancel.on_cancel(move || {
            let _ = wake.send(Event::Cancelled);
        });
        if let Some(stdin) = self.stdin.take() {
            feed(stdin, job, key.clone(), artifact_bytes);
        }
        let (end, started, ended_at) = self.wait(&limits, &key, cancel);
        let host_duration =
            started.map_or(Duration::ZERO, |at| ended_at.saturating_duration_since(at));
        let reported = matches!(end, WaitEnd::Reported(_));
        // Stopped before the launcher said it was up: the engine may still be making the
        // container, after any removal we try now.
        let uncertain =
            !self.up.is_up() && matches!(end, WaitEnd::Cancelled(_) | WaitEnd::StartupTimeout);
        let end = match end {
            WaitEnd::Vanished { .. } => self.why_vanished(started.is_some(), image),
            end => end,
        };
        // The run is over: nothing more is taken from the container, and it goes.
        let sinks = lock(&self.sinks).take();
        kill_group(&mut self.client);
        if reported {
            self.guard.remove_in_background();
        } else if uncertain {
            self.guard.abandon_uncertain();
        } else {
            // Stopped by us or gone wrong: gone before we answer. If this fails, the reaper and
            // `gc` still have the name.
            let _ = self.guard.remove();
        }
        let (stdout, stderr, host_over_cap, artifacts) = match sinks {
            Some(sinks) => {
                let ended_by_itself = matches!(
                    &end,
                    WaitEnd::Reported(LauncherReport {
                        ending: ProgramEnd::Exited(_) | ProgramEnd::Signalled(_),
                        ..
                    })
                );
                sinks.finish(if ended_by_itself {
                    None
                } else {
                    Some(Instant::now() + STALLED_READER_GRACE)
                })
            }
            None => Default::default(),
        };
        let observed = Observation {
            end,
            started: started.is_some(),
            host_duration,
            host_over_cap,
            limits,
            image: image.to_owned(),
        };
        (
            Outcome {
                artifacts,
                ..outcome(rules::decide(&observed), &observed, stdout, stderr)
            },
            observed.started,
        )
    }

    /// Wait for the run's end: an end frame, a failure, a cancellation or a deadline. Returns it
    /// with when the program started and when the wait ended.
    fn wait(
        &mut self,
        limits: &Limits,
        key: &str,
        cancel: &CancelToken,
    ) -> (WaitEnd, Option<Instant>, Instant) {
        let mut started = None;
        let sent = Instant::now();
        let mut deadline = sent.max(self.spawned) + STARTUP_TIMEOUT;
        if let Some(end) = self.frames_ended.take() {
            return (self.vanished(end), None, Instant::now());
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = match self.events.recv_timeout(left) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => {
                    if started.is_none() && self.up.is_up() {
                        // The engine did its part (the launcher is up and has the request): what
                        // is slow is the program's interpreter starting under the program's own
                        // CPU quota and memory, and that is bounded by its wall-clock limit.
                        let program_deadline = sent + limits.wall_timeout + HOST_GRACE;
                        if Instant::now() < program_deadline {
                            deadline = program_deadline;
                            continue;
                        }
                        return (WaitEnd::ProgramStartTimeout, None, Instant::now());
                    }
                    let end = match started {
                        Some(_) => WaitEnd::HostDeadline,
                        None => WaitEnd::StartupTimeout,
                    };
                    return (end, started, Instant::now());
                }
                // The reader and our own sender are both gone: cannot happen while we hold one.
                Err(RecvTimeoutError::Disconnected) => {
                    return (self.vanished(StreamEnd::Closed), started, Instant::now())
                }
            };
            match event {
                Event::Started(at) => {
                    started = Some(at);
                    deadline = at + limits.wall_timeout + HOST_GRACE;
                }
                Event::End(payload, at) => {
                    let end = match launcher_report::verify(&payload, key) {
                        Ok(report) => WaitEnd::Reported(report),
                        Err(error) => WaitEnd::BadReport(error),
                    };
                    return (end, started, at);
                }
                Event::LauncherFailed(said) => {
                    return (WaitEnd::LauncherFailed(said), started, Instant::now())
                }
                // The launcher stops a stream at the cap itself; our count is the second check,
                // and the end frame that follows still decides the rest.
                Event::OverCap => {}
                Event::FramesEnded(end) => return (self.vanished(end), started, Instant::now()),
                Event::Cancelled => {
                    return (WaitEnd::Cancelled(cancel.signal()), started, Instant::now())
                }
            }
        }
    }

    /// The frame stream ended without an end frame: a placeholder that
    /// [`Attached::why_vanished`] fills in once the client has had time to exit.
    fn vanished(&mut self, end: StreamEnd) -> WaitEnd {
        self.frames_ended = Some(end);
        WaitEnd::Vanished {
            client_exit: None,
            state: None,
            stderr: Vec::new(),
            stream: None,
        }
    }

    /// Why the stream ended: the client's exit code and what it (or the launcher) said; the
    /// engine's record when the container ran (an OOM kill of the launcher itself is the
    /// engine's to report). Docker's own failures before the launcher ran become engine errors.
    fn why_vanished(&mut self, started: bool, image: &str) -> WaitEnd {
        let client_exit = self
            .client
            .wait_timeout(CLIENT_EXIT_GRACE)
            .ok()
            .flatten()
            .and_then(|status| status.code());
        let _ = self.stderr_done.recv_timeout(CLIENT_EXIT_GRACE);
        let stderr = lock(&self.stderr).clone();
        let launcher_said = String::from_utf8_lossy(&stderr).contains("safe-exec launcher:");
        if !self.up.is_up() && !launcher_said && client_exit == Some(125) {
            return WaitEnd::Engine(classify_failure(
                "run",
                &String::from_utf8_lossy(&stderr),
                Some(image),
            ));
        }
        // Also when the container ran but the program never started: the engine knows whether
        // the kernel's OOM killer ended it (too little memory for Python beside its launcher).
        let state = if started || client_exit.is_some_and(|code| code != 125) {
            self.inspect()
        } else {
            None
        };
        let stream = match self.frames_ended.take() {
            Some(StreamEnd::Closed) | None => None,
            Some(StreamEnd::Truncated) => Some("it ended inside a frame".to_owned()),
            Some(StreamEnd::Corrupt(why)) => Some(format!("not the launcher's frames: {why}")),
            Some(StreamEnd::Broken(why)) => Some(why),
        };
        WaitEnd::Vanished {
            client_exit,
            state,
            stderr,
            stream,
        }
    }

    /// The container's state as the engine records it, if it can be read.
    fn inspect(&self) -> Option<ContainerState> {
        // StartedAt last: podman writes it with spaces.
        let format =
            "{{.State.ExitCode}} {{.State.OOMKilled}} {{.State.Running}} {{.State.StartedAt}}";
        let args = [
            "inspect",
            "--type",
            "container",
            "--format",
            format,
            self.name(),
        ]
        .map(String::from);
        let docker = self.guard.docker();
        let output = docker.call(&args, INSPECT_TIMEOUT, None).ok()?;
        parse_state(&output.stdout)
    }
}

/// `"137 true false 2026-11-22T05:00:00.1Z"` → state. The zero time (Docker's
/// `0001-01-01T00:00:00Z`, podman's `0001-01-01 00:00:00 +0000 UTC`) means never started.
fn parse_state(text: &str) -> Option<ContainerState> {
    let mut fields = text.split_whitespace();
    let exit_code = fields.next()?.parse().ok()?;
    let oom_killed = fields.next()?.parse().ok()?;
    let running = fields.next()?.parse().ok()?;
    let started_at = fields.next()?;
    Some(ContainerState {
        exit_code,
        oom_killed,
        started: !started_at.starts_with("0001-01-01"),
        running,
    })
}

/// The decision with the output attached.
fn outcome(
    decision: rules::Decision,
    observed: &Observation,
    mut stdout: Captured,
    mut stderr: Captured,
) -> Outcome {
    if let WaitEnd::Reported(report) = &observed.end {
        // The launcher read what the program wrote; we only ever got up to the cap.
        stdout.seen = stdout.seen.max(report.stdout_bytes);
        stderr.seen = stderr.seen.max(report.stderr_bytes);
        match report.ending {
            ProgramEnd::Stopped(Stop::Output(Stream::Stdout)) => stdout.truncated = true,
            ProgramEnd::Stopped(Stop::Output(Stream::Stderr)) => stderr.truncated = true,
            _ => {}
        }
    }
    let mut outcome = Outcome {
        status: decision.status,
        exit_code: decision.exit_code,
        signal: decision.signal,
        stdout,
        stderr,
        duration: decision.duration,
        cpu_time: decision.cpu_time,
        error: decision.error,
        limits: observed.limits,
        output_limit_stream: decision.output_limit_stream,
        interrupt_signal: decision.interrupt_signal,
        artifacts: Artifacts::default(),
    };
    if outcome.error.is_none() {
        outcome.error = crate::report::status_message(&outcome);
    }
    outcome
}

/// Write the request (header, program, files), then the program's stdin, and close the pipe.
/// Runs on its own thread and is never joined: with [`ProgramStdin::Inherit`] it may wait on a
/// terminal the program never reads, and it ends with the process.
fn feed(mut pipe: ChildStdin, job: Job, key: String, artifact_bytes: u64) {
    let spawned = thread::Builder::new()
        .name("safe-exec-stdin".into())
        .spawn(move || {
            let program = &job.program;
            let mut request =
                request_header(&key, 1 + job.files.len(), artifact_bytes).into_bytes();
            request.extend_from_slice(
                file_header(program.filename(), program.source().len()).as_bytes(),
            );
            request.extend_from_slice(program.source().as_bytes());
            for file in &job.files {
                request.extend_from_slice(file_header(file.name(), file.bytes().len()).as_bytes());
                request.extend_from_slice(file.bytes());
            }
            if pipe.write_all(&request).is_err() {
                return;
            }
            let _ = match job.stdin {
                ProgramStdin::Empty => Ok(0),
                ProgramStdin::Bytes(bytes) => pipe.write_all(&bytes).map(|_| 0),
                ProgramStdin::File(mut file) => std::io::copy(&mut file, &mut pipe),
                ProgramStdin::Inherit => std::io::copy(&mut std::io::stdin().lock(), &mut pipe),
            };
        });
    // Without the thread the launcher gets no request and the run ends at the start-up deadline.
    drop(spawned);
}

/// Read the launcher's frames: output into the run's sinks, the rest as events.
fn read_frames(
    pipe: impl Read + Send + 'static,
    events: Sender<Event>,
    sinks: Arc<Mutex<Option<Sinks>>>,
    up: Arc<LauncherUp>,
) {
    let spawned = thread::Builder::new()
        .name("safe-exec-frames".into())
        .spawn(move || {
            let mut reader = FrameReader::new(pipe);
            loop {
                let event = match reader.next_frame() {
                    Ok(Frame::Ready(_)) => {
                        up.set(true);
                        continue;
                    }
                    Ok(Frame::Started) => Event::Started(Instant::now()),
                    Ok(Frame::Stdout(bytes)) => match accept(&sinks, Stream::Stdout, &bytes) {
                        Some(_) => Event::OverCap,
                        None => continue,
                    },
                    Ok(Frame::Stderr(bytes)) => match accept(&sinks, Stream::Stderr, &bytes) {
                        Some(_) => Event::OverCap,
                        None => continue,
                    },
                    Ok(Frame::Artifact(payload)) => {
                        if let Some(sinks) = lock(&sinks).as_mut() {
                            sinks.artifacts.accept(&payload);
                        }
                        continue;
                    }
                    Ok(Frame::Manifest(payload)) => {
                        if let Some(sinks) = lock(&sinks).as_mut() {
                            sinks.artifacts.manifest = Some(payload);
                        }
                        continue;
                    }
                    Ok(Frame::End(payload)) => Event::End(payload, Instant::now()),
                    Ok(Frame::Failed(said)) => Event::LauncherFailed(said),
                    Err(end) => {
                        up.set(false);
                        let _ = events.send(Event::FramesEnded(end));
                        return;
                    }
                };
                // The supervisor may have gone (the run is over): keep reading so the client
                // never blocks on a full pipe.
                let _ = events.send(event);
            }
        });
    drop(spawned);
}

/// Hand `bytes` to the run's sink for `stream`; the stream, the first time it passes the cap.
fn accept(sinks: &Mutex<Option<Sinks>>, stream: Stream, bytes: &[u8]) -> Option<Stream> {
    let mut sinks = lock(sinks);
    let sink = match (sinks.as_mut(), stream) {
        (Some(sinks), Stream::Stdout) => &mut sinks.stdout,
        (Some(sinks), Stream::Stderr) => &mut sinks.stderr,
        // Output after the run is over, or before one began: nobody asked for it.
        (None, _) => return None,
    };
    sink.accept(bytes).then_some(stream)
}

/// Keep what the client writes on stderr (docker's messages, a failing launcher's words), bounded.
fn read_stderr(
    mut pipe: impl Read + Send + 'static,
    kept: Arc<Mutex<Vec<u8>>>,
    closed: Sender<()>,
) {
    let spawned = thread::Builder::new()
        .name("safe-exec-stderr".into())
        .spawn(move || {
            let mut chunk = [0u8; 4096];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(read) => {
                        let mut kept = lock(&kept);
                        let room = STDERR_KEPT.saturating_sub(kept.len());
                        kept.extend_from_slice(&chunk[..read.min(room)]);
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = closed.send(());
        });
    drop(spawned);
}

/// Where a run's two output streams and its artifacts go.
struct Sinks {
    stdout: Sink,
    stderr: Sink,
    artifacts: ArtifactSink,
}

impl Sinks {
    fn new(io: RunIo, cap: u64) -> Sinks {
        Sinks {
            stdout: Sink::new(cap, io.stdout, io.keep),
            stderr: Sink::new(cap, io.stderr, io.keep),
            artifacts: ArtifactSink::new(io.artifact_bytes, io.keep_artifacts),
        }
    }

    /// What each stream kept, once its pass-through has delivered (waiting at most until
    /// `deadline`, when given, for a stalled reader of ours); a stream that passed the cap on our
    /// side.
    fn finish(self, deadline: Option<Instant>) -> (Captured, Captured, Option<Stream>, Artifacts) {
        let over = if self.stdout.captured.truncated {
            Some(Stream::Stdout)
        } else if self.stderr.captured.truncated {
            Some(Stream::Stderr)
        } else {
            None
        };
        let stdout = self.stdout.finish(deadline);
        let stderr = self.stderr.finish(deadline);
        (stdout, stderr, over, self.artifacts.finish())
    }
}

/// The artifacts as they arrive: bytes per name (or, when their bytes are not wanted, only how
/// many arrived), within the run's artifact cap, and the launcher's manifest.
struct ArtifactSink {
    cap: u64,
    taken: u64,
    /// Keep the bytes; without it a run holds none of them, and only names and sizes come back.
    keep: bool,
    received: BTreeMap<String, (Vec<u8>, u64)>,
    manifest: Option<Vec<u8>>,
}

impl ArtifactSink {
    fn new(cap: u64, keep: bool) -> ArtifactSink {
        ArtifactSink {
            cap,
            taken: 0,
            keep,
            received: BTreeMap::new(),
            manifest: None,
        }
    }

    /// One artifact frame: `path\0bytes`. Names that are not plain relative paths, and bytes
    /// past the cap, are dropped (the launcher keeps to both; this is the second check).
    fn accept(&mut self, payload: &[u8]) {
        let Some(split) = payload.iter().position(|&byte| byte == 0) else {
            return;
        };
        let Ok(name) = std::str::from_utf8(&payload[..split]) else {
            return;
        };
        if !artifacts::valid_path(name)
            || (!self.received.contains_key(name) && self.received.len() >= MAX_ARTIFACTS)
        {
            return;
        }
        let data = &payload[split + 1..];
        let room = usize::try_from(self.cap.saturating_sub(self.taken)).unwrap_or(usize::MAX);
        let data = &data[..data.len().min(room)];
        self.taken += data.len() as u64;
        let (bytes, count) = self.received.entry(name.to_owned()).or_default();
        *count += data.len() as u64;
        if self.keep {
            bytes.extend_from_slice(data);
        }
    }

    fn finish(self) -> Artifacts {
        match self.manifest {
            Some(manifest) => Artifacts::from_launcher(self.received, &manifest),
            None => Artifacts::default(),
        }
    }
}

/// One output stream: up to `cap` bytes are passed on and kept; past it the rest is counted and
/// dropped. Pass-through happens on a writer thread, so a slow reader of our own output never
/// holds up reading the container.
struct Sink {
    cap: u64,
    accepted: u64,
    keep: bool,
    captured: Captured,
    passthrough: Option<Passthrough>,
}

struct Passthrough {
    chunks: Sender<Vec<u8>>,
    done: Receiver<()>,
}

impl Sink {
    fn new(cap: u64, writer: Option<Box<dyn Write + Send>>, keep: bool) -> Sink {
        Sink {
            cap,
            accepted: 0,
            keep,
            captured: Captured::default(),
            passthrough: writer.map(pass_through),
        }
    }

    /// Take `bytes`; true the first time the stream passes the cap.
    fn accept(&mut self, bytes: &[u8]) -> bool {
        self.captured.seen += bytes.len() as u64;
        let room = usize::try_from(self.cap.saturating_sub(self.accepted)).unwrap_or(usize::MAX);
        let take = bytes.len().min(room);
        if take > 0 {
            self.accepted += take as u64;
            if self.keep {
                self.captured.bytes.extend_from_slice(&bytes[..take]);
            }
            if let Some(passthrough) = &self.passthrough {
                let _ = passthrough.chunks.send(bytes[..take].to_vec());
            }
        }
        let passed = take < bytes.len() && !self.captured.truncated;
        if passed {
            self.captured.truncated = true;
        }
        passed
    }

    fn finish(self, deadline: Option<Instant>) -> Captured {
        if let Some(Passthrough { chunks, done }) = self.passthrough {
            drop(chunks);
            let _ = match deadline {
                Some(deadline) => done
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .ok(),
                None => done.recv().ok(),
            };
        }
        self.captured
    }
}

/// A writer thread for one stream of pass-through output.
fn pass_through(mut writer: Box<dyn Write + Send>) -> Passthrough {
    let (chunks, queue) = mpsc::channel::<Vec<u8>>();
    let (finished, done) = mpsc::channel();
    let spawned = thread::Builder::new()
        .name("safe-exec-output".into())
        .spawn(move || {
            let mut open = true;
            for chunk in queue {
                // A closed reader of our own stdout (`| head`) is not an error: stop passing on.
                if open
                    && writer
                        .write_all(&chunk)
                        .and_then(|()| writer.flush())
                        .is_err()
                {
                    open = false;
                }
            }
            let _ = finished.send(());
        });
    drop(spawned);
    Passthrough { chunks, done }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_state_is_parsed() {
        assert_eq!(
            parse_state("137 true false 2026-11-22T05:00:00.123Z\n"),
            Some(ContainerState {
                exit_code: 137,
                oom_killed: true,
                started: true,
                running: false,
            })
        );
        assert!(
            !parse_state("0 false false 0001-01-01T00:00:00Z")
                .unwrap()
                .started
        );
        assert!(
            !parse_state("0 false false 0001-01-01 00:00:00 +0000 UTC")
                .unwrap()
                .started
        );
        assert!(
            parse_state("0 false true 2026-11-22 05:00:00.1 +0000 UTC")
                .unwrap()
                .running
        );
        assert_eq!(parse_state("garbage"), None);
    }

    #[test]
    fn a_sink_passes_exactly_the_cap_and_says_so_once() {
        let mut sink = Sink::new(10, None, true);
        assert!(!sink.accept(&[b'x'; 6]));
        assert!(sink.accept(&[b'y'; 6]));
        assert!(!sink.accept(&[b'z'; 6]));
        let captured = sink.finish(None);
        assert_eq!(captured.bytes, b"xxxxxxyyyy");
        assert_eq!(captured.seen, 18);
        assert!(captured.truncated);
    }

    /// A writer that never returns: a reader of our output that stopped reading.
    struct Stalled;

    impl Write for Stalled {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            thread::sleep(Duration::from_secs(3600));
            Ok(0)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_reader_of_ours_never_blocks_accepting_and_is_waited_for_only_so_long() {
        let mut sink = Sink::new(1 << 20, Some(Box::new(Stalled)), false);
        let started = Instant::now();
        for _ in 0..100 {
            sink.accept(&[b'x'; 1000]);
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        let captured = sink.finish(Some(Instant::now() + Duration::from_millis(200)));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(captured.seen, 100_000);
    }
}
