//! The warm pool under `serve` (issue 10): one program per container, answers identical to cold
//! ones, nothing left behind however the server ends, and a pool that survives losing its
//! containers.

use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use safe_exec::report::RunReport;
use serde_json::{json, Value};

use super::Server;
use crate::common::Session;

/// Wait until the server reports `count` warm containers ready. Generously: while other tests
/// churn the same engine (the 1000-run test among them), a container's start can take many
/// seconds, and a start that misses its deadline makes the pool back off before it tries again.
fn wait_ready(server: &Server, count: u64) {
    server.wait_for(Duration::from_secs(180), "warm containers", || {
        server.get("/healthz").json()["pool"]["ready"].as_u64() == Some(count)
    });
}

#[test]
fn a_file_a_program_leaves_in_tmp_is_never_seen_by_the_next_program() {
    let session = Session::new();
    let server = Server::start(&session, &["--pool", "2", "--max-concurrent", "1"]);
    let code = "import os\n\
                seen = os.path.exists('/tmp/left-behind')\n\
                open('/tmp/left-behind', 'w').write('x')\n\
                print(seen, os.getuid())";
    let mut uids = Vec::new();
    for _ in 0..6 {
        wait_ready(&server, 2);
        let reply = server.run(code);
        assert_eq!(reply.status, 200, "{}", reply.body);
        let output = reply.json()["output"].as_str().unwrap().to_owned();
        let (seen, uid) = output.trim().split_once(' ').unwrap();
        assert_eq!(seen, "False", "a program saw the previous one's file");
        uids.push(uid.to_owned());
    }
    // And each ran as a user of its own.
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), 6, "{uids:?}");
    server.stop_and_assert_clean(&session);
}

/// A report with what depends on the machine's speed taken out.
fn comparable(report: &RunReport) -> Value {
    let mut value = serde_json::to_value(report).unwrap();
    value["duration_ms"] = Value::Null;
    value["cpu_time_ms"] = Value::Null;
    if let Some(error) = value["error"].as_str() {
        let digits_out: String = error
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .collect();
        value["error"] = json!(digits_out);
    }
    value
}

#[test]
fn warm_answers_are_the_cold_answers() {
    let session = Session::new();
    let programs = [
        "print('ok')",
        "import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)",
        "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)",
        "import sys\nsys.exit(137)",
        "while True: pass",
        "a = []\nwhile True:\n    a.append(bytearray(10 * 1024 * 1024))",
        "while True: print('A' * 1000)",
        "import sys\nsys.stdout.buffer.write(bytes(range(256)))",
    ];
    let limits = ["--timeout", "1", "--wall-timeout", "30", "--memory", "64m"];
    let mut answers: Vec<Vec<Value>> = Vec::new();
    for pool in ["0", "2"] {
        let mut args = limits.to_vec();
        args.extend(["--pool", pool, "--max-concurrent", "1"]);
        let server = Server::start(&session, &args);
        let mut these = Vec::new();
        for code in programs {
            if pool != "0" {
                wait_ready(&server, 2);
            }
            let reply = server.run_v1(code);
            assert_eq!(reply.status, 200, "{code}: {}", reply.body);
            these.push(comparable(&reply.report()));
        }
        server.stop_and_assert_clean(&session);
        answers.push(these);
    }
    for (index, code) in programs.iter().enumerate() {
        assert_eq!(
            answers[0][index], answers[1][index],
            "cold and warm differ for {code:?}"
        );
    }
}

#[test]
fn a_killed_server_s_warm_containers_are_removed_by_its_reaper() {
    let session = Session::new();
    let server = Server::start(&session, &["--pool", "3"]);
    wait_ready(&server, 3);
    assert_eq!(session.containers().len(), 3);
    server.signal("KILL");
    session.assert_clean_within(Duration::from_secs(10));
}

#[test]
fn warm_containers_expire_and_gc_knows_them() {
    let session = Session::new();
    let server = Server::start(&session, &["--pool", "1", "--pool-idle", "5"]);
    wait_ready(&server, 1);
    let name = session.containers()[0].clone();
    let label = StdCommand::new("docker")
        .args([
            "inspect",
            "--format",
            "{{ index .Config.Labels \"safe-exec.expires\" }}",
            &name,
        ])
        .output()
        .unwrap();
    let expires: u64 = String::from_utf8_lossy(&label.stdout)
        .trim()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Idle lifetime (5 s) + the launcher's own margin (30 s) + the wall-clock backstop (21 s) +
    // the grace and gc's margin: stale within a few minutes, never before the idle lifetime.
    assert!(
        (now + 5..now + 300).contains(&expires),
        "expires {expires}, now {now}"
    );
    // A warm container unused past its idle lifetime is replaced by a fresh one.
    server.wait_for(
        Duration::from_secs(60),
        "the container to be replaced",
        || {
            let now = session.containers();
            !now.is_empty() && !now.contains(&name)
        },
    );
    server.stop_and_assert_clean(&session);
}

#[test]
fn warm_containers_lost_behind_the_server_s_back_lose_no_request() {
    let session = Session::new();
    let server = Server::start(&session, &["--pool", "2", "--max-concurrent", "2"]);
    wait_ready(&server, 2);
    // As an engine restart would: every container gone at once.
    let names = session.containers();
    let removed = StdCommand::new("docker")
        .args(["rm", "-f"])
        .args(&names)
        .output()
        .unwrap();
    assert!(removed.status.success());
    let started = Instant::now();
    for round in 0..4 {
        let reply = server.run(&format!("print({round})"));
        assert_eq!(reply.status, 200, "round {round}: {}", reply.body);
        assert_eq!(reply.json()["output"], format!("{round}\n"));
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    // And the pool fills again.
    wait_ready(&server, 2);
    server.stop_and_assert_clean(&session);
}
