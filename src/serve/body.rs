//! Answer bodies that keep a run's output as it was captured and write it out as JSON while the
//! client reads, instead of holding the whole escaped document.
//!
//! A JSON string of output can be six times its bytes (`\u0001` for each control byte), and
//! `POST /run` carries stdout twice (`output` and `stdout`): 2 MiB of captured output became a
//! 19 MB answer held in memory until the client took it. A [`JsonBody`] holds the captured bytes
//! once (shared between fields) and escapes them a chunk at a time when the connection can take
//! more, so an answer waiting for a slow client holds about what the run captured. The length is
//! counted up front, so the answer still has a `Content-Length`.
//!
//! Output that is not UTF-8 is written as Rust's `String::from_utf8_lossy` would (each invalid
//! sequence becomes U+FFFD), and strings are escaped as serde_json escapes them (`"`, `\` and the
//! controls below U+0020), so a client sees the same document as before.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Bytes, HttpBody};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hyper::body::{Frame, SizeHint};
use serde::Serialize;

use super::clients::AnswerCharge;

/// Bytes of escaped JSON produced per frame at most (plus one escape's worth).
const CHUNK: usize = 64 * 1024;

/// One piece of a document: JSON as it is, bytes to write as the inside of a JSON string, or
/// bytes to write as standard base64 (the inside of a JSON string too: base64 needs no escape).
#[derive(Debug, Clone)]
enum Part {
    Json(Bytes),
    Text { bytes: Bytes, at: usize },
    Base64 { bytes: Bytes, at: usize },
}

/// Bytes of input encoded per frame at most: a multiple of 3, so pieces join into one valid
/// base64 string.
const BASE64_CHUNK: usize = CHUNK / 4 * 3;

/// A JSON object built field by field; big strings stay as bytes until sent.
#[derive(Debug)]
pub struct JsonObject {
    parts: Vec<Part>,
    fields: usize,
}

impl Default for JsonObject {
    fn default() -> JsonObject {
        JsonObject::new()
    }
}

impl JsonObject {
    pub fn new() -> JsonObject {
        JsonObject {
            parts: vec![Part::Json(Bytes::from_static(b"{"))],
            fields: 0,
        }
    }

    /// `"key":` (with the comma before it when needed).
    fn key(&mut self, key: &str) {
        let mut head = Vec::with_capacity(key.len() + 4);
        if self.fields > 0 {
            head.push(b',');
        }
        self.fields += 1;
        head.push(b'"');
        push_escaped(&mut head, key.as_bytes(), usize::MAX);
        head.extend_from_slice(b"\":");
        self.parts.push(Part::Json(Bytes::from(head)));
    }

    /// A field with a small value, serialized now.
    pub fn value(mut self, key: &str, value: impl Serialize) -> JsonObject {
        self.key(key);
        // Serializing plain data (strings, numbers, maps of them) cannot fail.
        let json = serde_json::to_vec(&value).unwrap_or_else(|_| b"null".to_vec());
        self.parts.push(Part::Json(Bytes::from(json)));
        self
    }

    /// A string field whose text is `bytes` (not UTF-8 where it is not: shown lossily), escaped
    /// only when sent. Clones of one `Bytes` share their memory.
    pub fn text(mut self, key: &str, bytes: Bytes) -> JsonObject {
        self.key(key);
        self.parts.push(Part::Json(Bytes::from_static(b"\"")));
        self.parts.push(Part::Text { bytes, at: 0 });
        self.parts.push(Part::Json(Bytes::from_static(b"\"")));
        self
    }

    /// A string field whose text is the standard base64 (with padding) of `bytes`, encoded only
    /// when sent: the body holds the bytes, not their encoding (a third larger).
    pub fn base64(mut self, key: &str, bytes: Bytes) -> JsonObject {
        self.key(key);
        self.parts.push(Part::Json(Bytes::from_static(b"\"")));
        self.parts.push(Part::Base64 { bytes, at: 0 });
        self.parts.push(Part::Json(Bytes::from_static(b"\"")));
        self
    }

    /// A field whose value is the object `inner`, its strings still unescaped.
    pub fn object(mut self, key: &str, inner: JsonObject) -> JsonObject {
        self.key(key);
        self.parts.extend(inner.parts);
        self.parts.push(Part::Json(Bytes::from_static(b"}")));
        self
    }

    /// A field whose value is an array of the objects `items`.
    pub fn array(mut self, key: &str, items: Vec<JsonObject>) -> JsonObject {
        self.key(key);
        self.parts.push(Part::Json(Bytes::from_static(b"[")));
        for (index, item) in items.into_iter().enumerate() {
            if index > 0 {
                self.parts.push(Part::Json(Bytes::from_static(b",")));
            }
            self.parts.extend(item.parts);
            self.parts.push(Part::Json(Bytes::from_static(b"}")));
        }
        self.parts.push(Part::Json(Bytes::from_static(b"]")));
        self
    }

    /// The finished document.
    pub fn finish(mut self) -> JsonBody {
        self.parts.push(Part::Json(Bytes::from_static(b"}")));
        let remaining = self.parts.iter().map(part_len).sum();
        JsonBody {
            parts: self.parts.into(),
            remaining,
            _charge: None,
        }
    }
}

/// A JSON document sent a chunk at a time; see the module docs.
#[derive(Debug)]
pub struct JsonBody {
    parts: VecDeque<Part>,
    /// Bytes of JSON still to send.
    remaining: u64,
    _charge: Option<AnswerCharge>,
}

impl JsonBody {
    /// The memory this body holds: its JSON pieces and each distinct text buffer once.
    pub fn held_bytes(&self) -> u64 {
        let mut seen = HashSet::new();
        self.parts
            .iter()
            .map(|part| match part {
                Part::Json(json) => json.len() as u64,
                Part::Text { bytes, .. } | Part::Base64 { bytes, .. }
                    if seen.insert(bytes.as_ptr()) =>
                {
                    bytes.len() as u64
                }
                Part::Text { .. } | Part::Base64 { .. } => 0,
            })
            .sum()
    }

    /// Move the client's charge onto this body (it is given back when the body is dropped).
    pub fn hold(&mut self, charge: AnswerCharge) {
        self._charge = Some(charge);
    }

    /// The document with `before` sent ahead of it and `after` behind it (the lines of a
    /// server-sent event around its JSON data).
    pub fn framed(mut self, before: &'static [u8], after: &'static [u8]) -> JsonBody {
        self.parts
            .push_front(Part::Json(Bytes::from_static(before)));
        self.parts.push_back(Part::Json(Bytes::from_static(after)));
        self.remaining += (before.len() + after.len()) as u64;
        self
    }

    /// Bytes still to send.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The next piece of JSON, at most about [`CHUNK`] bytes; `None` at the end.
    pub fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            let part = self.parts.front_mut()?;
            let chunk = match part {
                Part::Json(json) => {
                    let json = json.clone();
                    self.parts.pop_front();
                    json
                }
                Part::Text { bytes, at } => {
                    let mut out = Vec::with_capacity(CHUNK + 8);
                    *at += push_escaped(&mut out, &bytes[*at..], CHUNK);
                    if *at >= bytes.len() {
                        self.parts.pop_front();
                    }
                    Bytes::from(out)
                }
                Part::Base64 { bytes, at } => {
                    let end = bytes.len().min(*at + BASE64_CHUNK);
                    let out = BASE64.encode(&bytes[*at..end]);
                    *at = end;
                    if *at >= bytes.len() {
                        self.parts.pop_front();
                    }
                    Bytes::from(out)
                }
            };
            if !chunk.is_empty() {
                self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
                return Some(chunk);
            }
        }
    }

    /// The whole document at once (tests, and answers small enough not to matter).
    #[cfg(test)]
    pub fn to_vec(mut self) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(chunk) = self.next_chunk() {
            all.extend_from_slice(&chunk);
        }
        all
    }
}

impl HttpBody for JsonBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(
            self.get_mut()
                .next_chunk()
                .map(|chunk| Ok(Frame::data(chunk))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

fn part_len(part: &Part) -> u64 {
    match part {
        Part::Json(json) => json.len() as u64,
        Part::Text { bytes, at } => escaped_len(&bytes[*at..]),
        Part::Base64 { bytes, at } => (bytes.len() - at).div_ceil(3) as u64 * 4,
    }
}

/// The escape for `character` inside a JSON string, if it needs one (serde_json's choices).
fn escape(character: char) -> Option<&'static str> {
    const CONTROLS: [&str; 32] = [
        "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007",
        "\\b", "\\t", "\\n", "\\u000b", "\\f", "\\r", "\\u000e", "\\u000f", "\\u0010", "\\u0011",
        "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017", "\\u0018", "\\u0019",
        "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f",
    ];
    match character {
        '"' => Some("\\\""),
        '\\' => Some("\\\\"),
        control if (control as u32) < 0x20 => Some(CONTROLS[control as usize]),
        _ => None,
    }
}

const REPLACEMENT: &str = "\u{fffd}";

/// Bytes of `bytes` written as the inside of a JSON string.
fn escaped_len(bytes: &[u8]) -> u64 {
    let mut len = 0u64;
    for chunk in bytes.utf8_chunks() {
        for character in chunk.valid().chars() {
            len += escape(character).map_or(character.len_utf8(), str::len) as u64;
        }
        if !chunk.invalid().is_empty() {
            len += REPLACEMENT.len() as u64;
        }
    }
    len
}

/// Append `bytes` written as the inside of a JSON string to `out`, stopping at a character
/// boundary once `out` holds `limit` bytes or more; how many bytes of `bytes` were used.
fn push_escaped(out: &mut Vec<u8>, bytes: &[u8], limit: usize) -> usize {
    let mut used = 0;
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        let mut plain_from = 0;
        for (at, character) in valid.char_indices() {
            if out.len() + (at - plain_from) >= limit {
                out.extend_from_slice(&valid.as_bytes()[plain_from..at]);
                return used + at;
            }
            if let Some(escaped) = escape(character) {
                out.extend_from_slice(&valid.as_bytes()[plain_from..at]);
                out.extend_from_slice(escaped.as_bytes());
                plain_from = at + 1;
            }
        }
        out.extend_from_slice(&valid.as_bytes()[plain_from..]);
        used += valid.len();
        if !chunk.invalid().is_empty() {
            out.extend_from_slice(REPLACEMENT.as_bytes());
            used += chunk.invalid().len();
        }
        if out.len() >= limit {
            return used;
        }
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// Every byte value, every escape, multi-byte characters and invalid sequences, split across
    /// chunk boundaries: the streamed document is exactly serde_json's for the lossy text.
    #[test]
    fn streamed_text_is_what_serde_json_writes() {
        let mut bytes: Vec<u8> = (0..=255u8).collect();
        bytes.extend_from_slice("é😀\"\\\u{2028}".as_bytes());
        bytes.extend_from_slice(b"\xf0\x9f\x98"); // a truncated emoji
        bytes.extend_from_slice(b"ok\xc3(\xed\xa0\x80end");
        let big: Vec<u8> = bytes.iter().copied().cycle().take(3 * CHUNK + 17).collect();
        for sample in [bytes.clone(), big, Vec::new(), b"\x01".repeat(CHUNK + 1)] {
            let text = Bytes::from(sample.clone());
            let body = JsonObject::new()
                .text("output", text.clone())
                .value("status", "success")
                .text("stdout", text)
                .value("exit_code", Option::<i32>::None)
                .finish();
            let declared = body.size_hint().exact().unwrap();
            let streamed = body.to_vec();
            assert_eq!(streamed.len() as u64, declared);
            let lossy = String::from_utf8_lossy(&sample);
            let expected = serde_json::to_vec(&json!({
                "output": lossy, "status": "success", "stdout": lossy, "exit_code": null
            }))
            .unwrap();
            let parsed: Value = serde_json::from_slice(&streamed).unwrap();
            assert_eq!(parsed, serde_json::from_slice::<Value>(&expected).unwrap());
            assert_eq!(streamed.len(), expected.len(), "same escapes as serde_json");
        }
    }

    /// Nested objects, arrays and base64 strings are what serde_json writes for the same value,
    /// and the declared length is exact; base64 pieces join into one valid string.
    #[test]
    fn nested_objects_arrays_and_base64_are_serde_json_s() {
        let big: Vec<u8> = (0..=255u8).cycle().take(3 * BASE64_CHUNK + 2).collect();
        for bytes in [Vec::new(), b"a".to_vec(), b"ab".to_vec(), big] {
            let file = |name: &str| {
                JsonObject::new()
                    .value("name", name)
                    .base64("content_base64", Bytes::from(bytes.clone()))
            };
            let body = JsonObject::new()
                .value("status", "ok")
                .object(
                    "artifacts",
                    JsonObject::new()
                        .array("files", vec![file("a.png"), file("b.bin")])
                        .array("skipped", Vec::new())
                        .value("truncated", false),
                )
                .text("stdout", Bytes::from_static(b"line\n"))
                .finish()
                .framed(b"data: ", b"\n\n");
            let declared = body.size_hint().exact().unwrap();
            let held = body.held_bytes();
            let streamed = body.to_vec();
            assert_eq!(streamed.len() as u64, declared);
            assert!(held < bytes.len() as u64 * 2 + 200, "{held}");
            let json = streamed
                .strip_prefix(b"data: ")
                .and_then(|rest| rest.strip_suffix(b"\n\n"))
                .unwrap();
            assert!(!json.contains(&b'\n'), "one line of JSON");
            let encoded = BASE64.encode(&bytes);
            let expected = json!({
                "status": "ok",
                "artifacts": {
                    "files": [
                        {"name": "a.png", "content_base64": encoded},
                        {"name": "b.bin", "content_base64": encoded}
                    ],
                    "skipped": [],
                    "truncated": false
                },
                "stdout": "line\n"
            });
            let parsed: Value = serde_json::from_slice(json).unwrap();
            assert_eq!(parsed, expected);
            assert_eq!(json.len(), serde_json::to_vec(&expected).unwrap().len());
        }
    }

    #[test]
    fn frames_are_bounded_and_the_text_is_held_once() {
        let text = Bytes::from(b"\x01".repeat(1024 * 1024));
        let mut body = JsonObject::new()
            .text("output", text.clone())
            .text("stdout", text)
            .finish();
        assert!(
            body.held_bytes() < 1024 * 1024 + 100,
            "{}",
            body.held_bytes()
        );
        let mut frames = 0;
        let mut total = 0u64;
        while let Some(chunk) = body.next_chunk() {
            assert!(chunk.len() <= CHUNK + 8, "{}", chunk.len());
            frames += 1;
            total += chunk.len() as u64;
            assert_eq!(body.size_hint().exact(), Some(body.remaining));
        }
        assert!(frames > 2 * 90, "{frames}");
        assert_eq!(
            total,
            2 * 6 * 1024 * 1024 + r#"{"output":"","stdout":""}"#.len() as u64
        );
        assert!(body.is_end_stream());
    }
}
