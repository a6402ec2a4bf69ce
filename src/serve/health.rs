//! The engine's readiness as `/healthz` reports it: one docker call at a time, its result reused
//! for a moment so pollers cannot make the server spawn docker in a loop, and only a short
//! public reason (paths and hosts in the engine's message stay in the server's log).

use std::time::{Duration, Instant};

use crate::runner::{EngineError, Fleet};

/// How long a health answer is reused.
const HEALTH_TTL: Duration = Duration::from_secs(2);

/// Reused readiness results, one docker call at a time.
#[derive(Debug, Default)]
pub struct HealthCache {
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl HealthCache {
    /// `Ok` when an engine answers and has the image; otherwise a short public reason.
    pub async fn check(&self, fleet: &Fleet) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, result)) = last.as_ref() {
            if at.elapsed() < HEALTH_TTL {
                return result.clone();
            }
        }
        let fleet = fleet.clone();
        let result = match tokio::task::spawn_blocking(move || fleet.check_ready()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(engine_problem(&error).to_owned()),
            Err(_) => Err("engine check failed".to_owned()),
        };
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

/// A short public reason; the full message (paths, hosts) is for the server's log.
fn engine_problem(error: &EngineError) -> &'static str {
    match error {
        EngineError::CliMissing { .. } | EngineError::Spawn { .. } => "docker client missing",
        EngineError::Unreachable { .. } => "engine unreachable",
        EngineError::PermissionDenied { .. } => "engine permission denied",
        EngineError::ImageMissing { .. } => "runner image missing",
        EngineError::Timeout { .. } => "engine not answering",
        EngineError::Failed { .. } => "engine error",
        EngineError::LimitRefused { .. } => "limit refused by the engine",
        EngineError::Cancelled { .. } => "cancelled",
    }
}
