//! What every request handler shares: the server's state, built once at startup, and the client
//! address the connection loop puts on each request.
//!
//! Only data and the shutdown switch live here; the rooms that use them (`api`, `assets`,
//! `server`) import this module and never each other for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::admission::{Admission, RunRegistry};
use super::audit::AuditLog;
use super::auth::Auth;
use super::clients::{AnswerBudget, Client, RateLimiter};
use super::health::HealthCache;
use crate::limits::Limits;
use crate::runner::Fleet;

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// The engines runs go to (one, unless `--context` names several).
    pub fleet: Fleet,
    pub limits: Limits,
    pub admission: Admission,
    pub rate_limit: u32,
    pub rate_limiter: Option<RateLimiter>,
    pub auth: Auth,
    pub audit: Option<AuditLog>,
    pub runs: RunRegistry,
    /// The memory each client's answers hold (runs in progress and answers not yet read).
    pub answers: AnswerBudget,
    /// How long a client has to read an answer once it is ready.
    pub send_timeout: Duration,
    pub health: HealthCache,
    pub body_limit: usize,
    /// Bytes of request bodies being read, over every connection
    /// ([`super::limits::BODIES_IN_FLIGHT`] at most).
    pub bodies: std::sync::Arc<tokio::sync::Semaphore>,
    /// The most bytes of stdin a run request may carry (`--max-stdin`).
    pub max_stdin: usize,
    /// Which per-request limits are served from the warm pool.
    pub warm: super::warm::WarmKeys,
    /// The web page, rendered once with this server's limits.
    pub page: String,
    /// The OpenAPI description, rendered once with this server's limits.
    pub openapi: String,
    pub stopping: AtomicBool,
    /// Turns true when shutdown begins: the connection loop stops accepting and closes idle
    /// connections, and requests still sending their body are answered at once.
    pub shutdown: watch::Sender<bool>,
}

impl AppState {
    /// Begin shutdown: refuse queued and new runs, cancel the ones in progress.
    pub fn stop(&self, signal: i32) {
        self.stopping.store(true, Ordering::SeqCst);
        self.shutdown.send_replace(true);
        self.admission.close();
        self.runs.stop_all(signal);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// Who sent the request (an IP address, or a uid on the unix socket), put on every request by
/// the connection loop.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Client);
