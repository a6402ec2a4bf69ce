//! `run --server` against real servers (issue 10, section 3): the same exit code, the same stdout
//! and stderr bytes and the same `--json` document (durations aside) as a local run, over TCP,
//! over a unix socket and over TLS; and the errors of a server that cannot be reached, refuses
//! the token or refuses the limits. (`grade --server` is checked against a local grade in
//! `tests/grade/`.)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use safe_exec::report::Status;
use serde_json::Value;

use crate::common::{parse_report, Session};
use crate::serve::Server;

const TOKEN: &str = "client-token-0123456789abcdef";

/// Where the program comes from.
enum Source {
    Code(&'static str),
    /// A file of this name holding this code (tracebacks name the file).
    File(&'static str, &'static str),
}

/// One program of the table, with the flags and input it runs with.
struct Program {
    name: &'static str,
    source: Source,
    args: &'static [&'static str],
    stdin: Option<&'static [u8]>,
    status: Status,
    exit_code: i32,
}

/// Every way a run can end that the table covers. The wall-clock backstop is out of the way
/// everywhere (`--wall-timeout 60`, the server's too), so a loaded machine cannot turn a CPU
/// timeout into a wall-clock one.
const PROGRAMS: &[Program] = &[
    Program {
        name: "ok",
        source: Source::Code("print('hello, server')"),
        args: &[],
        stdin: None,
        status: Status::Ok,
        exit_code: 0,
    },
    Program {
        name: "exit 3",
        source: Source::Code("import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)"),
        args: &[],
        stdin: None,
        status: Status::RuntimeError,
        exit_code: 3,
    },
    Program {
        name: "SIGSEGV",
        source: Source::Code("import os\nprint('before', flush=True)\nos.kill(os.getpid(), 11)"),
        args: &[],
        stdin: None,
        status: Status::RuntimeError,
        exit_code: 139,
    },
    Program {
        name: "sys.exit(137)",
        source: Source::Code("import sys\nsys.exit(137)"),
        args: &[],
        stdin: None,
        status: Status::RuntimeError,
        exit_code: 137,
    },
    Program {
        name: "traceback from a file",
        source: Source::File("boom.py", "print('before')\n1 / 0\n"),
        args: &[],
        stdin: None,
        status: Status::RuntimeError,
        exit_code: 1,
    },
    Program {
        name: "CPU timeout",
        source: Source::Code("print('spinning', flush=True)\nwhile True:\n    pass"),
        args: &["--timeout", "1"],
        stdin: None,
        status: Status::Timeout,
        exit_code: 124,
    },
    Program {
        name: "memory limit",
        source: Source::Code("x = 'a' * (512 << 20)\nprint(len(x))"),
        args: &["--memory", "64m"],
        stdin: None,
        status: Status::MemoryLimit,
        exit_code: 121,
    },
    Program {
        name: "output limit",
        source: Source::Code("import sys\nwhile True:\n    sys.stdout.write('x' * 1000)"),
        args: &["--max-output", "64k"],
        stdin: None,
        status: Status::OutputLimit,
        exit_code: 122,
    },
    Program {
        name: "binary stdout",
        source: Source::Code("import sys\nsys.stdout.buffer.write(bytes(range(256)) * 3)"),
        args: &[],
        stdin: None,
        status: Status::Ok,
        exit_code: 0,
    },
    Program {
        name: "stdin passthrough",
        source: Source::Code(
            "import sys\ndata = sys.stdin.buffer.read()\nsys.stdout.buffer.write(data[::-1])\nprint(len(data), file=sys.stderr)",
        ),
        args: &[],
        stdin: Some(b"line one\nline two\n\xff\x00\xfe binary tail"),
        status: Status::Ok,
        exit_code: 0,
    },
];

/// `safe-exec run` of `program`, here or through `server`, in text mode or with `--json`.
fn run(
    session: &Session,
    dir: &Path,
    program: &Program,
    server: Option<&str>,
    json: bool,
) -> Output {
    let mut command = session.safe_exec();
    command.arg("run");
    match program.source {
        Source::Code(code) => {
            command.args(["-c", code]);
        }
        Source::File(name, code) => {
            let path = dir.join(name);
            std::fs::write(&path, code).unwrap();
            command.arg(path);
        }
    }
    command.args(program.args).args(["--wall-timeout", "60"]);
    if json {
        command.arg("--json");
    }
    if let Some(server) = server {
        command.args(["--server", server]);
    }
    command.write_stdin(program.stdin.unwrap_or_default());
    command.output().expect("safe-exec runs")
}

/// A report as JSON with the times zeroed.
fn without_durations(stdout: &[u8]) -> Value {
    let mut value: Value = serde_json::from_slice(stdout).unwrap_or_else(|error| {
        panic!(
            "not one JSON document ({error}): {}",
            String::from_utf8_lossy(stdout)
        )
    });
    value["duration_ms"] = 0.into();
    value["cpu_time_ms"] = 0.into();
    value
}

/// Every program of the table gives, through each server, what it gives here.
fn assert_same_as_local(session: &Session, servers: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    std::thread::scope(|scope| {
        for program in PROGRAMS {
            let dir = dir.path();
            scope.spawn(move || {
                let local = run(session, dir, program, None, false);
                assert_eq!(
                    local.status.code(),
                    Some(program.exit_code),
                    "{}: local run\n{}",
                    program.name,
                    String::from_utf8_lossy(&local.stderr)
                );
                let local_json = run(session, dir, program, None, true);
                let local_report = parse_report(&local_json.stdout);
                assert_eq!(local_report.status, program.status, "{}", program.name);
                for (how, server) in servers {
                    let remote = run(session, dir, program, Some(server), false);
                    let what = format!("{} over {how}", program.name);
                    assert_eq!(
                        remote.status.code(),
                        local.status.code(),
                        "{what}: exit code\n{}",
                        String::from_utf8_lossy(&remote.stderr)
                    );
                    assert!(remote.stdout == local.stdout, "{what}: stdout differs");
                    assert_eq!(
                        String::from_utf8_lossy(&remote.stderr),
                        String::from_utf8_lossy(&local.stderr),
                        "{what}: stderr"
                    );
                    let remote_json = run(session, dir, program, Some(server), true);
                    assert_eq!(
                        remote_json.status.code(),
                        local_json.status.code(),
                        "{what}: --json exit code"
                    );
                    assert_eq!(
                        without_durations(&remote_json.stdout),
                        without_durations(&local_json.stdout),
                        "{what}: --json document"
                    );
                }
            });
        }
    });
}

#[test]
fn run_through_a_server_is_a_local_run_over_tcp_and_a_unix_socket() {
    let session = Session::new();
    let sockets = tempfile::tempdir().unwrap();
    let socket = sockets.path().join("serve.sock");
    let socket_arg = socket.to_str().unwrap();
    let tcp = Server::start(
        &session,
        &["--rate-limit", "0", "--wall-timeout", "60", "--pool", "1"],
    );
    let audit = sockets.path().join("audit.jsonl");
    let unix = Server::start(
        &session,
        &[
            "--unix",
            socket_arg,
            "--wall-timeout",
            "60",
            "--pool",
            "1",
            "--audit-log",
            audit.to_str().unwrap(),
        ],
    );
    assert_eq!(unix.listening, format!("unix:{socket_arg}"));
    // Only this user (and root) can connect.
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert_same_as_local(
        &session,
        &[
            ("TCP", tcp.listening.as_str()),
            ("a unix socket", unix.listening.as_str()),
        ],
    );
    // Both share the session's label: the first is stopped (SIGTERM, waited for), then the
    // second, which checks that nothing of either is left.
    drop(unix);
    assert!(!socket.exists(), "the socket file is removed at shutdown");
    // Clients on the socket are told apart by uid: the audit log names ours.
    // SAFETY: geteuid(2) cannot fail and touches no memory of ours.
    let uid = unsafe { libc::geteuid() };
    let lines = std::fs::read_to_string(&audit).unwrap();
    assert_eq!(lines.lines().count(), 2 * PROGRAMS.len(), "{lines}");
    for line in lines.lines() {
        let entry: Value = serde_json::from_str(line).unwrap();
        assert_eq!(entry["client"], format!("uid:{uid}"), "{line}");
    }
    tcp.stop_and_assert_clean(&session);
}

/// A CA, and a certificate it signed for localhost and 127.0.0.1, written as PEM files.
struct Certificates {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Certificates {
    fn new() -> Certificates {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "safe-exec test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let write = |name: &str, pem: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        Certificates {
            ca: write("ca.pem", ca_cert.pem()),
            cert: write("cert.pem", cert.pem()),
            key: write("key.pem", key.serialize_pem()),
            _dir: dir,
        }
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// With a token, a public address needs TLS; over TLS with the test CA `run --server https://`
/// works (the token travels encrypted), and without the CA it fails cleanly, naming
/// `--server-ca`. A wrong or missing token is a 125 naming SAFE_EXEC_TOKEN.
#[test]
fn tls_with_a_private_ca_and_the_token_rules() {
    let session = Session::new();
    let certificates = Certificates::new();
    // A token on a public address without TLS is refused before anything starts.
    let refused = session
        .safe_exec()
        .args(["serve", "--addr", "0.0.0.0:0", "--token", TOKEN])
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("--tls-cert") && stderr(&refused).contains("--behind-tls-proxy"),
        "{}",
        stderr(&refused)
    );

    let cert = certificates.cert.to_str().unwrap();
    let key = certificates.key.to_str().unwrap();
    let server = Server::start_with(
        &session,
        &["--addr", "0.0.0.0:0", "--tls-cert", cert, "--tls-key", key],
        |command| {
            command.env("SAFE_EXEC_TOKEN", TOKEN);
        },
    );
    assert!(
        server.listening.starts_with("https://0.0.0.0:"),
        "{}",
        server.listening
    );
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let ca = certificates.ca.to_str().unwrap();

    let run = |extra: &[&str], token: Option<&str>| {
        let mut command = session.safe_exec();
        command
            .args(["run", "-c", "print('over TLS')", "--server", &url])
            .args(extra)
            .env_remove("SAFE_EXEC_TOKEN");
        if let Some(token) = token {
            command.env("SAFE_EXEC_TOKEN", token);
        }
        command.output().unwrap()
    };
    let ok = run(&["--server-ca", ca], Some(TOKEN));
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert_eq!(ok.stdout, b"over TLS\n");
    // The CA from the environment works the same.
    let mut from_env = session.safe_exec();
    from_env
        .args(["run", "-c", "print('env')"])
        .env("SAFE_EXEC_SERVER", &url)
        .env("SAFE_EXEC_SERVER_CA", ca)
        .env("SAFE_EXEC_TOKEN", TOKEN);
    let from_env = from_env.output().unwrap();
    assert_eq!(from_env.status.code(), Some(0), "{}", stderr(&from_env));
    assert_eq!(from_env.stdout, b"env\n");

    let untrusted = run(&[], Some(TOKEN));
    assert_eq!(untrusted.status.code(), Some(125), "{}", stderr(&untrusted));
    assert!(untrusted.stdout.is_empty());
    assert!(
        stderr(&untrusted).contains("TLS handshake") && stderr(&untrusted).contains("--server-ca"),
        "{}",
        stderr(&untrusted)
    );
    let json = run(&["--json"], Some(TOKEN));
    assert_eq!(parse_report(&json.stdout).status, Status::SandboxError);

    let missing = run(&["--server-ca", ca], None);
    assert_eq!(missing.status.code(), Some(125));
    assert!(
        stderr(&missing).contains("set SAFE_EXEC_TOKEN"),
        "{}",
        stderr(&missing)
    );
    let wrong = run(&["--server-ca", ca], Some("wrong-token-0123456789abcdef"));
    assert_eq!(wrong.status.code(), Some(125));
    assert!(
        stderr(&wrong).contains("refused the token in SAFE_EXEC_TOKEN"),
        "{}",
        stderr(&wrong)
    );
    // Nor does the client send a token in clear text over a network: refused before connecting
    // (192.0.2.0/24 is a documentation range; nothing is sent there).
    let clear = session
        .safe_exec()
        .args(["run", "-c", "print(1)", "--server", "http://192.0.2.1:5000"])
        .env("SAFE_EXEC_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(clear.status.code(), Some(2), "{}", stderr(&clear));
    assert!(
        stderr(&clear).contains("refusing to send the token in SAFE_EXEC_TOKEN in clear text"),
        "{}",
        stderr(&clear)
    );
    server.stop_and_assert_clean(&session);
}

/// Nothing listening: 125 at once, naming the URL and what to check, in text and in JSON.
#[test]
fn an_unreachable_server_is_a_sandbox_error_at_once() {
    let session = Session::new();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let missing_socket = format!("unix:{}", dir.path().join("none.sock").display());
    for url in [format!("http://127.0.0.1:{port}"), missing_socket] {
        let started = Instant::now();
        let output = session
            .safe_exec()
            .args(["run", "-c", "print(1)", "--server", &url])
            .output()
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{url}: took {:?}",
            started.elapsed()
        );
        assert_eq!(
            output.status.code(),
            Some(125),
            "{url}: {}",
            stderr(&output)
        );
        let message = stderr(&output);
        assert!(
            message.starts_with(&format!("safe-exec: cannot reach the server at {url}"))
                && message.contains("is `safe-exec serve` running"),
            "{message}"
        );
        let json = session
            .safe_exec()
            .args(["run", "--json", "-c", "print(1)", "--server", &url])
            .output()
            .unwrap();
        assert_eq!(json.status.code(), Some(125));
        let report = parse_report(&json.stdout);
        assert_eq!(report.status, Status::SandboxError);
        assert!(report.error.unwrap().contains(&url));
    }
    // A URL that cannot work is a usage error.
    let bad = session
        .safe_exec()
        .args(["run", "-c", "print(1)", "--server", "localhost:5000"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("give http://HOST:PORT"),
        "{}",
        stderr(&bad)
    );
    session.assert_clean();
}

/// Limits above the server's are refused (400, naming its maximum; `rejected` for `run`);
/// within them they apply, and the report says which applied. Binary stdin travels as base64.
#[test]
fn per_request_limits_and_binary_stdin() {
    let session = Session::new();
    let server = Server::start(&session, &["--rate-limit", "0", "--max-stdin", "64k"]);
    let url = server.listening.clone();

    let over = session
        .safe_exec()
        .args(["run", "-c", "print(1)", "--timeout", "11", "--server", &url])
        .output()
        .unwrap();
    assert_eq!(over.status.code(), Some(123), "{}", stderr(&over));
    assert!(
        stderr(&over).contains("limits.timeout_secs 11 is above this server's maximum of 10"),
        "{}",
        stderr(&over)
    );
    let raw = server.post(
        "/api/v1/runs",
        &serde_json::json!({"code": "print(1)", "limits": {"memory_bytes": 1u64 << 30}}),
    );
    assert_eq!(raw.status, 400, "{}", raw.body);
    assert!(raw.json()["error"]
        .as_str()
        .unwrap()
        .contains("maximum of 134217728"));

    let report = server
        .post(
            "/api/v1/runs",
            &serde_json::json!({
                "code": "import sys; data = sys.stdin.buffer.read(); print(list(data))",
                "stdin_base64": "/wBh",
                "limits": {"timeout_secs": 2, "memory_bytes": 67108864, "max_output_bytes": 4096}
            }),
        )
        .report();
    assert_eq!(report.status, Status::Ok, "{report:?}");
    assert_eq!(report.stdout, "[255, 0, 97]\n");
    assert_eq!(report.limits.timeout_secs, 2.0);
    assert_eq!(report.limits.wall_timeout_secs, 5.0);
    assert_eq!(report.limits.memory_bytes, 64 << 20);
    assert_eq!(report.limits.max_output_bytes, 4096);
    assert_eq!(report.limits.pids, 64, "the server's own");

    // Input past the server's --max-stdin: rejected with the server's words.
    let mut big = tempfile::NamedTempFile::new().unwrap();
    big.write_all(&vec![b'x'; 65 * 1024]).unwrap();
    let too_big = session
        .safe_exec()
        .args(["run", "-c", "print(1)", "--server", &url, "--stdin"])
        .arg(big.path())
        .output()
        .unwrap();
    assert_eq!(too_big.status.code(), Some(123), "{}", stderr(&too_big));
    assert!(
        stderr(&too_big).contains("--max-stdin"),
        "{}",
        stderr(&too_big)
    );
    server.stop_and_assert_clean(&session);
}

/// Ctrl-C while the program runs on the server: safe-exec exits 130 with `interrupted`, as a
/// local run does, and the server cancels the run (its container is removed).
#[test]
fn ctrl_c_while_running_on_a_server_cancels_the_run() {
    let session = Session::new();
    let server = Server::start(&session, &["--rate-limit", "0"]);
    let mut child = session
        .std_command()
        .args([
            "run",
            "--json",
            "-c",
            "import time\ntime.sleep(60)",
            "--server",
            &server.listening,
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    server.wait_for(Duration::from_secs(30), "the run to start", || {
        server.running() == 1
    });
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let sent = Instant::now();
    let output = loop {
        if child.try_wait().unwrap().is_some() {
            break child.wait_with_output().unwrap();
        }
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    let report = parse_report(&output.stdout);
    assert_eq!(report.status, Status::Interrupted);
    assert!(report.error.unwrap().contains("interrupted by signal 2"));
    server.wait_for(
        Duration::from_secs(10),
        "the server to cancel the run",
        || server.running() == 0,
    );
    server.stop_and_assert_clean(&session);
}

/// `--file`, `--artifacts` and `--artifact-content` through a server: the same exit code,
/// output, files written and `--json` document (durations aside) as a local run.
#[test]
fn files_and_artifacts_through_a_server_are_a_local_run_s() {
    let session = Session::new();
    let server = Server::start(&session, &["--rate-limit", "0"]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.csv");
    std::fs::write(&data, b"1\n2\n3\n\xff").unwrap();
    let program = dir.path().join("job.py");
    std::fs::write(
        &program,
        "import os\n\
         raw = open('data.csv', 'rb').read()\n\
         total = sum(int(line) for line in raw.split()[:3])\n\
         print('total', total)\n\
         os.makedirs('out/sub')\n\
         open('out/sum.txt', 'w').write(str(total))\n\
         open('out/sub/raw.bin', 'wb').write(raw)\n",
    )
    .unwrap();
    let run = |server: Option<&str>, artifacts: &Path, json: bool| {
        let mut command = session.safe_exec();
        command
            .arg("run")
            .arg("--file")
            .arg(&data)
            .arg("--artifacts")
            .arg(artifacts)
            .arg(&program)
            .write_stdin("");
        if json {
            command.args(["--json", "--artifact-content"]);
        }
        if let Some(server) = server {
            command.args(["--server", server]);
        }
        command.output().expect("safe-exec runs")
    };
    let here = dir.path().join("here");
    let there = dir.path().join("there");
    let local = run(None, &here, false);
    let remote = run(Some(&server.listening), &there, false);
    assert_eq!(local.status.code(), Some(0), "{}", stderr(&local));
    assert_eq!(remote.status.code(), Some(0), "{}", stderr(&remote));
    assert_eq!(local.stdout, b"total 6\n");
    assert_eq!(remote.stdout, local.stdout);
    assert_eq!(
        stderr(&remote).replace("there", "here"),
        stderr(&local),
        "the artifacts line"
    );
    for name in ["sum.txt", "sub/raw.bin"] {
        assert_eq!(
            std::fs::read(there.join(name)).unwrap(),
            std::fs::read(here.join(name)).unwrap(),
            "{name}"
        );
    }
    assert_eq!(
        std::fs::read(there.join("sub/raw.bin")).unwrap(),
        b"1\n2\n3\n\xff"
    );
    let local = run(None, &dir.path().join("here-json"), true);
    let remote = run(
        Some(&server.listening),
        &dir.path().join("there-json"),
        true,
    );
    assert_eq!(remote.status.code(), local.status.code());
    let document = without_durations(&local.stdout);
    assert_eq!(without_durations(&remote.stdout), document);
    assert!(document["artifacts"]["files"][1]["content_base64"].is_string());
    server.stop_and_assert_clean(&session);
}
