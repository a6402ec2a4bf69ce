//! Finding and removing our stale containers: those whose run's deadline passed long ago (their
//! supervisor was killed with SIGKILL, or the machine rebooted mid-run). Only containers carrying
//! our managed label are ever listed, so nothing else on the host is touched.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::sandbox::{EXPIRES_LABEL, MANAGED_LABEL, SESSION_LABEL};

use super::docker_cli::{DockerCli, EngineError};
use super::engine::EngineKind;

const LIST_TIMEOUT: Duration = Duration::from_secs(15);
const REMOVE_TIMEOUT: Duration = Duration::from_secs(60);

/// Which of our containers to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only those past their expiry label: safe while other runs are in progress.
    Stale,
    /// Every container of ours, running or not.
    All,
}

/// Remove our containers in `scope` (only those of `session`, when given); returns the names
/// removed.
pub fn collect(
    docker: &DockerCli,
    kind: EngineKind,
    session: Option<&str>,
    scope: Scope,
) -> Result<Vec<String>, EngineError> {
    let mut list = [
        "ps",
        "--all",
        "--filter",
        &format!("label={MANAGED_LABEL}=1"),
    ]
    .map(String::from)
    .to_vec();
    if let Some(session) = session {
        list.extend([
            "--filter".to_owned(),
            format!("label={SESSION_LABEL}={session}"),
        ]);
    }
    list.extend(["--format".to_owned(), list_format(kind)]);
    let listing = docker.call(&list, LIST_TIMEOUT, None)?.stdout;
    let doomed = select(&listing, unix_now(), scope);
    if doomed.is_empty() {
        return Ok(doomed);
    }
    let mut remove = docker.remove_args();
    remove.extend(doomed.iter().cloned());
    let output = docker.call_unchecked(&remove, REMOVE_TIMEOUT)?;
    // A container another process removed meanwhile is fine; anything else is reported.
    if !output.status.success()
        && !output
            .stderr
            .lines()
            .all(|line| line.contains("No such container"))
    {
        return Err(super::docker_cli::classify_failure(
            "rm",
            &output.stderr,
            None,
        ));
    }
    Ok(doomed)
}

/// `ps --format`: the name and the expiry label, tab-separated. Podman's listing has the labels as
/// a map; Docker's has a `Label` method.
fn list_format(kind: EngineKind) -> String {
    match kind {
        EngineKind::Docker => format!("{{{{.Names}}}}\t{{{{.Label \"{EXPIRES_LABEL}\"}}}}"),
        EngineKind::Podman => format!("{{{{.Names}}}}\t{{{{index .Labels \"{EXPIRES_LABEL}\"}}}}"),
    }
}

/// From `docker ps` lines of `name<TAB>expires`, the names to remove at time `now`. A container
/// with a missing or unreadable expiry is stale (it cannot be one of our live runs).
pub fn select(listing: &str, now: u64, scope: Scope) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| {
            let (name, expires) = line.split_once('\t').unwrap_or((line, ""));
            let name = name.trim();
            if name.is_empty() {
                return None;
            }
            let stale = expires.trim().parse::<u64>().map_or(true, |at| at <= now);
            (scope == Scope::All || stale).then(|| name.to_owned())
        })
        .collect()
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_engine_lists_the_expiry_its_own_way() {
        assert_eq!(
            list_format(EngineKind::Docker),
            "{{.Names}}\t{{.Label \"safe-exec.expires\"}}"
        );
        assert_eq!(
            list_format(EngineKind::Podman),
            "{{.Names}}\t{{index .Labels \"safe-exec.expires\"}}"
        );
    }

    #[test]
    fn only_expired_containers_are_stale() {
        let listing = "old\t100\nfresh\t300\nbroken\t\nweird\tabc\n";
        assert_eq!(
            select(listing, 200, Scope::Stale),
            ["old", "broken", "weird"]
        );
        assert_eq!(
            select(listing, 200, Scope::All),
            ["old", "fresh", "broken", "weird"]
        );
        assert!(select("", 200, Scope::All).is_empty());
    }
}
