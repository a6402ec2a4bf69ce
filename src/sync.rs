//! Small shared concurrency helpers: the one poison-tolerant lock every room uses.
//!
//! A panic on one thread must not make the state behind a mutex unusable for good (a server keeps
//! serving, a batch keeps removing its containers). Every piece of state guarded this way is kept
//! valid between statements, so the data of a poisoned lock is still sound to use.

use std::sync::{Mutex, MutexGuard};

/// Lock `mutex`, taking the data back from a poisoned lock.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How many CPUs this process may use: the default for `grade --jobs` and
/// `serve --max-concurrent`.
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
