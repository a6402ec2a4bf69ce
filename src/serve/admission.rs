//! Who may start a run, and when: bounded concurrency with a bounded queue, and the registry of
//! runs in progress that shutdown cancels. (What each client may hold, its rate budget included,
//! is [`super::clients`].)
//!
//! Everything here answers at once or waits a bounded time; nothing in this room runs a program
//! or talks to docker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::runner::CancelToken;
use crate::sync::lock;

/// Why a request was not given a run slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot is busy and the queue is full.
    QueueFull,
    /// The server is shutting down.
    Closed,
}

/// At most `max_concurrent` runs at once; at most `queue` more requests waiting for a slot, in
/// arrival order. A waiting request whose client goes away leaves the queue.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    max_concurrent: usize,
    queue: usize,
    waiting: Arc<AtomicUsize>,
}

impl Admission {
    pub fn new(max_concurrent: usize, queue: usize) -> Admission {
        Admission {
            slots: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            queue,
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A run slot, now or after waiting in the queue. The permit is the slot: hold it until the
    /// run (container included) is over.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => return Ok(permit),
            Err(tokio::sync::TryAcquireError::Closed) => return Err(Refusal::Closed),
            Err(tokio::sync::TryAcquireError::NoPermits) => {}
        }
        let place = Waiting::join(&self.waiting);
        if place.ahead >= self.queue {
            return Err(Refusal::QueueFull);
        }
        // Tokio's semaphore is fair: slots go to waiters in the order they asked.
        self.slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Refusal::Closed)
    }

    /// Refuse every waiting and future request; runs holding a slot are not affected.
    pub fn close(&self) {
        self.slots.close();
    }

    pub fn running(&self) -> usize {
        self.max_concurrent
            .saturating_sub(self.slots.available_permits())
    }

    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }

    pub fn queue(&self) -> usize {
        self.queue
    }
}

/// One place in the queue, given back on drop (also when the request future is dropped).
struct Waiting {
    count: Arc<AtomicUsize>,
    ahead: usize,
}

impl Waiting {
    fn join(count: &Arc<AtomicUsize>) -> Waiting {
        let ahead = count.fetch_add(1, Ordering::SeqCst);
        Waiting {
            count: count.clone(),
            ahead,
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The runs in progress, so shutdown can cancel them and wait until their containers are gone.
#[derive(Debug, Default)]
pub struct RunRegistry {
    inner: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    next: u64,
    runs: HashMap<u64, CancelToken>,
    /// Set once shutdown began: the signal that started it.
    stopping: Option<i32>,
}

impl RunRegistry {
    /// Record a run about to start. If shutdown has begun, its token is cancelled at once, so a
    /// run can never slip in after [`RunRegistry::stop_all`] swept the others.
    pub fn register(&self, token: &CancelToken) -> Registration<'_> {
        let mut inner = lock(&self.inner);
        let id = inner.next;
        inner.next += 1;
        inner.runs.insert(id, token.clone());
        if let Some(signal) = inner.stopping {
            token.cancel_by_signal(signal);
        }
        Registration { registry: self, id }
    }

    /// Cancel every run in progress and every one registered from now on.
    pub fn stop_all(&self, signal: i32) {
        let mut inner = lock(&self.inner);
        inner.stopping = Some(signal);
        for token in inner.runs.values() {
            token.cancel_by_signal(signal);
        }
    }

    pub fn len(&self) -> usize {
        lock(&self.inner).runs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wait until no run is in progress (every container removed), at most `within`.
    pub async fn wait_idle(&self, within: Duration) -> bool {
        let until = Instant::now() + within;
        while !self.is_empty() {
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

/// A run's entry in the registry, removed on drop.
pub struct Registration<'a> {
    registry: &'a RunRegistry,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        lock(&self.registry.inner).runs.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queue_is_bounded_and_closing_refuses_waiters() {
        let admission = Arc::new(Admission::new(1, 1));
        let running = admission.enter().await.unwrap();
        assert_eq!(admission.running(), 1);
        let waiter = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.enter().await.map(drop) })
        };
        while admission.queued() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(admission.enter().await.unwrap_err(), Refusal::QueueFull);
        drop(running);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert_eq!(admission.queued(), 0);
        admission.close();
        assert_eq!(admission.enter().await.unwrap_err(), Refusal::Closed);
    }

    #[test]
    fn registry_cancels_present_and_late_runs() {
        let registry = RunRegistry::default();
        let early = CancelToken::new();
        let registration = registry.register(&early);
        registry.stop_all(15);
        assert_eq!(early.signal(), Some(15));
        let late = CancelToken::new();
        let _late_registration = registry.register(&late);
        assert!(late.is_cancelled());
        drop(registration);
        assert_eq!(registry.len(), 1);
    }
}
