//! The one registry of our live containers, and the last line of defence around each.
//!
//! A name enters the registry before its `docker run` and leaves once the container is known to be
//! gone. Every entry and exit is passed on to the [reaper](super::reaper), so a SIGKILLed
//! safe-exec still has its containers removed; a second Ctrl-C removes every live one before
//! exiting at once. [`ContainerGuard`] owns one name: it removes the container on every path out
//! (`Drop` included), at once or — once a run has reported — on the background remover, so an
//! answer never waits for docker's teardown.
//!
//! Each name is kept with the client (engine) that made it, and each engine has a reaper of its
//! own, so with several engines every removal goes to the right one. A removal that fails
//! because the engine is unreachable keeps its name here: [`retry_removals`] tries again when
//! the engine is back (a fleet calls it), and the reaper tries again for a while after we exit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::docker_cli::{classify_failure, DockerCli, EngineError};
use super::reaper::Reaper;
use crate::sync::lock;

/// How long one `docker rm -f` may take before we give up on it.
pub const REMOVE_TIMEOUT: Duration = Duration::from_secs(15);

/// When a cut-short create's container is looked for again (pauses between `rm` calls).
const LATE_CREATE_CHECKS: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_secs(1),
    Duration::from_secs(3),
    Duration::from_secs(10),
];

/// Most names one background `docker rm` takes.
const REMOVE_BATCH: usize = 32;
/// Once [`batch_removals`] is called, how long the background remover holds a removal so that the
/// next ones share its `docker rm`: every call is a client process and API requests, a fair share
/// of a whole container's cost on a busy engine. A container handed to the remover has ended
/// (its launcher, PID 1, exited after its report), so only its record and layers wait.
const REMOVE_LINGER: Duration = Duration::from_secs(1);
/// Set by [`batch_removals`]: many runs are coming (a pool), removals may wait for company.
static LINGER: AtomicBool = AtomicBool::new(false);
/// Set by [`wait_for_removals`]: someone waits, nothing lingers any more.
static FLUSHING: AtomicBool = AtomicBool::new(false);

/// What the background remover is told.
enum Removal {
    Container(DockerCli, String),
    /// Stop lingering: someone waits for the removals.
    Flush,
}

struct Registry {
    /// Every live name, with the client that made its container.
    live: BTreeMap<String, DockerCli>,
    /// One reaper per client.
    reapers: Vec<(DockerCli, Reaper)>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    live: BTreeMap::new(),
    reapers: Vec::new(),
});

/// Removals handed to the background remover and not yet finished.
static PENDING: Mutex<usize> = Mutex::new(0);
static PENDING_DONE: Condvar = Condvar::new();

impl Registry {
    /// Tell the reaper `line`'s news, starting a new reaper (told every live name) if there is
    /// none or the old one stopped listening.
    fn tell_reaper(
        &mut self,
        docker: &DockerCli,
        tell: impl Fn(&mut Reaper) -> std::io::Result<()>,
    ) {
        if let Some(index) = self.reapers.iter().position(|(client, _)| client == docker) {
            if tell(&mut self.reapers[index].1).is_ok() {
                return;
            }
            let (_, dead) = self.reapers.swap_remove(index);
            dead.discard();
        }
        let Some(mut reaper) = Reaper::start(docker) else {
            return;
        };
        let told = self
            .live
            .iter()
            .filter(|(_, client)| *client == docker)
            .try_for_each(|(name, _)| reaper.watch(name));
        if told.is_ok() && tell(&mut reaper).is_ok() {
            self.reapers.push((docker.clone(), reaper));
        } else {
            reaper.discard();
        }
    }
}

fn register(docker: &DockerCli, name: &str) {
    let mut registry = lock(&REGISTRY);
    registry.live.insert(name.to_owned(), docker.clone());
    registry.tell_reaper(docker, |reaper| reaper.watch(name));
}

fn register_uncertain(docker: &DockerCli, name: &str) {
    let mut registry = lock(&REGISTRY);
    registry.tell_reaper(docker, |reaper| reaper.watch_uncertain(name));
}

fn release(name: &str) {
    let mut registry = lock(&REGISTRY);
    if let Some(docker) = registry.live.remove(name) {
        // A new reaper never heard of the name: only a running one needs the news.
        if let Some((_, reaper)) = registry
            .reapers
            .iter_mut()
            .find(|(client, _)| *client == docker)
        {
            let _ = reaper.release(name);
        }
    }
}

/// The containers this process has named and not yet seen removed.
pub fn live_names() -> Vec<String> {
    lock(&REGISTRY).live.keys().cloned().collect()
}

/// Names whose removal failed (the engine was unreachable), per client: retried by
/// [`retry_removals`].
static FAILED: Mutex<BTreeMap<String, DockerCli>> = Mutex::new(BTreeMap::new());

fn remember_failed(docker: &DockerCli, names: &[String]) {
    let mut failed = lock(&FAILED);
    for name in names {
        failed.insert(name.clone(), docker.clone());
    }
}

/// Remove again, with `docker`, every container whose removal through it failed: called when
/// an engine that was unreachable answers again. Returns how many are now gone.
pub fn retry_removals(docker: &DockerCli) -> usize {
    let names: Vec<String> = lock(&FAILED)
        .iter()
        .filter(|(_, client)| *client == docker)
        .map(|(name, _)| name.clone())
        .collect();
    if names.is_empty() || remove_now(docker, &names).is_err() {
        return 0;
    }
    {
        let mut failed = lock(&FAILED);
        names.iter().for_each(|name| {
            failed.remove(name);
        });
    }
    names.iter().for_each(|name| release(name));
    names.len()
}

/// Start `docker rm -f` for every live container without waiting, each through the client that
/// made it: used when a second signal asks us to exit at once. The removals run in their own
/// process groups and outlive us; the reapers still hold every name too.
pub fn remove_all_detached() {
    let live = lock(&REGISTRY).live.clone();
    let mut by_client: Vec<(DockerCli, Vec<String>)> = Vec::new();
    for (name, docker) in live {
        match by_client.iter_mut().find(|(client, _)| *client == docker) {
            Some((_, names)) => names.push(name),
            None => by_client.push((docker, vec![name])),
        }
    }
    for (docker, names) in by_client {
        let mut command = docker.command(docker.remove_args().into_iter().chain(names));
        command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let _ = command.spawn();
    }
}

/// Many runs are coming (a warm pool's): let background removals wait up to [`REMOVE_LINGER`]
/// to share one `docker rm`.
pub fn batch_removals() {
    LINGER.store(true, Ordering::SeqCst);
}

/// Wait until every background removal has finished, at most until `deadline`; whether they all
/// did. Removals no longer linger from now on. Names whose removal failed stay with the reaper
/// and `gc`.
pub fn wait_for_removals(deadline: Instant) -> bool {
    FLUSHING.store(true, Ordering::SeqCst);
    if *lock(&PENDING) > 0 {
        let _ = lock(remover()).send(Removal::Flush);
    }
    let mut pending = lock(&PENDING);
    while *pending > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        pending = PENDING_DONE
            .wait_timeout(pending, left)
            .map_or_else(|poisoned| poisoned.into_inner().0, |(guard, _)| guard);
    }
    true
}

/// `docker rm --force --volumes NAMES...`: Ok when every container is gone (already gone counts).
fn remove_now(docker: &DockerCli, names: &[String]) -> Result<(), EngineError> {
    let mut args = docker.remove_args();
    args.extend(names.iter().cloned());
    let output = docker.call_unchecked(&args, REMOVE_TIMEOUT)?;
    let only_missing = output
        .stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .all(|line| line.contains("No such container"));
    if output.status.success() || only_missing {
        Ok(())
    } else {
        Err(classify_failure("rm", &output.stderr, None))
    }
}

fn remover() -> &'static Mutex<Sender<Removal>> {
    static REMOVER: OnceLock<Mutex<Sender<Removal>>> = OnceLock::new();
    REMOVER.get_or_init(|| {
        let (sender, queue) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("safe-exec-remover".into())
            .spawn(move || remove_forever(queue));
        // Without the thread, queued names stay live: the reaper removes them when we exit.
        drop(spawned);
        Mutex::new(sender)
    })
}

fn remove_forever(queue: Receiver<Removal>) {
    while let Ok(first) = queue.recv() {
        let Removal::Container(docker, name) = first else {
            continue;
        };
        let mut batch = vec![(docker, name)];
        let until = Instant::now() + REMOVE_LINGER;
        while batch.len() < REMOVE_BATCH {
            let linger = LINGER.load(Ordering::SeqCst) && !FLUSHING.load(Ordering::SeqCst);
            let wait = if linger {
                until.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            match queue.recv_timeout(wait) {
                Ok(Removal::Container(docker, name)) => batch.push((docker, name)),
                Ok(Removal::Flush) => {}
                Err(_) => break,
            }
        }
        // One call per docker client (they differ only when engines do).
        while !batch.is_empty() {
            let client = batch[0].0.clone();
            let (group, rest): (Vec<_>, Vec<_>) =
                batch.into_iter().partition(|(other, _)| *other == client);
            batch = rest;
            let names: Vec<String> = group.into_iter().map(|(_, name)| name).collect();
            match remove_now(&client, &names) {
                Ok(()) => names.iter().for_each(|name| release(name)),
                Err(_) => remember_failed(&client, &names),
            }
            let mut pending = lock(&PENDING);
            *pending = pending.saturating_sub(names.len());
            PENDING_DONE.notify_all();
        }
    }
}

/// Owns a container name until the container is known to be gone.
#[derive(Debug)]
pub struct ContainerGuard {
    docker: DockerCli,
    name: String,
    armed: bool,
}

impl ContainerGuard {
    /// Register `name` (and tell the reaper) before anything creates the container.
    pub fn new(docker: DockerCli, name: String) -> ContainerGuard {
        register(&docker, &name);
        ContainerGuard {
            docker,
            name,
            armed: true,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The docker client that made the container.
    pub fn docker(&self) -> &DockerCli {
        &self.docker
    }

    /// Kill (SIGKILL, never a graceful stop) and remove the container now: `docker rm --force`
    /// does both in one call. A container that is already gone counts as removed.
    pub fn remove(&mut self) -> Result<(), EngineError> {
        if !self.armed {
            return Ok(());
        }
        if let Err(error) = remove_now(&self.docker, std::slice::from_ref(&self.name)) {
            remember_failed(&self.docker, std::slice::from_ref(&self.name));
            return Err(error);
        }
        self.armed = false;
        release(&self.name);
        Ok(())
    }

    /// Remove the container on the background remover: the caller goes on at once. The name stays
    /// registered (and with the reaper) until the removal succeeds.
    pub fn remove_in_background(mut self) {
        if !self.armed {
            return;
        }
        self.armed = false;
        *lock(&PENDING) += 1;
        let sent = lock(remover()).send(Removal::Container(self.docker.clone(), self.name.clone()));
        if sent.is_err() {
            let mut pending = lock(&PENDING);
            *pending = pending.saturating_sub(1);
        }
    }

    /// Its `docker run` was cut short (timed out or cancelled) before the engine answered: the
    /// engine may still make the container after any `rm` we run now. Removal is retried in the
    /// background for a while, and the reaper, told the name is uncertain, looks again after we
    /// exit.
    pub fn abandon_uncertain(mut self) {
        self.armed = false;
        register_uncertain(&self.docker, &self.name);
        let docker = self.docker.clone();
        let name = self.name.clone();
        let spawned = std::thread::Builder::new()
            .name("safe-exec-late-rm".into())
            .spawn(move || {
                for pause in LATE_CREATE_CHECKS {
                    std::thread::sleep(pause);
                    let _ = remove_now(&docker, std::slice::from_ref(&name));
                }
                release(&name);
            });
        drop(spawned);
    }

    /// The container was never created (its `docker run` failed before the engine made it).
    pub fn disarm(&mut self) {
        self.armed = false;
        release(&self.name);
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if self.armed {
            // If this removal fails too, the name stays with the reaper and `gc`.
            let _ = self.remove();
        }
    }
}
