//! schemathesis against the real server's `/openapi.json`, on loopback only: every request the
//! schema allows must be accepted, every request it forbids refused, and every answer must match
//! the schema (its default checks; `examples`, `coverage` and `fuzzing` phases). Bounded: a fixed
//! seed, a fixed number of examples per operation and a time budget.
//!
//! schemathesis is installed with pip into a virtualenv under cargo's target directory the first
//! time (it needs `python3` with `venv`, and PyPI reachable); later runs reuse it. Like the engine
//! tests, it fails (never skips) when that is not possible.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::Server;
use crate::common::Session;

/// The schemathesis release line this test speaks to (its command line and config format).
const REQUIREMENT: &str = "schemathesis>=4.32,<5";
/// Examples per operation and phase.
const MAX_EXAMPLES: u32 = 30;
/// schemathesis's own time budget; fuzzing repeats until it is spent.
const MAX_TIME: Duration = Duration::from_secs(60);
/// Fixed, so a finding can be replayed; set SAFE_EXEC_SCHEMATHESIS_SEED to explore others.
const SEED: &str = "20260301";

/// What the schema cannot say, per operation (schemathesis.toml). The original API answers a
/// program that fails with 400 and one that times out with 408, whatever the request; and the
/// body's size in bytes (413 past it) depends on the escapes JSON uses, which no schema keyword
/// can bound.
const CONFIG: &str = r#"
[[operations]]
include-name = "POST /run"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "400", "401", "403", "404", "408", "409", "413", "429", "5xx",
]

[[operations]]
include-name = "POST /api/v1/runs"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "401", "403", "404", "409", "413", "429", "5xx",
]
"#;

/// The `st` program, installing it first if needed.
fn schemathesis() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("schemathesis-venv");
    let st = venv.join("bin").join("st");
    if st.is_file() {
        return st;
    }
    let run = |command: &mut Command, what: &str| {
        let output = command.output().unwrap_or_else(|error| {
            panic!("cannot {what} ({error}): install python3 and its venv module (Debian: python3-venv)")
        });
        assert!(
            output.status.success(),
            "cannot {what} (Debian needs python3-venv for a virtualenv): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "create a virtualenv for schemathesis",
    );
    run(
        Command::new(venv.join("bin").join("pip")).args(["install", "--quiet", REQUIREMENT]),
        "install schemathesis with pip (is PyPI reachable?)",
    );
    assert!(
        st.is_file(),
        "pip installed schemathesis but {} is missing",
        st.display()
    );
    st
}

#[test]
fn schemathesis_finds_nothing_the_schema_and_the_server_disagree_on() {
    let st = schemathesis();
    let session = Session::new();
    // Loopback only; no rate limit (schemathesis sends hundreds of requests).
    let server = Server::start(&session, &["--rate-limit", "0"]);
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("schemathesis.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let seed = std::env::var("SAFE_EXEC_SCHEMATHESIS_SEED").unwrap_or_else(|_| SEED.to_owned());
    let mut command = Command::new(&st);
    command
        .arg("--config-file")
        .arg(&config)
        .args(["run", &server.url("/openapi.json")])
        .args(["--max-examples", &MAX_EXAMPLES.to_string()])
        .args(["--max-time", &MAX_TIME.as_secs().to_string()])
        .args([
            "--workers",
            "1",
            "--seed",
            &seed,
            "--generation-database",
            "none",
        ])
        .args(["--request-timeout", "60", "--no-color"])
        // Its caches and reports stay in the temporary directory.
        .current_dir(work.path())
        // Straight to the server on loopback, never through a proxy.
        .env("NO_PROXY", "*")
        .env("no_proxy", "*")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for proxy in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        command.env_remove(proxy);
    }
    let mut child = command.spawn().expect("schemathesis starts");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    // Its budget, the last requests in flight, and starting up.
    let until = Instant::now() + MAX_TIME + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(200));
    };
    let report = format!("{}\n{}", stdout.join().unwrap(), stderr.join().unwrap());
    let status = status.unwrap_or_else(|| panic!("schemathesis did not finish in time:\n{report}"));
    assert!(
        status.success(),
        "schemathesis found problems (seed {seed}):\n{report}"
    );
    assert!(report.contains("No issues found"), "{report}");
    server.stop_and_assert_clean(&session);
}
