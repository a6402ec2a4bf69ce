//! Shared helpers: a `safe_exec()` command with a per-test session label, engine checks, and the
//! "host is clean" assertion from docs/threats.md.

#![allow(dead_code)]

use std::process::{Command as StdCommand, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use safe_exec::report::RunReport;

/// Environment variable: run the suite against another runner image (default: the one
/// `scripts/setup.sh` builds). Lets a change to `runner_image/` be tested beside the installed one.
pub const TEST_IMAGE_ENV: &str = "SAFE_EXEC_TEST_IMAGE";

/// Environment variable: run the suite under another OCI runtime (`runsc` for gVisor), passed to
/// safe-exec as `SAFE_EXEC_RUNTIME`.
pub const TEST_RUNTIME_ENV: &str = "SAFE_EXEC_TEST_RUNTIME";
/// Environment variable: run the suite against another engine (`podman`), passed to safe-exec as
/// `SAFE_EXEC_ENGINE`; the helpers then ask that engine's client about containers.
pub const TEST_ENGINE_ENV: &str = "SAFE_EXEC_TEST_ENGINE";

/// The runtime the suite runs under, when not the engine's default.
pub fn test_runtime() -> Option<String> {
    std::env::var(TEST_RUNTIME_ENV)
        .ok()
        .filter(|runtime| !runtime.is_empty())
}

/// Is the suite running under gVisor?
pub fn under_gvisor() -> bool {
    safe_exec::sandbox::docker::is_gvisor(test_runtime().as_deref())
}

/// The client the helpers ask about containers and images: `docker`, or `podman` when the suite
/// runs against podman.
pub fn engine_cli() -> &'static str {
    match std::env::var(TEST_ENGINE_ENV).as_deref() {
        Ok("podman") => "podman",
        _ => "docker",
    }
}

/// Does the suite run against podman?
pub fn under_podman() -> bool {
    engine_cli() == "podman"
}

/// Environment for safe-exec: the suite's engine and runtime.
fn engine_env(command: &mut StdCommand) {
    if let Some(runtime) = test_runtime() {
        command.env("SAFE_EXEC_RUNTIME", runtime);
    }
    if under_podman() {
        command.env("SAFE_EXEC_ENGINE", "podman");
    }
}

/// The image every test runs on.
pub fn test_image() -> String {
    std::env::var(TEST_IMAGE_ENV)
        .ok()
        .filter(|image| !image.is_empty())
        .unwrap_or_else(|| "safe-exec-python:3.11".to_owned())
}

/// The variables that send `run` and `grade` to a server: removed from every command, so a
/// developer's environment cannot redirect the tests.
pub const CLIENT_ENV: [&str; 2] = ["SAFE_EXEC_SERVER", "SAFE_EXEC_SERVER_CA"];

/// How soon after safe-exec exits its containers are gone (docs/run.md says so).
pub const REMOVED_AFTER_EXIT: Duration = Duration::from_secs(5);

/// The last line of defence: a test that failed half-way (or a helper container it made by hand)
/// must not leave containers for the next test run to trip over.
impl Drop for Session {
    fn drop(&mut self) {
        let Ok(listed) = StdCommand::new(engine_cli())
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=safe-exec.session={}", self.label))
            .output()
        else {
            return;
        };
        let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if !ids.is_empty() {
            let _ = StdCommand::new(engine_cli())
                .args(["rm", "-f"])
                .args(&ids)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A fresh session label for one test: containers it creates can be found (and found gone).
pub struct Session {
    pub label: String,
}

impl Session {
    pub fn new() -> Session {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        require_engine();
        let label = format!(
            "test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        Session { label }
    }

    /// `safe-exec` with this session's label, from the freshly built binary.
    pub fn safe_exec(&self) -> Command {
        let mut command = Command::from_std(self.std_command());
        command.timeout(Duration::from_secs(120));
        command
    }

    /// The same, as a std Command (for signal tests that need the child handle).
    pub fn std_command(&self) -> StdCommand {
        let mut command = StdCommand::new(assert_cmd::cargo::cargo_bin("safe-exec"));
        command.env("SAFE_EXEC_LABEL", &self.label);
        command.env("SAFE_EXEC_IMAGE", test_image());
        engine_env(&mut command);
        for variable in CLIENT_ENV {
            command.env_remove(variable);
        }
        command
    }

    /// Names of containers carrying this session's label.
    pub fn containers(&self) -> Vec<String> {
        let output = StdCommand::new(engine_cli())
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=safe-exec.session={}", self.label))
            .output()
            .expect("docker ps");
        assert!(
            output.status.success(),
            "docker ps failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    /// How many of this session's containers are running.
    pub fn running_containers(&self) -> usize {
        let output = StdCommand::new(engine_cli())
            .args(["ps", "-q", "--filter", "status=running", "--filter"])
            .arg(format!("label=safe-exec.session={}", self.label))
            .output()
            .expect("docker ps");
        assert!(
            output.status.success(),
            "docker ps failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .count()
    }

    /// docs/threats.md's "clean": no container of ours is left (allowing `within` for removal).
    pub fn assert_clean_within(&self, within: Duration) {
        let until = Instant::now() + within;
        loop {
            let left = self.containers();
            if left.is_empty() {
                return;
            }
            assert!(Instant::now() < until, "containers left behind: {left:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clean once safe-exec has exited: a run that reported hands its container to the reaper,
    /// which removes it the moment we exit (about 0.2 s on an idle engine); [`REMOVED_AFTER_EXIT`]
    /// is the documented bound.
    pub fn assert_clean(&self) {
        self.assert_clean_within(REMOVED_AFTER_EXIT);
    }

    /// Run `code` with `--json` plus `extra` args and parse the single document it prints.
    pub fn run_json(&self, code: &str, extra: &[&str]) -> (RunReport, i32) {
        let output = self
            .safe_exec()
            .args(["run", "--json", "-c", code])
            .args(extra)
            .output()
            .expect("safe-exec runs");
        let report = parse_report(&output.stdout);
        (report, output.status.code().unwrap_or(-1))
    }
}

/// Run `command run --json EXTRA` with `code` on its stdin; the report and the exit code.
pub fn run_stdin_json(mut command: Command, code: &[u8], extra: &[&str]) -> (RunReport, i32) {
    let output = command
        .args(["run", "--json"])
        .args(extra)
        .write_stdin(code.to_vec())
        .output()
        .unwrap();
    (
        parse_report(&output.stdout),
        output.status.code().unwrap_or(-1),
    )
}

/// Files of a suite: (relative path, contents).
pub type Files<'a> = &'a [(&'a str, &'a [u8])];

/// A suite on disk from (relative path, contents).
pub fn suite_dir(files: Files) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, contents) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    dir
}

/// The names in `dir`, sorted.
pub fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

pub fn path_str(path: &std::path::Path) -> &str {
    path.to_str().unwrap()
}

pub fn parse_report(stdout: &[u8]) -> RunReport {
    serde_json::from_slice(stdout).unwrap_or_else(|error| {
        panic!(
            "stdout is not one JSON report ({error}):\n{}",
            String::from_utf8_lossy(stdout)
        )
    })
}

/// Fail loudly (never skip) when the engine or the image is missing.
pub fn require_engine() {
    let info = StdCommand::new(engine_cli())
        .args(["image", "inspect", "--format", "{{.Id}}", &test_image()])
        .output();
    match info {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "the Docker engine or the runner image is not ready ({}): run `scripts/setup.sh` first",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) => panic!("cannot run `docker` ({error}): run `scripts/setup.sh` first"),
    }
}

/// A recording stand-in for `docker`: every call appends its arguments to a log beside it and
/// fails. Points the binary at it to prove that nothing was run — not merely that nothing is left
/// (a container created and removed again would pass that) — and needs no engine at all.
pub struct RecordingDocker {
    _dir: tempfile::TempDir,
    pub program: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl RecordingDocker {
    pub fn new() -> RecordingDocker {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("docker");
        let log = dir.path().join("calls.log");
        std::fs::write(
            &program,
            format!("#!/bin/sh\necho \"$*\" >> '{}'\nexit 1\n", log.display()),
        )
        .unwrap();
        std::fs::set_permissions(
            &program,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        RecordingDocker {
            _dir: dir,
            program,
            log,
        }
    }

    /// `safe-exec` pointed at this docker, with no engine needed.
    pub fn safe_exec(&self) -> Command {
        let mut command = Command::cargo_bin("safe-exec").expect("binary built");
        command.env("SAFE_EXEC_DOCKER", &self.program);
        command.env_remove("SAFE_EXEC_LABEL");
        for variable in CLIENT_ENV {
            command.env_remove(variable);
        }
        command.timeout(Duration::from_secs(60));
        command
    }

    pub fn assert_never_called(&self) {
        assert!(
            !self.log.exists(),
            "docker was called: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

/// Send `signal` (a name: `INT`, `TERM`, `KILL`) to `child`.
pub fn signal(child: &std::process::Child, signal: &str) {
    let status = StdCommand::new("kill")
        .args(["-s", signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Wait for `child` to exit, at most `within`; its exit code (-1 for death by a signal).
pub fn wait_exit(child: &mut std::process::Child, within: Duration) -> i32 {
    let until = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(
            Instant::now() < until,
            "safe-exec did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
pub mod engines;

/// A grade report as two runs of one batch must agree on it: without durations (the `*time_s`
/// fields, and the seconds in a time-limit message) and without where each case ran (`engine`).
pub fn comparable_grade_report(
    report: &safe_exec::grade::report::json::GradeReport,
) -> serde_json::Value {
    fn strip(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                map.retain(|key, _| !key.ends_with("time_s") && key != "engine");
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            serde_json::Value::String(text) if text.contains("time limit exceeded") => {
                *text = text
                    .chars()
                    .map(|c| if c.is_ascii_digit() { '#' } else { c })
                    .collect();
            }
            _ => {}
        }
    }
    let mut value = serde_json::to_value(report).unwrap();
    strip(&mut value);
    value
}
