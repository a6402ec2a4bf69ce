//! `safe-exec doctor`: one command that says whether this machine runs programs as safe-exec
//! promises, and what to do where it does not.
//!
//! For each engine (today the current docker context; [`diagnose`] takes a list so several
//! contexts can be checked at once) it checks the docker client and engine, the engine's cgroups,
//! runtimes and security options, that the runner image is there and was built from the launcher
//! this binary carries, and then runs a probe program through the real supervisor
//! ([`probe`]), which checks the hardening from inside the container. Every check is a row with a
//! status and, when it fails, a fix.
//!
//! # The JSON report, schema version 1
//!
//! `safe-exec doctor --json` prints exactly one document, [`DoctorReport`], on stdout:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `schema_version` | integer | `1`. Additive changes keep it; breaking ones bump it. |
//! | `healthy` | bool | every check is `ok` (the exit code is then 0) |
//! | `safe_exec_version` | string | this binary's version |
//! | `image` | string | the runner image checked (`--image`, `SAFE_EXEC_IMAGE`, or the default) |
//! | `image_context` | string | the hash of the image context this binary carries: what the image's `safe-exec.context` label must say (for the data-science image, the hash of its context and the runner's) |
//! | `duration_ms` | integer | how long the checks took |
//! | `checks` | array | the rows, in order ([`Check`]): `id` (stable, e.g. `engine`, `probe.seccomp`), `engine` (the docker context, or null for the client), `status` (`ok`, `fail` or `skipped`), `what`, `detail`, `fix` (a string when `status` is `fail`, else null) |
//!
//! This module prints; the checks themselves ([`checks`], [`probe`]) only return rows.

pub mod checks;
pub mod probe;

use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::cli::DoctorArgs;
use crate::exit_codes;
use crate::image::context;
use crate::runner::{CancelToken, Sandbox};
use checks::{Check, CheckStatus};

/// Version of the `--json` document; see the module docs.
pub const SCHEMA_VERSION: u32 = 1;

/// An engine to check: a sandbox (docker client, image, labels) and the name to show for it.
pub struct Engine {
    /// The docker context's name when one was asked for; `None` for the current one (its name
    /// is then what the client reports).
    pub name: Option<String>,
    pub sandbox: Sandbox,
}

impl Engine {
    /// The engine of the current docker context (`DOCKER_HOST`, `DOCKER_CONTEXT`, or docker's
    /// own choice), with `image`.
    pub fn current(image: Option<String>) -> Engine {
        Engine {
            name: None,
            sandbox: Sandbox::new(image),
        }
    }
}

/// The `--json` document, schema version [`SCHEMA_VERSION`]. See the module docs for each field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoctorReport {
    pub schema_version: u32,
    pub healthy: bool,
    pub safe_exec_version: String,
    pub image: String,
    pub image_context: String,
    pub duration_ms: u64,
    pub checks: Vec<Check>,
}

/// Check every engine (at the same time) and gather the rows, engine by engine.
pub fn diagnose(engines: &[Engine], cancel: &CancelToken) -> Vec<Check> {
    let per_engine: Vec<Vec<Check>> = std::thread::scope(|scope| {
        let handles: Vec<_> = engines
            .iter()
            .map(|engine| scope.spawn(|| diagnose_one(engine, cancel)))
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or_default())
            .collect()
    });
    // The client is the same program for every engine: its row once.
    let mut rows = Vec::new();
    for (index, engine_rows) in per_engine.into_iter().enumerate() {
        rows.extend(
            engine_rows
                .into_iter()
                .filter(|row| index == 0 || row.id != checks::ids::CLIENT),
        );
    }
    rows
}

fn diagnose_one(engine: &Engine, cancel: &CancelToken) -> Vec<Check> {
    let sandbox = &engine.sandbox;
    let (mut rows, state) = checks::engine_checks(sandbox.docker(), sandbox.image());
    if state.reachable && state.image_present {
        rows.extend(probe::run(sandbox, cancel));
    } else {
        let because = if state.reachable {
            "needs the runner image"
        } else {
            "needs the engine"
        };
        rows.push(Check::skipped(
            checks::ids::PROBE,
            "probe container",
            because,
        ));
        rows.extend(
            probe::PROBE_ROWS
                .iter()
                .map(|(id, what)| Check::skipped(id, what, because)),
        );
    }
    let name = engine.name.clone().or(state.context);
    rows.into_iter()
        .map(|row| {
            let about_engine = row.id != checks::ids::CLIENT;
            row.on(about_engine.then_some(name.as_deref()).flatten())
        })
        .collect()
}

/// `safe-exec doctor`.
pub fn execute(args: DoctorArgs) -> anyhow::Result<u8> {
    let started = Instant::now();
    let engine = Engine::current(args.image.image.filter(|image| !image.is_empty()));
    let cancel = CancelToken::new();
    crate::run_command::stop_runs_on_signals(&cancel, engine.sandbox.docker())
        .context("cannot install signal handlers")?;
    let image = engine.sandbox.image().to_owned();
    let rows = diagnose(std::slice::from_ref(&engine), &cancel);
    if cancel.is_cancelled() {
        eprintln!("safe-exec: doctor interrupted");
        return Ok(cancel
            .signal()
            .map_or(exit_codes::INTERRUPTED, exit_codes::for_signal));
    }
    let report = DoctorReport {
        schema_version: SCHEMA_VERSION,
        healthy: rows.iter().all(|row| row.status == CheckStatus::Ok),
        safe_exec_version: env!("CARGO_PKG_VERSION").to_owned(),
        image: crate::sanitize::text(&image).into_owned(),
        image_context: if image == crate::sandbox::DS_IMAGE {
            context::ds_hash()
        } else {
            context::hash()
        }
        .to_owned(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        checks: rows,
    };
    let text = if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        table(&report)
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => {}
        // A reader that went away (`| head`) is not our failure.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(error) => return Err(error).context("cannot write the report to stdout"),
    }
    Ok(if report.healthy {
        exit_codes::SUCCESS
    } else {
        exit_codes::DOCTOR_FOUND_PROBLEMS
    })
}

/// The report as a table: status, check, detail, and the fix under each failure; then a summary.
pub fn table(report: &DoctorReport) -> String {
    let engines: std::collections::BTreeSet<&str> = report
        .checks
        .iter()
        .filter_map(|row| row.engine.as_deref())
        .collect();
    // With several engines, each row says which one it is about.
    let name = |row: &Check| match (&row.engine, engines.len() > 1) {
        (Some(engine), true) => format!("{engine}: {}", row.what),
        _ => row.what.clone(),
    };
    let width = report
        .checks
        .iter()
        .map(|row| name(row).chars().count())
        .max()
        .unwrap_or(0)
        .max("CHECK".len());
    let mut out = format!("{:<6}  {:<width$}  DETAIL\n", "STATUS", "CHECK");
    for row in &report.checks {
        let status = match row.status {
            CheckStatus::Ok => "ok",
            CheckStatus::Fail => "FAIL",
            CheckStatus::Skipped => "skip",
        };
        out += &format!("{status:<6}  {:<width$}  {}\n", name(row), row.detail);
        if let Some(fix) = &row.fix {
            out += &format!("{:<6}  {:<width$}  fix: {fix}\n", "", "");
        }
    }
    let failed = count(report, CheckStatus::Fail);
    let skipped = count(report, CheckStatus::Skipped);
    let took = report.duration_ms as f64 / 1000.0;
    out += &if report.healthy {
        format!(
            "\nall {} checks passed in {took:.1} s: this machine runs programs as safe-exec promises\n",
            report.checks.len()
        )
    } else {
        format!(
            "\n{failed} check(s) failed, {skipped} skipped, in {took:.1} s: apply the fixes above, \
             then run `safe-exec doctor` again\n"
        )
    };
    out
}

fn count(report: &DoctorReport, status: CheckStatus) -> usize {
    report
        .checks
        .iter()
        .filter(|row| row.status == status)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(checks: Vec<Check>) -> DoctorReport {
        DoctorReport {
            schema_version: SCHEMA_VERSION,
            healthy: checks.iter().all(|row| row.status == CheckStatus::Ok),
            safe_exec_version: "0.1.0".into(),
            image: "safe-exec-python:3.11".into(),
            image_context: context::hash().into(),
            duration_ms: 1234,
            checks,
        }
    }

    #[test]
    fn the_table_puts_each_fix_under_its_failure() {
        let text = table(&report(vec![
            Check::ok("client", "docker client", "28.2.2"),
            Check::fail("engine", "engine", "cannot reach it", "start it").on(Some("default")),
            Check::skipped("image", "runner image", "needs the engine").on(Some("default")),
        ]));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "STATUS  CHECK          DETAIL");
        assert_eq!(lines[1], "ok      docker client  28.2.2");
        assert_eq!(lines[2], "FAIL    engine         cannot reach it");
        assert_eq!(lines[3], "                       fix: start it");
        assert_eq!(lines[4], "skip    runner image   needs the engine");
        assert_eq!(
            lines[6],
            "1 check(s) failed, 1 skipped, in 1.2 s: apply the fixes above, then run `safe-exec doctor` again"
        );
    }

    #[test]
    fn with_several_engines_each_row_names_its_own() {
        let text = table(&report(vec![
            Check::ok("engine", "engine", "20.10").on(Some("a")),
            Check::ok("engine", "engine", "24.0").on(Some("b")),
        ]));
        assert!(text.contains("ok      a: engine  20.10\n"), "{text}");
        assert!(text.contains("all 2 checks passed"), "{text}");
    }

    #[test]
    fn the_report_round_trips_through_json() {
        let original = report(vec![Check::fail(
            "image",
            "runner image",
            "x:1 not found",
            "run it",
        )
        .on(Some("default"))]);
        let json = serde_json::to_string(&original).unwrap();
        assert!(json.contains("\"status\":\"fail\""), "{json}");
        assert!(json.contains("\"schema_version\":1"), "{json}");
        let back: DoctorReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, original);
    }
}
