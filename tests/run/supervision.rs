//! Supervision: signals, engine failures, SIGKILL of safe-exec itself, garbage collection and many
//! runs in a row (docs/threats.md C2, C3, C7 and the sandbox_error rows of the issue).

use std::io::{BufRead, BufReader};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use predicates::prelude::*;
use safe_exec::report::Status;

use crate::common::{parse_report, signal, under_gvisor, wait_exit, Session};

const READY_PROGRAM: &str = "import time\nprint('ready', flush=True)\nwhile True:\n    try:\n        time.sleep(100)\n    except KeyboardInterrupt:\n        print('caught', flush=True)";

/// Start `safe-exec run` on a program that prints `ready`, and wait for that line.
fn start_ready(
    session: &Session,
    extra: &[&str],
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = session
        .std_command()
        .args(["run", "-c", READY_PROGRAM])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    if !extra.contains(&"--json") {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
    } else {
        // Output is only visible at the end in JSON mode: wait until the container runs, then
        // leave Python ample time to print.
        wait_for(Duration::from_secs(20), || session.running_containers() > 0);
        std::thread::sleep(Duration::from_secs(3));
    }
    (child, stdout)
}

fn wait_for(within: Duration, mut condition: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !condition() {
        assert!(
            Instant::now() < until,
            "condition not met within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn c3_ctrl_c_kills_the_container_and_exits_130_even_when_the_program_catches_it() {
    let session = Session::new();
    let (mut child, _stdout) = start_ready(&session, &[]);
    let sent = Instant::now();
    signal(&child, "INT");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(2)), 130);
    session.assert_clean_within(Duration::from_secs(2).saturating_sub(sent.elapsed()));
}

#[test]
fn c3_interrupted_json_run_reports_partial_output() {
    let session = Session::new();
    let (mut child, mut stdout) = start_ready(&session, &["--json"]);
    signal(&child, "INT");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(3)), 130);
    let mut document = Vec::new();
    std::io::Read::read_to_end(&mut stdout, &mut document).unwrap();
    let report = parse_report(&document);
    assert_eq!(report.status, Status::Interrupted);
    assert_eq!(report.stdout, "ready\n");
    session.assert_clean();
}

#[test]
fn sigterm_is_handled_like_ctrl_c_with_128_plus_15() {
    let session = Session::new();
    let (mut child, _stdout) = start_ready(&session, &[]);
    signal(&child, "TERM");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(3)), 143);
    session.assert_clean_within(Duration::from_secs(2));
}

/// A program that tries to stop its launcher (PID 1, its parent) with SIGSTOP, then sleeps.
const TRIES_TO_STOP_ITS_LAUNCHER: &str = "import os, signal, time\ntry:\n    os.kill(os.getppid(), signal.SIGSTOP)\nexcept PermissionError:\n    pass\nprint('ready', flush=True)\ntime.sleep(1000)";
/// The same, spinning on the CPU instead of sleeping.
const TRIES_TO_STOP_ITS_LAUNCHER_AND_SPINS: &str = "import os, signal\ntry:\n    os.kill(os.getppid(), signal.SIGSTOP)\nexcept PermissionError:\n    pass\nprint('ready', flush=True)\nwhile True: pass";

fn start_printing_ready(session: &Session, code: &str, timeout: &str) -> std::process::Child {
    let mut child = session
        .std_command()
        .args(["run", "--timeout", timeout, "-c", code])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    child
}

/// The reaper safe-exec started (a `/bin/sh` child of it in its own process group).
fn reaper_of(child: &std::process::Child) -> String {
    let output = StdCommand::new("pgrep")
        .args(["-P", &child.id().to_string(), "-f", "safe-exec-reaper"])
        .output()
        .unwrap();
    let pid = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(!pid.is_empty(), "safe-exec has a reaper child");
    pid
}

#[test]
fn sigkill_of_safe_exec_removes_its_container_at_once() {
    let session = Session::new();
    // A long limit: only the reaper can explain the container going away within seconds.
    let mut child = start_printing_ready(&session, TRIES_TO_STOP_ITS_LAUNCHER, "60");
    // The container exists (whatever state the engine has got round to recording).
    assert_eq!(session.containers().len(), 1);
    let killed = Instant::now();
    signal(&child, "KILL");
    let _ = child.wait();
    session.assert_clean_within(Duration::from_secs(5));
    assert!(killed.elapsed() < Duration::from_secs(5));
}

#[test]
fn without_safe_exec_and_its_reaper_the_launcher_ends_the_container_at_its_limit() {
    let session = Session::new();
    let (mut child, _stdout) = start_ready(&session, &["--timeout", "1"]);
    let killed = Instant::now();
    StdCommand::new("kill")
        .args(["-KILL", &reaper_of(&child)])
        .status()
        .unwrap();
    signal(&child, "KILL");
    let _ = child.wait();
    let running = || session.running_containers() > 0;
    // The program sleeps: the wall-clock backstop (2 x 1 s + 1 s from the program's start, which
    // was before it printed `ready`) ends it, with room for a busy engine to notice.
    wait_for(Duration::from_secs(10), || !running());
    assert!(killed.elapsed() < Duration::from_secs(10));
    // What is left is an exited container of ours: gc removes it.
    session
        .safe_exec()
        .args(["gc", "--all"])
        .assert()
        .success()
        .stdout(predicate::str::contains("removed 1 container"));
    session.assert_clean();
}

#[test]
fn with_everything_of_ours_gone_the_launcher_still_stops_a_spinning_program_at_its_cpu_limit() {
    let session = Session::new();
    let mut child = start_printing_ready(&session, TRIES_TO_STOP_ITS_LAUNCHER_AND_SPINS, "2");
    StdCommand::new("kill")
        .args(["-KILL", &reaper_of(&child)])
        .status()
        .unwrap();
    signal(&child, "KILL");
    let _ = child.wait();
    assert_eq!(session.containers().len(), 1);
    // 2 CPU seconds (a shared 2-core machine may take longer to give them), then the launcher,
    // PID 1, exits and the container with it.
    wait_for(Duration::from_secs(30), || {
        session.running_containers() == 0
    });
    session.safe_exec().args(["gc", "--all"]).assert().success();
    session.assert_clean();
}

#[test]
fn a_program_cannot_stop_signal_or_trace_its_launcher_and_still_times_out() {
    let session = Session::new();
    let probe = r#"
import ctypes, os, signal
results = []
for sig in (signal.SIGSTOP, signal.SIGKILL, signal.SIGTERM, signal.SIGALRM, signal.SIGCHLD):
    try:
        os.kill(1, sig)
        results.append('sent %d' % sig)
    except PermissionError:
        pass
for path in ('/proc/1/mem', '/proc/1/environ', '/proc/1/fd/1'):
    try:
        open(path, 'rb').close()
        results.append('opened ' + path)
    except PermissionError:
        pass
libc = ctypes.CDLL(None, use_errno=True)
if libc.ptrace(16, 1, 0, 0) == 0:
    results.append('traced')
print('ready', results, os.getppid(), flush=True)
while True: pass
"#;
    let started = Instant::now();
    let (report, code) = session.run_json(probe, &["--timeout", "1", "--wall-timeout", "60"]);
    assert_eq!((report.status, code), (Status::Timeout, 124), "{report:?}");
    if under_gvisor() {
        // gVisor lets another uid open /proc/1/environ (mem and fd stay refused). It holds only
        // the container's fixed environment, the program's own too: nothing of the run.
        assert_eq!(report.stdout, "ready ['opened /proc/1/environ'] 1\n");
        let (environ, _) = session.run_json(
            "print(sorted(v.split(b'=')[0].decode() for v in open('/proc/1/environ','rb').read().split(b'\\0') if v))",
            &[],
        );
        let mut names: Vec<&str> = safe_exec::sandbox::docker::ENVIRONMENT
            .iter()
            .map(|(name, _)| *name)
            .collect();
        names.push("HOSTNAME");
        let listed = environ.stdout.trim();
        for name in listed.trim_matches(|c| c == '[' || c == ']').split(", ") {
            assert!(
                names.contains(&name.trim_matches('\'')),
                "{name} in the launcher's environment: {listed}"
            );
        }
    } else {
        assert_eq!(report.stdout, "ready [] 1\n");
    }
    assert!(report.cpu_time_ms.unwrap() > 1000, "{report:?}");
    assert!(started.elapsed() < Duration::from_secs(60));
    session.assert_clean();
}

#[test]
fn ctrl_c_while_the_engine_is_slow_to_create_stops_at_once_and_a_late_container_is_still_removed() {
    let session = Session::new();
    // A docker client whose `run` is cut short, while the engine goes on to make the container a
    // second later (outside the client's process group, as a daemon would).
    let dir = tempfile::tempdir().unwrap();
    let slow = dir.path().join("docker");
    let created = dir.path().join("created");
    std::fs::write(
        &slow,
        format!(
            "#!/bin/sh\nif [ \"$1\" = run ]; then\n  shift\n  for a; do shift; [ \"$a\" = --sig-proxy=false ] || set -- \"$@\" \"$a\"; done\n  setsid sh -c 'sleep 1; docker create \"$@\" && touch {}' sh \"$@\" >/dev/null 2>&1 </dev/null &\n  sleep 20\n  exit 1\nfi\nexec docker \"$@\"\n",
            created.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut child = session
        .std_command()
        .env("SAFE_EXEC_DOCKER", &slow)
        .args(["run", "-c", "print('never')"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, "INT");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(2)), 130);
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(stdout, "");
    // The late container appears after we exited; the reaper looks again and removes it.
    wait_for(Duration::from_secs(30), || created.exists());
    session.assert_clean_within(Duration::from_secs(20));
}

#[test]
fn a_stalled_reader_of_our_output_does_not_hold_us_long_after_the_deadline() {
    let session = Session::new();
    // Far more than a pipe holds, then wait forever; nobody reads our stdout.
    let mut child = session
        .std_command()
        .args([
            "run",
            "--timeout",
            "2",
            "-c",
            "import sys, time\nsys.stdout.write('x' * 500000)\ntime.sleep(1000)",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _unread = child.stdout.take();
    // The wall-clock backstop (2 x 2 s + 1 s) + the stalled reader's grace 2 s, with room for a
    // busy engine; without the grace this waits for the reader, forever.
    assert_eq!(wait_exit(&mut child, Duration::from_secs(40)), 124);
    session.assert_clean();
}

#[test]
fn gc_removes_only_our_stale_containers() {
    let session = Session::new();
    let create = |labels: &[String]| {
        let mut command = StdCommand::new("docker");
        command.arg("create");
        for label in labels {
            command.args(["--label", label]);
        }
        let output = command
            .args(["safe-exec-python:3.11", "true"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    let session_label = format!("safe-exec.session={}", session.label);
    let stale = create(&[
        "safe-exec.managed=1".into(),
        "safe-exec.expires=1".into(),
        session_label.clone(),
    ]);
    let fresh = create(&[
        "safe-exec.managed=1".into(),
        "safe-exec.expires=99999999999".into(),
        session_label.clone(),
    ]);
    let foreign = create(&[format!("not-safe-exec={}", session.label), session_label]);
    session
        .safe_exec()
        .arg("gc")
        .assert()
        .success()
        .stdout(predicate::str::contains("removed 1 container"));
    let exists = |id: &str| {
        StdCommand::new("docker")
            .args(["inspect", "--type", "container", id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    assert!(!exists(&stale));
    assert!(exists(&fresh));
    assert!(exists(&foreign));
    StdCommand::new("docker")
        .args(["rm", "-f", &fresh, &foreign])
        .output()
        .unwrap();
    session.assert_clean();
}

#[test]
fn c7_missing_image_is_a_sandbox_error_naming_the_fix_without_pulling() {
    let session = Session::new();
    let started = Instant::now();
    let output = session
        .safe_exec()
        .args([
            "run",
            "--json",
            "--image",
            "safe-exec-missing:0",
            "-c",
            "print(1)",
        ])
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(output.status.code(), Some(125));
    let report = parse_report(&output.stdout);
    assert_eq!(report.status, Status::SandboxError);
    let error = report.error.unwrap();
    assert!(
        error.contains("safe-exec-missing:0") && error.contains("scripts/setup.sh"),
        "{error}"
    );
    let images = StdCommand::new("docker")
        .args(["images", "-q", "safe-exec-missing"])
        .output()
        .unwrap();
    assert!(images.stdout.is_empty(), "nothing was pulled");
    session.assert_clean();
}

#[test]
fn unreachable_engine_is_a_sandbox_error_within_5_seconds() {
    let session = Session::new();
    let started = Instant::now();
    session
        .safe_exec()
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .args(["run", "-c", "print(1)"])
        .assert()
        .code(125)
        .stdout("")
        .stderr(predicate::str::contains(
            "cannot reach the Docker engine at unix:///nonexistent.sock",
        ))
        .stderr(predicate::str::contains("dockerd"));
    assert!(started.elapsed() < Duration::from_secs(5));
    session.assert_clean();
}

#[test]
fn missing_docker_client_is_a_sandbox_error_and_nothing_runs_on_the_host() {
    let session = Session::new();
    let marker = tempfile::tempdir().unwrap();
    let touch = format!("open('{}/ran-on-host', 'w')", marker.path().display());
    session
        .safe_exec()
        .env("PATH", "/nonexistent")
        .args(["run", "-c", &touch])
        .assert()
        .code(125)
        .stderr(predicate::str::contains(format!(
            "client `{}` was not found",
            crate::common::engine_cli()
        )));
    session
        .safe_exec()
        .env("SAFE_EXEC_DOCKER", "/nonexistent/docker")
        .args(["run", "--json", "-c", &touch])
        .assert()
        .code(125)
        .stdout(predicate::str::contains("\"sandbox_error\""));
    assert!(!marker.path().join("ran-on-host").exists());
}

#[test]
fn c2_many_runs_in_a_row_never_clash_and_touch_only_our_containers() {
    let session = Session::new();
    // A container that is not ours, created from the test image (always present), removed however
    // the test ends.
    let bystander = Bystander::create(&session);
    // docs/threats.md C2: 1000 runs in a loop, four at a time.
    let runs_per_thread = 250;
    let threads: Vec<_> = (0..4)
        .map(|thread| {
            let label = session.label.clone();
            std::thread::spawn(move || {
                for run in 0..runs_per_thread {
                    let output = StdCommand::new(assert_cmd::cargo::cargo_bin("safe-exec"))
                        .args(["run", "-c", &format!("print({thread} * 1000 + {run})")])
                        .env("SAFE_EXEC_LABEL", &label)
                        .env("SAFE_EXEC_IMAGE", crate::common::test_image())
                        .output()
                        .unwrap();
                    assert_eq!(
                        output.status.code(),
                        Some(0),
                        "{}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                    assert_eq!(
                        String::from_utf8_lossy(&output.stdout),
                        format!("{}\n", thread * 1000 + run)
                    );
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(
        bystander.still_there(),
        "a container that is not ours was touched"
    );
    session.assert_clean();
}

/// A container that is not safe-exec's: nothing of ours may touch it. Removed on drop, so a
/// failing test leaves nothing behind either.
struct Bystander(String);

impl Bystander {
    fn create(session: &Session) -> Bystander {
        let created = StdCommand::new("docker")
            .args([
                "create",
                "--label",
                &format!("bystander={}", session.label),
                &crate::common::test_image(),
                "true",
            ])
            .output()
            .unwrap();
        assert!(
            created.status.success(),
            "docker create failed: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        Bystander(String::from_utf8_lossy(&created.stdout).trim().to_owned())
    }

    fn still_there(&self) -> bool {
        StdCommand::new("docker")
            .args(["inspect", "--type", "container", &self.0])
            .output()
            .unwrap()
            .status
            .success()
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = StdCommand::new("docker")
            .args(["rm", "-f", &self.0])
            .output();
    }
}

#[test]
fn a_dying_docker_client_is_a_sandbox_error_and_the_container_is_removed() {
    let session = Session::new();
    let (mut child, _stdout) = start_ready(&session, &[]);
    let clients = StdCommand::new("pgrep")
        .args(["-P", &child.id().to_string(), "-f", "run --interactive"])
        .output()
        .unwrap();
    let client = String::from_utf8_lossy(&clients.stdout).trim().to_owned();
    assert!(
        !client.is_empty(),
        "the attached docker client is a child of safe-exec"
    );
    StdCommand::new("kill")
        .args(["-KILL", &client])
        .status()
        .unwrap();
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), 125);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("docker client ended while the container was still running"),
        "{stderr}"
    );
    session.assert_clean();
}

#[test]
fn an_image_whose_launcher_cannot_start_the_program_is_a_sandbox_error_not_the_program_s() {
    let session = Session::new();
    // The runner image with a launcher from another protocol version, as an old build would have.
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("launch.py"),
        "import os\nos.write(2, b'safe-exec launcher: unsupported protocol (expected SAFE-EXEC/1): rebuild the runner image\\n')\nos._exit(125)\n",
    )
    .unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        format!(
            "FROM {}\nUSER 0\nCOPY launch.py /opt/safe-exec/launch.py\n\
             RUN python3 -c 'import py_compile; py_compile.compile(\"/opt/safe-exec/launch.py\", cfile=\"/opt/safe-exec/launch.pyc\", doraise=True)'\n\
             USER 10001:10001\n",
            crate::common::test_image()
        ),
    )
    .unwrap();
    let tag = format!("safe-exec-test-old-launcher:{}", session.label);
    let built = StdCommand::new("docker")
        .args(["build", "-q", "-t", &tag])
        .arg(context.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let output = session
        .safe_exec()
        .env("SAFE_EXEC_IMAGE", &tag)
        .args(["run", "--json", "-c", "print('hello')"])
        .output()
        .unwrap();
    StdCommand::new("docker")
        .args(["rmi", "-f", &tag])
        .output()
        .unwrap();
    let report = crate::common::parse_report(&output.stdout);
    assert_eq!(
        (report.status, output.status.code()),
        (Status::SandboxError, Some(125))
    );
    let error = report.error.unwrap();
    assert!(error.contains("rebuild"), "{error}");
    assert_eq!(report.exit_code, None);
    session.assert_clean();
}
