//! Several engines as one: each run goes to the engine with the most free capacity, and a run
//! that an engine failed before its program started goes to another.
//!
//! A [`Fleet`] holds one [`Sandbox`] per engine (each with its own client, context, runtime and
//! warm pool) and how many runs each takes at once. [`Fleet::run`] waits for a free slot on an
//! engine that is up, runs the job there and says which engine ran it. What happens when an
//! engine fails:
//!
//! - The program never started (the container could not be made, the engine went away before the
//!   started frame): the run goes to another engine it has not tried, when its input can be given
//!   twice; with none left it is a `sandbox_error`.
//! - The program had started: the run is a `sandbox_error` (never a verdict the program did not
//!   earn); it is not run again, since the program may have had effects we cannot see.
//! - Either way, if the engine no longer answers, it is marked down: no run goes to it while
//!   another engine can take it, until a probe thread sees it answer again, and then the removals
//!   that failed while it was down are retried first
//!   ([`registry::retry_removals`](super::registry::retry_removals)). When every engine left is
//!   down, a run still tries one: it may be back, and if not its own error says why.
//!
//! The choice itself is a pure function ([`choose`]), tested as a table. This module never prints.

use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::cancel::CancelToken;
use super::docker_cli::EngineError;
use super::job::{Job, RunIo};
use super::{gc, registry, Sandbox};
use crate::report::{Outcome, Status};
use crate::sync::lock;

/// How often an engine marked down is asked whether it is back.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// One engine of the fleet as [`choose`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slots {
    /// Runs it takes at once.
    pub capacity: usize,
    /// Runs it has now.
    pub running: usize,
    /// It answered the last time it was asked.
    pub up: bool,
}

/// The engine for the next run: among those that are up, not excluded and not full, the one with
/// the most free slots (the first of equals). `None` when none can take it now.
pub fn choose(engines: &[Slots], excluded: &[bool]) -> Option<usize> {
    engines
        .iter()
        .enumerate()
        .filter(|(index, slots)| {
            slots.up
                && !excluded.get(*index).copied().unwrap_or(false)
                && slots.running < slots.capacity
        })
        .max_by(|(a_index, a), (b_index, b)| {
            (a.capacity - a.running)
                .cmp(&(b.capacity - b.running))
                .then(b_index.cmp(a_index))
        })
        .map(|(index, _)| index)
}

/// A finished run and the engine that ran it.
#[derive(Debug)]
pub struct Ran {
    pub outcome: Outcome,
    /// The engine's name ([`super::Engine::name`]); `None` when no engine could take the run.
    pub engine: Option<String>,
}

struct Member {
    sandbox: Sandbox,
    capacity: usize,
}

struct State {
    slots: Vec<Slots>,
    probing: bool,
}

struct Inner {
    members: Vec<Member>,
    state: Mutex<State>,
    changed: Condvar,
}

/// Engines runs are spread over. Cheap to clone.
#[derive(Clone)]
pub struct Fleet(Arc<Inner>);

impl std::fmt::Debug for Fleet {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Fleet")
            .field("engines", &self.names())
            .finish()
    }
}

impl Fleet {
    /// A fleet of `members`: each sandbox with the runs it takes at once (at least 1).
    pub fn new(members: Vec<(Sandbox, usize)>) -> Fleet {
        let members: Vec<Member> = members
            .into_iter()
            .map(|(sandbox, capacity)| Member {
                sandbox,
                capacity: capacity.max(1),
            })
            .collect();
        let slots = members
            .iter()
            .map(|member| Slots {
                capacity: member.capacity,
                running: 0,
                up: true,
            })
            .collect();
        Fleet(Arc::new(Inner {
            members,
            state: Mutex::new(State {
                slots,
                probing: false,
            }),
            changed: Condvar::new(),
        }))
    }

    /// A fleet on `engines` with `image`, each engine taking its own `=N` runs at once or `each`.
    pub fn on(engines: &super::Engines, image: Option<String>, each: usize) -> Fleet {
        Fleet::new(
            engines
                .0
                .iter()
                .zip(engines.capacities(each))
                .map(|(engine, capacity)| (Sandbox::on(engine, image.clone()), capacity))
                .collect(),
        )
    }

    /// This fleet with a warm pool on every engine, configured from that engine's capacity.
    /// Engines marked down stay down (their pools back off until they answer).
    pub fn with_pools(self, config: impl Fn(usize) -> super::pool::PoolConfig) -> Fleet {
        let members = self
            .0
            .members
            .iter()
            .map(|member| {
                (
                    member.sandbox.clone().with_pool(config(member.capacity)),
                    member.capacity,
                )
            })
            .collect();
        let fleet = Fleet::new(members);
        let down: Vec<usize> = {
            let state = lock(&self.0.state);
            (0..state.slots.len())
                .filter(|&index| !state.slots[index].up)
                .collect()
        };
        down.into_iter().for_each(|index| fleet.mark_down(index));
        fleet
    }

    /// Keep warm containers for `limits` on every engine with a pool.
    pub fn prepare_pools(&self, limits: &crate::limits::Limits) {
        self.sandboxes()
            .filter_map(Sandbox::pool)
            .for_each(|pool| pool.prepare(limits));
    }

    /// Keep warm containers for each of `runs` (limits, how many runs will use them) on every
    /// engine with a pool, never more than the runs still to come (one count over every engine).
    pub fn expect_runs(&self, runs: &[(crate::limits::Limits, usize)]) {
        let mut merged: Vec<(crate::limits::Limits, usize)> = Vec::new();
        for (limits, count) in runs {
            match merged.iter_mut().find(|(seen, _)| seen == limits) {
                Some((_, total)) => *total += count,
                None => merged.push((*limits, *count)),
            }
        }
        for (limits, count) in merged {
            let demand: super::pool::Demand = std::sync::Arc::new(count.into());
            self.sandboxes()
                .filter_map(Sandbox::pool)
                .for_each(|pool| pool.expect(&limits, demand.clone()));
        }
    }

    /// Warm containers kept per key over every engine.
    pub fn pool_size(&self) -> usize {
        self.sandboxes()
            .filter_map(Sandbox::pool)
            .map(|pool| pool.config().size)
            .sum()
    }

    /// The runner image (the same on every engine).
    pub fn image(&self) -> &str {
        self.0
            .members
            .first()
            .map_or(crate::sandbox::DEFAULT_IMAGE, |member| {
                member.sandbox.image()
            })
    }

    /// The engines' names, in order.
    pub fn names(&self) -> Vec<String> {
        self.sandboxes()
            .map(|sandbox| sandbox.engine().name.clone())
            .collect()
    }

    /// Every engine's sandbox, in order.
    pub fn sandboxes(&self) -> impl Iterator<Item = &Sandbox> {
        self.0.members.iter().map(|member| &member.sandbox)
    }

    /// Runs the whole fleet takes at once.
    pub fn capacity(&self) -> usize {
        self.0.members.iter().map(|member| member.capacity).sum()
    }

    /// Ask every engine whether it is ready; those that are not are marked down (and probed
    /// until they are). `Ok` with the names of the engines that are down when at least one is
    /// up; the first engine's error when none is.
    pub fn check_ready(&self) -> Result<Vec<(String, EngineError)>, EngineError> {
        let checks: Vec<Result<(), EngineError>> = thread::scope(|scope| {
            let handles: Vec<_> = self
                .sandboxes()
                .map(|sandbox| scope.spawn(move || sandbox.check_ready()))
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle.join().unwrap_or_else(|_| {
                        Err(EngineError::Failed {
                            command: "image inspect".to_owned(),
                            detail: "the check panicked".to_owned(),
                        })
                    })
                })
                .collect()
        });
        let mut down = Vec::new();
        for (index, check) in checks.into_iter().enumerate() {
            if let Err(error) = check {
                self.mark_down(index);
                down.push((self.0.members[index].sandbox.engine().name.clone(), error));
            }
        }
        if down.len() == self.0.members.len() {
            return Err(down.swap_remove(0).1);
        }
        Ok(down)
    }

    /// Run `job` on the engine with the most free capacity; see the module docs for what happens
    /// when an engine fails.
    pub fn run(&self, job: Job, io: RunIo, cancel: &CancelToken) -> Ran {
        self.run_on(job, io, cancel, true)
    }

    /// [`Fleet::run`] in a container started for it, never a warm one: for limits the pools
    /// should not be asked to keep stock for.
    pub fn run_cold(&self, job: Job, io: RunIo, cancel: &CancelToken) -> Ran {
        self.run_on(job, io, cancel, false)
    }

    fn run_on(&self, mut job: Job, mut io: RunIo, cancel: &CancelToken, warm: bool) -> Ran {
        let count = self.0.members.len();
        let mut tried = vec![false; count];
        let mut engine = None;
        loop {
            let Some(index) = self.acquire(&tried, cancel) else {
                let limits = job.limits;
                let outcome = if cancel.is_cancelled() {
                    Outcome {
                        interrupt_signal: cancel.signal(),
                        ..Outcome::not_run(
                            Status::Interrupted,
                            "interrupted before the program started",
                            limits,
                        )
                    }
                } else {
                    Outcome::not_run(
                        Status::SandboxError,
                        "no engine could take the run: every engine is down or failed it before it started; check them with `docker --context NAME info`",
                        limits,
                    )
                };
                return Ran { outcome, engine };
            };
            tried[index] = true;
            let sandbox = &self.0.members[index].sandbox;
            engine = Some(sandbox.engine().name.clone());
            let untried = tried.iter().any(|tried| !tried);
            let again = untried.then(|| io.again().zip(job.try_clone())).flatten();
            let (outcome, started) = if warm {
                sandbox.run_telling_start(job, io, cancel)
            } else {
                sandbox.without_pool().run_telling_start(job, io, cancel)
            };
            self.release(index);
            if outcome.status != Status::SandboxError {
                return Ran { outcome, engine };
            }
            if sandbox.check_ready().is_err() {
                self.mark_down(index);
            }
            match again {
                Some((next_io, next_job)) if !started && !cancel.is_cancelled() => {
                    job = next_job;
                    io = next_io;
                }
                _ => return Ran { outcome, engine },
            }
        }
    }

    /// Remove stale (or all) containers of ours on every engine; the names removed, or the first
    /// engine's error when one failed (the others were still cleaned).
    pub fn collect_garbage(&self, scope: gc::Scope) -> Result<Vec<String>, EngineError> {
        let mut removed = Vec::new();
        let mut first_error = None;
        for sandbox in self.sandboxes() {
            match sandbox.collect_garbage(scope) {
                Ok(names) => removed.extend(names),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(removed),
        }
    }

    /// Stop every engine's warm pool (see [`super::pool::Pool::shutdown`]).
    pub fn shutdown_pools(&self) {
        thread::scope(|scope| {
            for sandbox in self.sandboxes() {
                if let Some(pool) = sandbox.pool() {
                    scope.spawn(move || pool.shutdown());
                }
            }
        });
    }

    /// Ready warm containers over every engine.
    pub fn pool_ready(&self) -> usize {
        self.sandboxes()
            .filter_map(Sandbox::pool)
            .map(super::pool::Pool::ready)
            .sum()
    }

    /// Wait for a slot on an engine not in `tried`, one that is up if there is such an engine;
    /// `None` when every engine was tried, or when cancelled.
    fn acquire(&self, tried: &[bool], cancel: &CancelToken) -> Option<usize> {
        let inner = self.0.clone();
        let _wake = cancel.on_cancel(move || {
            let _guard = lock(&inner.state);
            inner.changed.notify_all();
        });
        let mut state = lock(&self.0.state);
        loop {
            if cancel.is_cancelled() {
                return None;
            }
            if let Some(index) = choose(&state.slots, tried) {
                state.slots[index].running += 1;
                return Some(index);
            }
            let any_up = state
                .slots
                .iter()
                .zip(tried)
                .any(|(slots, tried)| slots.up && !tried);
            if !any_up {
                // Every engine not yet tried is down: try one anyway. It may be back already,
                // and if not, its own error says why (one engine: exactly as without a fleet).
                let anyway: Vec<Slots> = state
                    .slots
                    .iter()
                    .map(|slots| Slots { up: true, ..*slots })
                    .collect();
                if let Some(index) = choose(&anyway, tried) {
                    state.slots[index].running += 1;
                    return Some(index);
                }
                if tried.iter().all(|tried| *tried) {
                    return None;
                }
            }
            state = self
                .0
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn release(&self, index: usize) {
        let mut state = lock(&self.0.state);
        state.slots[index].running = state.slots[index].running.saturating_sub(1);
        self.0.changed.notify_all();
    }

    /// No run goes to engine `index` until it answers again.
    fn mark_down(&self, index: usize) {
        let mut state = lock(&self.0.state);
        state.slots[index].up = false;
        self.0.changed.notify_all();
        if !state.probing {
            state.probing = true;
            let fleet = self.clone();
            let spawned = thread::Builder::new()
                .name("safe-exec-fleet-probe".into())
                .spawn(move || fleet.probe_until_all_up());
            if spawned.is_err() {
                state.probing = false;
            }
        }
    }

    /// Ask every engine that is down whether it is back, every [`PROBE_INTERVAL`], until none is
    /// down. One that is back first has its failed removals retried, then takes runs again.
    fn probe_until_all_up(&self) {
        loop {
            let next = Instant::now() + PROBE_INTERVAL;
            let down: Vec<usize> = {
                let mut state = lock(&self.0.state);
                let down: Vec<usize> = (0..state.slots.len())
                    .filter(|&index| !state.slots[index].up)
                    .collect();
                if down.is_empty() {
                    state.probing = false;
                    return;
                }
                down
            };
            for index in down {
                let sandbox = &self.0.members[index].sandbox;
                if sandbox.check_ready().is_ok() {
                    registry::retry_removals(sandbox.docker());
                    let mut state = lock(&self.0.state);
                    state.slots[index].up = true;
                    self.0.changed.notify_all();
                }
            }
            thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(capacity: usize, running: usize, up: bool) -> Slots {
        Slots {
            capacity,
            running,
            up,
        }
    }

    #[test]
    fn the_engine_with_the_most_free_slots_is_chosen() {
        let engines = [slots(4, 3, true), slots(2, 0, true), slots(4, 1, true)];
        assert_eq!(choose(&engines, &[false; 3]), Some(2));
        // Equals: the first.
        let engines = [slots(2, 0, true), slots(2, 0, true)];
        assert_eq!(choose(&engines, &[false; 2]), Some(0));
        let engines = [slots(2, 1, true), slots(2, 0, true)];
        assert_eq!(choose(&engines, &[false; 2]), Some(1));
    }

    #[test]
    fn full_down_and_excluded_engines_are_never_chosen() {
        let engines = [slots(2, 2, true), slots(8, 0, false), slots(3, 0, true)];
        assert_eq!(choose(&engines, &[false, false, true]), None);
        assert_eq!(choose(&engines, &[false; 3]), Some(2));
        assert_eq!(choose(&[], &[]), None);
    }

    #[test]
    fn a_fleet_adds_up_its_capacity_and_keeps_the_order_of_its_engines() {
        let engines = super::super::Engines::parse(None, Some("a=3,b"), None).unwrap();
        let fleet = Fleet::on(&engines, None, 2);
        assert_eq!(fleet.capacity(), 5);
        assert_eq!(fleet.names(), ["a", "b"]);
    }
}
