//! The last line of defence: a container, once named, is removed on every path out.
//!
//! [`ContainerGuard`] registers the name before `docker create` runs and removes the container on
//! drop unless the supervisor already did. The process-wide registry lets a second Ctrl-C remove
//! every live container of ours before exiting at once, and every name is also handed to the
//! [`reaper`](super::reaper), which removes it if we die without running any of this.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use super::docker_cli::{DockerCli, EngineError};
use super::reaper;

/// How long one `docker rm -f` may take before we give up on it.
pub const REMOVE_TIMEOUT: Duration = Duration::from_secs(15);

/// When a cut-short create's container is looked for again (pauses between `rm` calls).
const LATE_CREATE_CHECKS: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_secs(1),
    Duration::from_secs(3),
    Duration::from_secs(10),
];

static LIVE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Owns a container name until the container is known to be gone.
#[derive(Debug)]
pub struct ContainerGuard {
    docker: DockerCli,
    name: String,
    armed: bool,
}

impl ContainerGuard {
    pub fn new(docker: DockerCli, name: String) -> ContainerGuard {
        live().insert(name.clone());
        reaper::watch(&docker, &name);
        ContainerGuard {
            docker,
            name,
            armed: true,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Kill (SIGKILL, never a graceful stop) and remove the container: `docker rm --force` does
    /// both in one call. A container that is already gone counts as removed.
    pub fn remove(&mut self) -> Result<(), EngineError> {
        if !self.armed {
            return Ok(());
        }
        let args = ["rm", "--force", "--volumes", self.name.as_str()].map(String::from);
        let output = self.docker.call_unchecked(&args, REMOVE_TIMEOUT)?;
        if output.status.success() || output.stderr.contains("No such container") {
            self.disarm();
            Ok(())
        } else {
            Err(super::docker_cli::classify_failure(
                "rm",
                &output.stderr,
                None,
            ))
        }
    }

    /// Its `docker create` was cut short (timed out or cancelled): the engine may still make the
    /// container after any `rm` we run now. Removal is retried in the background for a while, and
    /// the reaper, told the name is uncertain, looks again after we exit.
    pub fn abandon_uncertain(mut self) {
        self.armed = false;
        reaper::watch_uncertain(&self.docker, &self.name);
        let docker = self.docker.clone();
        let name = self.name.clone();
        let spawned = std::thread::Builder::new()
            .name("safe-exec-late-rm".into())
            .spawn(move || {
                let args = ["rm", "--force", "--volumes", name.as_str()].map(String::from);
                for pause in LATE_CREATE_CHECKS {
                    std::thread::sleep(pause);
                    let _ = docker.call_unchecked(&args, REMOVE_TIMEOUT);
                }
                live().remove(&name);
                reaper::release(&docker, &name);
            });
        drop(spawned);
    }

    /// The container was never created (its `docker create` failed outright).
    pub fn disarm(&mut self) {
        self.armed = false;
        live().remove(&self.name);
        reaper::release(&self.docker, &self.name);
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if self.armed {
            // If this removal fails too, the name stays with the reaper and `gc`.
            let _ = self.remove();
            live().remove(&self.name);
        }
    }
}

/// Start `docker rm -f` for every live container without waiting: used when a second signal asks
/// us to exit at once. The removals are in their own process group and outlive us.
pub fn remove_all_detached(docker: &DockerCli) {
    let names: Vec<String> = live().iter().cloned().collect();
    if names.is_empty() {
        return;
    }
    let mut command = docker.command(["rm", "--force"].iter().map(|s| s.to_string()).chain(names));
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _ = command.spawn();
}

/// The containers this process has named and not yet seen removed.
pub fn live_names() -> Vec<String> {
    live().iter().cloned().collect()
}

fn live() -> std::sync::MutexGuard<'static, BTreeSet<String>> {
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
