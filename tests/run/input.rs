//! Bad and unusual input (docs/threats.md I1–I10): refused before any container exists, or run the
//! same however it arrives.

use safe_exec::report::{Encoding, Status};

use crate::common::{run_stdin_json, Session};

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
    let (report, exit) = run_stdin_json(session.safe_exec(), exact.as_bytes(), &[]);
    assert_eq!(
        (report.status, exit, report.stdout.as_str()),
        (Status::Ok, 0, "ok\n")
    );
    let over = format!("{exact}x");
    let (report, exit) = run_stdin_json(session.safe_exec(), over.as_bytes(), &[]);
    assert_eq!((report.status, exit), (Status::Rejected, 123));
    let error = report.error.unwrap();
    assert!(error.contains("5001") && error.contains("5000"), "{error}");
    // The limit is a flag.
    let (report, _) = run_stdin_json(
        session.safe_exec(),
        over.as_bytes(),
        &["--max-code-chars", "6000"],
    );
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
        let (report, exit) = run_stdin_json(session.safe_exec(), code.as_bytes(), &[]);
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
