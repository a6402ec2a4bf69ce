//! `safe-exec grade` refusing malformed suites, missing paths and unwritable reports before
//! anything runs.

use std::fs;
use std::path::Path;
use std::process::Output;

use crate::common::{listing, path_str, suite_dir, Files, RecordingDocker};

const SUITE: &str = "examples/suites/sum";

fn submission(name: &str) -> String {
    format!("{SUITE}/submissions/{name}.py")
}

/// Run `safe-exec grade ARGS` from the package root, against the recording docker.
fn grade(docker: &RecordingDocker, args: &[&str]) -> Output {
    docker
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

#[test]
fn malformed_suites_are_refused_before_anything_runs() {
    let docker = RecordingDocker::new();
    let ac = Path::new(env!("CARGO_MANIFEST_DIR")).join(submission("ac"));
    // (suite files, the file the message must name, what it must say)
    let cases: [(Files, &str, &str); 5] = [
        (
            &[("1.in", b"1"), ("2.in", b"1"), ("2.ans", b"1")],
            "1.in",
            "no matching 1.ans",
        ),
        (
            &[
                ("problem.yaml", b"limits: [\n"),
                ("data/secret/1.in", b""),
                ("data/secret/1.ans", b""),
            ],
            "problem.yaml",
            "bad YAML",
        ),
        (
            &[
                ("problem.yaml", b"limits:\n  timelimit: 1\n"),
                ("data/secret/1.in", b""),
                ("data/secret/1.ans", b""),
            ],
            "problem.yaml",
            "unknown field `timelimit`",
        ),
        (
            &[
                ("g/test_group.yaml", b"points: 3\n"),
                ("g/1.in", b""),
                ("g/1.ans", b""),
            ],
            "test_group.yaml",
            "unknown field `points`",
        ),
        (
            &[
                ("test_group.yaml", b"output_validator_args: [ignore_case]\n"),
                ("1.in", b""),
                ("1.ans", b""),
            ],
            "test_group.yaml",
            "ignore_case",
        ),
    ];
    for (files, file, problem) in cases {
        let suite = suite_dir(files);
        let output = grade(&docker, &[path_str(suite.path()), path_str(&ac)]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(65), "{message}");
        assert!(
            message.contains("malformed suite")
                && message.contains(file)
                && message.contains(problem),
            "{message}"
        );
        assert!(output.stdout.is_empty());
    }
    docker.assert_never_called();
}

#[test]
fn missing_paths_are_refused_before_anything_runs() {
    let docker = RecordingDocker::new();
    let ac = submission("ac");
    for (args, mentions) in [
        (
            vec!["examples/suites/nope", ac.as_str()],
            "examples/suites/nope",
        ),
        (vec![SUITE, "examples/nope.py"], "examples/nope.py"),
        (vec![SUITE, "examples"], "directory"),
    ] {
        let output = grade(&docker, &args);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(66), "{args:?}: {message}");
        assert!(message.contains(mentions), "{message}");
    }
    let two = grade(&docker, &[SUITE, &ac, &ac, "--gradescope", "/tmp/x.json"]);
    assert_eq!(two.status.code(), Some(2), "{}", stderr(&two));
    docker.assert_never_called();
}

#[test]
fn unwritable_reports_are_refused_before_anything_runs() {
    let docker = RecordingDocker::new();
    let ac = submission("ac");
    let out = tempfile::tempdir().unwrap();
    let good = out.path().join("good.json");
    let a_file = out.path().join("a-file");
    fs::write(&a_file, "").unwrap();
    let under_a_file = a_file.join("x.xml");
    let a_dir = out.path().join("reports");
    fs::create_dir(&a_dir).unwrap();
    // (flag, path, what the message says about it)
    let cases: [(&str, &Path, &str); 4] = [
        (
            "--json",
            Path::new("/nonexistent-dir/x.json"),
            "does not exist",
        ),
        ("--junit", &a_dir, "is a directory"),
        ("--junit", &under_a_file, "not a directory"),
        // sysfs refuses new files even to root: a read-only location wherever the tests run.
        ("--gradescope", Path::new("/sys/x.json"), "/sys"),
    ];
    for (flag, path, problem) in cases {
        // A good report next to the bad one: it must not be created either.
        let other = if flag == "--json" {
            "--junit"
        } else {
            "--json"
        };
        let output = grade(
            &docker,
            &[SUITE, &ac, other, path_str(&good), flag, path_str(path)],
        );
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(73), "{flag} {path:?}: {message}");
        assert!(
            message.contains(&format!("cannot write {flag} {}", path.display()))
                && message.contains(problem),
            "{message}"
        );
        assert!(!message.contains("grading"), "nothing may start: {message}");
        assert!(output.stdout.is_empty());
    }
    // Every unwritable report is named at once.
    let output = grade(
        &docker,
        &[
            SUITE,
            &ac,
            "--json",
            "/nonexistent-dir/x.json",
            "--junit",
            path_str(&a_dir),
        ],
    );
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(73), "{message}");
    assert!(
        message.contains("--json /nonexistent-dir/x.json") && message.contains("--junit"),
        "{message}"
    );
    // Two reports in one file, or a report over a submission: usage errors.
    let output = grade(
        &docker,
        &[
            SUITE,
            &ac,
            "--json",
            path_str(&good),
            "--junit",
            path_str(&good),
        ],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("both write"),
        "{}",
        stderr(&output)
    );
    let output = grade(&docker, &[SUITE, "--junit", &ac, &ac]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(&ac))
            .unwrap()
            .contains("print")
    );

    docker.assert_never_called();
    assert_eq!(
        listing(out.path()),
        ["a-file", "reports"],
        "no report and no temporary file left behind"
    );
    assert!(listing(&a_dir).is_empty());
}
