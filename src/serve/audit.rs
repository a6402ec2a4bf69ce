//! The audit log: one JSON line per execution request that carried code (runs, and code refused
//! before running), appended to a file or written to stdout.
//!
//! # Line format
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `time` | string | when the request arrived, RFC 3339 UTC with milliseconds |
//! | `client` | string | the peer IP address (a proxy in front shows up as itself), or `uid:N` on a unix socket |
//! | `endpoint` | string | `/run` or `/api/v1/runs` |
//! | `code_sha256` | string | SHA-256 (hex) of the `code` string as submitted, UTF-8 |
//! | `code_chars` | integer | its length in Unicode characters |
//! | `stdin_bytes` | integer | length of `stdin` in bytes |
//! | `status` | string | the run status (`ok`, `timeout`, ..., `rejected`, `interrupted`) |
//! | `http_status` | integer | the HTTP status answered (or that would have been, had the client stayed) |
//! | `exit_code`, `signal` | integer or null | as in the run report |
//! | `duration_ms` | integer | the program's wall-clock time |
//! | `queued_ms` | integer | time spent waiting for a run slot |
//! | `stdout_bytes`, `stderr_bytes` | integer | bytes the program wrote to each stream, beyond the cap included |
//! | `cancelled_by` | string, optional | `client` (disconnected) or `shutdown`, for `interrupted` |
//! | `error` | string, optional | the run's error message, e.g. the engine failure behind a 503 |
//! | `engine` | string, optional | the engine that ran it (a `--context` name, `default`, `podman`); absent when none took it |
//! | `code` | string, optional | the code itself, only with `--audit-code` |
//!
//! Requests refused before their code was read (bad token, rate limit, full queue, malformed
//! JSON) are not executions and are not logged here.
//!
//! # Writing never holds up a run
//!
//! A run only queues its line; one writer thread does the writing. A destination that does not
//! keep up (stdout into a pipe nobody reads, a stalled disk) must not stop runs from answering,
//! and an unbounded queue would grow until the server runs out of memory. So the queue holds at
//! most [`QUEUE_BYTES`]; a line that does not fit is dropped and counted, and the count goes to
//! stderr: when the writer catches up, every [`DROP_REPORT_INTERVAL`] while lines keep being
//! dropped, and at shutdown (which closes the queue and gives the writer thread [`FINISH_TIMEOUT`]
//! to write what is in it and end). An
//! audit log that must be complete belongs in a file on a disk that keeps up. A line that
//! cannot be written (an I/O error) is reported on stderr too.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::sanitize;
use crate::sync::lock;

/// Bytes of audit lines waiting for the writer at most (a line is a few hundred bytes, more with
/// `--audit-code`). A line is always taken when the queue is empty, however long it is.
pub const QUEUE_BYTES: usize = 1024 * 1024;
/// While lines are being dropped, how often the count is reported on stderr.
pub const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// At shutdown, how long the writer gets to write what is still queued.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(2);

/// One line of the audit log; see the module docs.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub time: String,
    pub client: String,
    pub endpoint: &'static str,
    pub code_sha256: String,
    pub code_chars: usize,
    pub stdin_bytes: usize,
    pub status: &'static str,
    pub http_status: u16,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration_ms: u64,
    pub queued_ms: u64,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl AuditEntry {
    /// This entry, saying which engine ran the run.
    pub fn ran_on(self, engine: Option<String>) -> AuditEntry {
        AuditEntry { engine, ..self }
    }
}

/// Where audit lines go: a bounded queue in front of a writer thread.
pub struct AuditLog {
    /// `None` once [`AuditLog::finish`] closed the queue.
    queue: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    /// The writer thread, until it has ended and been joined.
    writer: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
    include_code: bool,
}

/// Shared between the runs that queue lines, the writer thread and the reports.
#[derive(Debug)]
struct Counters {
    /// Where the lines go, for messages: the path, or `standard output`.
    destination: String,
    queued_bytes: AtomicUsize,
    queued_lines: AtomicUsize,
    /// Dropped lines not reported yet.
    dropped_unreported: AtomicU64,
    dropped_total: AtomicU64,
}

impl Counters {
    /// Say how many lines were dropped since the last report, if any were.
    fn report_drops(&self) {
        let dropped = self.dropped_unreported.swap(0, Ordering::SeqCst);
        if dropped > 0 {
            say!(
                "audit log: {dropped} line(s) dropped ({} in all): {} did not keep up and its \
                 queue ({} KiB) was full",
                self.dropped_total.load(Ordering::SeqCst),
                self.destination,
                QUEUE_BYTES / 1024
            );
        }
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("destination", &self.counters.destination)
            .field("include_code", &self.include_code)
            .finish()
    }
}

impl AuditLog {
    /// Open `path` for appending (created with mode 0600 if missing), or stdout for `-`, and
    /// start the writer thread.
    pub fn open(path: &Path, include_code: bool) -> anyhow::Result<AuditLog> {
        if path == Path::new("-") {
            return AuditLog::with_sink(
                Box::new(std::io::stdout()),
                "standard output".to_owned(),
                include_code,
            );
        }
        use std::os::unix::fs::OpenOptionsExt;
        let file: File = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .with_context(|| {
                format!(
                    "cannot open the audit log {} for appending",
                    sanitize::path(path)
                )
            })?;
        AuditLog::with_sink(Box::new(file), sanitize::path(path), include_code)
    }

    /// An audit log writing to `sink` on its own thread.
    fn with_sink(
        mut sink: Box<dyn Write + Send>,
        destination: String,
        include_code: bool,
    ) -> anyhow::Result<AuditLog> {
        let counters = Arc::new(Counters {
            destination,
            queued_bytes: AtomicUsize::new(0),
            queued_lines: AtomicUsize::new(0),
            dropped_unreported: AtomicU64::new(0),
            dropped_total: AtomicU64::new(0),
        });
        let (queue, lines) = mpsc::channel::<Vec<u8>>();
        let shared = counters.clone();
        let writer = std::thread::Builder::new()
            .name("safe-exec-audit".to_owned())
            .spawn(move || {
                for line in lines {
                    // One write per line: with O_APPEND, lines never interleave with another
                    // process appending to the same file.
                    let written = sink.write_all(&line).and_then(|()| sink.flush());
                    shared.queued_bytes.fetch_sub(line.len(), Ordering::SeqCst);
                    shared.queued_lines.fetch_sub(1, Ordering::SeqCst);
                    if let Err(error) = written {
                        say!(
                            "cannot write to the audit log {}: {error}",
                            shared.destination
                        );
                    }
                    shared.report_drops();
                }
            })
            .context("cannot start the audit log's writer thread")?;
        Ok(AuditLog {
            queue: Mutex::new(Some(queue)),
            writer: Mutex::new(Some(writer)),
            counters,
            include_code,
        })
    }

    pub fn include_code(&self) -> bool {
        self.include_code
    }

    /// Queue one line for the writer, or drop and count it when the queue is full (or closed,
    /// after [`AuditLog::finish`]). Never blocks on the destination, so it is safe anywhere, the
    /// async runtime included.
    pub fn write(&self, entry: &AuditEntry) {
        let mut line = match serde_json::to_vec(entry) {
            Ok(line) => line,
            Err(error) => {
                say!("cannot encode an audit line: {error}");
                return;
            }
        };
        line.push(b'\n');
        let len = line.len();
        let counters = &self.counters;
        let admitted = counters
            .queued_bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |queued| {
                (queued == 0 || queued + len <= QUEUE_BYTES).then_some(queued + len)
            })
            .is_ok();
        if admitted {
            counters.queued_lines.fetch_add(1, Ordering::SeqCst);
            let sent = match lock(&self.queue).as_ref() {
                Some(queue) => queue.send(line).is_ok(),
                None => false,
            };
            if sent {
                return;
            }
            // The queue is closed, or the writer thread is gone (it panicked): nothing will be
            // written any more.
            counters.queued_bytes.fetch_sub(len, Ordering::SeqCst);
            counters.queued_lines.fetch_sub(1, Ordering::SeqCst);
        }
        counters.dropped_unreported.fetch_add(1, Ordering::SeqCst);
        counters.dropped_total.fetch_add(1, Ordering::SeqCst);
    }

    /// Report lines dropped since the last report (called every [`DROP_REPORT_INTERVAL`]).
    pub fn report_drops(&self) {
        self.counters.report_drops();
    }

    /// Lines dropped since the server started.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped_total.load(Ordering::SeqCst)
    }

    /// At shutdown: close the queue (lines written after this are dropped and counted), give
    /// the writer thread up to `within` to write what is queued and end, join it, then report
    /// what was dropped or is still unwritten. Returns the number of lines left unwritten. A
    /// writer still blocked on its destination after `within` is left behind (it cannot be
    /// interrupted); calling this again waits for it again.
    pub async fn finish(&self, within: Duration) -> usize {
        // The writer ends once it has taken every queued line and the queue is closed.
        drop(lock(&self.queue).take());
        let until = Instant::now() + within;
        loop {
            let ended = lock(&self.writer)
                .as_ref()
                .is_none_or(JoinHandle::is_finished);
            if ended || Instant::now() >= until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let ended = lock(&self.writer).take_if(|writer| writer.is_finished());
        if let Some(writer) = ended {
            if writer.join().is_err() {
                say!("audit log: the writer thread failed");
            }
        }
        self.counters.report_drops();
        let unwritten = self.counters.queued_lines.load(Ordering::SeqCst);
        if unwritten > 0 {
            say!(
                "audit log: {unwritten} queued line(s) not written: {} did not take them within {} s",
                self.counters.destination,
                within.as_secs_f64()
            );
        }
        let dropped = self.dropped();
        if dropped > 0 {
            say!("audit log: {dropped} line(s) dropped in all");
        }
        unwritten
    }
}

/// Hex SHA-256 of `code`.
pub fn code_hash(code: &str) -> String {
    Sha256::digest(code.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `2026-03-01T12:34:56.789Z`: RFC 3339, UTC, always with milliseconds.
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap_day = SystemTime::UNIX_EPOCH + Duration::from_millis(951_782_400_123);
        assert_eq!(rfc3339(leap_day), "2000-02-29T00:00:00.123Z");
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_599);
        assert_eq!(rfc3339(later), "2025-12-31T23:59:59.000Z");
    }

    #[test]
    fn code_hash_is_hex_sha256() {
        assert_eq!(
            code_hash(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    fn entry(code: Option<String>) -> AuditEntry {
        AuditEntry {
            time: rfc3339(SystemTime::now()),
            client: "127.0.0.1".into(),
            endpoint: "/run",
            code_sha256: code_hash("print(1)"),
            code_chars: 8,
            stdin_bytes: 0,
            status: "ok",
            http_status: 200,
            exit_code: Some(0),
            signal: None,
            duration_ms: 5,
            queued_ms: 0,
            stdout_bytes: 2,
            stderr_bytes: 0,
            cancelled_by: None,
            error: None,
            engine: None,
            code,
        }
    }

    #[tokio::test]
    async fn lines_are_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, false).unwrap();
        log.write(&entry(None));
        log.write(&entry(None));
        assert_eq!(log.finish(Duration::from_secs(10)).await, 0);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["status"], "ok");
        assert!(line.get("code").is_none());
        assert_eq!(log.dropped(), 0);
    }

    /// Shutdown does not just wait for the queue to look empty: it closes it and joins the
    /// writer thread, so every queued line is written before it returns, and a line that comes
    /// later is counted as dropped rather than lost without a word.
    #[tokio::test]
    async fn finish_closes_the_queue_and_joins_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, false).unwrap();
        for _ in 0..100 {
            log.write(&entry(None));
        }
        assert_eq!(log.finish(Duration::from_secs(10)).await, 0);
        assert!(lock(&log.writer).is_none(), "the writer was not joined");
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 100);
        log.write(&entry(None));
        assert_eq!(log.dropped(), 1);
        assert_eq!(log.finish(Duration::from_secs(1)).await, 0);
    }

    /// A sink that takes nothing until it is opened, like a pipe nobody reads.
    struct Gate {
        open: mpsc::Receiver<()>,
        written: Arc<std::sync::Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            // Blocks until the gate opens (or its sender is gone).
            let _ = self.open.recv();
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_stalled_destination_drops_and_counts_lines_instead_of_blocking() {
        let (open, gate) = mpsc::channel();
        let written = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = Gate {
            open: gate,
            written: written.clone(),
        };
        let log = AuditLog::with_sink(Box::new(sink), "test sink".to_owned(), true).unwrap();
        // 100 KiB lines: the writer holds one, the queue takes ten more.
        let big = entry(Some("#".repeat(100 * 1024)));
        let started = Instant::now();
        for _ in 0..40 {
            log.write(&big);
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "writing blocked"
        );
        let dropped = log.dropped();
        assert!((20..=35).contains(&dropped), "{dropped} dropped");
        // Still stalled at shutdown: the queued lines are reported as unwritten.
        let unwritten = log.finish(Duration::from_millis(200)).await;
        assert!(unwritten > 0);
        // Once the destination takes lines again, everything that was queued is written.
        drop(open);
        assert_eq!(log.finish(Duration::from_secs(10)).await, 0);
        let lines = written
            .lock()
            .unwrap()
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        assert_eq!(lines as u64 + dropped, 40);
    }
}
