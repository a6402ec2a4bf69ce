//! Bad and unusual input (docs/threats.md I1–I10): refused before any container exists, or run the
//! same however it arrives.

use predicates::prelude::*;
use safe_exec::report::{Encoding, Status};

use crate::common::{parse_report, Session};

/// Run `safe-exec run --json` with code on stdin, returning the report and exit code.
fn run_stdin_json(
    session: &Session,
    code: &[u8],
    extra: &[&str],
) -> (safe_exec::report::RunReport, i32) {
    let output = session
        .safe_exec()
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

fn assert_rejected(session: &Session, code: &[u8], mentions: &str) {
    let (report, exit) = run_stdin_json(session, code, &[]);
    assert_eq!(report.status, Status::Rejected, "{report:?}");
    assert_eq!(exit, 123);
    assert_eq!(report.exit_code, None);
    let error = report.error.expect("a rejection says why");
    assert!(
        error.contains(mentions),
        "{error:?} should mention {mentions:?}"
    );
    session.assert_clean();
}

#[test]
fn i1_empty_and_blank_code_are_rejected() {
    let session = Session::new();
    assert_rejected(&session, b"", "empty");
    assert_rejected(&session, b"  \n\t\r\n", "empty");
    session
        .safe_exec()
        .args(["run", "-c", ""])
        .assert()
        .code(123)
        .stderr(predicate::str::starts_with("safe-exec: no code to run"));
}

#[test]
fn i2_nul_byte_is_rejected_before_any_container() {
    let session = Session::new();
    assert_rejected(&session, b"print(1)\n\x00print(2)", "NUL");
}

#[test]
fn i3_invalid_utf8_is_rejected() {
    let session = Session::new();
    assert_rejected(&session, b"print('\xff\xfe')", "UTF-8");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.py");
    std::fs::write(&path, b"print('caf\xe9')").unwrap();
    session
        .safe_exec()
        .arg("run")
        .arg(&path)
        .assert()
        .code(123)
        .stderr(predicate::str::contains("not valid UTF-8"));
    session.assert_clean();
}

#[test]
fn i4_bom_crlf_and_lone_cr_run_the_same_however_they_arrive() {
    let session = Session::new();
    let code: &[u8] = b"\xef\xbb\xbfx = 'a'\r\nif x == 'a':\r    print('crlf', repr(x))\r\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("windows.py");
    std::fs::write(&path, code).unwrap();
    let from_file = session.safe_exec().arg("run").arg(&path).output().unwrap();
    let from_stdin = session
        .safe_exec()
        .arg("run")
        .write_stdin(code.to_vec())
        .output()
        .unwrap();
    let inline = std::str::from_utf8(code).unwrap();
    let from_c = session
        .safe_exec()
        .args(["run", "-c", inline])
        .output()
        .unwrap();
    for output in [&from_file, &from_stdin, &from_c] {
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "crlf 'a'\n",
            "{output:?}"
        );
        assert_eq!(output.status.code(), Some(0));
    }
    session.assert_clean();
}

#[test]
fn i6_exactly_the_limit_runs_and_one_more_is_rejected() {
    let session = Session::new();
    let body = "print('ok')\n";
    let exact = format!("{body}#{}", "x".repeat(5000 - body.len() - 1));
    assert_eq!(exact.chars().count(), 5000);
    let (report, exit) = run_stdin_json(&session, exact.as_bytes(), &[]);
    assert_eq!(
        (report.status, exit, report.stdout.as_str()),
        (Status::Ok, 0, "ok\n")
    );
    let over = format!("{exact}x");
    let (report, exit) = run_stdin_json(&session, over.as_bytes(), &[]);
    assert_eq!((report.status, exit), (Status::Rejected, 123));
    let error = report.error.unwrap();
    assert!(error.contains("5001") && error.contains("5000"), "{error}");
    // The limit is a flag.
    let (report, _) = run_stdin_json(&session, over.as_bytes(), &["--max-code-chars", "6000"]);
    assert_eq!(report.status, Status::Ok);
    session.assert_clean();
}

#[test]
fn i7_the_limit_counts_characters_not_bytes() {
    let session = Session::new();
    for filler in ["é", "😀"] {
        let head = "print(len(open(__file__, encoding='utf-8').read()))\n#";
        let code = format!("{head}{}", filler.repeat(5000 - head.chars().count()));
        assert_eq!(code.chars().count(), 5000);
        assert!(code.len() > 9000);
        let (report, exit) = run_stdin_json(&session, code.as_bytes(), &[]);
        assert_eq!((report.status, exit), (Status::Ok, 0), "{report:?}");
        assert_eq!(report.stdout, "5000\n");
    }
    session.assert_clean();
}

#[test]
fn i10_binary_output_gives_valid_json_with_exact_bytes() {
    let session = Session::new();
    let (report, exit) = session.run_json(
        "import sys\nsys.stdout.buffer.write(bytes(range(256)))\nsys.stderr.write('é ok')",
        &[],
    );
    assert_eq!((report.status, exit), (Status::Ok, 0));
    assert_eq!(report.stdout_encoding, Encoding::Base64);
    assert_eq!(report.stdout_bytes(), (0u8..=255).collect::<Vec<_>>());
    assert_eq!(report.stderr_encoding, Encoding::Utf8);
    assert_eq!(report.stderr, "é ok");
    session.assert_clean();
}

#[test]
fn unreadable_files_are_rejected_naming_the_path() {
    let session = Session::new();
    session
        .safe_exec()
        .args(["run", "/nonexistent/prog.py"])
        .assert()
        .code(123)
        .stderr(
            predicate::str::contains("/nonexistent/prog.py")
                .and(predicate::str::contains("no such file")),
        );
    session
        .safe_exec()
        .args(["run", "-c", "pass", "--stdin", "/nonexistent/input.txt"])
        .assert()
        .code(123)
        .stderr(predicate::str::contains("--stdin /nonexistent/input.txt"));
    let output = session
        .safe_exec()
        .args(["run", "--json", "/tmp"])
        .output()
        .unwrap();
    let report = parse_report(&output.stdout);
    assert_eq!(report.status, Status::Rejected);
    assert!(report.error.unwrap().contains("directory"));
    session.assert_clean();
}

/// A file name that, printed raw, would return the carriage, start a GitHub workflow command,
/// set the terminal's title and ring its bell; and how the sanitiser shows it.
const HOSTILE_NAME: &str = "x\r::warning file=a,line=1::forged\u{1b}]0;owned\u{7}.py";
const HOSTILE_SHOWN: &str = "x\\r::warning file=a,line=1::forged\\u{1b}]0;owned\\u{7}.py";

#[test]
fn hostile_path_bytes_are_escaped_in_run_s_messages() {
    let session = Session::new();
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
        // Refused before the engine is asked anything: a missing docker would be exit 125.
        let text = session
            .safe_exec()
            .env("SAFE_EXEC_DOCKER", "/nonexistent/docker")
            .arg("run")
            .args(&args)
            .output()
            .unwrap();
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
        let json = session
            .safe_exec()
            .env("SAFE_EXEC_DOCKER", "/nonexistent/docker")
            .args(["run", "--json"])
            .args(&args)
            .output()
            .unwrap();
        let report = parse_report(&json.stdout);
        assert_eq!(report.status, Status::Rejected);
        let error = report.error.unwrap();
        assert!(error.contains(HOSTILE_SHOWN), "{error:?}");
    }
    session.assert_clean();
}
