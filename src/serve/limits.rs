//! What the server holds at most, and for how long: connection places, what one client may hold,
//! the deadlines every connection lives under, and the defaults of the serve flags.
//!
//! A leaf: it imports nothing else of the crate, so `cli.rs` can take its flag ranges from here
//! without reaching into the connection loop, and every room of `serve` reads one definition.

use std::time::Duration;

/// Open connections at most, all clients together; more wait in the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 256;
/// Open connections at most from one client (an IPv4 address or an IPv6 /64, as for the rate
/// limit), unless `--max-connections-per-client` says otherwise, so one client cannot take every
/// connection and lock the others out. A browser opens at most 6 per server. Connections past it
/// get a 503 with `Retry-After` and are closed.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 32;
/// Refused connections (past a client's cap) being answered at once, at most, all clients
/// together. They hold none of the [`MAX_CONNECTIONS`]: a client opening connections as fast as
/// it can must not take the others' places. Past this budget a refused connection gets one
/// non-blocking attempt at its 503 and is closed at once.
pub const MAX_LINGERING_REFUSALS: usize = 16;
/// A client must send its request's headers within this long after connecting; otherwise the
/// connection is closed without an answer. The deadline covers the whole head, however slowly
/// it trickles in.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send its request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to read an answer once it is ready, unless `--send-timeout` says
/// otherwise. A client that has not taken the whole answer by then is disconnected (with a
/// reset, so the kernel drops what is still buffered for it too), which frees its connection
/// place and the answer's memory.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest `--send-timeout`, in seconds.
pub const MAX_SEND_TIMEOUT_SECS: u64 = 3600;
/// Bytes of answers one client may hold at once (runs in progress and answers not yet read
/// together), while the per-client caps are on: each run reserves room for the largest answer
/// it could give (twice `--max-output`, and room for the rest) before it waits for a slot, and
/// gives back what it did not need once its answer is ready. One answer is always allowed, even
/// when it alone could be larger. Past it, run requests get 503 with `Retry-After`.
pub const MAX_ANSWER_BYTES_PER_CLIENT: u64 = 64 * 1024 * 1024;

/// Requests allowed to wait for a run slot, unless `--queue` says otherwise.
pub const DEFAULT_QUEUE: usize = 16;
/// Run requests per minute per client, unless `--rate-limit` says otherwise.
pub const DEFAULT_RATE_LIMIT: u32 = 60;

/// The most bytes of stdin a run request may carry, unless `--max-stdin` says otherwise.
pub const DEFAULT_MAX_STDIN: usize = 1024 * 1024;
/// The largest `--max-stdin`.
pub const MAX_MAX_STDIN: u64 = 256 * 1024 * 1024;

/// The smallest request body limit. 5000 characters written as JSON escapes of surrogate pairs
/// (`\ud83d\ude00`, 12 bytes per character) are 60 000 bytes; the rest is room for `stdin`.
pub const MIN_BODY_LIMIT: usize = 64 * 1024;

/// Room in a request body for `files`: the most bytes a program can be given beside it (8 MiB,
/// `runner::job::MAX_INPUT_BYTES`, which a unit test of `api` holds this to) as base64, plus
/// 1 KiB for each of at most 32 files (`MAX_INPUT_FILES`) for its name and the JSON around it.
pub const FILES_ROOM: usize = 11_184_812 + 32 * 1024;

/// Bytes of request bodies the whole server holds while reading them, over every connection:
/// one body may be large (files), but 256 connections each sending a full one must not add up
/// to gigabytes. A body that would pass it is answered 503 with `Retry-After` at once.
pub const BODIES_IN_FLIGHT: usize = 128 * 1024 * 1024;

/// The body limit for a given code limit and stdin cap: room for the code ([`MIN_BODY_LIMIT`], or
/// 12 bytes per allowed character plus 4 KiB when that is larger), room for `max_stdin` bytes
/// of stdin as `stdin_base64` (4 bytes per 3), and [`FILES_ROOM`]. Text `stdin` or file
/// `content` full of characters JSON must escape can take more room than that: such input fits
/// as base64.
pub fn body_limit(max_code_chars: usize, max_stdin: usize) -> usize {
    max_code_chars
        .saturating_mul(12)
        .saturating_add(4096)
        .max(MIN_BODY_LIMIT)
        .saturating_add(max_stdin.div_ceil(3).saturating_mul(4))
        .saturating_add(FILES_ROOM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_limit_fits_5000_escaped_astral_characters() {
        assert_eq!(body_limit(5000, 0), 64 * 1024 + FILES_ROOM);
        let escaped = format!("{{\"code\": \"{}\"}}", "\\ud83d\\ude00".repeat(5000));
        assert!(escaped.len() < body_limit(5000, 0) - FILES_ROOM);
        assert_eq!(body_limit(100_000, 0), 1_204_096 + FILES_ROOM);
        // The default stdin cap as base64 on top: 12.1 MiB in all.
        assert_eq!(
            body_limit(5000, DEFAULT_MAX_STDIN),
            64 * 1024 + 1_398_104 + FILES_ROOM
        );
        assert_eq!(body_limit(5000, DEFAULT_MAX_STDIN), 12_681_220);
    }
}
