//! Which runs may use the warm pool. The pool keeps containers ready per set of limits, and a run
//! whose limits have no stock asks for them to be stocked; with per-request limits, a client
//! sending a different set each time could make the server keep containers ready for every one
//! of them. So besides the server's own limits (always stocked), only a few other sets are
//! served warm at a time ([`EXTRA_KEYS`]); a set takes the place of one that has not been asked
//! for during a pool idle lifetime (by then the pool has let its stock go). Runs with any other
//! limits go cold, exactly as they would without a pool: this only decides where a run's
//! container comes from, never what the run does.

use std::time::{Duration, Instant};

use crate::limits::Limits;
use crate::sync::lock;

/// Sets of limits besides the server's own that are served from the pool at a time.
pub const EXTRA_KEYS: usize = 4;

/// The sets of limits served warm.
#[derive(Debug)]
pub struct WarmKeys {
    server: Limits,
    idle: Duration,
    /// The other sets served warm, with when each was last asked for.
    extra: std::sync::Mutex<Vec<(Limits, Instant)>>,
}

impl WarmKeys {
    /// For a server with `server` limits whose pool forgets a set after `idle`.
    pub fn new(server: Limits, idle: Duration) -> WarmKeys {
        WarmKeys {
            server,
            idle,
            extra: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Whether a run with `limits` may take a warm container (and have the pools stock them).
    pub fn is_warm(&self, limits: &Limits) -> bool {
        self.admit(limits, Instant::now())
    }

    fn admit(&self, limits: &Limits, now: Instant) -> bool {
        if *limits == self.server {
            return true;
        }
        let mut extra = lock(&self.extra);
        if let Some(entry) = extra.iter_mut().find(|(known, _)| known == limits) {
            entry.1 = now;
            return true;
        }
        if extra.len() < EXTRA_KEYS {
            extra.push((*limits, now));
            return true;
        }
        // Only a set the pool has forgotten gives up its place.
        let idle = self.idle;
        if let Some(entry) = extra
            .iter_mut()
            .find(|(_, asked)| now.saturating_duration_since(*asked) >= idle)
        {
            *entry = (*limits, now);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_sets_are_warm_and_places_free_up_only_after_an_idle_lifetime() {
        let server = Limits::default();
        let keys = WarmKeys::new(server, Duration::from_secs(120));
        let with_pids = |pids| Limits { pids, ..server };
        let start = Instant::now();
        assert!(keys.admit(&server, start));
        for pids in 0..EXTRA_KEYS as u32 {
            assert!(keys.admit(&with_pids(10 + pids), start));
        }
        // Full: a new set goes cold, known ones stay warm, the server's always is.
        assert!(!keys.admit(&with_pids(99), start + Duration::from_secs(60)));
        assert!(keys.admit(&with_pids(10), start + Duration::from_secs(60)));
        assert!(keys.admit(&server, start + Duration::from_secs(60)));
        // Once a set was not asked for in an idle lifetime, a new one takes its place.
        let later = start + Duration::from_secs(121);
        assert!(keys.admit(&with_pids(99), later));
        // Every place asked for lately: the next new set goes cold again.
        for pids in [10, 12, 13, 99] {
            assert!(keys.admit(&with_pids(pids), later));
        }
        assert!(!keys.admit(&with_pids(98), later));
    }
}
