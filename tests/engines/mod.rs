//! Many engines: `grade` and `serve` over Docker engines of the test's own (a second and third
//! `dockerd` on this machine, reached as Docker contexts over TCP with TLS; see
//! `common::engines`), beside the machine's own engine (context `default`).
//!
//! These tests start and stop daemons: they run one at a time (nextest group `engines`), and
//! every engine they start is stopped and its data removed when the test ends, also on a panic.

use std::fs;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use safe_exec::grade::report::json::GradeReport;
use safe_exec::grade::verdict::Verdict;

use crate::common::engines::{Contexts, TestEngine};
use crate::common::{comparable_grade_report, test_image, Session};
use crate::serve::Server;

const SUITE: &str = "examples/suites/sum";

fn example_submissions() -> Vec<String> {
    ["ac", "wa", "rte", "tle", "mle", "ole", "ce", "partial"]
        .iter()
        .map(|name| format!("{SUITE}/submissions/{name}.py"))
        .collect()
}

/// `safe-exec grade` with the test's contexts.
fn grade(session: &Session, contexts: &Contexts, args: &[&str]) -> Output {
    session
        .safe_exec()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DOCKER_CONFIG", contexts.config_dir())
        .timeout(Duration::from_secs(600))
        .arg("grade")
        .args(args)
        .output()
        .expect("safe-exec runs")
}

fn read_json(path: &Path) -> GradeReport {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("no report at {}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("not a report ({error}): {text}"))
}

/// Engines that ran at least one case, by name.
fn engines_used(report: &GradeReport) -> Vec<String> {
    let mut names: Vec<String> = report
        .submissions
        .iter()
        .flat_map(|sub| sub.cases.iter().filter_map(|case| case.engine.clone()))
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn grade_on_three_engines_gives_the_same_report_as_on_one_and_uses_them_all() {
    let session = Session::new();
    let contexts = Contexts::new();
    let second = TestEngine::start(&contexts, &test_image());
    let third = TestEngine::start(&contexts, &test_image());
    let out = tempfile::tempdir().unwrap();
    let three = format!("default,{},{}", second.context, third.context);
    let mut reports = Vec::new();
    for (label, context) in [("one", "default"), ("three", three.as_str())] {
        let json = out.path().join(format!("{label}.json"));
        let mut args = vec![SUITE.to_owned()];
        args.extend(example_submissions());
        args.extend(
            [
                "--context",
                context,
                "--jobs",
                "2",
                "--wall-timeout",
                "60",
                "--json",
            ]
            .map(String::from),
        );
        args.push(json.display().to_string());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = grade(&session, &contexts, &refs);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{label}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        reports.push(read_json(&json));
    }
    assert_eq!(
        comparable_grade_report(&reports[0]),
        comparable_grade_report(&reports[1]),
        "one and three engines disagree"
    );
    assert_eq!(engines_used(&reports[0]), ["default"]);
    let mut all = vec![
        "default".to_owned(),
        second.context.clone(),
        third.context.clone(),
    ];
    all.sort();
    assert_eq!(engines_used(&reports[1]), all);
    // Nothing left on any engine.
    session.assert_clean_within(Duration::from_secs(5));
    assert!(second.containers(&session.label).is_empty());
    assert!(third.containers(&session.label).is_empty());
}

/// A directory suite of `count` cases whose submission takes about `secs` per case.
fn slow_suite(dir: &Path, count: usize, secs: f64) -> std::path::PathBuf {
    let data = dir.join("suite");
    fs::create_dir_all(&data).unwrap();
    for case in 0..count {
        fs::write(
            data.join(format!("{case:02}.in")),
            format!("{case} {}\n", case * 2),
        )
        .unwrap();
        fs::write(
            data.join(format!("{case:02}.ans")),
            format!("{}\n", case * 3),
        )
        .unwrap();
    }
    let submission = dir.join("slow.py");
    fs::write(
        &submission,
        format!(
            "import time\nopen('started', 'w').close()\na, b = map(int, input().split())\n\
             time.sleep({secs})\nprint(a + b)\n"
        ),
    )
    .unwrap();
    submission
}

#[test]
fn an_engine_killed_mid_batch_costs_no_wrong_verdict_and_is_cleaned_once_back() {
    let session = Session::new();
    let contexts = Contexts::new();
    let second = TestEngine::start(&contexts, &test_image());
    let third = TestEngine::start(&contexts, &test_image());
    let dir = tempfile::tempdir().unwrap();
    let submission = slow_suite(dir.path(), 36, 3.0);
    let json = dir.path().join("report.json");
    let context = format!("default,{},{}", second.context, third.context);
    let mut child = session
        .std_command()
        .env("DOCKER_CONFIG", contexts.config_dir())
        .args([
            "grade",
            "--context",
            &context,
            "--jobs",
            "2",
            "--wall-timeout",
            "60",
        ])
        .arg("--json")
        .arg(&json)
        .arg(dir.path().join("suite"))
        .arg(&submission)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the third engine while a program of ours runs there (found by its cgroup: a warm
    // container waiting for its program is not enough), once it has run for half a second: its
    // launcher's started frame has reached us by then. It sleeps 3 s, so it is still running.
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < until,
            "no case ever ran on the third engine"
        );
        if let Some(pid) = third.process("/tmp/started") {
            std::thread::sleep(Duration::from_millis(500));
            if crate::common::engines::runs(pid, "/tmp/started") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    third.kill();
    std::thread::sleep(Duration::from_secs(2));
    third.restart();
    let status = crate::common::wait_exit(&mut child, Duration::from_secs(300));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let report = read_json(&json);
    let cases = &report.submissions[0].cases;
    assert_eq!(cases.len(), 36);
    let mut seen: Vec<String> = cases
        .iter()
        .map(|case| {
            format!(
                "{:?} on {}",
                case.verdict,
                case.engine.as_deref().unwrap_or("-")
            )
        })
        .collect();
    seen.sort();
    seen.dedup_by(|a, b| a == b);
    eprintln!("verdicts: {seen:?}");
    // The program that was running on the killed engine is a judge error; every other case,
    // its run retried elsewhere when it had not started, is accepted.
    let third_name = format!("JE on {}", third.context);
    assert!(seen.contains(&third_name), "{seen:?} {stderr}");
    // 125: a judge error, never 1 (a wrong verdict).
    assert_eq!(status, 125, "{stderr}");
    for case in cases {
        assert!(
            matches!(case.verdict, Verdict::AC | Verdict::JE),
            "{}: {:?} {} ({stderr})",
            case.name,
            case.verdict,
            case.message
        );
    }
    // Every container the dead engine had is removed once it is back (by the batch's probe when
    // it came back in time, else by the reaper's later looks after grade exited).
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        let left = third.containers(&session.label);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < until,
            "left on the restarted engine: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(second.containers(&session.label).is_empty());
    session.assert_clean_within(Duration::from_secs(5));
}

#[test]
fn serve_s_warm_pool_on_an_engine_survives_its_restart_and_no_request_hangs() {
    let session = Session::new();
    let contexts = Contexts::new();
    let engine = TestEngine::start(&contexts, &test_image());
    let config = contexts.config_dir().to_owned();
    let server = Server::start_with(
        &session,
        &[
            "--context",
            &engine.context,
            "--pool",
            "2",
            "--max-concurrent",
            "2",
        ],
        |command| {
            command.env("DOCKER_CONFIG", &config);
        },
    );
    let ready = |count: u64| {
        server.wait_for(Duration::from_secs(90), "warm containers", || {
            server.get("/healthz").json()["pool"]["ready"].as_u64() == Some(count)
        });
    };
    ready(2);
    assert_eq!(server.run("print(1)").status, 200);
    engine.kill();
    // While it is down every request is answered (an error, not a hang) ...
    let reply = server.run("print(2)");
    assert!(reply.status >= 500, "{} {}", reply.status, reply.body);
    engine.restart();
    // ... and once it is back the pool refills and runs succeed.
    ready(2);
    for n in 0..4 {
        let reply = server.run(&format!("print({n})"));
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(
            reply.json()["output"].as_str(),
            Some(format!("{n}\n").as_str())
        );
    }
    server.stop_and_assert_clean(&session);
    let until = Instant::now() + Duration::from_secs(60);
    while !engine.containers(&session.label).is_empty() {
        assert!(Instant::now() < until, "containers left on the engine");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Not a check: grade throughput on one engine and on three, printed for docs/scaling.md.
/// `cargo nextest run --run-ignored only -E 'test(measure_grade_throughput)' --no-capture`
#[test]
#[ignore = "a measurement, minutes long"]
fn measure_grade_throughput_on_one_and_three_engines() {
    let session = Session::new();
    let contexts = Contexts::new();
    let second = TestEngine::start(&contexts, &test_image());
    let third = TestEngine::start(&contexts, &test_image());
    let dir = tempfile::tempdir().unwrap();
    let submission = slow_suite(dir.path(), 40, 0.0);
    let three = format!("default,{},{}", second.context, third.context);
    for (label, context) in [("one", "default"), ("three", three.as_str())] {
        for jobs in ["2", "4"] {
            let started = Instant::now();
            let output = session
                .safe_exec()
                .env("DOCKER_CONFIG", contexts.config_dir())
                .timeout(Duration::from_secs(600))
                .args(["grade", "--context", context, "--jobs", jobs])
                .arg(dir.path().join("suite"))
                .arg(&submission)
                .output()
                .unwrap();
            let secs = started.elapsed().as_secs_f64();
            assert_eq!(output.status.code(), Some(0));
            println!(
                "{label} engine(s), --jobs {jobs} per engine: 40 cases in {secs:.1} s = {:.2} cases/s",
                40.0 / secs
            );
        }
    }
}
