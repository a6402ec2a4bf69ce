//! Shutdown with connections in every state: idle, half-sent headers, half-sent body, a run in
//! progress, an answer the client does not read; and a second signal while shutdown is under way.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use safe_exec::serve::limits::HEADER_TIMEOUT;
use serde_json::json;

use super::{audit_lines, connect_from, json_request, reply, RawReply, Server};
use crate::common::Session;

/// How long until the server closes `stream` (EOF or reset), and what it sent before.
fn closed_within(stream: &mut TcpStream, within: Duration) -> (Duration, String) {
    let started = Instant::now();
    stream.set_read_timeout(Some(within)).unwrap();
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(error) => panic!("still open after {within:?}: {error}"),
    }
    (
        started.elapsed(),
        String::from_utf8_lossy(&answer).into_owned(),
    )
}

/// Read one answer head (through its blank line), byte by byte so nothing after it is taken.
fn read_head(stream: &mut TcpStream, within: Duration) -> String {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => panic!("closed after {:?}", String::from_utf8_lossy(&head)),
            Err(error) => panic!("no answer head within {within:?}: {error}"),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Connections without a request in progress (idle, or part of a head) do not hold shutdown up
/// until the header timeout: they are closed at once. A request still sending its body and a
/// run in progress are answered 503 at once, the run's container is removed, and the server
/// exits 0.
#[test]
fn shutdown_closes_connections_without_a_request_at_once() {
    let session = Session::new();
    // No warm pool: this test tells a run has started by its container running.
    let mut server = Server::start(&session, &["--timeout", "60", "--pool", "0"]);
    let addr = server.addr;
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let running = thread::spawn(move || {
        reply(
            agent
                .post(&format!("http://{addr}/run"))
                .set("Content-Type", "application/json")
                .send_string(
                    &json!({ "code": "import time\nprint('x', flush=True)\ntime.sleep(60)" })
                        .to_string(),
                ),
        )
    });
    server.wait_for(Duration::from_secs(30), "the run to start", || {
        session.running_containers() == 1
    });

    let mut idle = TcpStream::connect(addr).unwrap();
    let mut half_head = TcpStream::connect(addr).unwrap();
    half_head
        .write_all(format!("POST /run HTTP/1.1\r\nHost: {addr}\r\nContent-Ty").as_bytes())
        .unwrap();
    let mut half_body = TcpStream::connect(addr).unwrap();
    half_body
        .write_all(
            format!(
                "POST /run HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                 Content-Length: 100\r\nExpect: 100-continue\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    // The server says `100 Continue` once the handler starts reading the body: the request is
    // in progress before the signal, with no guessing how long that takes. (The connections
    // above were accepted before this one, in arrival order.)
    let interim = read_head(&mut half_body, Duration::from_secs(30));
    assert!(interim.starts_with("HTTP/1.1 100 "), "{interim}");
    half_body.write_all(b"{\"code\": ").unwrap();

    let signalled = Instant::now();
    server.signal("TERM");
    for (name, stream) in [("idle", &mut idle), ("half a head", &mut half_head)] {
        let (after, answer) = closed_within(stream, Duration::from_secs(30));
        assert_eq!(answer, "", "{name}: an answer to no request");
        assert!(
            signalled.elapsed() < HEADER_TIMEOUT / 2,
            "{name} closed {after:?} after reading began, {:?} after the signal",
            signalled.elapsed()
        );
    }
    let (_, answer) = closed_within(&mut half_body, Duration::from_secs(30));
    let half_body = RawReply::parse(&answer);
    assert_eq!(half_body.status, 503, "{answer}");
    assert!(half_body.json()["error"]
        .as_str()
        .unwrap()
        .contains("shutting down"));
    let running = running.join().unwrap();
    assert_eq!(running.status, 503, "{}", running.body);

    let exit = server.wait_exit(Duration::from_secs(30));
    assert_eq!(exit.code(), Some(0), "stderr:\n{}", server.stderr());
    // Normally a second or two (the run's container is removed first); the bound is generous
    // for a loaded engine. The connections above were the point: closed at once.
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "shutdown took {took:?}; stderr:\n{}",
        server.stderr()
    );
    server.stop_and_assert_clean(&session);
}

/// A second signal while the first shutdown is still waiting (here on a client that does not
/// read a large answer, which holds its connection open) removes every container and exits
/// 128+N at once.
#[test]
fn a_second_signal_during_shutdown_exits_at_once() {
    let session = Session::new();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    // No warm pool: this test tells a run has started by its container running.
    let mut server = Server::start(
        &session,
        &[
            "--pool",
            "0",
            "--timeout",
            "60",
            "--max-output",
            "16m",
            "--audit-log",
            audit.to_str().unwrap(),
        ],
    );
    let addr = server.addr;

    // A 12 MB answer to a client with a tiny receive buffer that never reads: the kernel's
    // buffers take a few MB at most, so the server is left writing.
    let mut stalled = connect_from("127.0.0.1", addr, Some(4096));
    stalled
        .write_all(&json_request(
            addr,
            "/api/v1/runs",
            &json!({ "code": "import sys\nsys.stdout.write('A' * 12_000_000)" }).to_string(),
        ))
        .unwrap();
    server.wait_for(Duration::from_secs(60), "the large run to end", || {
        !audit_lines(&audit).is_empty()
    });
    assert_eq!(audit_lines(&audit)[0]["status"], "ok");

    // And a run in progress when the signals come.
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let running = thread::spawn(move || {
        agent
            .post(&format!("http://{addr}/run"))
            .set("Content-Type", "application/json")
            .send_string(&json!({ "code": "import time\ntime.sleep(60)" }).to_string())
            .map(|response| response.status())
            .map_err(|error| error.to_string())
    });
    server.wait_for(Duration::from_secs(30), "the second run to start", || {
        session.running_containers() == 1
    });

    server.signal("TERM");
    server.wait_for(Duration::from_secs(10), "shutdown to begin", || {
        server.stderr().contains("received SIGTERM: stopping")
    });
    let second = Instant::now();
    server.signal("TERM");
    let exit = server.wait_exit(Duration::from_secs(8));
    assert_eq!(exit.code(), Some(143), "stderr:\n{}", server.stderr());
    assert!(
        second.elapsed() < Duration::from_secs(5),
        "took {:?}",
        second.elapsed()
    );
    assert!(
        server.stderr().contains("received SIGTERM again"),
        "{}",
        server.stderr()
    );
    // The client of the cancelled run got an answer or lost its connection; either way it ends.
    let _ = running.join().unwrap();
    drop(stalled);
    // The second signal started the removals without waiting for them.
    session.assert_clean_within(Duration::from_secs(15));
}
