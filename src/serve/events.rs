//! Live output as server-sent events: `POST /api/v1/runs` with `Accept: text/event-stream`.
//!
//! The run's two output streams are teed into one queue by a [`LiveWriter`] each (the
//! supervisor's pass-through writers, fed as the launcher's frames arrive). [`EventStream`], the
//! response body, turns the queue into `stdout` and `stderr` events while the client reads, then
//! sends one `result` event whose data is exactly the document the answer without streaming
//! would have been. Events carry UTF-8 text as `{"text": ...}`; bytes that are not UTF-8 come as
//! `{"base64": ...}`, and a character cut between two reads waits for its other bytes, so the
//! events of a stream, joined, are exactly the bytes the program wrote (up to the output cap).
//!
//! The queue has no count of its own to bound it: the supervisor passes on at most
//! `max_output_bytes` per stream, so the queue never holds more than that, and the run reserves
//! room for it in the client's answer budget ([`super::answers::answer_reserve`]). Nothing ever
//! waits for a slow reader — not the program, not the supervisor — and a reader that stops is cut
//! off at the send deadline, counted from the run's end ([`LateDeadline`]).
//!
//! Nothing here runs anything or decides a status; it only frames what it is given.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hyper::body::{Frame, SizeHint};
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};

use super::body::JsonBody;
use super::clients::AnswerCharge;
use super::server::LateDeadline;
use crate::report::Stream;
use crate::runner::job::RunIo;
use crate::runner::CancelToken;

/// Bytes of output turned into one event at most, so an event's JSON (up to six times its
/// bytes, escaped) stays small whatever size the reads were.
const PIECE: usize = 16 * 1024;
/// After this long without an event, a comment line: proxies and clients keep the connection,
/// and a client that went away is noticed (the write fails) even while the program is silent.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// What the data of the `result` event is framed by.
const RESULT_HEAD: &[u8] = b"event: result\ndata: ";
const EVENT_END: &[u8] = b"\n\n";

/// Does the request ask for server-sent events (`Accept: text/event-stream`, not with `q=0`)?
pub fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|range| {
            let mut parts = range.split(';');
            let essence = parts.next().unwrap_or("").trim();
            let refused = parts.any(|parameter| {
                parameter
                    .trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f64>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            essence.eq_ignore_ascii_case("text/event-stream") && !refused
        })
}

/// Bytes the program wrote on one stream, as they came.
#[derive(Debug)]
pub struct Chunk {
    stream: Stream,
    bytes: Vec<u8>,
}

/// One stream's pass-through writer: every write goes to the queue at once (never blocks).
struct LiveWriter {
    stream: Stream,
    queue: mpsc::UnboundedSender<Chunk>,
}

impl Write for LiveWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        // The stream's body is gone (the client left): the supervisor stops passing on.
        self.queue
            .send(Chunk {
                stream: self.stream,
                bytes: bytes.to_vec(),
            })
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where a streamed run's output goes: captured for the result as usual, and teed into `queue`.
pub fn live_io(
    queue: mpsc::UnboundedSender<Chunk>,
    artifact_bytes: u64,
    keep_artifacts: bool,
) -> RunIo {
    let make = move || RunIo {
        stdout: Some(Box::new(LiveWriter {
            stream: Stream::Stdout,
            queue: queue.clone(),
        })),
        stderr: Some(Box::new(LiveWriter {
            stream: Stream::Stderr,
            queue: queue.clone(),
        })),
        keep: true,
        artifact_bytes,
        keep_artifacts,
        renew: None,
    };
    let first = make();
    RunIo {
        // A second attempt happens only when the program never started: nothing was written.
        renew: Some(Arc::new(make)),
        ..first
    }
}

/// A piece of a stream as event data.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LiveData {
    Text(String),
    Bytes(Vec<u8>),
}

/// Turns one stream's bytes into event data: text where they are UTF-8, holding back a character
/// cut at the end of a piece until its other bytes come; base64 where they are not.
#[derive(Debug, Default)]
struct Utf8Carry {
    carry: Vec<u8>,
}

impl Utf8Carry {
    /// The data for `bytes` (after what was held back), if there is any yet.
    fn push(&mut self, bytes: &[u8]) -> Option<LiveData> {
        let mut all = std::mem::take(&mut self.carry);
        all.extend_from_slice(bytes);
        let data = match std::str::from_utf8(&all) {
            Ok(_) => LiveData::Text(String::from_utf8(all).unwrap_or_default()),
            // Only the last character is incomplete (at most 3 bytes): hold it back.
            Err(error) if error.error_len().is_none() => {
                self.carry = all.split_off(error.valid_up_to());
                LiveData::Text(String::from_utf8(all).unwrap_or_default())
            }
            Err(_) => LiveData::Bytes(all),
        };
        match &data {
            LiveData::Text(text) if text.is_empty() => None,
            _ => Some(data),
        }
    }

    /// What is still held back when the stream ends: bytes that never became a character.
    fn finish(&mut self) -> Option<LiveData> {
        let carry = std::mem::take(&mut self.carry);
        (!carry.is_empty()).then_some(LiveData::Bytes(carry))
    }
}

/// One event: `event: stdout`, one line of JSON data, a blank line.
fn event(stream: Stream, data: &LiveData) -> Bytes {
    let data = match data {
        LiveData::Text(text) => json!({ "text": text }),
        LiveData::Bytes(bytes) => json!({ "base64": BASE64.encode(bytes) }),
    };
    // serde_json escapes every newline inside strings: the data is one line.
    Bytes::from(format!("event: {}\ndata: {data}\n\n", stream.name()))
}

/// The body of a streamed run's answer; see the module docs.
pub struct EventStream {
    queue: mpsc::UnboundedReceiver<Chunk>,
    queue_open: bool,
    /// A chunk being cut into pieces.
    piece: Option<(Stream, Vec<u8>, usize)>,
    stdout: Utf8Carry,
    stderr: Utf8Carry,
    /// Events ready to send.
    ready: VecDeque<Bytes>,
    result: Option<oneshot::Receiver<JsonBody>>,
    answer: Option<JsonBody>,
    quiet: Pin<Box<tokio::time::Sleep>>,
    /// Cancels the run when the client goes before its result.
    cancel: Option<CancelToken>,
    _charge: AnswerCharge,
}

impl EventStream {
    /// The body for a run whose output comes on `queue` and whose final document comes on
    /// `result`. It holds `charge` (the run's share of the client's budget) until it is dropped.
    pub fn new(
        queue: mpsc::UnboundedReceiver<Chunk>,
        result: oneshot::Receiver<JsonBody>,
        cancel: CancelToken,
        charge: AnswerCharge,
    ) -> EventStream {
        EventStream {
            queue,
            queue_open: true,
            piece: None,
            stdout: Utf8Carry::default(),
            stderr: Utf8Carry::default(),
            // The head goes out at once with something to send (a comment).
            ready: VecDeque::from([Bytes::from_static(b": safe-exec run started\n\n")]),
            result: Some(result),
            answer: None,
            quiet: Box::pin(tokio::time::sleep(KEEP_ALIVE)),
            cancel: Some(cancel),
            _charge: charge,
        }
    }

    /// The response: 200, `text/event-stream`, with the deadline the connection loop waits for.
    pub fn respond(self, deadline: watch::Receiver<Option<Instant>>) -> Response {
        let mut response = Response::new(Body::new(self));
        *response.status_mut() = StatusCode::OK;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // nginx and the like pass the events on as they come instead of buffering them.
        headers.insert(
            HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        );
        response.extensions_mut().insert(LateDeadline(deadline));
        response
    }

    fn carry(&mut self, stream: Stream) -> &mut Utf8Carry {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }

    /// The next event made from the chunk being cut, if any.
    fn next_piece(&mut self) -> Option<Bytes> {
        while let Some((stream, bytes, at)) = self.piece.take() {
            let end = bytes.len().min(at + PIECE);
            let data = self.carry(stream).push(&bytes[at..end]);
            if end < bytes.len() {
                self.piece = Some((stream, bytes, end));
            }
            if let Some(data) = data {
                return Some(event(stream, &data));
            }
        }
        None
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        loop {
            if let Some(answer) = &mut self.answer {
                return Poll::Ready(answer.next_chunk());
            }
            if let Some(ready) = self.ready.pop_front() {
                return Poll::Ready(Some(ready));
            }
            if let Some(piece) = self.next_piece() {
                return Poll::Ready(Some(piece));
            }
            if self.queue_open {
                match self.queue.poll_recv(cx) {
                    Poll::Ready(Some(chunk)) => {
                        self.piece = Some((chunk.stream, chunk.bytes, 0));
                        continue;
                    }
                    Poll::Ready(None) => {
                        // Every writer is gone: the output is complete.
                        self.queue_open = false;
                        for stream in [Stream::Stdout, Stream::Stderr] {
                            if let Some(data) = self.carry(stream).finish() {
                                self.ready.push_back(event(stream, &data));
                            }
                        }
                        continue;
                    }
                    Poll::Pending => {}
                }
            } else if let Some(result) = &mut self.result {
                match Pin::new(result).poll(cx) {
                    Poll::Ready(Ok(body)) => {
                        self.result = None;
                        self.cancel = None;
                        self.answer = Some(body.framed(RESULT_HEAD, EVENT_END));
                        continue;
                    }
                    // The run's thread failed (it said so on stderr): end the stream.
                    Poll::Ready(Err(_)) => {
                        self.result = None;
                        self.cancel = None;
                        return Poll::Ready(None);
                    }
                    Poll::Pending => {}
                }
            } else {
                return Poll::Ready(None);
            }
            return match self.quiet.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Bytes::from_static(b": keep-alive\n\n"))),
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        if let Some(token) = self.cancel.take() {
            token.cancel();
        }
    }
}

impl HttpBody for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let next = this.poll_next(cx);
        if let Poll::Ready(Some(_)) = &next {
            let quiet_until = tokio::time::Instant::now() + KEEP_ALIVE;
            this.quiet.as_mut().reset(quiet_until);
        }
        next.map(|chunk| chunk.map(|chunk| Ok(Frame::data(chunk))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::body::JsonObject;
    use crate::serve::clients::AnswerBudget;

    fn joined(carry: &mut Utf8Carry, pieces: &[&[u8]]) -> (Vec<u8>, Vec<LiveData>) {
        let mut events: Vec<LiveData> = pieces.iter().filter_map(|p| carry.push(p)).collect();
        events.extend(carry.finish());
        let mut bytes = Vec::new();
        for data in &events {
            match data {
                LiveData::Text(text) => bytes.extend_from_slice(text.as_bytes()),
                LiveData::Bytes(raw) => bytes.extend_from_slice(raw),
            }
        }
        (bytes, events)
    }

    /// A character cut between reads is held back, not shown as U+FFFD; bytes that are not UTF-8
    /// come as bytes; joined, the events are exactly the stream.
    #[test]
    fn pieces_are_text_where_they_can_be_and_lossless_always() {
        let smile = "😀".as_bytes();
        let mut carry = Utf8Carry::default();
        let (bytes, events) = joined(
            &mut carry,
            &[b"a", &smile[..1], &smile[1..3], &smile[3..], b"b"],
        );
        assert_eq!(bytes, "a😀b".as_bytes());
        assert_eq!(
            events,
            [
                LiveData::Text("a".into()),
                LiveData::Text("😀".into()),
                LiveData::Text("b".into())
            ]
        );
        let (bytes, events) = joined(&mut carry, &[b"ok\n", b"\xff\x00a", b"tail"]);
        assert_eq!(bytes, b"ok\n\xff\x00atail");
        assert_eq!(events[1], LiveData::Bytes(b"\xff\x00a".to_vec()));
        assert_eq!(events[2], LiveData::Text("tail".into()));
        // A stream that ends inside a character: the bytes, as bytes.
        let (bytes, events) = joined(&mut carry, &[b"x", &smile[..2]]);
        assert_eq!(bytes, [b"x".as_slice(), &smile[..2]].concat());
        assert_eq!(events.last(), Some(&LiveData::Bytes(smile[..2].to_vec())));
    }

    #[test]
    fn an_event_is_one_line_of_json() {
        let text = event(Stream::Stdout, &LiveData::Text("a\nb\"\r\n".into()));
        assert_eq!(
            &text[..],
            b"event: stdout\ndata: {\"text\":\"a\\nb\\\"\\r\\n\"}\n\n"
        );
        let bytes = event(Stream::Stderr, &LiveData::Bytes(vec![0xff, 0, b'a']));
        assert_eq!(
            &bytes[..],
            b"event: stderr\ndata: {\"base64\":\"/wBh\"}\n\n"
        );
    }

    #[test]
    fn accept_headers() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT, HeaderValue::from_str(value).unwrap());
            wants_events(&headers)
        };
        assert!(with("text/event-stream"));
        assert!(with("application/json, Text/Event-Stream;q=0.5"));
        assert!(!with("text/event-stream;q=0"));
        assert!(!with("application/json"));
        assert!(!with("*/*"));
        assert!(!wants_events(&HeaderMap::new()));
    }

    /// The whole stream: live events in order (a large write cut into pieces), then the result,
    /// exactly as given; a stream dropped before its result cancels the run.
    #[tokio::test]
    async fn output_then_the_result() {
        let (queue_in, queue) = mpsc::unbounded_channel();
        let (result_in, result) = oneshot::channel();
        let token = CancelToken::new();
        let budget = AnswerBudget::new(None);
        let charge = budget
            .reserve(std::net::IpAddr::from([127, 0, 0, 1]), 10)
            .unwrap();
        let mut stream = EventStream::new(queue, result, token.clone(), charge);
        let io = live_io(queue_in, 0, false);
        let (mut out, mut err) = (io.stdout.unwrap(), io.stderr.unwrap());
        out.write_all(b"first\n").unwrap();
        err.write_all(&vec![b'e'; PIECE + 1]).unwrap();
        out.write_all("é".as_bytes()[..1].as_ref()).unwrap();
        drop((out, err, io.renew));
        let report = JsonObject::new().value("status", "ok").finish();
        result_in.send(report).unwrap();
        let mut all = Vec::new();
        while let Some(frame) =
            std::future::poll_fn(|cx| Pin::new(&mut stream).poll_frame(cx)).await
        {
            all.extend_from_slice(frame.unwrap().data_ref().unwrap());
        }
        let text = String::from_utf8(all).unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events[0], ": safe-exec run started");
        assert_eq!(events[1], "event: stdout\ndata: {\"text\":\"first\\n\"}");
        assert!(events[2].starts_with("event: stderr\ndata: {\"text\":\"eee"));
        assert_eq!(events[3], "event: stderr\ndata: {\"text\":\"e\"}");
        assert_eq!(events[4], "event: stdout\ndata: {\"base64\":\"ww==\"}");
        assert_eq!(events[5], "event: result\ndata: {\"status\":\"ok\"}");
        assert_eq!(events.len(), 6);
        drop(stream);
        assert!(!token.is_cancelled(), "a finished stream cancels nothing");

        let (_queue_in, queue) = mpsc::unbounded_channel();
        let (_result_in, result) = oneshot::channel();
        let token = CancelToken::new();
        let charge = budget
            .reserve(std::net::IpAddr::from([127, 0, 0, 1]), 10)
            .unwrap();
        drop(EventStream::new(queue, result, token.clone(), charge));
        assert!(token.is_cancelled());
    }
}
