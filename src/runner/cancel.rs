//! Cancellation of runs in progress, by whoever holds the token: a signal to safe-exec (routed
//! here by [`crate::signals`]), an HTTP client that went away, a grading batch stopping. Every
//! supervisor watching a cancelled token kills its container and returns `interrupted`. The
//! token only records why; it never exits the process.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

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
