//! Cancellation of runs in progress, by whoever holds the token: a signal to safe-exec (routed
//! here by [`crate::signals`]), an HTTP client that went away, a grading batch stopping. Every
//! supervisor watching a cancelled token is woken at once (no polling), kills its container and
//! returns `interrupted`. The token only records why; it never exits the process.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::sync::lock;

const NOT_CANCELLED: i32 = 0;
const CANCELLED_BY_CALLER: i32 = -1;

type Waker = Box<dyn Fn() + Send>;

#[derive(Default)]
struct Inner {
    state: AtomicI32,
    next_waker: AtomicU64,
    wakers: Mutex<Vec<(u64, Waker)>>,
}

/// A flag shared by the runs it should stop. Cheap to clone.
#[derive(Clone, Default)]
pub struct CancelToken(Arc<Inner>);

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CancelToken")
            .field("state", &self.0.state.load(Ordering::SeqCst))
            .finish()
    }
}

/// Calls its waker when the token is cancelled, until dropped.
pub struct Subscription {
    token: CancelToken,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        lock(&self.token.0.wakers).retain(|(id, _)| *id != self.id);
    }
}

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Cancel for a reason other than a signal.
    pub fn cancel(&self) {
        self.set(CANCELLED_BY_CALLER);
    }

    /// Cancel because safe-exec received `signal`.
    pub fn cancel_by_signal(&self, signal: i32) {
        self.set(signal);
    }

    fn set(&self, reason: i32) {
        let first = self
            .0
            .state
            .compare_exchange(NOT_CANCELLED, reason, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if first {
            for (_, wake) in lock(&self.0.wakers).iter() {
                wake();
            }
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.state.load(Ordering::SeqCst) != NOT_CANCELLED
    }

    /// The signal that cancelled, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.0.state.load(Ordering::SeqCst) {
            signal if signal > 0 => Some(signal),
            _ => None,
        }
    }

    /// Call `wake` when the token is cancelled (at once if it already is), until the returned
    /// subscription is dropped. `wake` runs on the cancelling thread: keep it short (send on a
    /// channel).
    pub fn on_cancel(&self, wake: impl Fn() + Send + 'static) -> Subscription {
        let id = self.0.next_waker.fetch_add(1, Ordering::Relaxed);
        let mut wakers = lock(&self.0.wakers);
        // Checked under the lock `set` takes to call wakers: no cancellation falls in between.
        if self.is_cancelled() {
            wake();
        }
        wakers.push((id, Box::new(wake)));
        Subscription {
            token: self.clone(),
            id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

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

    #[test]
    fn subscribers_are_woken_once_and_late_ones_at_once() {
        let token = CancelToken::new();
        let (woken, wakes) = mpsc::channel();
        let early = woken.clone();
        let _first = token.on_cancel(move || early.send("first").unwrap());
        let gone = woken.clone();
        drop(token.on_cancel(move || gone.send("dropped").unwrap()));
        token.cancel_by_signal(15);
        token.cancel();
        let late = woken.clone();
        let _second = token.on_cancel(move || late.send("late").unwrap());
        drop(woken);
        assert_eq!(wakes.try_iter().collect::<Vec<_>>(), ["first", "late"]);
    }
}
