//! The supervisor: the one path by which a program runs.
//!
//! [`Sandbox::run`] starts a named, labelled container ([`attached::Attached`]), sends it the
//! program, relays its output and waits for the launcher's signed end report, our own deadline,
//! or a cancellation; [`rules::decide`] turns what was observed into the status. Whatever happens,
//! the container is killed and removed, with the [`registry`]'s guard as the last line of
//! defence and the [`reaper`] for when safe-exec itself is killed.
//!
//! Layout: [`attached`] (one container and its run), [`frames`] and [`launcher_report`] (the
//! launcher's half of the conversation, parsed), [`rules`] (the outcome rules, pure),
//! [`registry`] and [`reaper`] (what is live, and its removal), [`docker_cli`] (every docker call,
//! with a deadline), [`engine`] (which engine, context and runtime), [`fleet`] (runs spread over
//! several engines), [`job`] (what a run is given), [`cancel`], [`gc`].
//!
//! This module does not print; callers choose where output goes through [`RunIo`].

pub mod attached;
pub mod cancel;
pub mod docker_cli;
pub mod engine;
pub mod fleet;
pub mod frames;
pub mod gc;
pub mod job;
pub mod launcher_report;
pub mod pool;
pub mod reaper;
pub mod registry;
pub mod rules;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

pub use cancel::CancelToken;
pub use docker_cli::{DockerCli, EngineError};
pub use engine::{Engine, Engines};
pub use fleet::Fleet;
pub use job::{Job, ProgramStdin, RunIo};

use crate::limits::Limits;
use crate::report::{Outcome, Status};
use crate::sandbox::docker::{COLD_CODE_WAIT, EXPIRY_MARGIN};
use crate::sandbox::{ContainerSpec, DEFAULT_IMAGE, PROGRAM_UIDS};
use crate::sync::lock;
use attached::Attached;

/// Environment variable: a value for the session label on every container, so a test or CI job
/// can find exactly its own containers.
pub const SESSION_ENV: &str = "SAFE_EXEC_LABEL";

const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// The engine, image and labels runs use. Cheap to clone; share one across threads.
#[derive(Debug, Clone)]
pub struct Sandbox {
    engine: Engine,
    docker: DockerCli,
    image: String,
    session: Option<String>,
    pool: Option<pool::Pool>,
}

impl Sandbox {
    /// A sandbox on `image` (default [`DEFAULT_IMAGE`]), with the docker client from
    /// `SAFE_EXEC_DOCKER` and the session label from `SAFE_EXEC_LABEL`.
    pub fn new(image: Option<String>) -> Sandbox {
        Sandbox::on(&Engine::default(), image)
    }

    /// A sandbox on `engine` (its client, context and runtime) with `image`.
    pub fn on(engine: &Engine, image: Option<String>) -> Sandbox {
        Sandbox {
            engine: engine.clone(),
            docker: engine.cli(),
            image: image.map_or_else(
                || DEFAULT_IMAGE.to_owned(),
                |name| crate::sandbox::resolve_image(&name).to_owned(),
            ),
            session: std::env::var(SESSION_ENV)
                .ok()
                .filter(|value| is_label_value(value)),
            pool: None,
        }
    }

    /// This sandbox with a warm pool (none when `config.size` is 0). Its refill thread starts
    /// now; stock is made for the limits runs ask for, and for those given to
    /// [`pool::Pool::prepare`].
    pub fn with_pool(mut self, config: pool::PoolConfig) -> Sandbox {
        self.pool = (config.size > 0).then(|| pool::Pool::start(self.clone(), config));
        self
    }

    /// This sandbox without its warm pool: every run starts its own container.
    pub fn without_pool(&self) -> Sandbox {
        Sandbox {
            pool: None,
            ..self.clone()
        }
    }

    /// The warm pool, when there is one.
    pub fn pool(&self) -> Option<&pool::Pool> {
        self.pool.as_ref()
    }

    pub fn image(&self) -> &str {
        &self.image
    }

    pub fn docker(&self) -> &DockerCli {
        &self.docker
    }

    /// The engine this sandbox runs on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Remove our containers in `scope` (only this session's, when `SAFE_EXEC_LABEL` is set).
    pub fn collect_garbage(&self, scope: gc::Scope) -> Result<Vec<String>, EngineError> {
        gc::collect(
            &self.docker,
            self.engine.kind,
            self.session.as_deref(),
            scope,
        )
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

    /// Who the next container is: a fresh name and program uid, our labels, and how long its
    /// launcher waits for a request (`code_wait`) before giving up.
    pub fn container_spec(&self, limits: &Limits, code_wait: Duration) -> ContainerSpec {
        ContainerSpec {
            name: unique_name(),
            image: self.image.clone(),
            expires_at: gc::unix_now()
                + (code_wait + limits.wall_timeout + attached::HOST_GRACE + EXPIRY_MARGIN)
                    .as_secs(),
            session: self.session.clone(),
            program_uid: program_uid(),
            code_wait,
            kind: self.engine.kind,
            runtime: self.engine.runtime.clone(),
        }
    }

    /// Run `job` to its end and say what happened. Never panics on engine trouble: that is a
    /// `sandbox_error` outcome. Returns `interrupted` as soon as `cancel` is set.
    ///
    /// With a pool, a ready container for the job's limits is used when there is one (never
    /// waited for). Should it turn out to be gone before the program started (its engine
    /// restarted a moment ago), a job whose input can be given twice runs again, cold.
    pub fn run(&self, job: Job, io: RunIo, cancel: &CancelToken) -> Outcome {
        self.run_telling_start(job, io, cancel).0
    }

    /// As [`Sandbox::run`], and whether the program was started at all: a run that never
    /// started may go to another engine ([`Fleet`]).
    pub fn run_telling_start(&self, job: Job, io: RunIo, cancel: &CancelToken) -> (Outcome, bool) {
        let limits = job.limits;
        if cancel.is_cancelled() {
            return (interrupted_before_start(cancel, limits), false);
        }
        let Some((warm, running)) = self.pool.as_ref().and_then(|pool| pool.take(&limits)) else {
            return self.run_cold(job, io, cancel);
        };
        let again = io.again().zip(job.try_clone());
        let (outcome, started) = warm.run_telling_start(job, io, cancel, &self.image);
        drop(running);
        match again {
            Some((io, job)) if !started && outcome.status == Status::SandboxError => {
                self.run_cold(job, io, cancel)
            }
            _ => (outcome, started),
        }
    }

    /// Run `job` in a container started for it.
    fn run_cold(&self, job: Job, io: RunIo, cancel: &CancelToken) -> (Outcome, bool) {
        let limits = job.limits;
        if cancel.is_cancelled() {
            return (interrupted_before_start(cancel, limits), false);
        }
        let spec = self.container_spec(&limits, COLD_CODE_WAIT);
        match Attached::spawn(&self.docker, &spec, &limits) {
            Ok(attached) => attached.run_telling_start(job, io, cancel, &self.image),
            Err(error) => (
                Outcome::not_run(Status::SandboxError, error.to_string(), limits),
                false,
            ),
        }
    }
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

/// A uid for a run's program: random over [`PROGRAM_UIDS`] (about two billion values), and never
/// one of the last few thousand this process handed out. Runs of other processes on the same
/// engine pick independently; two of them sharing a uid needs a one-in-two-billion draw.
fn program_uid() -> u32 {
    static RECENT: Mutex<VecDeque<u32>> = Mutex::new(VecDeque::new());
    const REMEMBERED: usize = 4096;
    let mut recent = lock(&RECENT);
    loop {
        let mut bytes = [0u8; 4];
        let _ = getrandom::fill(&mut bytes);
        let span = PROGRAM_UIDS.end - PROGRAM_UIDS.start;
        let uid = PROGRAM_UIDS.start + u32::from_le_bytes(bytes) % span;
        if !recent.contains(&uid) {
            if recent.len() == REMEMBERED {
                recent.pop_front();
            }
            recent.push_back(uid);
            return uid;
        }
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
    fn names_are_unique_and_valid_for_docker() {
        let names: std::collections::HashSet<String> = (0..1000).map(|_| unique_name()).collect();
        assert_eq!(names.len(), 1000);
        assert!(names
            .iter()
            .all(|name| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')));
    }

    #[test]
    fn program_uids_are_in_range_and_not_repeated() {
        let uids: std::collections::HashSet<u32> = (0..5000).map(|_| program_uid()).collect();
        assert_eq!(uids.len(), 5000);
        assert!(uids.iter().all(|uid| PROGRAM_UIDS.contains(uid)));
    }

    #[test]
    fn session_labels_are_restricted() {
        assert!(is_label_value("test-123_a.b"));
        assert!(!is_label_value("a b"));
        assert!(!is_label_value(""));
    }
}
