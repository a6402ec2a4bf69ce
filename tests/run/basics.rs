//! Program I/O, script semantics, text and JSON modes, and the exit-code table.

use std::io::Write;
use std::time::Duration;

use predicates::prelude::*;
use safe_exec::report::{Encoding, Status};

use crate::common::{parse_report, Session};

#[test]
fn hello_example_prints_and_exits_zero() {
    let session = Session::new();
    session
        .safe_exec()
        .args(["run", "examples/hello.py"])
        .assert()
        .success()
        .stdout(predicate::str::is_empty().not())
        .stderr("");
    session.assert_clean();
}

#[test]
fn program_runs_as_a_real_script_with_source_lines_in_tracebacks() {
    let session = Session::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("solution.py");
    std::fs::write(
        &path,
        "import os\nprint(__name__, __file__, os.getcwd())\nraise ValueError('boom')\n",
    )
    .unwrap();
    session
        .safe_exec()
        .arg("run")
        .arg(&path)
        .assert()
        .code(1)
        .stdout("__main__ /tmp/solution.py /tmp\n")
        .stderr(predicate::str::contains(
            "File \"/tmp/solution.py\", line 3, in <module>",
        ))
        .stderr(predicate::str::contains("raise ValueError('boom')"))
        .stderr(predicate::str::contains("ValueError: boom"));
    session.assert_clean();
}

/// The interpreter is started before the program is known (the launcher's stub); the program
/// still sees exactly what `python3 PATH` gives it: its globals, argv, import path, tracebacks
/// that start at its own first frame, a compile error without a traceback, and the exit status
/// of an uncaught KeyboardInterrupt.
#[test]
fn the_started_interpreter_runs_the_program_as_python_runs_a_file() {
    let session = Session::new();
    let (report, code) = session.run_json(
        "import sys\nprint(sorted(globals()), sys.argv, sys.path[0], __loader__.name, __spec__, __cached__)\n\
         def fail():\n    raise ValueError('boom')\nfail()\n",
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(
        report.stdout,
        "['__annotations__', '__builtins__', '__cached__', '__doc__', '__file__', '__loader__', \
         '__name__', '__package__', '__spec__', 'sys'] ['/tmp/main.py'] /tmp __main__ None None\n"
    );
    assert_eq!(
        report.stderr,
        "Traceback (most recent call last):\n  File \"/tmp/main.py\", line 5, in <module>\n    fail()\n  \
         File \"/tmp/main.py\", line 4, in fail\n    raise ValueError('boom')\nValueError: boom\n"
    );
    let (report, code) = session.run_json("print(\n", &[]);
    assert_eq!((code, report.status), (1, Status::RuntimeError));
    assert_eq!(
        report.stderr,
        "  File \"/tmp/main.py\", line 1\n    print(\n         ^\nSyntaxError: '(' was never closed\n"
    );
    let (report, _) = session.run_json(
        "import sys\ndef hook(kind, value, tb):\n    print(kind.__name__, tb.tb_frame.f_code.co_name)\n\
         sys.excepthook = hook\n1 / 0\n",
        &[],
    );
    assert_eq!(report.stdout, "ZeroDivisionError <module>\n");
    let (report, _) = session.run_json("raise KeyboardInterrupt", &[]);
    assert_eq!(report.signal, Some(2), "{report:?}");
    session.assert_clean();
}

#[test]
fn program_reads_our_stdin_when_code_comes_from_a_file_or_c() {
    let session = Session::new();
    let code = "import sys; data = sys.stdin.read(); print(len(data), data.split())";
    session
        .safe_exec()
        .args(["run", "-c", code])
        .write_stdin("alpha beta\ngamma\n")
        .assert()
        .success()
        .stdout("17 ['alpha', 'beta', 'gamma']\n");
    session
        .safe_exec()
        .args(["run", "examples/input.py"])
        .write_stdin("Ada\n3 4\n")
        .assert()
        .success()
        .stdout(predicate::str::contains("Ada"));
    session.assert_clean();
}

#[test]
fn code_from_stdin_gives_the_program_an_empty_stdin() {
    let session = Session::new();
    for args in [&["run"][..], &["run", "-"][..]] {
        session
            .safe_exec()
            .args(args)
            .write_stdin("import sys\nprint(repr(sys.stdin.read()))\nprint(input())\n")
            .timeout(Duration::from_secs(30))
            .assert()
            .code(1)
            .stdout("''\n")
            .stderr(predicate::str::contains("EOFError"));
    }
    session.assert_clean();
}

#[test]
fn stdin_flag_overrides_both_sources() {
    let session = Session::new();
    let mut input = tempfile::NamedTempFile::new().unwrap();
    input.write_all(b"from-file\n").unwrap();
    let echo = "import sys; print(sys.stdin.read().strip())";
    session
        .safe_exec()
        .args(["run", "-c", echo, "--stdin"])
        .arg(input.path())
        .write_stdin("from-our-stdin\n")
        .assert()
        .success()
        .stdout("from-file\n");
    session
        .safe_exec()
        .args(["run", "--stdin"])
        .arg(input.path())
        .write_stdin(echo)
        .assert()
        .success()
        .stdout("from-file\n");
    session.assert_clean();
}

#[test]
fn stdout_and_stderr_pass_through_separately_as_bytes() {
    let session = Session::new();
    let code =
        "import sys\nsys.stdout.buffer.write(b'out\\xff\\x00\\n')\nsys.stderr.write('err\\n')";
    session
        .safe_exec()
        .args(["run", "-c", code])
        .assert()
        .success()
        .stdout(&b"out\xff\x00\n"[..])
        .stderr("err\n");
    session.assert_clean();
}

#[test]
fn exit_codes_pass_through_and_signals_are_reported() {
    let session = Session::new();
    session
        .safe_exec()
        .args(["run", "-c", "raise SystemExit(3)"])
        .assert()
        .code(3);
    session
        .safe_exec()
        .args(["run", "-c", "import sys; sys.exit(0)"])
        .assert()
        .code(0);
    // A program that prints docker's own error text and exits 125 is still the program's doing.
    let (report, code) = session.run_json(
        "import sys\nprint('docker: Error response from daemon: fake', file=sys.stderr)\nsys.exit(125)",
        &[],
    );
    assert_eq!(
        (report.status, report.exit_code, code),
        (Status::RuntimeError, Some(125), 125)
    );
    let (report, code) = session.run_json(
        "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)",
        &[],
    );
    assert_eq!(report.status, Status::RuntimeError);
    assert_eq!(
        (report.exit_code, report.signal, code),
        (None, Some(11), 139)
    );
    assert!(report.error.unwrap().contains("SIGSEGV"));
    // 128+N by the program's own hand is an exit code, not a signal.
    for exit in [129, 137, 143, 192] {
        let (report, code) = session.run_json(&format!("import sys\nsys.exit({exit})"), &[]);
        assert_eq!(
            (report.status, report.exit_code, report.signal, code),
            (Status::RuntimeError, Some(exit), None, exit)
        );
    }
    let (report, code) = session.run_json(
        "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
        &[],
    );
    assert_eq!(
        (report.status, report.exit_code, report.signal, code),
        (Status::RuntimeError, None, Some(9), 137)
    );
    session.assert_clean();
}

/// Writes what look like the launcher's frames and an older launcher's trailer, reads its own
/// pipes back, and tries the launcher's memory: all of it is the program's own output or refused.
const FORGES_FRAMES: &str = r#"
import os, struct, sys
words = b'exit 0 stop none cpu_ms 1 wall_ms 1 oom 0 stdout_bytes 0 stderr_bytes 0 ' + b'0' * 64
sys.stdout.buffer.write(struct.pack('>cI', b'E', len(words)) + words)
sys.stdout.flush()
sys.stderr.write('\0safe-exec:end signal 9 oom 1 watchdog 1 ')
sys.stderr.flush()
for path in ('/proc/1/mem', '/proc/%d/mem' % os.getppid(), '/proc/1/fd/1'):
    try:
        open(path, 'rb').read(1)
        print('read', path, file=sys.stderr)
    except PermissionError:
        pass
sys.exit(139)
"#;

#[test]
fn a_program_cannot_forge_the_launcher_s_report() {
    let session = Session::new();
    let (report, code) = session.run_json(FORGES_FRAMES, &[]);
    // Exit code 139 by the program's own hand: not a SIGSEGV, not the forged end, not an OOM.
    assert_eq!(
        (report.status, report.exit_code, report.signal, code),
        (Status::RuntimeError, Some(139), None, 139),
        "{report:?}"
    );
    let forged = report.stdout_bytes();
    assert_eq!(forged[0], b'E');
    assert!(forged.ends_with(&[b'0'; 64]));
    assert_eq!(report.stderr, "\0safe-exec:end signal 9 oom 1 watchdog 1 ");
    // And out of memory, it is the victim, not its launcher.
    let (report, _) = session.run_json(
        "print(open('/proc/self/oom_score_adj').read().strip())",
        &[],
    );
    assert_eq!(report.stdout, "1000\n");
    session.assert_clean();
}

#[test]
fn json_mode_prints_exactly_one_document_with_every_field() {
    let session = Session::new();
    let output = session
        .safe_exec()
        .args([
            "run",
            "--json",
            "-c",
            "print('hi')\nimport sys; print('warn', file=sys.stderr)",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(
        output.stderr.is_empty(),
        "nothing but the document: {:?}",
        output.stderr
    );
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let report = parse_report(&output.stdout);
    assert_eq!(report.schema_version, 1);
    assert_eq!(report.status, Status::Ok);
    assert_eq!(report.exit_code, Some(0));
    assert_eq!(report.signal, None);
    assert_eq!(report.stdout, "hi\n");
    assert_eq!(report.stderr, "warn\n");
    assert_eq!(report.stdout_encoding, Encoding::Utf8);
    assert!(!report.stdout_truncated && !report.stderr_truncated);
    assert!(report.duration_ms > 0 && report.duration_ms < 10_000);
    assert_eq!(report.limits.memory_bytes, 128 * 1024 * 1024);
    assert_eq!(report.limits.timeout_secs, 10.0);
    assert_eq!(report.limits.pids, 64);
    assert_eq!(report.limits.max_code_chars, 5000);
    assert_eq!(report.limits.max_output_bytes, 1024 * 1024);
    assert_eq!(report.error, None);
    assert_eq!(value["error"], serde_json::Value::Null);
    session.assert_clean();
}

#[test]
fn limits_flags_are_applied_and_reported() {
    let session = Session::new();
    let code = "print(open('/sys/fs/cgroup/memory/memory.limit_in_bytes').read().strip())\n\
                print(open('/sys/fs/cgroup/pids/pids.max').read().strip())\n\
                print(open('/sys/fs/cgroup/cpu/cpu.cfs_quota_us').read().strip())";
    let (report, code_) = session.run_json(
        code,
        &[
            "--memory",
            "64m",
            "--pids-limit",
            "32",
            "--cpus",
            "0.5",
            "--timeout",
            "7",
        ],
    );
    assert_eq!(code_, 0, "{report:?}");
    assert_eq!(report.stdout, "67108864\n32\n50000\n");
    assert_eq!(report.limits.memory_bytes, 64 * 1024 * 1024);
    assert_eq!(report.limits.cpus, 0.5);
    assert_eq!(report.limits.timeout_secs, 7.0);
    session.assert_clean();
}

#[test]
fn a_closed_stdout_reader_is_not_an_error() {
    let session = Session::new();
    let safe_exec = assert_cmd::cargo::cargo_bin("safe-exec");
    let script = format!(
        "{} run -c 'for i in range(100000): print(i)' | head -n 2",
        safe_exec.display()
    );
    let output = std::process::Command::new("bash")
        .args(["-o", "pipefail", "-c", &script])
        .env("SAFE_EXEC_LABEL", &session.label)
        .env("SAFE_EXEC_IMAGE", crate::common::test_image())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "0\n1\n");
    assert!(!String::from_utf8_lossy(&output.stderr).contains("panicked"));
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    session.assert_clean();
}

#[test]
fn more_cpus_than_the_host_has_is_rejected_with_the_engine_s_reason() {
    let session = Session::new();
    let (report, code) = session.run_json("print('never')", &["--cpus", "512"]);
    if crate::common::under_podman() {
        // Podman takes a quota above the host's CPUs (a ceiling never reached) and runs it.
        assert_eq!((report.status, code), (Status::Ok, 0), "{report:?}");
        session.assert_clean();
        return;
    }
    assert_eq!((report.status, code), (Status::Rejected, 123));
    let error = report.error.unwrap();
    assert!(error.contains("CPUs"), "{error}");
    assert_eq!(report.stdout, "");
    session.assert_clean();
}
