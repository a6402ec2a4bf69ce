//! Hints: a short sentence added to an answer when a failure looks like the sandbox's doing (a
//! network call, a write outside /tmp, a limit), so a user is not left wondering why code that
//! works on their laptop fails here.
//!
//! A hint is advice only. It is found by reading what the program printed, which the program
//! controls, so it must never change a status, an HTTP code or anything else decided by the
//! supervisor.

use crate::limits::human_bytes;
use crate::report::{Outcome, Status};
use crate::sandbox::docker::TMPFS_BYTES;

/// Messages Python and libc print when the network is missing (`--network none`).
const NETWORK: &[&str] = &[
    "Network is unreachable",
    "Temporary failure in name resolution",
    "Name or service not known",
    "No address associated with hostname",
];
/// The root filesystem is mounted read-only.
const READ_ONLY: &[&str] = &["Read-only file system"];
/// /tmp is a small tmpfs and files are capped (RLIMIT_FSIZE) below its size.
const NO_SPACE: &[&str] = &["No space left on device", "File too large"];
/// Python's own message when an allocation fails before the OOM killer steps in.
const MEMORY: &[&str] = &["MemoryError"];
/// The pids limit stops new processes and threads.
const PIDS: &[&str] = &["can't start new thread", "Resource temporarily unavailable"];
/// Only the standard library is installed.
const MODULES: &[&str] = &["ModuleNotFoundError: No module named"];

/// The hint for `outcome`, if what it printed matches a known sandbox restriction. Output is
/// searched stderr first, then stdout (a program may print an exception it caught).
pub fn hint(outcome: &Outcome) -> Option<String> {
    if matches!(outcome.status, Status::Rejected | Status::SandboxError) {
        return None;
    }
    let stderr = String::from_utf8_lossy(&outcome.stderr.bytes);
    let stdout = String::from_utf8_lossy(&outcome.stdout.bytes);
    let found = |needles: &[&str]| {
        needles
            .iter()
            .any(|needle| stderr.contains(needle) || stdout.contains(needle))
    };
    let limits = &outcome.limits;
    let tmp = human_bytes(TMPFS_BYTES);
    if found(NETWORK) {
        Some("Network access is disabled".to_owned())
    } else if found(READ_ONLY) {
        Some(format!(
            "The filesystem is read-only; only /tmp ({tmp}) is writable"
        ))
    } else if found(NO_SPACE) {
        Some(format!("Only /tmp is writable, and it holds at most {tmp}"))
    } else if found(MEMORY) {
        Some(format!(
            "The memory limit is {}",
            human_bytes(limits.memory_bytes)
        ))
    } else if found(PIDS) {
        Some(format!(
            "At most {} processes and threads can run at once",
            limits.pids
        ))
    } else if found(MODULES) {
        Some("Only the Python standard library is available".to_owned())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    fn failed_with(stderr: &str) -> Outcome {
        let mut outcome = Outcome::not_run(Status::RuntimeError, "", Limits::default());
        outcome.stderr.bytes = stderr.as_bytes().to_vec();
        outcome
    }

    #[test]
    fn network_and_filesystem_failures_get_hints() {
        let dns = failed_with("socket.gaierror: [Errno -3] Temporary failure in name resolution");
        assert_eq!(hint(&dns).as_deref(), Some("Network access is disabled"));
        let unreachable = failed_with("OSError: [Errno 101] Network is unreachable");
        assert_eq!(
            hint(&unreachable).as_deref(),
            Some("Network access is disabled")
        );
        let read_only = failed_with("OSError: [Errno 30] Read-only file system: '/x'");
        assert_eq!(
            hint(&read_only).as_deref(),
            Some("The filesystem is read-only; only /tmp (16 MiB) is writable")
        );
        assert!(
            hint(&failed_with("OSError: [Errno 28] No space left on device"))
                .unwrap()
                .contains("/tmp")
        );
    }

    #[test]
    fn caught_exceptions_printed_to_stdout_count_too() {
        let mut outcome = Outcome::not_run(Status::Ok, "", Limits::default());
        outcome.stdout.bytes = b"[Errno -2] Name or service not known\n".to_vec();
        assert_eq!(
            hint(&outcome).as_deref(),
            Some("Network access is disabled")
        );
    }

    #[test]
    fn ordinary_failures_and_refusals_get_none() {
        assert_eq!(
            hint(&failed_with("ZeroDivisionError: division by zero")),
            None
        );
        let mut rejected = failed_with("Network is unreachable");
        rejected.status = Status::Rejected;
        assert_eq!(hint(&rejected), None);
    }

    #[test]
    fn limits_are_named_from_the_run() {
        assert_eq!(
            hint(&failed_with("MemoryError")).as_deref(),
            Some("The memory limit is 128 MiB")
        );
        assert_eq!(
            hint(&failed_with("RuntimeError: can't start new thread")).as_deref(),
            Some("At most 64 processes and threads can run at once")
        );
    }
}
