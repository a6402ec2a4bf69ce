//! Cancellation of runs in progress: by a signal to safe-exec (SIGINT, SIGTERM, SIGHUP) or by a
//! caller (an HTTP client that went away, a grading batch stopping).
//!
//! The first signal cancels the shared [`CancelToken`]; every supervisor watching it kills its
//! container and returns `interrupted`. A second signal removes every live container without
//! waiting and exits at once with 128+N.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::docker_cli::DockerCli;
use super::guard;
use crate::exit_codes;

const NOT_CANCELLED: i32 = 0;
const CANCELLED_BY_CALLER: i32 = -1;

/// A flag shared by the runs it should stop. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicI32>);

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Cancel for a reason other than a signal.
    pub fn cancel(&self) {
        let _ = self.0.compare_exchange(
            NOT_CANCELLED,
            CANCELLED_BY_CALLER,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    /// Cancel because safe-exec received `signal`.
    pub fn cancel_by_signal(&self, signal: i32) {
        let _ = self
            .0
            .compare_exchange(NOT_CANCELLED, signal, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst) != NOT_CANCELLED
    }

    /// The signal that cancelled, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.0.load(Ordering::SeqCst) {
            signal if signal > 0 => Some(signal),
            _ => None,
        }
    }
}

/// Route SIGINT, SIGTERM and SIGHUP to `token` for the rest of the process's life.
pub fn cancel_on_signals(token: CancelToken, docker: DockerCli) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("safe-exec-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if token.is_cancelled() {
                    guard::remove_all_detached(&docker);
                    std::process::exit(i32::from(exit_codes::for_signal(signal)));
                }
                token.cancel_by_signal(signal);
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_cancellation_wins() {
        let token = CancelToken::new();
        assert!(!token.is_cancelled());
        token.cancel_by_signal(2);
        token.cancel_by_signal(15);
        token.cancel();
        assert!(token.is_cancelled());
        assert_eq!(token.signal(), Some(2));
        let by_caller = CancelToken::new();
        by_caller.cancel();
        assert!(by_caller.is_cancelled());
        assert_eq!(by_caller.signal(), None);
    }
}
