//! `safe-exec doctor` against the real engine: healthy (every row ok, in the table and in the JSON
//! read back), an unreachable engine, and a missing image (the right rows fail with their fixes,
//! what depends on them is skipped, and the documented exit code).

use std::process::Output;

use safe_exec::doctor::checks::{ids, Check, CheckStatus};
use safe_exec::doctor::DoctorReport;
use safe_exec::exit_codes;
use safe_exec::image::context;

use crate::common::Session;
use crate::image::TempImage;

/// Every row, in order, for one engine.
const ROWS: &[&str] = &[
    ids::CLIENT,
    ids::ENGINE,
    ids::CGROUPS,
    ids::RUNTIMES,
    ids::SECURITY,
    ids::IMAGE,
    ids::PROBE,
    ids::PROBE_UID,
    ids::PROBE_LAUNCHER,
    ids::PROBE_CAPABILITIES,
    ids::PROBE_NO_NEW_PRIVS,
    ids::PROBE_SECCOMP,
    ids::PROBE_NETWORK,
    ids::PROBE_READ_ONLY_ROOT,
    ids::PROBE_TMP,
    ids::PROBE_MEMORY,
    ids::PROBE_PIDS,
    ids::PROBE_CPU_QUOTA,
    ids::PROBE_CPU_ACCOUNTING,
];

fn doctor(session: &Session, image: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = session.safe_exec();
    command
        .env("SAFE_EXEC_IMAGE", image)
        .arg("doctor")
        .args(extra);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("safe-exec doctor runs")
}

fn json(session: &Session, image: &str, env: &[(&str, &str)]) -> (DoctorReport, i32) {
    let output = doctor(session, image, &["--json"], env);
    let report: DoctorReport = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "not one JSON document ({error}):\n{}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert_eq!(report.schema_version, 1);
    assert_eq!(report.image_context, context::hash());
    let ids: Vec<&str> = report.checks.iter().map(|row| row.id.as_str()).collect();
    assert_eq!(ids, ROWS, "every row, in order");
    for row in &report.checks {
        assert_eq!(
            row.fix.is_some(),
            row.status == CheckStatus::Fail,
            "a fix exactly for each failure: {row:?}"
        );
    }
    assert_eq!(
        report.healthy,
        report
            .checks
            .iter()
            .all(|row| row.status == CheckStatus::Ok)
    );
    (report, output.status.code().unwrap_or(-1))
}

fn row<'a>(report: &'a DoctorReport, id: &str) -> &'a Check {
    report
        .checks
        .iter()
        .find(|row| row.id == id)
        .unwrap_or_else(|| panic!("no row {id}"))
}

fn status_of(report: &DoctorReport, id: &str) -> CheckStatus {
    row(report, id).status
}

#[test]
fn doctor_on_this_machine_passes_every_row() {
    // An image of the test's own, built from this binary's context: the installed one may have
    // been built by another checkout's binary, which doctor rightly reports.
    let image = TempImage::build();
    let session = Session::new();

    let (report, code) = json(&session, &image.tag, &[]);
    let failed: Vec<&Check> = report
        .checks
        .iter()
        .filter(|row| row.status != CheckStatus::Ok)
        .collect();
    assert!(failed.is_empty(), "rows not ok: {failed:#?}");
    assert!(report.healthy);
    assert_eq!(code, i32::from(exit_codes::SUCCESS));
    assert_eq!(report.image, image.tag);
    assert!(row(&report, ids::IMAGE)
        .detail
        .contains(&context::hash()[..12]));
    assert!(row(&report, ids::ENGINE).engine.is_some());
    assert_eq!(row(&report, ids::CLIENT).engine, None);

    let output = doctor(&session, &image.tag, &[], &[]);
    assert_eq!(output.status.code(), Some(0));
    let table = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("STATUS  CHECK"), "{table}");
    let rows = &lines[1..=ROWS.len()];
    assert!(rows.iter().all(|line| line.starts_with("ok ")), "{table}");
    assert!(
        table.contains(&format!("all {} checks passed", ROWS.len())),
        "{table}"
    );
    session.assert_clean();
}

#[test]
fn doctor_against_an_unreachable_engine_says_how_to_start_it() {
    let session = Session::new();
    let unreachable = [("DOCKER_HOST", "unix:///nonexistent.sock")];
    let image = "safe-exec-python:3.11";
    let (report, code) = json(&session, image, &unreachable);
    assert_eq!(code, i32::from(exit_codes::DOCTOR_FOUND_PROBLEMS));
    assert!(!report.healthy);
    assert_eq!(status_of(&report, ids::CLIENT), CheckStatus::Ok);
    let engine = row(&report, ids::ENGINE);
    assert_eq!(engine.status, CheckStatus::Fail);
    assert!(engine.detail.contains("/nonexistent.sock"), "{engine:?}");
    let fix = engine.fix.as_deref().unwrap();
    assert!(
        fix.contains("scripts/setup.sh") && fix.contains("DOCKER_HOST"),
        "{fix}"
    );
    for id in &ROWS[2..] {
        let skipped = row(&report, id);
        assert_eq!(skipped.status, CheckStatus::Skipped, "{skipped:?}");
        assert_eq!(skipped.detail, "needs the engine");
    }

    let output = doctor(&session, image, &[], &unreachable);
    assert_eq!(output.status.code(), Some(1));
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(table.contains("\nFAIL    engine "), "{table}");
    assert!(table.contains("fix: start dockerd"), "{table}");
    assert!(table.contains("1 check(s) failed, 17 skipped"), "{table}");
}

#[test]
fn doctor_with_a_missing_image_says_how_to_build_it() {
    let session = Session::new();
    let (report, code) = json(&session, "nope:1", &[]);
    assert_eq!(code, i32::from(exit_codes::DOCTOR_FOUND_PROBLEMS));
    for id in &ROWS[..5] {
        assert_eq!(
            status_of(&report, id),
            CheckStatus::Ok,
            "{:?}",
            row(&report, id)
        );
    }
    let image = row(&report, ids::IMAGE);
    assert_eq!(image.status, CheckStatus::Fail);
    assert_eq!(image.detail, "nope:1 not found");
    assert_eq!(
        image.fix.as_deref(),
        Some("run `safe-exec image build --tag nope:1`")
    );
    for id in &ROWS[6..] {
        let skipped = row(&report, id);
        assert_eq!(skipped.status, CheckStatus::Skipped, "{skipped:?}");
        assert_eq!(skipped.detail, "needs the runner image");
    }
    // No probe ran, so nothing of this session's was ever created.
    assert!(session.containers().is_empty());
}
