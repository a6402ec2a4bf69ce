//! Stopping runs of `safe-exec mcp`, speaking JSON-RPC over its stdio: a call the client cancels
//! (its run stops, the server goes on), SIGTERM, and the client closing the server's stdin (how
//! MCP clients end a session). Either way the server exits 0 and no container of the session is
//! left: not the run's, not the warm pool's.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{test_image, Session};

/// A `safe-exec mcp` with an initialized session.
struct Raw {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    stderr: thread::JoinHandle<String>,
}

impl Raw {
    fn start(session: &Session) -> Raw {
        let mut child = session
            .std_command()
            .args(["mcp", "--image", &test_image(), "--pool", "1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("safe-exec mcp starts");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|error| panic!("not JSON on stdout ({error}): {line}"));
                if sender.send(value).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let mut raw = Raw {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
        };
        raw.send(json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "safe-exec-test", "version": "0"},
            },
        }));
        let reply = raw.reply(1);
        assert_eq!(
            reply["result"]["serverInfo"]["name"], "safe-exec",
            "{reply}"
        );
        raw.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        raw
    }

    fn send(&mut self, message: Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
    }

    /// The message answering request `id`, waiting at most a minute.
    fn reply(&self, id: u64) -> Value {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let message = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no answer to request {id}"));
            if message["id"] == id {
                return message;
            }
        }
    }

    /// Start a run that would sleep for ten minutes, and wait until it is under way: its
    /// container and the warm one the pool starts to replace it are running.
    fn start_sleeping_run(&mut self, session: &Session) {
        self.send(json!({
            "jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "run_python", "arguments": {"code": "import time\ntime.sleep(600)"}},
        }));
        let until = Instant::now() + Duration::from_secs(120);
        while session.running_containers() < 2 {
            assert!(
                Instant::now() < until,
                "the run and the warm container did not both start"
            );
            thread::sleep(Duration::from_millis(100));
        }
        // A moment for the program itself to start.
        thread::sleep(Duration::from_millis(500));
    }

    /// Wait for the server to exit by itself, at most a minute.
    fn wait_exit(&mut self) -> ExitStatus {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= until {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("safe-exec mcp did not exit within a minute");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn finish(self) -> String {
        drop(self.stdin);
        self.stderr.join().unwrap()
    }
}

#[test]
fn a_cancelled_call_stops_its_run_and_the_server_goes_on() {
    let session = Session::new();
    let mut server = Raw::start(&session);
    server.start_sleeping_run(&session);
    server.send(json!({
        "jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 2, "reason": "the user changed their mind"},
    }));
    // The run's container goes; the warm one stays.
    let until = Instant::now() + Duration::from_secs(60);
    while session.running_containers() > 1 {
        assert!(
            Instant::now() < until,
            "the cancelled run's container is still running"
        );
        thread::sleep(Duration::from_millis(100));
    }
    server.send(json!({
        "jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "run_python", "arguments": {"code": "print(6 * 7)"}},
    }));
    let answer = server.reply(3);
    assert_eq!(
        answer["result"]["structuredContent"]["stdout"], "42\n",
        "{answer}"
    );
    drop(server.stdin.take());
    let status = server.wait_exit();
    let stderr = server.finish();
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    session.assert_clean();
}

#[test]
fn shutdown_of_mcp_on_sigterm_stops_the_run_and_leaves_nothing() {
    let session = Session::new();
    let mut server = Raw::start(&session);
    server.start_sleeping_run(&session);
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = server.wait_exit();
    let stderr = server.finish();
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    assert!(stderr.contains("received SIGTERM"), "{stderr}");
    session.assert_clean();
}

#[test]
fn shutdown_of_mcp_when_the_client_closes_stdin_mid_run() {
    let session = Session::new();
    let mut server = Raw::start(&session);
    server.start_sleeping_run(&session);
    // The client ends the session; the run in progress is stopped at once.
    drop(server.stdin.take());
    let status = server.wait_exit();
    // If the answer to the call was still sent, it says the run was interrupted.
    let mut answers = Vec::new();
    while let Ok(answer) = server.lines.recv_timeout(Duration::from_secs(10)) {
        answers.push(answer);
    }
    for answer in answers.iter().filter(|answer| answer["id"] == 2) {
        assert_eq!(
            answer["result"]["structuredContent"]["status"], "interrupted",
            "{answer}"
        );
        assert_eq!(answer["result"]["isError"], true);
    }
    let stderr = server.finish();
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        stderr.contains("the client closed the connection"),
        "{stderr}"
    );
    session.assert_clean();
}
