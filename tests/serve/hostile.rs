//! Hostile clients and hostile outside text against the real server and engine: what a client
//! that never reads, a flood of addresses or a rebinding page can do now, and that text from
//! outside reaches the server's stderr only through the sanitiser.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::thread;
use std::time::{Duration, Instant};

use safe_exec::limits::Limits;
use safe_exec::serve::answers::{answer_reserve, Flavor};
use safe_exec::serve::limits::MAX_ANSWER_BYTES_PER_CLIENT;
use serde_json::json;

use super::connections::sockaddr;
use super::{json_request, RawReply, Server};
use crate::common::Session;

/// A path holding terminal controls (OSC title, CR and a forged workflow command) reaches stderr
/// escaped, never raw.
#[test]
fn paths_in_serve_messages_are_sanitised() {
    let session = Session::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join("missing\u{1b}]0;pwned\u{7}\r::warning::forged")
        .join("audit.jsonl");
    let output = session
        .safe_exec()
        .args(["serve", "--addr", "127.0.0.1:0", "--audit-log"])
        .arg(&path)
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    assert_ne!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot open the audit log"), "{stderr}");
    assert!(
        stderr.contains("missing\\u{1b}]0;pwned\\u{7}\\r::warning::forged"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\r'),
        "{stderr:?}"
    );
}

/// A blocking TCP connection from `source` (any of 127.0.0.0/8) to `addr`.
fn connect_v4_from(source: Ipv4Addr, addr: SocketAddrV4) -> std::io::Result<TcpStream> {
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor we own, with sockaddr_ins of the size given.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
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
            return Err(std::io::Error::last_os_error());
        }
        Ok(TcpStream::from(socket))
    }
}

/// The status of the answer to `request`, sent from `source`.
fn status_from(source: Ipv4Addr, addr: SocketAddrV4, request: &[u8]) -> u16 {
    let mut stream = connect_v4_from(source, addr)
        .unwrap_or_else(|error| panic!("cannot connect from {source}: {error}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    RawReply::parse(&String::from_utf8_lossy(&answer)).status
}

/// More addresses than the rate limiter tracks, each sending one run request, do not reset the
/// budget of a client that has spent its own: it stays refused until its bucket has honestly
/// refilled, and the addresses past the table share one budget. (The limiter used to forget
/// every client once it tracked 100 000.) The server's table is made small here (a test-only
/// variable) so the flood is over in seconds, well inside the minute in which budgets refill;
/// `serve::clients` tests the full-size table in-process.
#[test]
fn a_flood_of_new_addresses_does_not_reset_an_established_budget() {
    const TRACKED: u32 = 5_000;
    const FLOOD: u32 = TRACKED + 50;
    const THREADS: u32 = 8;
    let session = Session::new();
    // One run a minute: a spent budget stays spent for a minute unless something resets it.
    let server = Server::start_with(&session, &["--rate-limit", "1"], |command| {
        command.env("SAFE_EXEC_SERVE_TRACKED_CLIENTS", TRACKED.to_string());
    });
    let SocketAddr::V4(addr) = server.addr else {
        panic!("an IPv4 server address");
    };
    // Refused before a body is read (no Content-Type), so nothing runs, but it takes a token.
    let request = format!("POST /run HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n");
    let established: Ipv4Addr = "127.0.0.9".parse().unwrap();
    let spent = Instant::now();
    assert_eq!(status_from(established, addr, request.as_bytes()), 400);
    assert_eq!(status_from(established, addr, request.as_bytes()), 429);

    // 127.1.0.0 onwards: one request from each address.
    let flood_started = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|worker| {
            let request = request.clone();
            thread::spawn(move || {
                let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
                for i in (worker..FLOOD).step_by(THREADS as usize) {
                    let source = Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 1, 0, 0)) + i);
                    *statuses
                        .entry(status_from(source, addr, request.as_bytes()))
                        .or_default() += 1;
                }
                statuses
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    for worker in workers {
        for (status, count) in worker.join().unwrap() {
            *statuses.entry(status).or_default() += count;
        }
    }
    let flood_took = flood_started.elapsed();
    let after = status_from(established, addr, request.as_bytes());
    let elapsed = spent.elapsed();
    eprintln!("flood of {FLOOD} addresses took {flood_took:?}: {statuses:?}");
    assert_eq!(statuses.values().sum::<u32>(), FLOOD);
    // Within a minute of spending it, no budget here has refilled: the established client is
    // still refused, the table holds it and 4 999 flood addresses, and the 51 addresses past the
    // table share one budget (one run). On a machine so slow that the flood took a minute,
    // budgets have honestly refilled and nothing is left to check.
    if elapsed < Duration::from_secs(59) {
        assert_eq!(after, 429, "the established client's budget was reset");
        let expected = [(400, TRACKED - 1 + 1), (429, FLOOD - TRACKED)];
        assert_eq!(statuses, expected.into_iter().collect(), "{statuses:?}");
    } else {
        eprintln!("the flood took {elapsed:?}: budgets refilled, nothing to check");
    }
}

/// `--allow-unauthenticated` on a public address keeps the Host check: a page whose name was
/// re-pointed at this machine (by DNS rebinding, through loopback or the LAN) is refused, with
/// nothing run; IP addresses, localhost and the names given with `--allow-host` are answered.
#[test]
fn an_unauthenticated_public_server_still_refuses_rebound_host_names() {
    let session = Session::new();
    let bad = session
        .safe_exec()
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--allow-host",
            "http://x.example",
        ])
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("is not a host name"), "{stderr}");
    let server = Server::start(
        &session,
        &[
            "--addr",
            "0.0.0.0:0",
            "--allow-unauthenticated",
            "--allow-host",
            "code.example.test",
            // No warm pool: refused requests must leave no container, none made ahead either.
            "--pool",
            "0",
        ],
    );
    let addr = server.addr;
    let port = addr.port();
    let run = |host: &str| {
        let body = json!({ "code": "print('ran')" }).to_string();
        let request = format!(
            "POST /run HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        super::exchange_from("127.0.0.1", addr, request.as_bytes())
    };
    for rebound in [
        format!("rebound.example:{port}"),
        "rebound.example".to_owned(),
    ] {
        let refused = run(&rebound);
        assert_eq!(refused.status, 403, "{rebound}: {refused:?}");
        let error = refused.json()["error"].as_str().unwrap().to_owned();
        assert!(
            error.contains("DNS rebinding") && error.contains("--allow-host"),
            "{error}"
        );
    }
    session.assert_clean();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("192.0.2.7:{port}"),
        format!("code.example.test:{port}"),
    ] {
        let served = run(&host);
        assert_eq!(served.status, 200, "{host}: {served:?}");
        assert_eq!(served.json()["output"], "ran\n");
    }
    server.stop_and_assert_clean(&session);
}

/// `VmHWM` (peak resident memory) of process `pid`, in bytes.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"));
    kib * 1024
}

/// Established TCP connections to local `port` from `client`, as the kernel lists them.
fn established_from(client: Ipv4Addr, port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let address = |field: &str| -> (Ipv4Addr, u16) {
        let (ip, port) = field.split_once(':').unwrap();
        // The kernel prints the address's network-order bytes as a native integer.
        let ip = Ipv4Addr::from(u32::from_str_radix(ip, 16).unwrap().to_ne_bytes());
        (ip, u16::from_str_radix(port, 16).unwrap())
    };
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (_, local_port) = address(fields[1]);
            let (remote, _) = address(fields[2]);
            local_port == port && remote == client && fields[3] == "01"
        })
        .count()
}

/// A `/run` request whose answer carries 2 MiB of output: exactly the output cap (1 MiB) on
/// each stream, so the run is `ok`, all control bytes, so the JSON is over 12 MB of escapes.
fn big_answer_request(addr: SocketAddr) -> Vec<u8> {
    let code = "import sys\nsys.stdout.buffer.write(b'\\x01' * 1048576)\n\
                sys.stderr.buffer.write(b'\\x01' * 1048576)\n";
    json_request(addr, "/run", &json!({ "code": code }).to_string())
}

/// Open `count` connections from `source` with a small receive buffer, send `request` on each,
/// and read only the status line of each answer: the stream, its status and when it came.
fn send_and_stop_reading(
    source: &'static str,
    addr: SocketAddr,
    request: &[u8],
    count: usize,
) -> Vec<(TcpStream, u16, Instant)> {
    let readers: Vec<_> = (0..count)
        .map(|_| {
            let mut stream = super::connect_from(source, addr, Some(4096));
            stream.write_all(request).unwrap();
            thread::spawn(move || {
                stream
                    .set_read_timeout(Some(Duration::from_secs(180)))
                    .unwrap();
                let mut status_line = [0u8; 12];
                stream.read_exact(&mut status_line).unwrap();
                let status = String::from_utf8_lossy(&status_line[9..12])
                    .parse()
                    .unwrap();
                (stream, status, Instant::now())
            })
        })
        .collect();
    readers.into_iter().map(|r| r.join().unwrap()).collect()
}

fn count(answers: &[(TcpStream, u16, Instant)], status: u16) -> usize {
    answers.iter().filter(|(_, s, _)| *s == status).count()
}

/// 32 connections from one address send a `/run` whose answer carries 2 MiB of output and never
/// read. The server used to build each answer whole (about 19 MB of JSON) and wait: 600 MB held.
/// Now an answer holds its captured output once and is escaped as it is sent, and one client's
/// answers (running or unread) hold at most its budget: the run that would pass it gets 503
/// before it starts. Peak memory is read from /proc/PID/status (VmHWM). Closing the connections
/// gives the places and the budget back.
#[test]
fn a_client_that_stops_reading_holds_at_most_its_answer_budget() {
    const CONNECTIONS: usize = 32;
    let session = Session::new();
    // A send deadline far away: every unread answer is held at once.
    let server = Server::start(
        &session,
        &[
            "--max-concurrent",
            "2",
            "--queue",
            "32",
            "--rate-limit",
            "0",
            "--send-timeout",
            "600",
        ],
    );
    let addr = server.addr;
    let pid = server.child.id();
    let before = peak_memory(pid);
    let answered = send_and_stop_reading("127.0.0.3", addr, &big_answer_request(addr), CONNECTIONS);
    let grew = peak_memory(pid).saturating_sub(before);

    // As many runs as their largest answers fit in the budget; the next is refused.
    let budget = MAX_ANSWER_BYTES_PER_CLIENT;
    let admitted = (budget / answer_reserve(&Limits::default(), Flavor::Compat, 0, false)) as usize;
    assert_eq!(count(&answered, 200), admitted);
    assert_eq!(count(&answered, 503), CONNECTIONS - admitted);
    eprintln!(
        "{admitted} unread answers of 2 MiB output held at once: peak memory grew by {} MiB",
        grew / (1024 * 1024)
    );
    // The answers' budget, and room for the runs' own buffers and the allocator.
    assert!(
        grew < budget + 48 * 1024 * 1024,
        "peak memory grew by {grew} bytes"
    );

    drop(answered);
    let health = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    server.wait_for(
        Duration::from_secs(10),
        "the client's places to be free",
        || super::exchange_from("127.0.0.3", addr, health.as_bytes()).status == 200,
    );
    let again = super::exchange_from(
        "127.0.0.3",
        addr,
        &json_request(
            addr,
            "/run",
            &json!({ "code": "print('again')" }).to_string(),
        ),
    );
    assert_eq!(again.status, 200, "{again:?}");
    server.stop_and_assert_clean(&session);
}

/// Every answer has a send deadline: a client that has not read its answer within
/// `--send-timeout` of it being ready is reset, which frees its connection place, the answer's
/// memory and what the kernel buffers for it; the same client is then served again. A client
/// that reads gets the whole answer.
#[test]
fn an_unread_answer_is_cut_off_at_the_send_deadline() {
    const CONNECTIONS: usize = 4;
    const SEND_TIMEOUT: Duration = Duration::from_secs(3);
    let session = Session::new();
    let server = Server::start(
        &session,
        &[
            "--max-concurrent",
            "2",
            "--rate-limit",
            "0",
            "--send-timeout",
            "3",
        ],
    );
    let addr = server.addr;
    let hog: Ipv4Addr = "127.0.0.3".parse().unwrap();
    let request = big_answer_request(addr);
    let answered = send_and_stop_reading("127.0.0.3", addr, &request, CONNECTIONS);
    assert_eq!(count(&answered, 200), CONNECTIONS);
    let last_ready = answered.iter().map(|(_, _, at)| *at).max().unwrap();

    // Reset by the deadline: gone from the kernel's table, not lingering with unsent data.
    server.wait_for(
        SEND_TIMEOUT + Duration::from_secs(15),
        "the unread answers' connections to be reset",
        || established_from(hog, addr.port()) == 0,
    );
    eprintln!(
        "reset {:?} after the last answer was ready",
        last_ready.elapsed()
    );
    for (mut stream, _, _) in answered {
        let mut rest = Vec::new();
        let cut = match stream.read_to_end(&mut rest) {
            Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => {
                let text = String::from_utf8_lossy(&rest);
                let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
                let length: usize = head
                    .lines()
                    .find_map(|line| {
                        let line = line.to_ascii_lowercase();
                        line.strip_prefix("content-length:")?.trim().parse().ok()
                    })
                    .unwrap();
                body.len() < length
            }
        };
        assert!(cut, "an unread answer was delivered whole");
    }

    let again = super::exchange_from(
        "127.0.0.3",
        addr,
        &json_request(
            addr,
            "/run",
            &json!({ "code": "print('again')" }).to_string(),
        ),
    );
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.json()["output"], "again\n");
    let whole = super::exchange_from("127.0.0.2", addr, &request);
    assert_eq!(whole.status, 200);
    let body = whole.json();
    assert_eq!(body["status"], "success");
    assert_eq!(body["output"], "\u{1}".repeat(1024 * 1024));
    assert_eq!(body["output"], body["stdout"]);
    assert_eq!(body["stderr"], body["stdout"]);
    server.stop_and_assert_clean(&session);
}

/// The same for live output: one client opens event streams of runs that write 2 MiB each and
/// never reads them. Nothing waits for it (every run ends by itself); what the streams hold
/// stays within the client's budget (the run that would pass it gets 503 before it starts), and
/// each stream is reset at the send deadline after its run's end, which frees everything.
#[test]
fn a_client_that_stops_reading_events_is_cut_off_within_its_budget() {
    const CONNECTIONS: usize = 16;
    const SEND_TIMEOUT: Duration = Duration::from_secs(3);
    let session = Session::new();
    let server = Server::start(
        &session,
        &[
            "--max-concurrent",
            "2",
            "--queue",
            "32",
            "--rate-limit",
            "0",
            "--send-timeout",
            "3",
        ],
    );
    let addr = server.addr;
    let pid = server.child.id();
    let before = peak_memory(pid);
    let hog: Ipv4Addr = "127.0.0.3".parse().unwrap();
    let code = "import sys\nsys.stdout.buffer.write(b'\\x01' * 1048576)\n\
                sys.stderr.buffer.write(b'\\x01' * 1048576)\n";
    let body = json!({ "code": code }).to_string();
    let request = format!(
        "POST /api/v1/runs HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Accept: text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answered = send_and_stop_reading("127.0.0.3", addr, request.as_bytes(), CONNECTIONS);
    let reserve = answer_reserve(&Limits::default(), Flavor::V1, 0, true);
    let admitted = (MAX_ANSWER_BYTES_PER_CLIENT / reserve) as usize;
    assert!(admitted < CONNECTIONS);
    assert_eq!(count(&answered, 200), admitted);
    assert_eq!(count(&answered, 503), CONNECTIONS - admitted);
    let last_ready = answered.iter().map(|(_, _, at)| *at).max().unwrap();
    server.wait_for(
        SEND_TIMEOUT + Duration::from_secs(30),
        "the unread event streams to be reset",
        || established_from(hog, addr.port()) == 0,
    );
    let grew = peak_memory(pid).saturating_sub(before);
    eprintln!(
        "{admitted} unread event streams of 2 MiB output: peak memory grew by {} MiB; reset {:?} after the last head",
        grew / (1024 * 1024),
        last_ready.elapsed()
    );
    assert!(
        grew < MAX_ANSWER_BYTES_PER_CLIENT + 48 * 1024 * 1024,
        "peak memory grew by {grew} bytes"
    );
    for (mut stream, status, _) in answered {
        if status != 200 {
            continue;
        }
        let mut rest = Vec::new();
        let whole = match stream.read_to_end(&mut rest) {
            Err(_) => false,
            Ok(_) => String::from_utf8_lossy(&rest).contains("event: result"),
        };
        assert!(!whole, "an unread event stream was delivered whole");
    }
    // The client is served again, and a client that reads gets everything.
    let again = super::exchange_from(
        "127.0.0.3",
        addr,
        &json_request(
            addr,
            "/run",
            &json!({ "code": "print('again')" }).to_string(),
        ),
    );
    assert_eq!(again.status, 200, "{again:?}");
    server.stop_and_assert_clean(&session);
}
