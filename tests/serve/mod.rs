//! `safe-exec serve` against the real engine: the binary on a free loopback port, spoken to over
//! HTTP with ureq (and raw TCP where ureq would hide what matters).

mod browser;
mod connections;
mod hostile;
mod live;
mod openapi;
mod pool;
mod schemathesis;
mod shutdown;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use safe_exec::report::{Encoding, RunReport, Status};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::Session;

const TOKEN: &str = "test-token-0123456789abcdef";

/// A running `safe-exec serve`, stopped with SIGTERM (then SIGKILL) when dropped.
pub struct Server {
    child: Child,
    /// Where it listens over TCP (for a `--unix` server: 127.0.0.1:0, meaningless; see
    /// `listening`).
    pub addr: SocketAddr,
    /// The URL its listening line gives: `http://ADDR`, `https://ADDR` or `unix:PATH`.
    pub listening: String,
    stderr: Arc<Mutex<String>>,
    agent: ureq::Agent,
}

/// One HTTP answer, whatever its status.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.body))
    }

    pub fn report(&self) -> RunReport {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not a run report ({error}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

impl Server {
    pub fn start(session: &Session, args: &[&str]) -> Server {
        Server::start_with(session, args, |_| {})
    }

    /// Start with extra arguments after `serve --addr 127.0.0.1:0` (or after `serve` alone when
    /// they give `--addr` or `--unix`), after `configure` adjusted the command (environment).
    /// Waits for the "listening on" line; a server on 0.0.0.0 is spoken to on 127.0.0.1.
    pub fn start_with(
        session: &Session,
        args: &[&str],
        configure: impl FnOnce(&mut std::process::Command),
    ) -> Server {
        let mut command = session.std_command();
        command.arg("serve");
        if !args.contains(&"--addr") && !args.contains(&"--unix") {
            command.args(["--addr", "127.0.0.1:0"]);
        }
        command
            .args(args)
            .env_remove("SAFE_EXEC_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        configure(&mut command);
        let mut child = command.spawn().expect("safe-exec serve starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (found, listening) = mpsc::channel();
        {
            let pipe = child.stderr.take().unwrap();
            let stderr = stderr.clone();
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    stderr.lock().unwrap().push_str(&format!("{line}\n"));
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        let url = rest.split_whitespace().next().unwrap_or("").to_owned();
                        let _ = found.send(url);
                    }
                }
            });
        }
        let (addr, listening) = match listening.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => {
                let tcp = url
                    .strip_prefix("http://")
                    .or_else(|| url.strip_prefix("https://"));
                let mut addr: SocketAddr = match tcp {
                    Some(addr) => addr.parse().expect("a socket address"),
                    None => "127.0.0.1:0".parse().unwrap(),
                };
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                (addr, url)
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "the server did not start; stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(90))
            .build();
        Server {
            child,
            addr,
            listening,
            stderr,
            agent,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn get(&self, path: &str) -> Reply {
        reply(self.agent.get(&self.url(path)).call())
    }

    /// POST `body` as JSON.
    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.post_raw(
            path,
            Some("application/json"),
            body.to_string().as_bytes(),
            None,
        )
    }

    pub fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
        token: Option<&str>,
    ) -> Reply {
        let mut request = self.agent.post(&self.url(path));
        if let Some(content_type) = content_type {
            request = request.set("Content-Type", content_type);
        }
        if let Some(token) = token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        reply(request.send_bytes(body))
    }

    pub fn run(&self, code: &str) -> Reply {
        self.post("/run", &json!({ "code": code }))
    }

    pub fn run_v1(&self, code: &str) -> Reply {
        self.post("/api/v1/runs", &json!({ "code": code }))
    }

    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Wait for the server to exit by itself, at most `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let until = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < until,
                "the server did not exit within {within:?}; stderr:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop the server (SIGTERM), which removes its warm containers and waits for every removal
    /// it can before exiting 0; then nothing of the session may be left once the documented
    /// bound after exit has passed (a run cancelled while its container was still being created
    /// is looked for again by the reaper). A server the test already stopped is only checked.
    pub fn stop_and_assert_clean(mut self, session: &Session) {
        if self.child.try_wait().unwrap().is_none() {
            self.signal("TERM");
            let status = self.wait_exit(Duration::from_secs(60));
            assert_eq!(status.code(), Some(0), "stderr:\n{}", self.stderr());
        }
        session.assert_clean();
    }

    /// `runs.running` from /healthz.
    pub fn running(&self) -> u64 {
        self.get("/healthz").json()["runs"]["running"]
            .as_u64()
            .unwrap()
    }

    /// Wait until `condition` holds (checked every 50 ms), at most `within`.
    pub fn wait_for(&self, within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
        let until = Instant::now() + within;
        while !condition() {
            assert!(
                Instant::now() < until,
                "timed out waiting for {what}; stderr:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let until = Instant::now() + Duration::from_secs(20);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < until {
                thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn reply(result: Result<ureq::Response, ureq::Error>) -> Reply {
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(error) => panic!("HTTP request failed: {error}"),
    };
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .map(|name| {
            let value = response.header(&name).unwrap_or("").to_owned();
            (name, value)
        })
        .collect();
    let body = response.into_string().expect("a text body");
    Reply {
        status,
        headers,
        body,
    }
}

/// Send raw bytes and read the whole answer (the server closes or `within` passes).
fn raw_exchange(addr: SocketAddr, request: &[u8], within: Duration) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(within)).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// A TCP connection to `addr` from the local address `source`. Linux routes all of 127.0.0.0/8
/// to the loopback interface, so `127.0.0.2` is a second client next to `127.0.0.1`.
/// `recv_buffer` shrinks the receive buffer, for a client that stops reading.
fn connect_from(source: &str, addr: SocketAddr, recv_buffer: Option<u32>) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        socket
            .bind(SocketAddr::new(source.parse().unwrap(), 0))
            .unwrap_or_else(|error| panic!("cannot bind {source}: {error}"));
        let stream = socket
            .connect(addr)
            .await
            .unwrap_or_else(|error| panic!("cannot connect from {source} to {addr}: {error}"));
        let stream = stream.into_std().unwrap();
        stream.set_nonblocking(false).unwrap();
        stream
    })
}

/// An HTTP answer read off a raw connection.
#[derive(Debug)]
struct RawReply {
    status: u16,
    head: String,
    body: String,
}

impl RawReply {
    fn parse(text: &str) -> RawReply {
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {head:?}"));
        RawReply {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.body))
    }
}

/// Send `request` from the local address `source` and read the whole answer.
fn exchange_from(source: &str, addr: SocketAddr, request: &[u8]) -> RawReply {
    let mut stream = connect_from(source, addr, None);
    stream
        .set_read_timeout(Some(Duration::from_secs(90)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .unwrap_or_else(|error| panic!("no answer from {addr}: {error}"));
    RawReply::parse(&String::from_utf8_lossy(&answer))
}

/// `POST path` with a JSON body, as raw bytes.
fn json_request(addr: SocketAddr, path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn post_request(addr: SocketAddr, body: &str) -> Vec<u8> {
    format!(
        "POST /run HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The complete lines of an audit log (one being written may lack its newline yet).
fn audit_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("bad audit line ({error}): {line}"))
        })
        .collect()
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

#[test]
fn run_answers_like_the_original_api() {
    let session = Session::new();
    let server = Server::start(&session, &[]);

    let reply = server.run("print(2 + 2)");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["output"], "4\n");
    assert_eq!(body["status"], "success");
    assert_eq!(body["stdout"], "4\n");
    assert_eq!(body["stderr"], "");
    assert_eq!(body["exit_code"], 0);
    assert!(body["duration_ms"].as_u64().unwrap() > 0);
    assert_eq!(
        keys(&body),
        [
            "duration_ms",
            "exit_code",
            "output",
            "status",
            "stderr",
            "stdout"
        ]
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));

    // stdin, and CRLF / lone CR line endings run the same (I4).
    let code = "import sys\r\nprint(sys.stdin.read().upper())\rprint('done')";
    let reply = server.post("/run", &json!({ "code": code, "stdin": "abc" }));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["output"], "ABC\ndone\n");

    // Exactly 5000 characters of four-byte emoji, each written as a JSON surrogate-pair escape
    // (12 bytes): within the body limit, and the limit counts characters (I6, I7).
    let filler = "\\ud83d\\ude00".repeat(4990);
    let body = format!(r##"{{"code": "#{filler}\nprint(1)"}}"##);
    assert!(body.len() > 59_000);
    let reply = server.post_raw("/run", Some("application/json"), body.as_bytes(), None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["output"], "1\n");
    server.stop_and_assert_clean(&session);
}

#[test]
fn malformed_requests_get_400_and_start_nothing() {
    let session = Session::new();
    let server = Server::start(&session, &["--rate-limit", "0"]);
    let json = Some("application/json");
    let cases: Vec<(Option<&str>, Vec<u8>, &str)> = vec![
        (
            json,
            json!({ "code": "x".repeat(5001) }).to_string().into_bytes(),
            "Code too long (5000 characters max)",
        ),
        (json, b"{}".to_vec(), "No code provided"),
        (json, br#"{"code": null}"#.to_vec(), "No code provided"),
        (json, br#"{"code": 5}"#.to_vec(), "'code' must be a string"),
        (
            json,
            br#"{"code": "print(1)", "stdin": 5}"#.to_vec(),
            "'stdin' must be a string",
        ),
        (json, br#"{"code": ""}"#.to_vec(), "Code is empty"),
        (json, br#"{"code": " \n\t "}"#.to_vec(), "Code is empty"),
        (
            json,
            br#"{"code": "print(1)\u0000"}"#.to_vec(),
            "Code contains a NUL byte (line 1, column 9)",
        ),
        (
            json,
            b"[1, 2]".to_vec(),
            r#"The request body must be a JSON object, e.g. {"code": "print(1)"}"#,
        ),
        (
            json,
            b"{\"code\": \"print('\xff')\"}".to_vec(),
            "Invalid JSON: the request body is not valid UTF-8",
        ),
        (
            Some("text/plain"),
            br#"{"code": "print(1)"}"#.to_vec(),
            "Content-Type must be application/json",
        ),
        (
            None,
            br#"{"code": "print(1)"}"#.to_vec(),
            "Content-Type must be application/json",
        ),
        (
            Some("application/x-www-form-urlencoded"),
            b"code=print(1)".to_vec(),
            "Content-Type must be application/json",
        ),
    ];
    for (content_type, body, error) in &cases {
        let reply = server.post_raw("/run", *content_type, body, None);
        assert_eq!(reply.status, 400, "{error}: {}", reply.body);
        assert_eq!(reply.json(), json!({ "error": error, "status": "error" }));
    }
    for body in [
        "{",
        "{\"code\": \"print(1)\"",
        "nope",
        "{\"code\": \"\\ud800\"}",
    ] {
        let reply = server.post_raw("/run", json, body.as_bytes(), None);
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        let answer = reply.json();
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .starts_with("Invalid JSON: "),
            "{answer}"
        );
        assert_eq!(answer["status"], "error");
    }

    // The v1 endpoint: the precise 415, and refused code as a `rejected` run report.
    let reply = server.post_raw("/api/v1/runs", Some("text/plain"), b"print(1)", None);
    assert_eq!(reply.status, 415);
    let reply = server.post("/api/v1/runs", &json!({ "code": "x".repeat(5001) }));
    assert_eq!(reply.status, 400);
    let report = reply.report();
    assert_eq!(report.status, Status::Rejected);
    assert_eq!(report.exit_code, None);
    assert!(report
        .error
        .unwrap()
        .contains("5001 characters, the limit is 5000"));

    // Wrong method and unknown paths are JSON errors too.
    let reply = server.get("/run");
    assert_eq!(reply.status, 405);
    assert_eq!(reply.json()["status"], "error");
    assert_eq!(server.get("/nope").status, 404);

    // Nothing above may have created a container.
    server.stop_and_assert_clean(&session);
}

#[test]
fn timeout_is_408_with_the_partial_output() {
    let session = Session::new();
    // The CPU limit is what this is about: the wall-clock backstop is far away, so a loaded
    // machine that hands the loop its 3 CPU seconds slowly does not change the answer.
    let server = Server::start(&session, &["--timeout", "3", "--wall-timeout", "60"]);
    let started = Instant::now();
    let reply = server.run("print('started', flush=True)\nwhile True:\n    pass");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(reply.status, 408, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["error"], "Execution timed out after 3 seconds");
    assert_eq!(body["status"], "error");
    assert_eq!(body["output"], "started\n");
    assert_eq!(body["exit_code"], Value::Null);
    let duration = body["duration_ms"].as_u64().unwrap();
    assert!(duration >= 3000, "{duration} ms");

    // The v1 endpoint reports it as an ordinary 200 with status timeout.
    let reply = server.run_v1("print('started', flush=True)\nwhile True:\n    pass");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let report = reply.report();
    assert_eq!(report.status, Status::Timeout);
    assert_eq!(report.stdout, "started\n");
    assert!(report.cpu_time_ms.unwrap() > 3000, "{report:?}");
    server.stop_and_assert_clean(&session);
}

#[test]
fn runtime_errors_are_400_with_output_and_sandbox_hints() {
    let session = Session::new();
    let server = Server::start(&session, &[]);

    let reply = server.run("print('before')\nraise ValueError('boom')");
    assert_eq!(reply.status, 400, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["error"], "Execution failed");
    assert_eq!(body["status"], "error");
    assert_eq!(body["stdout"], "before\n");
    assert_eq!(body["output"], "before\n");
    assert!(body["stderr"]
        .as_str()
        .unwrap()
        .contains("ValueError: boom"));
    assert_eq!(body["exit_code"], 1);
    assert!(body.get("hint").is_none(), "{body}");

    let network =
        server.run("import socket\nsocket.create_connection(('example.com', 80), timeout=3)");
    assert_eq!(network.status, 400, "{}", network.body);
    assert_eq!(network.json()["hint"], "Network access is disabled");

    let write = server.run("open('/x', 'w').write('hacked')");
    assert_eq!(write.status, 400, "{}", write.body);
    assert_eq!(
        write.json()["hint"],
        "The filesystem is read-only; only /tmp (16 MiB) is writable"
    );

    // A hint never changes the status: the program caught the error and exited 0.
    let caught = server.run(
        "import socket\ntry:\n    socket.getaddrinfo('example.com', 80)\nexcept OSError as error:\n    print(error)",
    );
    assert_eq!(caught.status, 200, "{}", caught.body);
    assert_eq!(caught.json()["status"], "success");
    assert_eq!(caught.json()["hint"], "Network access is disabled");
    server.stop_and_assert_clean(&session);
}

#[test]
fn memory_and_output_limits_have_their_own_errors() {
    let session = Session::new();
    let server = Server::start(
        &session,
        &["--timeout", "10", "--memory", "32m", "--max-output", "64k"],
    );

    let memory = server.run("chunks = []\nwhile True:\n    chunks.append(bytearray(10_000_000))");
    assert_eq!(memory.status, 400, "{}", memory.body);
    assert_eq!(
        memory.json()["error"],
        "Memory limit exceeded: the program used more than 32 MiB and was killed",
        "{}",
        memory.body
    );

    let flood = server.run("while True:\n    print('A' * 1000)");
    assert_eq!(flood.status, 400, "{}", flood.body);
    let body = flood.json();
    assert_eq!(
        body["error"],
        "Output limit exceeded: stdout passed 64 KiB; the program was stopped and its output truncated"
    );
    assert_eq!(body["stdout_truncated"], true);
    let kept = body["stdout"].as_str().unwrap().len();
    assert!(kept > 0 && kept <= 64 * 1024, "{kept} bytes");

    let v1 = server.run_v1("import sys\nwhile True:\n    sys.stderr.write('E' * 1000)");
    assert_eq!(v1.status, 200, "{}", v1.body);
    let report = v1.report();
    assert_eq!(report.status, Status::OutputLimit);
    assert!(report.stderr_truncated && !report.stdout_truncated);
    server.stop_and_assert_clean(&session);
}

#[test]
fn oversized_bodies_get_413() {
    let session = Session::new();
    // No room for stdin: the body limit is the code's, 64 KiB, and the files'.
    let server = Server::start(&session, &["--max-stdin", "0"]);
    let limit = 64 * 1024 + safe_exec::serve::limits::FILES_ROOM;
    let big = json!({ "code": format!("#{}", "x".repeat(limit)) }).to_string();
    let refused = server.post_raw("/run", Some("application/json"), big.as_bytes(), None);
    assert_eq!(refused.status, 413, "{}", refused.body);
    assert_eq!(
        refused.json(),
        json!({ "error": format!("Request body too large ({limit} bytes max)"), "status": "error" })
    );
    // Without a Content-Length (chunked), the limit holds while reading.
    let chunked = server
        .agent
        .post(&server.url("/api/v1/runs"))
        .set("Content-Type", "application/json")
        .send(std::io::Cursor::new(big.into_bytes()));
    let refused = reply(chunked);
    assert_eq!(refused.status, 413, "{}", refused.body);
    server.stop_and_assert_clean(&session);
}

/// The code limit counts characters as they are sent (as the original API did, and as the
/// schema's `maxLength` does): CRLF is two, a BOM is one.
#[test]
fn the_code_limit_counts_characters_as_sent() {
    let session = Session::new();
    let server = Server::start(&session, &["--max-code-chars", "20"]);
    let code = |body: &str| json!({ "code": body });
    let fits = server.post("/run", &code("print('ok')\r\n#234567"));
    assert_eq!(fits.status, 200, "{}", fits.body);
    assert_eq!(fits.json()["output"], "ok\n");
    for over in ["print('ok')\r\n#2345678", "\u{feff}print('ok')\n#2345678"] {
        let refused = server.post("/run", &code(over));
        assert_eq!(refused.status, 400, "{over:?}: {}", refused.body);
        assert_eq!(refused.json()["error"], "Code too long (20 characters max)");
    }
    let spec = server.get("/openapi.json").json();
    assert_eq!(
        spec["components"]["schemas"]["RunRequest"]["properties"]["code"]["maxLength"],
        20
    );
    server.stop_and_assert_clean(&session);
}

/// The documented limit exactly: room for the code (64 KiB) plus `--max-stdin` (1 MiB by
/// default) and 8 MiB of files as base64, 12681220 bytes: a body of that size runs, one byte
/// more is 413, whether the length is declared (Content-Length) or not (chunked).
#[test]
fn the_body_limit_is_exact() {
    const LIMIT: usize = 12_681_220;
    assert_eq!(
        LIMIT,
        safe_exec::serve::limits::body_limit(5000, safe_exec::serve::limits::DEFAULT_MAX_STDIN)
    );
    let session = Session::new();
    let server = Server::start(&session, &["--rate-limit", "0"]);
    let code = "print('fits')";
    // A body of exactly `size` bytes, padded in a field the server ignores.
    let body = |size: usize| {
        let bare = json!({ "code": code, "pad": "" }).to_string().len();
        let body = json!({ "code": code, "pad": "a".repeat(size - bare) }).to_string();
        assert_eq!(body.len(), size);
        body
    };
    let exact = body(LIMIT);
    let over = body(LIMIT + 1);
    let json = Some("application/json");
    for path in ["/run", "/api/v1/runs"] {
        let accepted = server.post_raw(path, json, exact.as_bytes(), None);
        assert_eq!(accepted.status, 200, "{path}: {}", accepted.body);
        assert_eq!(accepted.json()["stdout"], "fits\n", "{path}");
        let refused = server.post_raw(path, json, over.as_bytes(), None);
        assert_eq!(refused.status, 413, "{path}: {}", refused.body);
        assert_eq!(
            refused.json(),
            json!({ "error": format!("Request body too large ({LIMIT} bytes max)"), "status": "error" })
        );
    }
    let chunked = |body: &str| {
        reply(
            server
                .agent
                .post(&server.url("/run"))
                .set("Content-Type", "application/json")
                .send(std::io::Cursor::new(body.as_bytes().to_vec())),
        )
    };
    let accepted = chunked(&exact);
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert_eq!(accepted.json()["output"], "fits\n");
    assert_eq!(chunked(&over).status, 413);
    server.stop_and_assert_clean(&session);
}

#[test]
fn a_full_queue_gets_503_with_retry_after() {
    let session = Session::new();
    let server = Arc::new(Server::start(
        &session,
        &["--max-concurrent", "1", "--queue", "0", "--timeout", "10"],
    ));
    let slow = {
        let server = server.clone();
        thread::spawn(move || server.run("import time\ntime.sleep(2)\nprint('slow')"))
    };
    server.wait_for(Duration::from_secs(20), "the slow run to start", || {
        server.running() == 1
    });
    let refused = server.run("print('fast')");
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.header("retry-after"), Some("10"));
    assert!(refused.json()["error"]
        .as_str()
        .unwrap()
        .starts_with("Server busy"));
    let slow = slow.join().unwrap();
    assert_eq!(slow.status, 200, "{}", slow.body);
    assert_eq!(slow.json()["output"], "slow\n");
    Arc::try_unwrap(server)
        .ok()
        .expect("every client is done")
        .stop_and_assert_clean(&session);
}

#[test]
fn a_client_over_its_rate_gets_429_with_retry_after() {
    let session = Session::new();
    let server = Server::start(&session, &["--rate-limit", "2"]);
    // Refused bodies count too: the limit is on requests, before anything is read.
    for _ in 0..2 {
        assert_eq!(server.post("/run", &json!({})).status, 400);
    }
    let limited = server.run("print(1)");
    assert_eq!(limited.status, 429, "{}", limited.body);
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    assert_eq!(limited.json()["status"], "error");
    assert_eq!(server.run_v1("print(1)").status, 429);
    // Health and the page are not rate limited.
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/").status, 200);
    server.stop_and_assert_clean(&session);
}

/// The rate limit is per client: one client over its budget gets 429 while another, from a
/// second loopback address, is still served.
#[test]
fn the_rate_limit_is_per_client() {
    let session = Session::new();
    let server = Server::start(&session, &["--rate-limit", "2"]);
    let addr = server.addr;
    let empty = json_request(addr, "/run", "{}");
    let run = |text: &str| {
        json_request(
            addr,
            "/run",
            &json!({ "code": format!("print({text:?})") }).to_string(),
        )
    };
    for _ in 0..2 {
        assert_eq!(exchange_from("127.0.0.1", addr, &empty).status, 400);
    }
    let limited = exchange_from("127.0.0.1", addr, &run("first"));
    assert_eq!(limited.status, 429, "{}", limited.body);
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");

    let other = exchange_from("127.0.0.2", addr, &run("second"));
    assert_eq!(other.status, 200, "{}", other.body);
    assert_eq!(other.json()["output"], "second\n");
    assert_eq!(exchange_from("127.0.0.2", addr, &empty).status, 400);
    let limited_too = exchange_from("127.0.0.2", addr, &empty);
    assert_eq!(limited_too.status, 429, "{}", limited_too.body);
    assert!(limited_too.header("retry-after").is_some());
    // The first client's budget did not come back from the second one's requests.
    assert_eq!(exchange_from("127.0.0.1", addr, &run("first")).status, 429);
    server.stop_and_assert_clean(&session);
}

#[test]
fn a_token_is_required_when_set() {
    let session = Session::new();
    let server = Server::start_with(&session, &[], |command| {
        command.env("SAFE_EXEC_TOKEN", TOKEN);
    });
    assert!(server.stderr().contains("token required"));
    let code = br#"{"code": "print('authorised')"}"#;
    for path in ["/run", "/api/v1/runs"] {
        let missing = server.post_raw(path, Some("application/json"), code, None);
        assert_eq!(missing.status, 401, "{}", missing.body);
        assert_eq!(
            missing.header("www-authenticate"),
            Some("Bearer realm=\"safe-exec\"")
        );
        assert_eq!(missing.json()["status"], "error");
        let wrong = server.post_raw(
            path,
            Some("application/json"),
            code,
            Some("wrong-token-0123456789abcdef"),
        );
        assert_eq!(wrong.status, 401);
    }
    let right = server.post_raw("/run", Some("application/json"), code, Some(TOKEN));
    assert_eq!(right.status, 200, "{}", right.body);
    assert_eq!(right.json()["output"], "authorised\n");
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/").status, 200);
    server.stop_and_assert_clean(&session);
}

#[test]
fn a_public_address_needs_a_token_or_an_explicit_flag() {
    let session = Session::new();
    let refused = session
        .safe_exec()
        .args(["serve", "--addr", "0.0.0.0:0"])
        .env_remove("SAFE_EXEC_TOKEN")
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without a token"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--token") && stderr.contains("--allow-unauthenticated"),
        "{stderr}"
    );

    let short = session
        .safe_exec()
        .args(["serve", "--addr", "0.0.0.0:0", "--token", "short"])
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    assert_eq!(short.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&short.stderr).contains("too short"));

    // Meant: it starts (and we stop it).
    let mut command = session.std_command();
    command
        .args(["serve", "--addr", "0.0.0.0:0", "--allow-unauthenticated"])
        .env_remove("SAFE_EXEC_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    // A warning about the engine may come first (another job on this engine rebuilding the
    // image, say); Server::start skips it the same way.
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no listening line:\n{seen}"
        );
        seen.push_str(&line);
        if line.contains("listening on") {
            assert!(line.contains("listening on http://0.0.0.0:"), "{seen}");
            break;
        }
    }
    // Keep draining, as a terminal would.
    thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// An empty token is a mistake (a secret that did not make it into the variable), never "no
/// token": usage error, on a loopback address too.
#[test]
fn an_empty_token_is_a_usage_error() {
    let session = Session::new();
    for (flag, variable) in [(Some(""), None), (None, Some(""))] {
        let mut command = session.safe_exec();
        command
            .args(["serve", "--addr", "127.0.0.1:0"])
            .env_remove("SAFE_EXEC_TOKEN")
            .timeout(Duration::from_secs(20));
        if let Some(token) = flag {
            command.args(["--token", token]);
        }
        if let Some(token) = variable {
            command.env("SAFE_EXEC_TOKEN", token);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{flag:?} {variable:?}: {stderr}"
        );
        assert!(
            stderr.contains("the token is empty (--token or SAFE_EXEC_TOKEN)"),
            "{stderr}"
        );
    }
}

#[test]
fn a_loopback_server_without_token_refuses_foreign_host_names() {
    let session = Session::new();
    let server = Server::start(&session, &[]);
    let foreign = raw_exchange(
        server.addr,
        b"GET /healthz HTTP/1.1\r\nHost: rebound.example:5000\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    assert!(foreign.starts_with("HTTP/1.1 403"), "{foreign}");
    assert!(foreign.contains("DNS rebinding"), "{foreign}");
    let local = raw_exchange(
        server.addr,
        b"GET /healthz HTTP/1.1\r\nHost: localhost:5000\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    assert!(local.starts_with("HTTP/1.1 200"), "{local}");
}

#[test]
fn an_unavailable_engine_gives_503() {
    let session = Session::new();
    let server = Server::start_with(&session, &[], |command| {
        command.env("DOCKER_HOST", "unix:///nonexistent.sock");
    });
    assert!(
        server
            .stderr()
            .contains("warning: cannot reach the Docker engine"),
        "{}",
        server.stderr()
    );
    let reply = server.run("print(1)");
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(reply.header("retry-after").is_some());
    assert_eq!(
        reply.json(),
        json!({ "error": "The execution engine is unavailable; try again later", "status": "error" })
    );
    let v1 = server.run_v1("print(1)");
    assert_eq!(v1.status, 503);
    assert_eq!(v1.report().status, Status::SandboxError);
    assert!(
        !v1.body.contains("nonexistent.sock"),
        "internal details leaked: {}",
        v1.body
    );
    let health = server.get("/healthz");
    assert_eq!(health.status, 503);
    assert_eq!(health.json()["status"], "unavailable");
    assert_eq!(health.json()["engine"], "engine unreachable");
    // The operator sees the real cause.
    server.wait_for(
        Duration::from_secs(5),
        "the engine error in the log",
        || {
            server
                .stderr()
                .contains("a run failed in the sandbox: cannot reach the Docker engine")
        },
    );
}

#[test]
fn api_v1_answers_with_the_run_report() {
    let session = Session::new();
    let server = Server::start(&session, &[]);
    let code = "import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)";
    let reply = server.run_v1(code);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let report = reply.report();
    let (cli, _) = session.run_json(code, &[]);
    assert_eq!(report.schema_version, cli.schema_version);
    assert_eq!(report.status, Status::RuntimeError);
    assert_eq!(report.status, cli.status);
    assert_eq!(report.exit_code, Some(3));
    assert_eq!(report.exit_code, cli.exit_code);
    assert_eq!(
        (report.stdout.as_str(), report.stderr.as_str()),
        ("out\n", "err\n")
    );
    assert_eq!((&report.stdout, &report.stderr), (&cli.stdout, &cli.stderr));
    assert_eq!(report.limits, cli.limits);
    assert_eq!(report.error, cli.error);

    let with_stdin = server.post(
        "/api/v1/runs",
        &json!({ "code": "print(input()[::-1])", "stdin": "abc\n" }),
    );
    assert_eq!(with_stdin.report().stdout, "cba\n");

    // Binary output comes back exactly (I10).
    let binary = server
        .run_v1("import sys\nsys.stdout.buffer.write(bytes([255, 0, 97]))")
        .report();
    assert_eq!(binary.status, Status::Ok);
    assert_eq!(binary.stdout_encoding, Encoding::Base64);
    assert_eq!(binary.stdout_bytes(), vec![255, 0, 97]);

    server.stop_and_assert_clean(&session);
}

#[test]
fn health_spec_and_page_are_served() {
    let session = Session::new();
    let server = Server::start(
        &session,
        &["--max-concurrent", "3", "--queue", "7", "--pool", "2"],
    );
    let health = server.get("/healthz");
    assert_eq!(health.status, 200, "{}", health.body);
    let mut body = health.json();
    // Warm containers are being started as the server comes up.
    let ready = body["pool"]["ready"].take().as_u64().unwrap();
    assert!(ready <= 2, "{ready}");
    assert_eq!(
        body,
        json!({
            "status": "ok",
            "engine": "ready",
            "image": crate::common::test_image(),
            "runs": { "running": 0, "queued": 0, "max_concurrent": 3, "queue": 7 },
            "pool": { "size": 2, "ready": null },
            // The most a request may ask for.
            "limits": serde_json::to_value(safe_exec::limits::Limits::default().applied()).unwrap(),
            "max_stdin_bytes": 1024 * 1024,
            // What a request's `files` may hold.
            "files": { "max_count": 32, "max_bytes": 8 * 1024 * 1024 }
        })
    );
    server.wait_for(Duration::from_secs(30), "the pool to fill", || {
        server.get("/healthz").json()["pool"]["ready"] == 2
    });

    let spec = server.get("/openapi.json");
    assert_eq!(spec.status, 200);
    assert_eq!(spec.header("content-type"), Some("application/json"));
    let in_repo = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/serve/openapi.json"),
    )
    .unwrap();
    // The file as written; the server fills in its own limits (the defaults here).
    assert_eq!(
        spec.json(),
        serde_json::from_str::<Value>(&in_repo).unwrap()
    );

    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(page.body.contains("data-max-code-chars=\"5000\""));
    for (path, content_type) in [
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/editor.js", "text/javascript; charset=utf-8"),
        ("/assets/style.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        assert!(page.body.contains(path), "{path} not linked from the page");
        let asset = server.get(path);
        assert_eq!(asset.status, 200, "{path}");
        assert_eq!(asset.header("content-type"), Some(content_type), "{path}");
    }
    assert_eq!(server.get("/assets/nope.js").status, 404);
}

#[test]
fn thirty_concurrent_slow_runs_are_all_answered() {
    let session = Session::new();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let server = Arc::new(Server::start(
        &session,
        &[
            "--max-concurrent",
            "3",
            "--queue",
            "30",
            "--timeout",
            "20",
            "--audit-log",
            audit.to_str().unwrap(),
        ],
    ));
    // Each program says when it ran (the containers share the host's clock): never more
    // programs running at once than run slots. (Counting containers would also count those whose
    // program has ended and which are being removed after the answer.)
    let clients: Vec<_> = (0..30)
        .map(|i| {
            let server = server.clone();
            thread::spawn(move || {
                let reply = server.run(&format!(
                    "import time\nstart = time.time()\ntime.sleep(0.3)\nprint({i}, start, time.time())"
                ));
                (i, reply)
            })
        })
        .collect();
    let mut intervals = Vec::new();
    for client in clients {
        let (i, reply) = client.join().unwrap();
        assert_eq!(reply.status, 200, "run {i}: {}", reply.body);
        let output = reply.json()["output"].as_str().unwrap().to_owned();
        let fields: Vec<&str> = output.split_whitespace().collect();
        assert_eq!(fields[0], i.to_string(), "run {i}: {output}");
        let start: f64 = fields[1].parse().unwrap();
        let end: f64 = fields[2].parse().unwrap();
        intervals.push((start, end));
    }
    let most = intervals
        .iter()
        .map(|&(start, _)| {
            intervals
                .iter()
                .filter(|&&(other_start, other_end)| other_start <= start && start < other_end)
                .count()
        })
        .max()
        .unwrap();
    assert!(
        (1..=3).contains(&most),
        "{most} programs at once with --max-concurrent 3"
    );
    // Audit lines are written by a thread of their own, just after each answer.
    server.wait_for(Duration::from_secs(10), "30 audit lines", || {
        audit_lines(&audit).len() >= 30
    });
    let lines = audit_lines(&audit);
    assert_eq!(lines.len(), 30);
    assert!(lines
        .iter()
        .all(|line| line["status"] == "ok" && line["http_status"] == 200));
    assert!(lines
        .iter()
        .any(|line| line["queued_ms"].as_u64().unwrap() > 0));
    let health = server.get("/healthz").json();
    assert_eq!(health["runs"]["running"], 0);
    assert_eq!(health["runs"]["queued"], 0);
    Arc::try_unwrap(server)
        .ok()
        .expect("every client is done")
        .stop_and_assert_clean(&session);
}

#[test]
fn a_client_that_disconnects_cancels_its_run() {
    let session = Session::new();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    // No warm pool: this test tells a run has started by its container appearing.
    let server = Server::start(
        &session,
        &[
            "--timeout",
            "60",
            "--audit-log",
            audit.to_str().unwrap(),
            "--pool",
            "0",
        ],
    );
    let body = json!({ "code": "import time\nprint('x', flush=True)\ntime.sleep(60)" }).to_string();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.write_all(&post_request(server.addr, &body)).unwrap();
    server.wait_for(Duration::from_secs(20), "the container to start", || {
        !session.containers().is_empty()
    });
    thread::sleep(Duration::from_millis(300));
    drop(stream);
    // Killed at once; removal may take a moment on a loaded machine.
    session.assert_clean_within(Duration::from_secs(10));
    server.wait_for(Duration::from_secs(5), "the audit line", || {
        !audit_lines(&audit).is_empty()
    });
    let line = &audit_lines(&audit)[0];
    assert_eq!(line["status"], "interrupted");
    assert_eq!(line["cancelled_by"], "client");
    // The server is still healthy and runs the next request.
    assert_eq!(server.running(), 0);
    assert_eq!(server.run("print('next')").json()["output"], "next\n");
    server.stop_and_assert_clean(&session);
}

#[test]
fn a_queued_client_that_disconnects_leaves_the_queue() {
    let session = Session::new();
    let server = Arc::new(Server::start(
        &session,
        &["--max-concurrent", "1", "--queue", "1", "--timeout", "30"],
    ));
    let queued = |server: &Server| {
        server.get("/healthz").json()["runs"]["queued"]
            .as_u64()
            .unwrap()
    };
    let first = {
        let server = server.clone();
        thread::spawn(move || server.run("import time\ntime.sleep(3)\nprint('first')"))
    };
    server.wait_for(Duration::from_secs(20), "the first run", || {
        server.running() == 1
    });
    let body = json!({ "code": "print('never')" }).to_string();
    let mut waiting = TcpStream::connect(server.addr).unwrap();
    waiting
        .write_all(&post_request(server.addr, &body))
        .unwrap();
    server.wait_for(Duration::from_secs(5), "a queued request", || {
        queued(&server) == 1
    });
    drop(waiting);
    server.wait_for(Duration::from_secs(2), "the queue to empty", || {
        queued(&server) == 0
    });
    // Its place is free again: the next request waits instead of getting 503.
    let second = server.run("print('second')");
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.json()["output"], "second\n");
    assert_eq!(first.join().unwrap().json()["output"], "first\n");
    Arc::try_unwrap(server)
        .ok()
        .expect("every client is done")
        .stop_and_assert_clean(&session);
}

#[test]
fn sigterm_cancels_runs_and_leaves_nothing_behind() {
    let session = Session::new();
    // No warm pool: this test tells a run has started by its container appearing.
    let mut server = Server::start(
        &session,
        &[
            "--timeout",
            "60",
            "--max-concurrent",
            "1",
            "--queue",
            "4",
            "--pool",
            "0",
        ],
    );
    let addr = server.addr;
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let agent = agent.clone();
            thread::spawn(move || {
                reply(
                    agent
                        .post(&format!("http://{addr}/run"))
                        .set("Content-Type", "application/json")
                        .send_string(&json!({ "code": "import time\ntime.sleep(60)" }).to_string()),
                )
            })
        })
        .collect();
    // One runs, one waits in the queue.
    let until = Instant::now() + Duration::from_secs(20);
    while session.containers().is_empty() {
        assert!(Instant::now() < until, "no container started");
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    server.signal("TERM");
    for client in clients {
        let reply = client.join().unwrap();
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert!(
            reply.json()["error"]
                .as_str()
                .unwrap()
                .contains("shutting down"),
            "{}",
            reply.body
        );
        assert!(reply.header("retry-after").is_some());
    }
    let exit = server.wait_exit(Duration::from_secs(15));
    assert_eq!(exit.code(), Some(0), "stderr:\n{}", server.stderr());
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "took {:?}",
        signalled.elapsed()
    );
    server.wait_for(Duration::from_secs(2), "the last log line", || {
        server.stderr().contains("stopped; no runs left")
    });
    session.assert_clean();
    assert!(
        TcpStream::connect(addr).is_err(),
        "still accepting connections"
    );
}

#[test]
fn the_audit_log_has_one_line_per_execution_and_no_code() {
    let session = Session::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let secret = "print('secret-marker-4711')";
    {
        let server = Server::start(&session, &["--audit-log", path.to_str().unwrap()]);
        assert_eq!(server.run(secret).status, 200);
        let too_long = "#".repeat(5001);
        assert_eq!(server.run(&too_long).status, 400);
        // No code: not an execution, not logged.
        assert_eq!(server.post("/run", &json!({})).status, 400);
        assert_eq!(server.run_v1("raise SystemExit(4)").status, 200);
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("secret-marker"),
        "the code was logged:\n{text}"
    );
    let lines = audit_lines(&path);
    assert_eq!(lines.len(), 3, "{text}");
    let ok = &lines[0];
    assert_eq!(ok["client"], "127.0.0.1");
    assert_eq!(ok["endpoint"], "/run");
    assert_eq!(ok["code_sha256"], sha256_hex(secret));
    assert_eq!(ok["code_chars"], secret.chars().count());
    assert_eq!(ok["status"], "ok");
    assert_eq!(ok["http_status"], 200);
    assert_eq!(ok["exit_code"], 0);
    assert!(ok["duration_ms"].as_u64().unwrap() > 0);
    assert_eq!(ok["stdout_bytes"], "secret-marker-4711\n".len());
    let time = ok["time"].as_str().unwrap();
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{time}"
    );
    assert_eq!(lines[1]["status"], "rejected");
    assert_eq!(lines[1]["http_status"], 400);
    assert_eq!(lines[1]["code_sha256"], sha256_hex(&"#".repeat(5001)));
    assert_eq!(lines[2]["endpoint"], "/api/v1/runs");
    assert_eq!(lines[2]["status"], "runtime_error");
    assert_eq!(lines[2]["exit_code"], 4);
    assert!(lines.iter().all(|line| line.get("code").is_none()));

    // Asked for, the code is there.
    let with_code = dir.path().join("with-code.jsonl");
    {
        let server = Server::start(
            &session,
            &["--audit-log", with_code.to_str().unwrap(), "--audit-code"],
        );
        assert_eq!(server.run(secret).status, 200);
        server.stop_and_assert_clean(&session);
    }
    assert_eq!(audit_lines(&with_code)[0]["code"], secret);
}

/// `--audit-log -` into a pipe nobody reads: runs are still answered, the lines that did not fit
/// the queue are counted on stderr, and every line is either written or counted.
#[test]
fn an_unread_audit_log_on_stdout_never_holds_up_runs() {
    let session = Session::new();
    let mut server = Server::start_with(
        &session,
        &["--audit-log", "-", "--audit-code", "--rate-limit", "0"],
        |command| {
            command.stdout(Stdio::piped());
        },
    );
    let stdout = server.child.stdout.take().unwrap();
    // Refused code is audited (with --audit-code, all 60 000 characters of it) but starts no
    // container: the pipe (64 KiB) and the queue (1 MiB) are full after about 20 of these.
    let long = json!({ "code": "#".repeat(60_000) }).to_string();
    for i in 0..40 {
        let refused = server.post_raw("/run", Some("application/json"), long.as_bytes(), None);
        assert_eq!(refused.status, 400, "request {i}: {}", refused.body);
    }
    let started = Instant::now();
    let ran = server.run("print('answered')");
    assert_eq!(ran.status, 200, "{}", ran.body);
    assert_eq!(ran.json()["output"], "answered\n");
    assert!(started.elapsed() < Duration::from_secs(60));
    server.wait_for(
        Duration::from_secs(30),
        "the dropped lines on stderr",
        || server.stderr().contains("line(s) dropped ("),
    );

    // Read the pipe at last: what was queued is written, and shutdown reports the total.
    let reader = thread::spawn(move || {
        let mut text = String::new();
        BufReader::new(stdout).read_to_string(&mut text).unwrap();
        text
    });
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(30)).code(), Some(0));
    let written = reader.join().unwrap();
    let lines: Vec<Value> = written
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let stderr = server.stderr();
    let dropped: usize = stderr
        .lines()
        .find_map(|line| {
            line.strip_prefix("safe-exec serve: audit log: ")?
                .strip_suffix(" line(s) dropped in all")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no total of dropped lines:\n{stderr}"));
    assert!(dropped > 0, "{stderr}");
    assert!(!stderr.contains("not written"), "{stderr}");
    assert_eq!(lines.len() + dropped, 41, "{stderr}");
    assert!(lines.iter().all(|line| line["code"].as_str().is_some()));
    server.stop_and_assert_clean(&session);
}
