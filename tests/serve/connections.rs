//! The connection loop over raw TCP: one request per connection, the per-client connection cap,
//! and the header timeout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use safe_exec::serve::server::{HEADER_TIMEOUT, MAX_CONNECTIONS_PER_CLIENT as PER_CLIENT};
use serde_json::json;

use super::{exchange_from, json_request, RawReply, Server};
use crate::common::Session;

/// Read until the server closes the connection; the answer, or "" when it closed without one.
fn read_all(stream: &mut TcpStream, within: Duration) -> String {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        // A reset after the answer (or instead of one) also means "closed".
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(error) => panic!("the server did not close the connection within {within:?}: {error}"),
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// No answer leaves its connection open for another request: a browser never gets to resend a
/// request on a reused connection (it does after a 408 on one), and no idle connection stays.
#[test]
fn every_answer_closes_its_connection() {
    let session = Session::new();
    let server = Server::start(&session, &[]);
    let addr = server.addr;
    let health = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let run = json_request(
        addr,
        "/run",
        &json!({ "code": "print('once')" }).to_string(),
    );
    let not_found = format!("GET /nope HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    for request in [health.as_bytes(), &run, not_found.as_bytes()] {
        // An HTTP/1.1 request without `Connection: close` asks to keep the connection; the
        // answer says `close` and the server closes (read_all waits for the end).
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(request).unwrap();
        let answer = read_all(&mut stream, Duration::from_secs(60));
        let reply = RawReply::parse(&answer);
        assert_eq!(reply.header("connection"), Some("close"), "{answer}");
    }
    assert_eq!(
        server.run("print('once')").header("connection"),
        Some("close")
    );
    session.assert_clean_within(Duration::from_secs(2));
}

/// One client holding many idle connections locks nobody else out: past its cap it gets 503
/// with Retry-After, other clients are served, and it gets its connections back as they close.
#[test]
fn one_client_cannot_take_every_connection() {
    let session = Session::new();
    let server = Server::start(&session, &[]);
    let addr = server.addr;
    // Accepted in arrival order, so these are the client's first PER_CLIENT connections.
    let idle: Vec<TcpStream> = (0..PER_CLIENT)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let started = Instant::now();
    for extra in 0..3 {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .unwrap();
        let refused = RawReply::parse(&read_all(&mut stream, Duration::from_secs(30)));
        assert_eq!(refused.status, 503, "extra connection {extra}: {refused:?}");
        assert_eq!(refused.header("retry-after"), Some("1"));
        assert_eq!(refused.header("connection"), Some("close"));
        assert_eq!(refused.json()["status"], "error");
        assert!(
            refused.json()["error"].as_str().unwrap().contains(&format!(
                "Too many connections from this client ({PER_CLIENT} at most)"
            )),
            "{refused:?}"
        );
    }
    // Another client (a second loopback address) is served meanwhile (a path that needs no
    // docker call, so the check is quick however busy the engine is)...
    let other = exchange_from(
        "127.0.0.2",
        addr,
        format!("GET /openapi.json HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    );
    assert_eq!(other.status, 200, "{other:?}");
    // ...while the idle connections were still open (they are closed at the header timeout).
    assert!(
        started.elapsed() < HEADER_TIMEOUT,
        "too slow to prove anything: {:?}",
        started.elapsed()
    );
    // Runs too.
    let run = exchange_from(
        "127.0.0.2",
        addr,
        &json_request(
            addr,
            "/run",
            &json!({ "code": "print('served')" }).to_string(),
        ),
    );
    assert_eq!(run.status, 200, "{run:?}");
    assert_eq!(run.json()["output"], "served\n");
    // Closing them gives the first client its connections back.
    drop(idle);
    server.wait_for(
        Duration::from_secs(10),
        "the first client to be served",
        || server.get("/healthz").status == 200,
    );
    session.assert_clean_within(Duration::from_secs(2));
}

/// Headers must be complete within the header timeout however they trickle in; the connection is
/// then closed without an answer. An idle connection that sends nothing goes the same way.
#[test]
fn a_slow_header_client_is_dropped_at_the_header_timeout() {
    let session = Session::new();
    let server = Server::start(&session, &[]);
    let addr = server.addr;
    let mut idle = TcpStream::connect(addr).unwrap();
    let mut slow = TcpStream::connect(addr).unwrap();
    let connected = Instant::now();
    slow.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n").as_bytes())
        .unwrap();
    let mut writer = slow.try_clone().unwrap();
    let trickle = thread::spawn(move || {
        // One header line a second, each well within any per-read timeout.
        for i in 0..40 {
            thread::sleep(Duration::from_secs(1));
            if writer
                .write_all(format!("X-Slow-{i}: x\r\n").as_bytes())
                .is_err()
            {
                return;
            }
        }
    });
    let answer = read_all(&mut slow, Duration::from_secs(40));
    let slow_closed = connected.elapsed();
    assert_eq!(answer, "", "an answer to an incomplete request");
    let idle_answer = read_all(&mut idle, Duration::from_secs(40));
    let idle_closed = connected.elapsed();
    assert_eq!(idle_answer, "");
    for closed in [slow_closed, idle_closed] {
        assert!(
            closed >= HEADER_TIMEOUT - Duration::from_millis(500)
                && closed < HEADER_TIMEOUT + Duration::from_secs(10),
            "closed after {closed:?}"
        );
    }
    trickle.join().unwrap();
    // The server is fine.
    assert_eq!(server.get("/healthz").status, 200);
}
