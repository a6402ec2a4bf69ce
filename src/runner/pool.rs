//! Warm containers: created and started ahead of time with exactly a cold run's hardening, each
//! waiting in its launcher for its one program.
//!
//! A run takes a ready container from the pool, sends it the request, and the container is removed
//! afterwards: no container ever runs two programs. Containers are keyed by everything baked in
//! when they are created (image, limits, engine and runtime): a run whose key has no stock goes
//! cold at once and asks for that key to be stocked. With no ready container, a run takes the
//! oldest one still starting: its start began before the run asked, so its launcher is up sooner
//! than that of a container started now, and no start is wasted (a run that went cold while the
//! pool's start for it was under way would leave one container nobody takes). Taking never waits,
//! so the pool can only make a run faster, never later than a cold one; under demand beyond what
//! the engine can churn the stock drains and runs go cold.
//!
//! One refill thread keeps every wanted key at its size: it starts containers a few at a time,
//! waits for each launcher's ready frame, and retires containers that waited longer than the idle
//! lifetime or whose launcher is gone (an engine restart empties the pool this way; the refill
//! then starts new ones, backing off while the engine is down). A refill never competes with the
//! run it replaces: while a run on a taken container is under way and its key still has a ready
//! container, the key's refill waits for that run's end, at most [`REFILL_HOLD`] (on 2 cores a
//! container start beside a 10 ms program doubles its time; a key with nothing ready refills at
//! once). A key nobody asked for during an
//! idle lifetime is no longer stocked, unless it was prepared (a server's own limits). A batch
//! that knows how many runs it will make for a key says so ([`Pool::expect`]): the stock never
//! exceeds the runs still to come, so the end of a batch starts no container nobody takes. Pool
//! containers are ordinary containers of ours: named,
//! labelled, registered with the reaper, expiring (their launcher gives up waiting at the idle
//! lifetime plus a margin, and `gc` removes them after it), and removed by [`Pool::shutdown`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::attached::{Attached, STARTUP_TIMEOUT};
use super::Sandbox;
use crate::limits::Limits;
use crate::sync::lock;

/// The default number of ready containers kept per key.
pub const DEFAULT_SIZE: usize = 4;
/// The default idle lifetime: a ready container unused this long is replaced by a fresh one.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(120);
/// How long past its idle lifetime a pool container's launcher still waits for a request before
/// giving up by itself (if we die without removing it).
const LAUNCHER_MARGIN: Duration = Duration::from_secs(30);
/// Containers started at once by the refill thread.
const PARALLEL_STARTS: usize = 2;
/// Longest a refill waits for the end of the run that took a container, while the key still has
/// a ready one (see the module docs).
pub const REFILL_HOLD: Duration = Duration::from_millis(250);
/// After a start failed (the engine is down), wait this long before the next, doubling up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Runs still to come for a key, counted down by every take; one count can be shared by the
/// pools of several engines running one batch.
pub type Demand = Arc<AtomicUsize>;

/// How big the pool is and how long its containers wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Ready containers kept per key; 0 turns the pool off.
    pub size: usize,
    /// A ready container unused this long is replaced.
    pub idle: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            size: DEFAULT_SIZE,
            idle: DEFAULT_IDLE,
        }
    }
}

/// Everything a container has baked in at creation, as a key. Two runs share warm containers
/// only when every one of these is equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key(String);

impl Key {
    fn of(sandbox: &Sandbox, limits: &Limits) -> Key {
        Key(format!(
            "{}|{:?}|{:?}|{}|{}|{}|{}|{}|{}",
            sandbox.image(),
            sandbox.docker(),
            sandbox.engine().runtime,
            limits.timeout.as_millis(),
            limits.wall_timeout.as_millis(),
            limits.memory_bytes,
            limits.cpus,
            limits.pids,
            limits.max_output_bytes,
        ))
    }
}

/// A ready container and when it became ready.
struct Warm {
    attached: Attached,
    ready_at: Instant,
}

/// The stock of one key.
struct Stock {
    limits: Limits,
    ready: VecDeque<Warm>,
    /// Started and not up yet, oldest first: a run may take one all the same.
    launching: VecDeque<Attached>,
    /// Starts under way (each on its own thread until the launcher is up or failed), taken or not.
    starting: usize,
    /// Starts under way whose container is not yet in `launching` (the client is being spawned).
    spawning: usize,
    asked_at: Instant,
    /// Prepared for: stocked for the pool's whole life, asked for or not.
    pinned: bool,
    /// Runs still to come, when known: never more containers than that.
    demand: Option<Demand>,
    /// Runs on containers taken from this stock that have not ended.
    running: usize,
    /// Until then, and while `running` and something is ready, no refill starts.
    held_until: Option<Instant>,
}

impl Stock {
    fn wanted(&self, idle: Duration) -> bool {
        self.pinned || self.asked_at.elapsed() < idle
    }

    /// Containers to keep ready or starting: the pool's size, or fewer when fewer runs are to come.
    fn target(&self, size: usize) -> usize {
        self.demand
            .as_ref()
            .map_or(size, |left| size.min(left.load(Ordering::Relaxed)))
    }

    /// Containers in stock or on their way into it (a started one a run took no longer counts).
    fn stocked(&self) -> usize {
        self.ready.len() + self.launching.len() + self.spawning
    }

    /// Whether the refill waits for the runs under way (see [`REFILL_HOLD`]).
    fn held(&self, now: Instant) -> bool {
        refill_held(self.running, self.ready.len(), self.held_until, now)
    }
}

struct State {
    stocks: HashMap<Key, Stock>,
    stopping: bool,
    backoff_until: Option<Instant>,
    backoff: Duration,
}

struct Inner {
    /// The sandbox warm containers are made for (without a pool of its own).
    template: Sandbox,
    config: PoolConfig,
    state: Mutex<State>,
    changed: Condvar,
}

/// A pool of warm containers shared by every run of a process. Cheap to clone.
#[derive(Clone)]
pub struct Pool(Arc<Inner>);

impl std::fmt::Debug for Pool {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Pool")
            .field("config", &self.0.config)
            .finish()
    }
}

impl Pool {
    /// A pool for `template`'s runs; its refill thread starts now.
    pub fn start(template: Sandbox, config: PoolConfig) -> Pool {
        super::registry::batch_removals();
        let pool = Pool(Arc::new(Inner {
            template,
            config,
            state: Mutex::new(State {
                stocks: HashMap::new(),
                stopping: false,
                backoff_until: None,
                backoff: FIRST_BACKOFF,
            }),
            changed: Condvar::new(),
        }));
        let refill = pool.clone();
        let spawned = thread::Builder::new()
            .name("safe-exec-pool".into())
            .spawn(move || refill.refill_forever());
        // Without the thread the pool stays empty and every run goes cold.
        drop(spawned);
        pool
    }

    pub fn config(&self) -> PoolConfig {
        self.0.config
    }

    /// Keep containers for `limits` ready from now on, for the pool's whole life (before the
    /// first run asks, and however long nobody does).
    pub fn prepare(&self, limits: &Limits) {
        let key = Key::of(&self.0.template, limits);
        let mut state = lock(&self.0.state);
        if state.stopping {
            return;
        }
        stock_for(&mut state, key, limits).pinned = true;
        self.0.changed.notify_all();
    }

    /// Keep containers for `limits` ready as [`Pool::prepare`] does, but never more than the runs
    /// `demand` says are still to come (each take counts one down, warm or not).
    pub fn expect(&self, limits: &Limits, demand: Demand) {
        let key = Key::of(&self.0.template, limits);
        let mut state = lock(&self.0.state);
        if state.stopping {
            return;
        }
        let stock = stock_for(&mut state, key, limits);
        stock.pinned = true;
        stock.demand = Some(demand);
        self.0.changed.notify_all();
    }

    /// A ready container for `limits` if one is in stock, else the oldest one still starting;
    /// never waits. Asks for the key to be stocked either way. The run on a taken container holds
    /// the [`Running`] that comes with it until the run ends (the refill may wait for it).
    pub fn take(&self, limits: &Limits) -> Option<(Attached, Running<'_>)> {
        let key = Key::of(&self.0.template, limits);
        let idle = self.0.config.idle;
        let mut retired = Vec::new();
        let taken = {
            let mut state = lock(&self.0.state);
            if state.stopping {
                return None;
            }
            let stock = stock_for(&mut state, key.clone(), limits);
            stock.asked_at = Instant::now();
            if let Some(left) = &stock.demand {
                let _ = left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                    left.checked_sub(1)
                });
            }
            let mut taken = None;
            while let Some(mut warm) = stock.ready.pop_front() {
                if warm.ready_at.elapsed() < idle && warm.attached.is_alive() {
                    taken = Some(warm.attached);
                    break;
                }
                retired.push(warm.attached);
            }
            while taken.is_none() {
                let Some(mut launching) = stock.launching.pop_front() else {
                    break;
                };
                if launching.is_alive() {
                    taken = Some(launching);
                } else {
                    retired.push(launching);
                }
            }
            if taken.is_some() {
                stock.running += 1;
                stock.held_until = Some(Instant::now() + REFILL_HOLD);
            }
            self.0.changed.notify_all();
            taken
        };
        retired.into_iter().for_each(Attached::discard);
        taken.map(|attached| (attached, Running { pool: self, key }))
    }

    /// A run on a container [`Pool::take`] gave out for `key` has ended (its answer is in).
    fn finished(&self, key: &Key) {
        let mut state = lock(&self.0.state);
        if let Some(stock) = state.stocks.get_mut(key) {
            stock.running = stock.running.saturating_sub(1);
            if stock.running == 0 {
                stock.held_until = None;
            }
            self.0.changed.notify_all();
        }
    }

    /// How many containers are ready now, over every key (for health answers and tests).
    pub fn ready(&self) -> usize {
        lock(&self.0.state)
            .stocks
            .values()
            .map(|stock| stock.ready.len())
            .sum()
    }

    /// Stop refilling and remove every container of the pool: the ready ones, and those still
    /// starting once their launcher is up (waited for, at most a start-up's time: a client
    /// killed while it creates its container could leave one behind after any `rm`). The
    /// removals run in the background; see [`super::registry::wait_for_removals`].
    pub fn shutdown(&self) {
        let drained: Vec<Attached> = {
            let mut state = lock(&self.0.state);
            state.stopping = true;
            self.0.changed.notify_all();
            state
                .stocks
                .values_mut()
                .flat_map(|stock| stock.ready.drain(..))
                .map(|warm| warm.attached)
                .collect()
        };
        drained.into_iter().for_each(Attached::discard);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut state = lock(&self.0.state);
        while state.stocks.values().any(|stock| stock.starting > 0) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .0
                .changed
                .wait_timeout(state, left)
                .map_or_else(|poisoned| poisoned.into_inner().0, |(guard, _)| guard);
        }
    }

    fn refill_forever(&self) {
        let mut state = lock(&self.0.state);
        loop {
            if state.stopping {
                return;
            }
            let now = Instant::now();
            let idle = self.0.config.idle;
            let mut retired = Vec::new();
            // Retire stale and dead containers, and every container of a key nobody asked for in
            // an idle lifetime; then forget such keys.
            for stock in state.stocks.values_mut() {
                let wanted = stock.wanted(idle);
                let target = stock.target(self.0.config.size);
                for mut warm in std::mem::take(&mut stock.ready) {
                    if wanted
                        && stock.ready.len() < target
                        && warm.ready_at.elapsed() < idle
                        && warm.attached.is_alive()
                    {
                        stock.ready.push_back(warm);
                    } else {
                        retired.push(warm.attached);
                    }
                }
            }
            state
                .stocks
                .retain(|_, stock| stock.wanted(idle) || stock.starting > 0);
            // Start what is missing, a few at a time, unless the engine is being given a rest.
            let starting: usize = state.stocks.values().map(|stock| stock.starting).sum();
            let resting = state.backoff_until.is_some_and(|until| now < until);
            let mut room = PARALLEL_STARTS.saturating_sub(starting);
            let mut to_start = Vec::new();
            if !resting {
                for (key, stock) in state.stocks.iter_mut() {
                    if stock.held(now) {
                        continue;
                    }
                    while room > 0 && stock.stocked() < stock.target(self.0.config.size) {
                        stock.starting += 1;
                        stock.spawning += 1;
                        room -= 1;
                        to_start.push((key.clone(), stock.limits));
                    }
                }
            }
            drop(state);
            retired.into_iter().for_each(Attached::discard);
            for (key, limits) in to_start {
                let pool = self.clone();
                let spawned = thread::Builder::new()
                    .name("safe-exec-pool-start".into())
                    .spawn(move || pool.start_one(key, limits));
                if spawned.is_err() {
                    break;
                }
            }
            state = lock(&self.0.state);
            // Wake for the next expiry, the end of a rest or a hold, or news.
            let next_expiry = state
                .stocks
                .values()
                .flat_map(|stock| stock.ready.iter().map(|warm| warm.ready_at + idle))
                .min();
            let next_release = state
                .stocks
                .values()
                .filter(|stock| stock.held(now))
                .filter_map(|stock| stock.held_until)
                .min();
            let wake = [next_expiry, state.backoff_until, next_release]
                .into_iter()
                .flatten()
                .min()
                .map_or(idle, |at| at.saturating_duration_since(Instant::now()))
                .max(Duration::from_millis(10));
            state = self
                .0
                .changed
                .wait_timeout(state, wake)
                .map_or_else(|poisoned| poisoned.into_inner().0, |(guard, _)| guard);
        }
    }

    /// Start one container for `key`; a start that fails makes the refill rest.
    fn start_one(&self, key: Key, limits: Limits) {
        let template = &self.0.template;
        let spec = template.container_spec(&limits, self.0.config.idle + LAUNCHER_MARGIN);
        let came_up = match Attached::spawn(template.docker(), &spec, &limits) {
            Ok(attached) => self.launch(&key, attached),
            Err(_) => {
                if let Some(stock) = lock(&self.0.state).stocks.get_mut(&key) {
                    stock.spawning = stock.spawning.saturating_sub(1);
                }
                false
            }
        };
        let mut state = lock(&self.0.state);
        if came_up {
            state.backoff = FIRST_BACKOFF;
            state.backoff_until = None;
        } else {
            // The engine is down or refusing: rest before trying again, longer each time.
            state.backoff_until = Some(Instant::now() + state.backoff);
            state.backoff = (state.backoff * 2).min(MAX_BACKOFF);
        }
        // Done last: shutdown waits for every start to get here.
        if let Some(stock) = state.stocks.get_mut(&key) {
            stock.starting = stock.starting.saturating_sub(1);
        }
        self.0.changed.notify_all();
    }

    /// Put a spawned container in stock as launching (a run may take it from there), wait for its
    /// launcher, then make it ready, unless a run took it meanwhile; a container that failed to
    /// come up, or came up as the pool stops, is retired. Whether its launcher came up (a
    /// container the pool no longer wants counts as up: the engine did its part).
    fn launch(&self, key: &Key, attached: Attached) -> bool {
        let launcher_up = attached.launcher_up();
        let name = attached.name().to_owned();
        {
            let mut state = lock(&self.0.state);
            let stopping = state.stopping;
            let Some(stock) = state.stocks.get_mut(key) else {
                drop(state);
                attached.discard();
                return true;
            };
            stock.spawning = stock.spawning.saturating_sub(1);
            if stopping {
                drop(state);
                attached.discard();
                return true;
            }
            stock.launching.push_back(attached);
            self.0.changed.notify_all();
        }
        let up = launcher_up.wait(STARTUP_TIMEOUT);
        let mut state = lock(&self.0.state);
        let stopping = state.stopping;
        let Some(stock) = state.stocks.get_mut(key) else {
            return up;
        };
        let Some(position) = stock.launching.iter().position(|l| l.name() == name) else {
            return up; // a run took it
        };
        let Some(attached) = stock.launching.remove(position) else {
            return up;
        };
        if up && !stopping {
            stock.ready.push_back(Warm {
                attached,
                ready_at: Instant::now(),
            });
        } else {
            drop(state);
            attached.discard();
        }
        up
    }
}

/// A run on a container the pool gave out, until it ends: dropped on every path out of the run,
/// it tells the pool.
pub struct Running<'a> {
    pool: &'a Pool,
    key: Key,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.pool.finished(&self.key);
    }
}

/// Whether a key's refill waits: runs on its containers are under way, it still has a ready
/// container for the next run, and the hold has not run out.
fn refill_held(running: usize, ready: usize, held_until: Option<Instant>, now: Instant) -> bool {
    running > 0 && ready > 0 && held_until.is_some_and(|until| now < until)
}

fn stock_for<'a>(state: &'a mut State, key: Key, limits: &Limits) -> &'a mut Stock {
    state.stocks.entry(key).or_insert_with(|| Stock {
        limits: *limits,
        ready: VecDeque::new(),
        launching: VecDeque::new(),
        starting: 0,
        spawning: 0,
        asked_at: Instant::now(),
        pinned: false,
        demand: None,
        running: 0,
        held_until: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refill_waits_for_the_run_only_while_something_is_ready_and_not_for_long() {
        let now = Instant::now();
        let until = Some(now + REFILL_HOLD);
        assert!(refill_held(1, 3, until, now));
        // Nothing ready: the next run would go cold, so the refill starts at once.
        assert!(!refill_held(1, 0, until, now));
        // No run under way, or the hold is over.
        assert!(!refill_held(0, 3, until, now));
        assert!(!refill_held(2, 3, until, now + REFILL_HOLD));
        assert!(!refill_held(1, 3, None, now));
    }

    #[test]
    fn a_known_demand_caps_the_stock_and_an_unknown_one_does_not() {
        let mut stock = Stock {
            limits: Limits::default(),
            ready: VecDeque::new(),
            launching: VecDeque::new(),
            starting: 0,
            spawning: 0,
            asked_at: Instant::now(),
            pinned: true,
            demand: None,
            running: 0,
            held_until: None,
        };
        assert_eq!(stock.target(4), 4);
        let demand: Demand = Arc::new(AtomicUsize::new(10));
        stock.demand = Some(demand.clone());
        assert_eq!(stock.target(4), 4);
        demand.store(2, Ordering::Relaxed);
        assert_eq!(stock.target(4), 2);
        demand.store(0, Ordering::Relaxed);
        assert_eq!(stock.target(4), 0);
    }
}
