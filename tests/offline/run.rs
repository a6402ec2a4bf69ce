//! `safe-exec run` refusing its input, its paths and its flags before anything runs.

use predicates::prelude::*;
use safe_exec::report::Status;

use crate::common::{parse_report, run_stdin_json, RecordingDocker};

fn assert_rejected(docker: &RecordingDocker, code: &[u8], mentions: &str) {
    let (report, exit) = run_stdin_json(docker.safe_exec(), code, &[]);
    assert_eq!(report.status, Status::Rejected, "{report:?}");
    assert_eq!(exit, 123);
    assert_eq!(report.exit_code, None);
    let error = report.error.expect("a rejection says why");
    assert!(
        error.contains(mentions),
        "{error:?} should mention {mentions:?}"
    );
    docker.assert_never_called();
}

#[test]
fn i1_empty_and_blank_code_are_rejected() {
    let docker = RecordingDocker::new();
    assert_rejected(&docker, b"", "empty");
    assert_rejected(&docker, b"  \n\t\r\n", "empty");
    docker
        .safe_exec()
        .args(["run", "-c", ""])
        .assert()
        .code(123)
        .stderr(predicate::str::starts_with("safe-exec: no code to run"));
}

#[test]
fn i2_nul_byte_is_rejected_before_any_container() {
    let docker = RecordingDocker::new();
    assert_rejected(&docker, b"print(1)\n\x00print(2)", "NUL");
}

#[test]
fn i3_invalid_utf8_is_rejected() {
    let docker = RecordingDocker::new();
    assert_rejected(&docker, b"print('\xff\xfe')", "UTF-8");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.py");
    std::fs::write(&path, b"print('caf\xe9')").unwrap();
    docker
        .safe_exec()
        .arg("run")
        .arg(&path)
        .assert()
        .code(123)
        .stderr(predicate::str::contains("not valid UTF-8"));
    docker.assert_never_called();
}

#[test]
fn unreadable_files_are_rejected_naming_the_path() {
    let docker = RecordingDocker::new();
    docker
        .safe_exec()
        .args(["run", "/nonexistent/prog.py"])
        .assert()
        .code(123)
        .stderr(
            predicate::str::contains("/nonexistent/prog.py")
                .and(predicate::str::contains("no such file")),
        );
    docker
        .safe_exec()
        .args(["run", "-c", "pass", "--stdin", "/nonexistent/input.txt"])
        .assert()
        .code(123)
        .stderr(predicate::str::contains("--stdin /nonexistent/input.txt"));
    let output = docker
        .safe_exec()
        .args(["run", "--json", "/tmp"])
        .output()
        .unwrap();
    let report = parse_report(&output.stdout);
    assert_eq!(report.status, Status::Rejected);
    assert!(report.error.unwrap().contains("directory"));
    docker.assert_never_called();
}

/// A file name that, printed raw, would return the carriage, start a GitHub workflow command,
/// set the terminal's title and ring its bell; and how the sanitiser shows it.
const HOSTILE_NAME: &str = "x\r::warning file=a,line=1::forged\u{1b}]0;owned\u{7}.py";
const HOSTILE_SHOWN: &str = "x\\r::warning file=a,line=1::forged\\u{1b}]0;owned\\u{7}.py";

#[test]
fn hostile_path_bytes_are_escaped_in_run_s_messages() {
    let docker = RecordingDocker::new();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join(HOSTILE_NAME);
    let directory = dir.path().join(format!("{HOSTILE_NAME}.d"));
    std::fs::create_dir(&directory).unwrap();
    let cases: [(Vec<&std::ffi::OsStr>, &str); 4] = [
        (vec![missing.as_os_str()], "no such file"),
        (vec![directory.as_os_str()], "directory"),
        (
            vec![
                "-c".as_ref(),
                "print(1)".as_ref(),
                "--stdin".as_ref(),
                missing.as_os_str(),
            ],
            "no such file",
        ),
        (
            vec![
                "-c".as_ref(),
                "print(1)".as_ref(),
                "--stdin".as_ref(),
                directory.as_os_str(),
            ],
            "directory",
        ),
    ];
    for (args, mentions) in cases {
        // Refused before the engine is asked anything.
        let text = docker.safe_exec().arg("run").args(&args).output().unwrap();
        let message = String::from_utf8_lossy(&text.stderr).into_owned();
        assert_eq!(text.status.code(), Some(123), "{message:?}");
        assert!(
            message.contains(mentions) && message.contains(HOSTILE_SHOWN),
            "{message:?}"
        );
        assert!(
            !message.chars().any(|c| c.is_control() && c != '\n'),
            "raw control characters: {message:?}"
        );
        assert!(
            message.lines().all(|line| !line.starts_with("::")),
            "a line GitHub would run: {message:?}"
        );
        // The JSON report carries the same escaped text.
        let json = docker
            .safe_exec()
            .args(["run", "--json"])
            .args(&args)
            .output()
            .unwrap();
        let report = parse_report(&json.stdout);
        assert_eq!(report.status, Status::Rejected);
        let error = report.error.unwrap();
        assert!(error.contains(HOSTILE_SHOWN), "{error:?}");
    }
    docker.assert_never_called();
}

#[test]
fn usage_errors_exit_2_without_a_document() {
    let docker = RecordingDocker::new();
    for args in [
        &["run", "--memory", "lots", "-c", "pass"][..],
        &["run", "--timeout", "0", "-c", "pass"][..],
        &["run", "--bogus"][..],
        &["run", "x.py", "-c", "pass"][..],
    ] {
        docker
            .safe_exec()
            .args(args)
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::is_empty().not());
    }
    docker.assert_never_called();
}

#[test]
fn input_files_that_are_not_plain_regular_files_are_refused_before_anything_runs() {
    let docker = RecordingDocker::new();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.txt");
    std::fs::write(&good, "x").unwrap();
    let link = dir.path().join("link.txt");
    std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
    let named_out = dir.path().join("out");
    std::fs::write(&named_out, "x").unwrap();
    let spaced = dir.path().join("a b.txt");
    std::fs::write(&spaced, "x").unwrap();
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![0u8; 9 * 1024 * 1024]).unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![link.display().to_string()], "symbolic link"),
        (vec![dir.path().display().to_string()], "directory"),
        (vec!["/dev/zero".to_owned()], "device"),
        (
            vec![named_out.display().to_string()],
            "not a usable file name",
        ),
        (vec![spaced.display().to_string()], "not a usable file name"),
        (vec![big.display().to_string()], "more than 8 MiB"),
        (
            vec![good.display().to_string(), good.display().to_string()],
            "already called",
        ),
        (
            (0..33).map(|_| good.display().to_string()).collect(),
            "at most 32",
        ),
    ];
    for (files, mentions) in cases {
        let mut command = docker.safe_exec();
        command.args(["run", "--json", "-c", "print(1)"]);
        for file in &files {
            command.args(["--file", file]);
        }
        let output = command.output().unwrap();
        let report = parse_report(&output.stdout);
        assert_eq!(output.status.code(), Some(123), "{files:?}: {report:?}");
        assert_eq!(report.status, Status::Rejected);
        let error = report.error.unwrap();
        assert!(error.contains(mentions), "{files:?}: {error}");
    }
    docker.assert_never_called();
}

#[test]
fn an_artifact_dir_that_cannot_be_used_is_refused_before_anything_runs() {
    let docker = RecordingDocker::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(dir.path(), &link).unwrap();
    for path in [&file, &link] {
        let output = docker
            .safe_exec()
            .args([
                "run",
                "--artifacts",
                path.to_str().unwrap(),
                "-c",
                "print(1)",
            ])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(73), "{path:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--artifacts"), "{stderr}");
    }
    docker.assert_never_called();
}
