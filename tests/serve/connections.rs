//! The connection loop over raw TCP: one request per connection, the per-client connection cap,
//! and the header timeout.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use safe_exec::serve::limits::{
    HEADER_TIMEOUT, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT as PER_CLIENT,
};
use serde_json::json;

use super::{connect_from, exchange_from, json_request, RawReply, Server};
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
    server.stop_and_assert_clean(&session);
}

/// One client holding many idle connections locks nobody else out: past its cap it gets 503
/// with Retry-After, other clients are served, and it gets its connections back as they close.
#[test]
fn one_client_cannot_take_every_connection() {
    let session = Session::new();
    let server = Server::start(&session, &[]);
    let addr = server.addr;
    // Accepted in arrival order, so these are the client's first PER_CLIENT connections. From an
    // address nothing else here uses: a server task still finishing an earlier request from the
    // same address would hold one of its places.
    let hog = "127.0.0.3";
    let idle: Vec<TcpStream> = (0..PER_CLIENT)
        .map(|_| connect_from(hog, addr, None))
        .collect();
    let started = Instant::now();
    for extra in 0..3 {
        let mut stream = connect_from(hog, addr, None);
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
    let health = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    server.wait_for(
        Duration::from_secs(10),
        "the first client to be served",
        || exchange_from(hog, addr, health.as_bytes()).status == 200,
    );
    server.stop_and_assert_clean(&session);
}

/// A client opening connections as fast as it can, far past its cap, does not lock the others
/// out: its refused connections take none of the server's connection places, and only a few
/// linger to be answered. (Each used to hold one of the 256 places for up to a second, so
/// 256 refusals a second took every place and filled the accept queue.)
#[test]
fn a_connection_flood_from_one_client_does_not_lock_the_others_out() {
    let session = Session::new();
    let server = Server::start(&session, &[]);
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let flooding = {
        let stop = stop.clone();
        thread::spawn(move || flood(addr, "127.0.0.4", Duration::from_secs(6), &stop))
    };
    // Let the flood get going first.
    thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let other = exchange_from(
        "127.0.0.2",
        addr,
        format!("GET /openapi.json HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    );
    let took = started.elapsed();
    let still_flooding = !flooding.is_finished();
    stop.store(true, Ordering::SeqCst);
    let connections = flooding.join().unwrap();
    assert_eq!(other.status, 200, "{other:?}");
    assert!(
        connections > 2 * MAX_CONNECTIONS,
        "too small a flood to prove anything: {connections} connections"
    );
    assert!(
        still_flooding,
        "the flood ended before the other client was served ({took:?})"
    );
    // Normally a few milliseconds; generous for a loaded machine, still under the 3 s that a full
    // accept queue costs (the kernel's SYN retries come after 1 s and again after 3 s).
    assert!(took < Duration::from_millis(2500), "served after {took:?}");
    // The flooding client is served again once its connections are gone (its first PER_CLIENT
    // are held until the header timeout unless closed, and the flood closed them).
    let health = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    server.wait_for(
        Duration::from_secs(15),
        "the flooding client to be served again",
        || exchange_from("127.0.0.4", addr, health.as_bytes()).status == 200,
    );
}

/// Open non-blocking connections from `source` to `addr`, [`FLOOD_RATE`] a second, for
/// `within` (or until `stop`), never reading or writing, keeping the newest ones open; how many
/// were started.
///
/// The rate is far past the 256 a second that used to lock other clients out, and well within
/// what even a debug build accepts: a client flooding faster than the server can call
/// `accept(2)` fills the kernel's accept queue whatever the server does with the connections.
fn flood(addr: SocketAddr, source: &str, within: Duration, stop: &AtomicBool) -> usize {
    const KEEP_OPEN: usize = 2000;
    let source: Ipv4Addr = source.parse().unwrap();
    let SocketAddr::V4(addr) = addr else {
        panic!("an IPv4 server address");
    };
    let started = Instant::now();
    let mut open = VecDeque::new();
    let mut opened = 0;
    while started.elapsed() < within && !stop.load(Ordering::SeqCst) {
        let due = (started.elapsed().as_secs_f64() * FLOOD_RATE) as usize;
        if opened >= due {
            thread::sleep(Duration::from_micros(200));
            continue;
        }
        match connect_nonblocking(source, addr) {
            Ok(socket) => {
                opened += 1;
                open.push_back(socket);
                if open.len() > KEEP_OPEN {
                    open.pop_front();
                }
            }
            // Out of ports for this source address, say: close some and go on.
            Err(_) => {
                open.clear();
                thread::sleep(Duration::from_millis(1));
            }
        }
    }
    opened
}

/// Connections a second in [`flood`].
const FLOOD_RATE: f64 = 2000.0;

pub(super) fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// A non-blocking socket bound to `source` whose `connect(2)` to `addr` has started
/// (`EINPROGRESS`) or is done; never waited for (the accept queue may be full).
fn connect_nonblocking(source: Ipv4Addr, addr: SocketAddrV4) -> std::io::Result<OwnedFd> {
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor we own, with sockaddr_ins of the size given.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let socket = OwnedFd::from_raw_fd(fd);
        let local = sockaddr(SocketAddrV4::new(source, 0));
        if libc::bind(fd, std::ptr::addr_of!(local).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let remote = sockaddr(addr);
        if libc::connect(fd, std::ptr::addr_of!(remote).cast(), len) != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(error);
            }
        }
        Ok(socket)
    }
}

/// `--max-connections-per-client` sets the cap (the 503 names it); 0 turns it off.
#[test]
fn the_per_client_cap_is_configurable() {
    let session = Session::new();
    let health = |addr: SocketAddr| format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let capped = Server::start(&session, &["--max-connections-per-client", "2"]);
    let addr = capped.addr;
    let idle: Vec<TcpStream> = (0..2)
        .map(|_| connect_from("127.0.0.5", addr, None))
        .collect();
    let refused = exchange_from("127.0.0.5", addr, health(addr).as_bytes());
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(
        refused.json()["error"]
            .as_str()
            .unwrap()
            .contains("Too many connections from this client (2 at most)"),
        "{refused:?}"
    );
    drop(idle);

    let uncapped = Server::start(&session, &["--max-connections-per-client", "0"]);
    let addr = uncapped.addr;
    let idle: Vec<TcpStream> = (0..PER_CLIENT + 8)
        .map(|_| connect_from("127.0.0.5", addr, None))
        .collect();
    let served = exchange_from("127.0.0.5", addr, health(addr).as_bytes());
    assert_eq!(served.status, 200, "{served:?}");
    drop(idle);
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
