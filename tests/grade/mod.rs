//! `safe-exec grade` against the real engine: every verdict from the example submissions,
//! comparison flags end to end, malformed suites and missing paths refused before anything runs,
//! an unavailable engine, `--jobs` not changing results, `--fail-fast`, the reports parsed back,
//! unwritable reports refused before anything runs (and reported without stopping the others
//! after), a report to `/dev/stdout` appended after what stdout already holds, suite files far
//! larger than memory should hold, and an interrupted batch (or a run interrupted before
//! grading) leaving nothing behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use safe_exec::grade::report::gradescope;
use safe_exec::grade::report::json::{GradeReport, SubmissionReport};
use safe_exec::grade::verdict::Verdict;

use crate::common::{
    comparable_grade_report, listing, path_str, signal, suite_dir, wait_exit, Files, Session,
};

mod hostile;
mod junit_schema;

const SUITE: &str = "examples/suites/sum";

fn submission(name: &str) -> String {
    format!("{SUITE}/submissions/{name}.py")
}

/// Run `safe-exec grade ARGS` from the package root.
fn grade(session: &Session, args: &[&str]) -> Output {
    session
        .safe_exec()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("grade")
        .args(args)
        .output()
        .expect("safe-exec runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn read_json(path: &Path) -> GradeReport {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("no report at {}: {error}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("not a grade report ({error}):\n{text}"))
}

fn by_name<'a>(report: &'a GradeReport, name: &str) -> &'a SubmissionReport {
    report
        .submissions
        .iter()
        .find(|sub| sub.submission.ends_with(&format!("/{name}.py")))
        .unwrap_or_else(|| panic!("{name} not in the report"))
}

#[test]
fn every_example_submission_gets_its_verdict() {
    let session = Session::new();
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("grade.json");
    let junit = out.path().join("grade.xml");
    let names = ["ac", "wa", "partial", "tle", "mle", "ole", "rte", "ce"];
    let subs: Vec<String> = names.iter().map(|name| submission(name)).collect();
    let mut args = vec![
        SUITE,
        "--jobs",
        "2",
        "--json",
        path_str(&json),
        "--junit",
        path_str(&junit),
    ];
    args.extend(subs.iter().map(String::as_str));
    let output = grade(&session, &args);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    session.assert_clean_within(Duration::from_secs(2));

    let report = read_json(&json);
    assert_eq!(report.format_version, 1);
    assert_eq!(report.suite.name, "Sum of Numbers");
    assert_eq!(
        report.suite.limits.timeout_secs, 1.0,
        "the suite's time_limit"
    );
    let expect = [
        ("ac", Verdict::AC, 100.0),
        ("wa", Verdict::WA, 0.0),
        ("partial", Verdict::WA, 40.0),
        ("tle", Verdict::TLE, 0.0),
        ("mle", Verdict::MLE, 0.0),
        ("ole", Verdict::OLE, 0.0),
        ("rte", Verdict::RTE, 0.0),
        ("ce", Verdict::CE, 0.0),
    ];
    for (name, verdict, score) in expect {
        let sub = by_name(&report, name);
        assert_eq!(
            (sub.verdict, sub.score, sub.max_score),
            (verdict, score, 100.0),
            "{name}: {sub:#?}"
        );
        assert_eq!(sub.cases.len(), 5);
    }
    // Results come back in command-line order.
    let order: Vec<&str> = report
        .submissions
        .iter()
        .map(|sub| sub.submission.as_str())
        .collect();
    assert_eq!(order, subs.iter().map(String::as_str).collect::<Vec<_>>());

    // Every case records time, exit code or signal and a message.
    // TLE by its CPU time over the 1 s limit, or (on a machine too busy to give it a second of
    // CPU in time) by the wall-clock backstop of 2 x 1 s + 1 s.
    let tle = by_name(&report, "tle");
    assert!(
        tle.cases.iter().all(|case| case.verdict == Verdict::TLE
            && (case.time_s.unwrap() > 1.0 || case.wall_time_s.unwrap() > 3.0)),
        "{tle:#?}"
    );
    let rte = by_name(&report, "rte");
    assert!(rte.cases.iter().all(|case| case.exit_code == Some(1)));
    // Samples show everything; secret cases nothing of the answer.
    let sample = &rte.cases[0];
    assert!(sample
        .feedback
        .as_ref()
        .unwrap()
        .stderr
        .contains("IndexError"));
    let partial = by_name(&report, "partial");
    let secret = partial
        .cases
        .iter()
        .find(|case| case.name == "secret/2-large/02")
        .unwrap();
    assert_eq!(secret.verdict, Verdict::WA);
    assert!(secret.feedback.is_none());
    assert_eq!(secret.message, "wrong answer on line 1 of the output");
    let answer = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(SUITE)
            .join("data/secret/2-large/02.ans"),
    )
    .unwrap();
    let text = fs::read_to_string(&json).unwrap();
    assert!(
        !text.contains(answer.trim()),
        "a secret answer leaked into the JSON report"
    );
    assert_eq!(
        partial.cases[3].hint.as_deref(),
        Some("the numbers are spread over several lines")
    );
    // CE was found once, in the sandbox, and no case ran.
    let ce = by_name(&report, "ce");
    assert!(
        ce.message.as_deref().unwrap().contains("SyntaxError"),
        "{ce:#?}"
    );
    assert!(ce
        .cases
        .iter()
        .all(|case| case.verdict == Verdict::CE && case.time_s.is_none()));

    let xml = fs::read_to_string(&junit).unwrap();
    let document = roxmltree::Document::parse(&xml).unwrap();
    let suites: Vec<_> = document
        .root_element()
        .children()
        .filter(|node| node.has_tag_name("testsuite"))
        .collect();
    assert_eq!(suites.len(), 8);
    let tle_suite = suites
        .iter()
        .find(|node| node.attribute("name") == Some(subs[3].as_str()))
        .unwrap();
    let failures: Vec<_> = tle_suite
        .descendants()
        .filter(|node| node.has_tag_name("failure"))
        .collect();
    assert_eq!(failures.len(), 5);
    assert!(failures
        .iter()
        .all(|node| node.attribute("type") == Some("TLE")));
    assert!(!xml.contains(answer.trim()));
}

#[test]
fn jobs_do_not_change_the_results() {
    let session = Session::new();
    let out = tempfile::tempdir().unwrap();
    let mut reports = Vec::new();
    for jobs in ["1", "2"] {
        let json = out.path().join(format!("jobs{jobs}.json"));
        let (ac, partial, rte, ce) = (
            submission("ac"),
            submission("partial"),
            submission("rte"),
            submission("ce"),
        );
        let output = grade(
            &session,
            &[
                SUITE,
                &ac,
                &partial,
                &rte,
                &ce,
                "--jobs",
                jobs,
                "--json",
                path_str(&json),
            ],
        );
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        reports.push(comparable_grade_report(&read_json(&json)));
    }
    assert_eq!(reports[0], reports[1]);
    session.assert_clean_within(Duration::ZERO);
}

#[test]
fn fail_fast_stops_a_submission_at_its_first_failure() {
    let session = Session::new();
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("grade.json");
    let output = grade(
        &session,
        &[
            SUITE,
            &submission("wa"),
            &submission("ac"),
            "--fail-fast",
            "--jobs",
            "2",
            "--json",
            path_str(&json),
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report = read_json(&json);
    let verdicts: Vec<Verdict> = by_name(&report, "wa")
        .cases
        .iter()
        .map(|case| case.verdict)
        .collect();
    assert_eq!(
        verdicts,
        [
            Verdict::AC,
            Verdict::AC,
            Verdict::WA,
            Verdict::Skipped,
            Verdict::Skipped
        ]
    );
    assert_eq!(by_name(&report, "wa").verdict, Verdict::WA);
    assert_eq!(
        by_name(&report, "ac").verdict,
        Verdict::AC,
        "other submissions go on"
    );
    session.assert_clean_within(Duration::from_secs(2));
}

#[test]
fn comparison_flags_and_bare_directories_end_to_end() {
    let session = Session::new();
    // Each case's input is what to print; the answers differ from it only as each flag allows.
    let suite = suite_dir(&[
        ("float.in", b"3.14159\n"),
        ("float.ans", b"3.1416\n"),
        (
            "float.yaml",
            b"output_validator_args: [float_absolute_tolerance, \"1e-3\"]\n",
        ),
        ("case.in", b"YES\n"),
        ("case.ans", b"yes\n"),
        ("strict.in", b"YES\n"),
        ("strict.ans", b"yes\n"),
        (
            "strict.yaml",
            b"output_validator_args: [case_sensitive]\nfull_feedback: true\n",
        ),
        ("space.in", b"a  b\n"),
        ("space.ans", b"a b\n"),
    ]);
    let subs = tempfile::tempdir().unwrap();
    let echo = subs.path().join("echo.py");
    fs::write(&echo, "import sys\nsys.stdout.write(sys.stdin.read())\n").unwrap();
    let latin1 = subs.path().join("latin1.py");
    fs::write(&latin1, b"print('caf\xe9')\n").unwrap();
    let json = subs.path().join("grade.json");
    let output = grade(
        &session,
        &[
            path_str(suite.path()),
            path_str(&echo),
            path_str(&latin1),
            "--json",
            path_str(&json),
            "--jobs",
            "2",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report = read_json(&json);
    assert_eq!(report.suite.kind, "directory");
    assert_eq!(
        report.suite.cases,
        [
            "secret/case",
            "secret/float",
            "secret/space",
            "secret/strict"
        ]
    );
    let verdicts: Vec<Verdict> = report.submissions[0]
        .cases
        .iter()
        .map(|case| case.verdict)
        .collect();
    assert_eq!(
        verdicts,
        [Verdict::AC, Verdict::AC, Verdict::AC, Verdict::WA]
    );
    let strict = &report.submissions[0].cases[3];
    assert!(
        strict.message.contains("expected `yes`, got `YES`"),
        "{}",
        strict.message
    );
    assert_eq!(report.submissions[0].score, 75.0);
    // Not UTF-8: a compile error with the reason, and nothing of it ran.
    let latin1 = &report.submissions[1];
    assert_eq!(latin1.verdict, Verdict::CE);
    assert!(
        latin1.message.as_deref().unwrap().contains("UTF-8"),
        "{latin1:#?}"
    );
    session.assert_clean_within(Duration::from_secs(2));
}

#[test]
fn an_unavailable_engine_is_reported_before_grading() {
    let session = Session::new();
    let ac = submission("ac");
    let output = session
        .safe_exec()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SAFE_EXEC_DOCKER", "/nonexistent/docker")
        .args(["grade", SUITE, &ac])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(125));
    assert!(
        stderr(&output).contains("/nonexistent/docker"),
        "{}",
        stderr(&output)
    );
    let output = grade(
        &session,
        &[SUITE, &ac, "--image", "safe-exec-no-such-image:0"],
    );
    assert_eq!(output.status.code(), Some(125));
    assert!(
        stderr(&output).contains("scripts/setup.sh"),
        "{}",
        stderr(&output)
    );
    assert!(output.stdout.is_empty(), "nothing graded");
    assert!(session.containers().is_empty());
}

#[test]
fn gradescope_github_and_exit_zero() {
    let session = Session::new();
    let out = tempfile::tempdir().unwrap();
    let results = out.path().join("results.json");
    let summary = out.path().join("summary.md");
    fs::write(&summary, "earlier steps\n").unwrap();
    let output = session
        .safe_exec()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .args([
            "grade",
            SUITE,
            &submission("partial"),
            "--exit-zero",
            "--gradescope",
            path_str(&results),
        ])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "--exit-zero: {}",
        stderr(&output)
    );
    let gradescope: gradescope::Results =
        serde_json::from_str(&fs::read_to_string(&results).unwrap()).unwrap();
    assert_eq!(gradescope.score, 40.0);
    let scored: f64 = gradescope.tests.iter().filter_map(|test| test.score).sum();
    assert_eq!(scored, 40.0);
    assert!(gradescope
        .tests
        .iter()
        .any(|test| test.name == "secret/2-large/02" && test.status == "failed"));

    let stdout = String::from_utf8_lossy(&output.stdout);
    let token = stdout
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("::stop-commands::"))
        .unwrap_or_else(|| panic!("log not protected:\n{stdout}"));
    assert!(token.len() >= 32);
    assert!(stdout.contains(&format!(
        "::{token}::\n::error file=examples/suites/sum/submissions/partial.py"
    )));
    let markdown = fs::read_to_string(&summary).unwrap();
    assert!(
        markdown.starts_with("earlier steps\n### safe-exec grade: Sum of Numbers"),
        "appended: {markdown}"
    );
    assert!(markdown.contains("| ❌ WA | 40 / 100 |"), "{markdown}");
    session.assert_clean_within(Duration::from_secs(2));
}

#[test]
fn an_interrupted_batch_leaves_nothing_running() {
    let session = Session::new();
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("grade.json");
    let mut child = session
        .std_command()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "grade",
            SUITE,
            &submission("tle"),
            &submission("tle"),
            "--jobs",
            "2",
            "--json",
        ])
        .arg(&json)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until its runs are under way.
    let started = Instant::now();
    while session.containers().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no container ever started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, "INT");
    let signalled = Instant::now();
    let code = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(code, 130);
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "took {:?}",
        signalled.elapsed()
    );
    session.assert_clean_within(Duration::from_secs(2));
    assert!(
        !PathBuf::from(&json).exists(),
        "no report after an interrupted batch"
    );
    assert!(
        listing(out.path()).is_empty(),
        "the report's temporary file is removed too: {:?}",
        listing(out.path())
    );
    let mut message = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut message).unwrap();
    assert!(message.contains("interrupted"), "{message}");
}

#[test]
fn a_report_that_cannot_be_written_after_grading_does_not_stop_the_others() {
    let session = Session::new();
    let out = tempfile::tempdir().unwrap();
    let junit = out.path().join("grade.xml");
    let results = out.path().join("results.json");
    // /dev/full accepts the claim (it exists) and fails every write, as a full disk does.
    let output = grade(
        &session,
        &[
            SUITE,
            &submission("ac"),
            "--json",
            "/dev/full",
            "--junit",
            path_str(&junit),
            "--gradescope",
            path_str(&results),
            "--exit-zero",
        ],
    );
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(73), "{message}");
    assert!(
        message.contains("cannot write --json /dev/full") && message.contains("1 report(s)"),
        "{message}"
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("1 of 1 submission(s) accepted"),
        "the table is printed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    roxmltree::Document::parse(&fs::read_to_string(&junit).unwrap()).unwrap();
    let gradescope: gradescope::Results =
        serde_json::from_str(&fs::read_to_string(&results).unwrap()).unwrap();
    assert_eq!(gradescope.score, 100.0);
    assert_eq!(listing(out.path()), ["grade.xml", "results.json"]);
    session.assert_clean_within(Duration::from_secs(2));
}

/// The largest resident set of any child of this process waited for so far (nextest runs each
/// test in its own process, so: this test's).
fn children_peak_rss_bytes() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    let usage = unsafe {
        assert_eq!(
            libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()),
            0
        );
        usage.assume_init()
    };
    u64::try_from(usage.ru_maxrss).unwrap() * 1024
}

#[test]
fn suite_files_larger_than_memory_should_hold_are_streamed() {
    const BIG: usize = 96 << 20;
    let session = Session::new();
    // One case with full feedback, so its files are shown (in part): a 96 MiB input, and an
    // answer of `42`, 96 MiB of newlines and one more token. The program prints `42` without
    // reading its input (streaming 96 MiB through the engine would only load the machine), so the
    // comparison reads the whole answer before it finds the difference.
    let suite = tempfile::tempdir().unwrap();
    let write_big = |name: &str, head: &[u8], fill: u8, tail: &[u8]| {
        let mut file = std::io::BufWriter::new(fs::File::create(suite.path().join(name)).unwrap());
        std::io::Write::write_all(&mut file, head).unwrap();
        let chunk = vec![fill; 1 << 20];
        for _ in 0..BIG >> 20 {
            std::io::Write::write_all(&mut file, &chunk).unwrap();
        }
        std::io::Write::write_all(&mut file, tail).unwrap();
        std::io::Write::flush(&mut file).unwrap();
    };
    write_big("big.in", b"", b'x', b"");
    write_big("big.ans", b"42", b'\n', b"extra\n");
    fs::write(suite.path().join("big.yaml"), "full_feedback: true\n").unwrap();
    let subs = tempfile::tempdir().unwrap();
    let answer = subs.path().join("answer.py");
    fs::write(&answer, "print(42)\n").unwrap();
    let json = subs.path().join("grade.json");
    let output = grade(
        &session,
        &[
            path_str(suite.path()),
            path_str(&answer),
            "--json",
            path_str(&json),
            "--timeout",
            "30",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let peak = children_peak_rss_bytes();
    let report = read_json(&json);
    let case = &report.submissions[0].cases[0];
    assert_eq!(case.verdict, Verdict::WA, "{case:#?}");
    assert!(
        case.message.contains("the answer continues with `extra`"),
        "{}",
        case.message
    );
    let feedback = case.feedback.as_ref().unwrap();
    assert_eq!(feedback.stdout, "42\n");
    assert!(feedback.expected.starts_with("42\n\n"));
    assert!(feedback.input.starts_with("xxxx"));
    for excerpt in [&feedback.input, &feedback.expected] {
        assert!(excerpt.len() < 4096, "{}", excerpt.len());
        assert!(excerpt.contains("more bytes not shown"));
    }
    // Neither file was read whole: safe-exec (and docker, the largest child) stayed far below
    // the size of either.
    assert!(
        peak < 64 << 20,
        "a child of the test peaked at {} MiB",
        peak >> 20
    );
    session.assert_clean_within(Duration::from_secs(2));
}

#[test]
fn a_report_to_dev_stdout_follows_what_stdout_already_holds() {
    let session = Session::new();
    let out = tempfile::tempdir().unwrap();
    let log = out.path().join("log.txt");
    fs::write(&log, "an earlier line\n").unwrap();
    // `safe-exec grade ... --json /dev/stdout >> log.txt`
    let appended = fs::OpenOptions::new().append(true).open(&log).unwrap();
    let output = session
        .std_command()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["grade", SUITE, &submission("ac"), "--json", "/dev/stdout"])
        .stdout(appended)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("an earlier line\n"), "{text}");
    assert!(
        text.contains("1 of 1 submission(s) accepted"),
        "the table: {text}"
    );
    // The JSON document comes last, after the table, whole.
    let start = text.find("\n{").expect("a JSON document") + 1;
    let report: GradeReport = serde_json::from_str(&text[start..])
        .unwrap_or_else(|error| panic!("not a grade report ({error}):\n{text}"));
    assert_eq!(report.submissions.len(), 1);
    assert_eq!(listing(out.path()), ["log.txt"]);
    session.assert_clean_within(Duration::from_secs(2));
}

#[test]
fn a_signal_before_grading_starts_leaves_no_temporary_report() {
    let session = Session::new();
    let out = tempfile::tempdir().unwrap();
    // An engine that takes its time to answer whether it is ready, then is not.
    let docker = out.path().join("slow-docker");
    fs::write(&docker, "#!/bin/sh\nsleep 2\nexit 1\n").unwrap();
    fs::set_permissions(&docker, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let reports = out.path().join("reports");
    fs::create_dir(&reports).unwrap();
    let mut child = session
        .std_command()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SAFE_EXEC_DOCKER", &docker)
        .args(["grade", SUITE, &submission("ac"), "--json"])
        .arg(reports.join("grade.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the claim: the temporary file exists.
    let started = Instant::now();
    while listing(&reports).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the report was never claimed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(&child, "TERM");
    let code = wait_exit(&mut child, Duration::from_secs(10));
    let mut message = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut message).unwrap();
    assert_eq!(code, 143, "{message}");
    assert!(message.contains("interrupted before grading"), "{message}");
    assert!(
        listing(&reports).is_empty(),
        "the temporary file is removed: {:?}",
        listing(&reports)
    );
}

#[test]
fn warm_and_cold_grading_give_identical_reports() {
    let session = Session::new();
    let out = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = vec![SUITE.to_owned()];
    for name in ["ac", "wa", "rte", "tle", "mle", "ole", "ce", "partial"] {
        args.push(submission(name));
    }
    let mut reports = Vec::new();
    for (label, pool) in [("cold", "0"), ("warm", "2")] {
        let json = out.path().join(format!("{label}.json"));
        let mut these = args.clone();
        // The wall-clock backstop out of the way: on a loaded machine a TLE could otherwise come
        // from either limit, and its message says which.
        these.extend(
            [
                "--jobs",
                "2",
                "--pool",
                pool,
                "--wall-timeout",
                "60",
                "--json",
            ]
            .map(String::from),
        );
        these.push(path_str(&json).to_owned());
        let refs: Vec<&str> = these.iter().map(String::as_str).collect();
        let output = grade(&session, &refs);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{label}: {}",
            stderr(&output)
        );
        reports.push(read_json(&json));
        // Every container of the batch, warm ones included, is gone when grade exits.
        session.assert_clean_within(Duration::ZERO);
    }
    assert_eq!(
        comparable_grade_report(&reports[0]),
        comparable_grade_report(&reports[1]),
        "warm and cold reports differ"
    );
}

/// A warm batch starts hardly a container more than the runs it makes (here 1 compile check and 5
/// cases): its pool stocks no more containers than there are runs still to come. A run that finds
/// its container still starting goes cold rather than wait, which can leave that one unused: at
/// most one per job.
#[test]
fn a_warm_batch_starts_no_container_it_does_not_use() {
    let session = Session::new();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    let output = grade(
        &session,
        &[SUITE, &submission("ac"), "--jobs", "2", "--pool", "4"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    session.assert_clean_within(Duration::ZERO);
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let events = std::process::Command::new("docker")
        .args([
            "events",
            "--since",
            &since.to_string(),
            "--until",
            &until.to_string(),
        ])
        .args(["--filter", "event=create", "--filter"])
        .arg(format!("label=safe-exec.session={}", session.label))
        .args(["--format", "{{.Actor.Attributes.name}}"])
        .output()
        .unwrap();
    let created = String::from_utf8_lossy(&events.stdout).lines().count();
    assert!(
        (6..=8).contains(&created),
        "{created} containers: {}",
        String::from_utf8_lossy(&events.stdout)
    );
}

/// `grade --server` gives the report a local grade gives (durations aside): every case and
/// compile check runs on the server with the suite's limits asked for. The server allows the
/// wall-clock backstop the grade asks for; limits past the server's are refused before anything
/// runs, naming the flag to raise.
#[test]
fn grading_through_a_server_gives_the_local_report() {
    let session = Session::new();
    let server = crate::serve::Server::start(
        &session,
        &["--rate-limit", "0", "--wall-timeout", "60", "--pool", "1"],
    );
    let out = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = vec![SUITE.to_owned()];
    for name in ["ac", "wa", "rte", "tle", "mle", "ole", "ce", "partial"] {
        args.push(submission(name));
    }
    let mut reports = Vec::new();
    for (label, server_url) in [("local", None), ("server", Some(server.listening.clone()))] {
        let json = out.path().join(format!("{label}.json"));
        let mut these = args.clone();
        these.extend(["--jobs", "2", "--wall-timeout", "60", "--json"].map(String::from));
        these.push(path_str(&json).to_owned());
        if let Some(url) = server_url {
            these.extend(["--server".to_owned(), url]);
        }
        // 48 runs each way: on a machine busy with other jobs that can take minutes.
        let output = session
            .safe_exec()
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("grade")
            .args(&these)
            .timeout(Duration::from_secs(600))
            .output()
            .expect("safe-exec runs");
        assert_eq!(
            output.status.code(),
            Some(1),
            "{label}: {}",
            stderr(&output)
        );
        reports.push(read_json(&json));
    }
    // Each case names where it ran: the local engine, or the server.
    let engines: Vec<_> = reports
        .iter()
        .map(|report| {
            let mut engines: Vec<_> = report
                .submissions
                .iter()
                .flat_map(|submission| &submission.cases)
                .filter_map(|case| case.engine.clone())
                .collect();
            engines.dedup();
            engines
        })
        .collect();
    assert_eq!(engines[0], ["default"]);
    assert_eq!(engines[1], std::slice::from_ref(&server.listening));
    assert_eq!(
        comparable_grade_report(&reports[0]),
        comparable_grade_report(&reports[1]),
        "local and server reports differ"
    );

    let mut over = vec![SUITE.to_owned(), submission("ac")];
    over.extend(["--timeout", "20", "--server"].map(String::from));
    over.push(server.listening.clone());
    let refs: Vec<&str> = over.iter().map(String::as_str).collect();
    let refused = grade(&session, &refs);
    assert_eq!(refused.status.code(), Some(125), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("allows at most 10 s: start it with a larger --timeout"),
        "{}",
        stderr(&refused)
    );
    server.stop_and_assert_clean(&session);
}

#[test]
fn a_package_s_files_sit_beside_every_submission() {
    let session = Session::new();
    let suite = suite_dir(&[
        ("problem.yaml", b"name: Lookup\n"),
        ("files/table.csv", b"a,1\nb,2\n"),
        ("data/secret/1.in", b"b\n"),
        ("data/secret/1.ans", b"2\n"),
    ]);
    let subs = tempfile::tempdir().unwrap();
    let solution = subs.path().join("lookup.py");
    fs::write(
        &solution,
        "key = input()\nrows = dict(line.split(',') for line in open('table.csv').read().split())\nprint(rows[key])\n",
    )
    .unwrap();
    let json = subs.path().join("report.json");
    let output = grade(
        &session,
        &[
            path_str(suite.path()),
            path_str(&solution),
            "--json",
            path_str(&json),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(read_json(&json).submissions[0].verdict, Verdict::AC);
    // On a server too: the files travel with every request.
    let server = crate::serve::Server::start(&session, &["--rate-limit", "0"]);
    let output = grade(
        &session,
        &[
            path_str(suite.path()),
            path_str(&solution),
            "--json",
            path_str(&json),
            "--server",
            &server.listening,
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(read_json(&json).submissions[0].verdict, Verdict::AC);
    server.stop_and_assert_clean(&session);
    // A link, or a directory, in files/ makes the suite malformed, before anything runs.
    let linked = suite_dir(&[
        ("problem.yaml", b"name: Lookup\n"),
        ("data/secret/1.in", b"b\n"),
        ("data/secret/1.ans", b"2\n"),
    ]);
    fs::create_dir(linked.path().join("files")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", linked.path().join("files/table.csv")).unwrap();
    let output = grade(&session, &[path_str(linked.path()), path_str(&solution)]);
    assert_eq!(output.status.code(), Some(65), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("symbolic link"),
        "{}",
        stderr(&output)
    );
    session.assert_clean();
}
