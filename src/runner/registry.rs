//! The one registry of our live containers, and the last line of defence around each.
//!
//! A name enters the registry before its `docker run` and leaves once the container is known to be
//! gone. Every entry and exit is passed on to the [reaper](super::reaper), so a SIGKILLed
//! safe-exec still has its containers removed; a second Ctrl-C removes every live one before
//! exiting at once. [`ContainerGuard`] owns one name: it removes the container on every path out
//! (`Drop` included), at once or — once a run has reported — on the background remover, so an
//! answer never waits for docker's teardown.

use std::collections::BTreeSet;
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

struct Registry {
    live: BTreeSet<String>,
    reaper: Option<Reaper>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    live: BTreeSet::new(),
    reaper: None,
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
        if let Some(reaper) = self.reaper.as_mut() {
            if tell(reaper).is_ok() {
                return;
            }
            if let Some(dead) = self.reaper.take() {
                dead.discard();
            }
        }
        let Some(mut reaper) = Reaper::start(docker) else {
            return;
        };
        let told = self.live.iter().try_for_each(|name| reaper.watch(name));
        if told.is_ok() && tell(&mut reaper).is_ok() {
            self.reaper = Some(reaper);
        } else {
            reaper.discard();
        }
    }
}

fn register(docker: &DockerCli, name: &str) {
    let mut registry = lock(&REGISTRY);
    registry.live.insert(name.to_owned());
    registry.tell_reaper(docker, |reaper| reaper.watch(name));
}

fn register_uncertain(docker: &DockerCli, name: &str) {
    let mut registry = lock(&REGISTRY);
    registry.tell_reaper(docker, |reaper| reaper.watch_uncertain(name));
}

fn release(name: &str) {
    let mut registry = lock(&REGISTRY);
    if registry.live.remove(name) {
        // A new reaper never heard of the name: only a running one needs the news.
        if let Some(reaper) = registry.reaper.as_mut() {
            let _ = reaper.release(name);
        }
    }
}

/// The containers this process has named and not yet seen removed.
pub fn live_names() -> Vec<String> {
    lock(&REGISTRY).live.iter().cloned().collect()
}

/// Start `docker rm -f` for every live container without waiting: used when a second signal asks
/// us to exit at once. The removal runs in its own process group and outlives us; the reaper
/// still holds every name too.
pub fn remove_all_detached(docker: &DockerCli) {
    let names = live_names();
    if names.is_empty() {
        return;
    }
    let mut command = docker.command(["rm", "--force"].into_iter().map(String::from).chain(names));
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _ = command.spawn();
}

/// Wait until every background removal has finished, at most until `deadline`; whether they all
/// did. Names whose removal failed stay with the reaper and `gc`.
pub fn wait_for_removals(deadline: Instant) -> bool {
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
    let mut args = vec![
        "rm".to_owned(),
        "--force".to_owned(),
        "--volumes".to_owned(),
    ];
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

fn remover() -> &'static Mutex<Sender<(DockerCli, String)>> {
    static REMOVER: OnceLock<Mutex<Sender<(DockerCli, String)>>> = OnceLock::new();
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

fn remove_forever(queue: Receiver<(DockerCli, String)>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < REMOVE_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
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
            if remove_now(&client, &names).is_ok() {
                names.iter().for_each(|name| release(name));
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
        remove_now(&self.docker, std::slice::from_ref(&self.name))?;
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
        let sent = lock(remover()).send((self.docker.clone(), self.name.clone()));
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
