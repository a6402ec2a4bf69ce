//! The connection loop: accept (TCP, TLS or a unix socket: [`super::listen`]), cap open
//! connections (in all and per client), serve exactly one HTTP/1.1 request on each with a
//! header-read timeout (a TLS handshake included) and a send deadline, and shut down promptly
//! when told.
//!
//! `axum::serve` has neither a connection cap nor a header timeout (a client that opens
//! connections and never finishes its headers would hold them forever), so this small loop
//! drives hyper directly. Routing and everything above it stay in axum; nothing here looks at a
//! request beyond handing it the client's address.
//!
//! Every answer must be taken by its client within the send deadline (`--send-timeout`) of
//! being ready; past it the connection is reset, which drops the answer, frees the connection's
//! place and makes the kernel discard what it still buffers for the client. Without it, a
//! client that stops reading would hold its place and its answer for as long as it likes.
//!
//! Every answer closes its connection (`Connection: close`, keep-alive off). A browser resends a
//! request that got a 408 on a reused keep-alive connection (it takes the 408 for a server
//! closing an idle connection), which would run a timed-out `/run` again; with no reused
//! connections no request is ever resent, and no idle connection outlives its answer. A
//! connection costs one TCP handshake on loopback or a LAN, nothing next to a container.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::header::CONNECTION;
use axum::http::HeaderValue;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::clients::{Client, PerClient};
use super::limits::{HEADER_TIMEOUT, MAX_CONNECTIONS, MAX_LINGERING_REFUSALS};
use super::listen::{Accepted, Listener};
use super::state::Peer;

/// Put on a response whose body is written while its run goes on (server-sent events,
/// [`super::events`]): its send deadline starts not when the head is ready but at the instant this
/// comes to hold (the run's end plus the send timeout). A sender dropped without one starts the
/// usual send timeout then.
#[derive(Debug, Clone)]
pub struct LateDeadline(pub watch::Receiver<Option<Instant>>);

/// After shutdown began, how long connections that are mid-request get to deliver their
/// answers (runs are cancelled at the same time, so those answers come at once).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection refused by the per-client cap is kept to deliver its 503.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Serve `router` on `listener` until `shutdown` turns true; then stop accepting, close every
/// connection that has no request in progress, let the others deliver their answers (bounded by
/// [`DRAIN_TIMEOUT`]), and return. `per_client_cap` is the most connections one client may have
/// open (`None`: no cap but [`MAX_CONNECTIONS`]); `send_timeout` how long a client has to read
/// its answer once it is ready.
pub async fn serve(
    listener: &Listener,
    router: Router,
    per_client_cap: Option<usize>,
    send_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let refusals = Arc::new(Semaphore::new(MAX_LINGERING_REFUSALS));
    let per_client = PerClient::new(per_client_cap);
    let refused = refusal(per_client_cap.unwrap_or(MAX_CONNECTIONS));
    let tls = listener.tls();
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let connected = Instant::now();
        let (stream, client) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                if !matches!(
                    error.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                ) {
                    say!("cannot accept a connection: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        // Counted here, before the next accept, so connections are counted in arrival order.
        let Some(client_slot) = per_client.enter(client) else {
            // A refusal holds no connection permit (it would let one client flooding the server
            // with connections take every one); it lingers on a budget of its own, or not at all.
            drop(permit);
            match refusals.clone().try_acquire_owned() {
                Ok(lingering) => {
                    tokio::spawn(refuse_connection(
                        stream,
                        tls.clone(),
                        refused.clone(),
                        lingering,
                    ));
                }
                // Whatever fits in the socket's buffer now, then closed (a TLS client gets no
                // answer: that would take a handshake).
                Err(_) => match &stream {
                    Accepted::Tcp(tcp) if tls.is_none() => drop(tcp.try_write(refused.as_bytes())),
                    Accepted::Unix(unix) => drop(unix.try_write(refused.as_bytes())),
                    Accepted::Tcp(_) => {}
                },
            }
            continue;
        };
        let router = router.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let connection = Connection {
                client,
                router,
                send_timeout,
                connected,
                shutdown,
            };
            match (stream, tls) {
                (Accepted::Tcp(tcp), None) => {
                    let socket = tcp.as_raw_fd();
                    connection.serve(tcp, socket).await;
                }
                (Accepted::Tcp(tcp), Some(acceptor)) => {
                    let socket = tcp.as_raw_fd();
                    if let Some(tls) = connection.handshake(&acceptor, tcp).await {
                        connection.serve(tls, socket).await;
                    }
                }
                (Accepted::Unix(unix), _) => {
                    let socket = unix.as_raw_fd();
                    connection.serve(unix, socket).await;
                }
            }
            drop(client_slot);
            drop(permit);
        });
    }
    // Every connection task holds one permit until it ends.
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, connections.acquire_many(all)).await;
}

/// One connection's settings.
struct Connection {
    client: Client,
    router: Router,
    send_timeout: Duration,
    /// When it was accepted: the TLS handshake and the request head share [`HEADER_TIMEOUT`].
    connected: Instant,
    shutdown: watch::Receiver<bool>,
}

impl Connection {
    /// The TLS handshake, within the header timeout (counted from the connection) and given up
    /// at shutdown; `None` when it failed or took too long (the connection is simply closed).
    async fn handshake(
        &self,
        acceptor: &TlsAcceptor,
        tcp: tokio::net::TcpStream,
    ) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
        let mut shutdown = self.shutdown.clone();
        let deadline = tokio::time::Instant::from_std(self.connected + HEADER_TIMEOUT);
        tokio::select! {
            done = tokio::time::timeout_at(deadline, acceptor.accept(tcp)) => done.ok()?.ok(),
            _ = shutdown.wait_for(|stop| *stop) => None,
        }
    }

    /// Serve exactly one request on `stream` (whose descriptor is `socket`, for the reset at
    /// the send deadline).
    async fn serve<S>(self, stream: S, socket: RawFd)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            client,
            router,
            send_timeout,
            connected,
            mut shutdown,
        } = self;
        // Set once hyper hands a complete request head to the router. Read only by this task
        // after it stopped polling the connection, so no request can start between the check
        // and the close.
        let request_started = Arc::new(AtomicBool::new(false));
        let started = request_started.clone();
        // Told when the answer is ready: from then on the client has `send_timeout` to take it.
        let answer_ready = Arc::new(Notify::new());
        let ready = answer_ready.clone();
        // A streamed answer's own deadline, handed over with the answer.
        let late_deadline: Arc<std::sync::Mutex<Option<LateDeadline>>> = Arc::default();
        let late = late_deadline.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            started.store(true, Ordering::Relaxed);
            request.extensions_mut().insert(Peer(client));
            let answer = router.clone().oneshot(request);
            let ready = ready.clone();
            let late = late.clone();
            async move {
                let mut response = answer.await?;
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
                if let Some(deadline) = response.extensions_mut().remove::<LateDeadline>() {
                    *crate::sync::lock(&late) = Some(deadline);
                }
                // Stores a permit when nobody waits yet, so it is never missed.
                ready.notify_one();
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let send_deadline = async {
            answer_ready.notified().await;
            let late = crate::sync::lock(&late_deadline).take();
            match late {
                None => tokio::time::sleep(send_timeout).await,
                Some(LateDeadline(mut deadline)) => {
                    let at = match deadline.wait_for(Option::is_some).await {
                        Ok(at) => *at,
                        Err(_) => None,
                    };
                    match at {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => tokio::time::sleep(send_timeout).await,
                    }
                }
            }
        };
        tokio::pin!(send_deadline);
        // The head must arrive within the header timeout of connecting, a TLS handshake
        // included.
        let header_timeout = HEADER_TIMEOUT
            .saturating_sub(connected.elapsed())
            .max(Duration::from_millis(1));
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .keep_alive(false)
            .header_read_timeout(header_timeout)
            .max_buf_size(64 * 1024);
        // Half-closed connections are not supported (hyper's default): a client that closes its
        // side while waiting has gone away, and dropping its request future cancels its run.
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        tokio::select! {
            _ = connection.as_mut() => return,
            () = &mut send_deadline => return reset(socket),
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
        if !request_started.load(Ordering::Relaxed) {
            // Idle, or part of a head: nothing to answer. Dropping closes it now rather than at
            // the header timeout, which would hold up shutdown.
            return;
        }
        // A request is in progress: its run (if any) is being cancelled, so its answer is due at
        // once; keep-alive is off, so the connection ends with it (or at its send deadline).
        tokio::select! {
            _ = connection => {}
            () = send_deadline => reset(socket),
        }
    }
}

/// Make the coming close of `socket` a reset (SO_LINGER with a zero timeout): the kernel drops
/// whatever it still holds for a client that stopped reading, instead of keeping it for minutes.
/// The caller still owns the socket and drops it right after.
fn reset(socket: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `socket` is an open descriptor owned by the connection the caller is about to
    // drop; setsockopt only reads the `linger` it is given.
    unsafe {
        libc::setsockopt(
            socket,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// The raw 503 for a connection past its client's cap of `cap`.
fn refusal(cap: usize) -> String {
    let body = format!(
        r#"{{"error":"Too many connections from this client ({cap} at most); close some and retry","status":"error"}}"#
    );
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\ncache-control: no-store\r\nx-content-type-options: nosniff\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Answer a connection past its client's cap with `answer` (a 503) without reading its request,
/// and close it; over TLS after the handshake. `lingering` (one of [`MAX_LINGERING_REFUSALS`]) is
/// held for the short linger, so a flood of refused connections is bounded too.
async fn refuse_connection(
    stream: Accepted,
    tls: Option<TlsAcceptor>,
    answer: String,
    lingering: OwnedSemaphorePermit,
) {
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        match (stream, tls) {
            (Accepted::Tcp(tcp), None) => answer_and_drain(tcp, &answer).await,
            (Accepted::Tcp(tcp), Some(acceptor)) => {
                answer_and_drain(acceptor.accept(tcp).await?, &answer).await
            }
            (Accepted::Unix(unix), _) => answer_and_drain(unix, &answer).await,
        }
    })
    .await;
    drop(lingering);
}

/// Write `answer`, close our side, and read (and drop) what the client sends until it closes:
/// closing a socket with unread data resets the connection, and the client could lose the
/// answer with it.
async fn answer_and_drain<S>(mut stream: S, answer: &str) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream.write_all(answer.as_bytes()).await?;
    // FIN after the answer (a TLS close_notify first).
    stream.shutdown().await?;
    let mut sink = [0u8; 4096];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_the_cap() {
        let answer = refusal(7);
        assert!(answer.starts_with("HTTP/1.1 503 "));
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(body.contains("Too many connections from this client (7 at most)"));
    }
}
