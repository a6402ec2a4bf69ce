//! The audit log: one JSON line per execution request that carried code (runs, and code refused
//! before running), appended to a file or written to stdout.
//!
//! # Line format
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `time` | string | when the request arrived, RFC 3339 UTC with milliseconds |
//! | `client` | string | the peer IP address (a proxy in front shows up as itself) |
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
//! | `code` | string, optional | the code itself, only with `--audit-code` |
//!
//! Requests refused before their code was read (bad token, rate limit, full queue, malformed
//! JSON) are not executions and are not logged here. Writing never blocks a request on a
//! failure: a line that cannot be written is reported on stderr.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::Context;
use serde::Serialize;
use sha2::{Digest, Sha256};

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
    pub code: Option<String>,
}

/// Where audit lines go.
pub struct AuditLog {
    sink: Mutex<Box<dyn Write + Send>>,
    path: PathBuf,
    include_code: bool,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("include_code", &self.include_code)
            .finish()
    }
}

impl AuditLog {
    /// Open `path` for appending (created with mode 0600 if missing), or stdout for `-`.
    pub fn open(path: &Path, include_code: bool) -> anyhow::Result<AuditLog> {
        let sink: Box<dyn Write + Send> = if path == Path::new("-") {
            Box::new(std::io::stdout())
        } else {
            use std::os::unix::fs::OpenOptionsExt;
            let file: File = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .with_context(|| {
                    format!("cannot open the audit log {} for appending", path.display())
                })?;
            Box::new(file)
        };
        Ok(AuditLog {
            sink: Mutex::new(sink),
            path: path.to_owned(),
            include_code,
        })
    }

    pub fn include_code(&self) -> bool {
        self.include_code
    }

    /// Append one line. Call it off the async runtime: it writes to a file.
    pub fn write(&self, entry: &AuditEntry) {
        let mut line = match serde_json::to_vec(entry) {
            Ok(line) => line,
            Err(error) => {
                say!("cannot encode an audit line: {error}");
                return;
            }
        };
        line.push(b'\n');
        let mut sink = self
            .sink
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // One write per line: with O_APPEND, lines from concurrent writers never interleave.
        if let Err(error) = sink.write_all(&line).and_then(|()| sink.flush()) {
            say!(
                "cannot write to the audit log {}: {error}",
                self.path.display()
            );
        }
    }
}

/// Hex SHA-256 of `code`.
pub fn code_hash(code: &str) -> String {
    Sha256::digest(code.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `2026-03-01T12:34:56.789Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
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

    #[test]
    fn lines_are_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, false).unwrap();
        let entry = AuditEntry {
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
            code: None,
        };
        log.write(&entry);
        log.write(&entry);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["status"], "ok");
        assert!(line.get("code").is_none());
    }
}
