//! The launcher's end frame: its signed last word on how the program ended.
//!
//! `runner_image/launch.py` writes it once the program has ended or a limit stopped it: the
//! ending (exit code, signal, or stopped by the launcher and why), the CPU and wall-clock time it
//! measured, the cgroup's OOM-kill count and how many bytes the program wrote, and an
//! HMAC-SHA256 of those words under a per-run key that only we and the launcher know. The program
//! cannot write frames at all (it holds only pipes into the launcher); the MAC is the second lock
//! on that door, and [`verify`] also refuses any combination of words the launcher never writes.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use crate::report::Stream;

/// How the program ended, in the launcher's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramEnd {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it (not the launcher: the launcher never signals it).
    Signalled(i32),
    /// The launcher ended the run at a limit while the program was still running.
    Stopped(Stop),
}

/// Which limit made the launcher end a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// CPU time passed the time limit.
    Cpu,
    /// Wall-clock time passed the backstop.
    Wall,
    /// The stream passed the output cap.
    Output(Stream),
}

/// A verified end report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LauncherReport {
    pub ending: ProgramEnd,
    /// CPU time of everything in the container from the program's fork to its end.
    pub cpu: Duration,
    /// Wall-clock time from the program's fork to its end.
    pub wall: Duration,
    /// OOM kills the kernel counted in the container's memory cgroup while the program ran.
    pub oom_kills: u64,
    /// Bytes the program wrote to each stream (past the cap included, as far as they were read).
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
}

/// Why an end frame was not believed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReportError {
    #[error("its signature does not match the run's key")]
    BadSignature,
    #[error("it is not in the launcher's format ({0})")]
    Malformed(&'static str),
}

/// A fresh key: 128 bits from the kernel's generator, as 32 lowercase hex digits.
pub fn new_key() -> String {
    let mut bytes = [0u8; 16];
    // The kernel's generator does not fail once the system has booted; if it ever did, a key
    // of zeros would only weaken the second lock (the program still cannot write frames).
    let _ = getrandom::fill(&mut bytes);
    hex::encode(bytes)
}

fn mac(key: &str) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC accepts any key length")
}

/// Check an end frame's payload under `key` and read it.
pub fn verify(payload: &[u8], key: &str) -> Result<LauncherReport, ReportError> {
    let text = std::str::from_utf8(payload).map_err(|_| ReportError::Malformed("not UTF-8"))?;
    let (words, signature) = text
        .rsplit_once(' ')
        .ok_or(ReportError::Malformed("no signature"))?;
    let signature = hex::decode(signature).map_err(|_| ReportError::BadSignature)?;
    let mut check = mac(key);
    check.update(words.as_bytes());
    check
        .verify_slice(&signature)
        .map_err(|_| ReportError::BadSignature)?;
    parse_words(words)
}

fn parse_words(words: &str) -> Result<LauncherReport, ReportError> {
    let fields: Vec<&str> = words.split(' ').collect();
    let [how, number, "stop", stop, "cpu_ms", cpu, "wall_ms", wall, "oom", oom, "stdout_bytes", stdout, "stderr_bytes", stderr] =
        fields[..]
    else {
        return Err(ReportError::Malformed("unexpected words"));
    };
    let count = |text: &str| {
        text.parse::<u64>()
            .map_err(|_| ReportError::Malformed("a count is not a number"))
    };
    let number: i32 = number
        .parse()
        .map_err(|_| ReportError::Malformed("the ending's number is not a number"))?;
    let ending = match (how, stop) {
        ("exit", "none") if (0..=255).contains(&number) => ProgramEnd::Exited(number),
        ("signal", "none") if (1..=64).contains(&number) => ProgramEnd::Signalled(number),
        ("running", reason) if number == 0 => ProgramEnd::Stopped(match reason {
            "cpu" => Stop::Cpu,
            "wall" => Stop::Wall,
            "stdout" => Stop::Output(Stream::Stdout),
            "stderr" => Stop::Output(Stream::Stderr),
            _ => return Err(ReportError::Malformed("unknown stop reason")),
        }),
        _ => return Err(ReportError::Malformed("impossible ending")),
    };
    Ok(LauncherReport {
        ending,
        cpu: Duration::from_millis(count(cpu)?),
        wall: Duration::from_millis(count(wall)?),
        oom_kills: count(oom)?,
        stdout_bytes: count(stdout)?,
        stderr_bytes: count(stderr)?,
    })
}

/// An end frame's payload as the launcher writes it, signed with `key`.
#[cfg(test)]
pub fn signed(words: &str, key: &str) -> Vec<u8> {
    let mut signer = mac(key);
    signer.update(words.as_bytes());
    format!("{words} {}", hex::encode(signer.finalize().into_bytes())).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "00112233445566778899aabbccddeeff";
    const PLAIN: &str = "exit 3 stop none cpu_ms 12 wall_ms 15 oom 0 stdout_bytes 4 stderr_bytes 0";

    #[test]
    fn the_signature_matches_python_s_hmac() {
        // python3 -c 'import hmac; print(hmac.new(b"k", b"m", "sha256").hexdigest())'
        assert_eq!(
            signed("m", "k"),
            b"m b60090e3052297aeb5a080889ce2fc4bca957e756faeb4df7d31800ca1e771ec"
        );
    }

    #[test]
    fn a_signed_report_is_read() {
        let report = verify(&signed(PLAIN, KEY), KEY).unwrap();
        assert_eq!(
            report,
            LauncherReport {
                ending: ProgramEnd::Exited(3),
                cpu: Duration::from_millis(12),
                wall: Duration::from_millis(15),
                oom_kills: 0,
                stdout_bytes: 4,
                stderr_bytes: 0,
            }
        );
        let stopped =
            "running 0 stop stderr cpu_ms 1 wall_ms 2 oom 0 stdout_bytes 0 stderr_bytes 9";
        assert_eq!(
            verify(&signed(stopped, KEY), KEY).unwrap().ending,
            ProgramEnd::Stopped(Stop::Output(Stream::Stderr))
        );
    }

    #[test]
    fn another_key_or_a_changed_word_is_refused() {
        let other = "ffffffffffffffffffffffffffffffff";
        assert_eq!(
            verify(&signed(PLAIN, other), KEY),
            Err(ReportError::BadSignature)
        );
        let reworded = String::from_utf8(signed(PLAIN, KEY))
            .unwrap()
            .replacen("exit 3", "exit 0", 1);
        assert_eq!(
            verify(reworded.as_bytes(), KEY),
            Err(ReportError::BadSignature)
        );
        assert_eq!(
            verify(PLAIN.as_bytes(), KEY),
            Err(ReportError::BadSignature)
        );
    }

    #[test]
    fn only_combinations_the_launcher_writes_count() {
        for words in [
            "exit 256 stop none cpu_ms 0 wall_ms 0 oom 0 stdout_bytes 0 stderr_bytes 0",
            "signal 0 stop none cpu_ms 0 wall_ms 0 oom 0 stdout_bytes 0 stderr_bytes 0",
            "exit 0 stop cpu cpu_ms 0 wall_ms 0 oom 0 stdout_bytes 0 stderr_bytes 0",
            "running 9 stop cpu cpu_ms 0 wall_ms 0 oom 0 stdout_bytes 0 stderr_bytes 0",
            "running 0 stop none cpu_ms 0 wall_ms 0 oom 0 stdout_bytes 0 stderr_bytes 0",
            "running 0 stop disk cpu_ms 0 wall_ms 0 oom 0 stdout_bytes 0 stderr_bytes 0",
            "exit 0 stop none cpu_ms -1 wall_ms 0 oom 0 stdout_bytes 0 stderr_bytes 0",
            "exit 0 stop none cpu_ms 0 wall_ms 0 oom 0",
        ] {
            assert!(
                matches!(
                    verify(&signed(words, KEY), KEY),
                    Err(ReportError::Malformed(_))
                ),
                "{words}"
            );
        }
    }

    #[test]
    fn keys_are_32_hex_digits_and_differ() {
        let first = new_key();
        assert_eq!(first.len(), 32);
        assert!(first.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
        assert_ne!(first, new_key());
    }
}
