//! The launcher's trailer: its signed last word on how the program ended.
//!
//! The container's exit code cannot tell `sys.exit(137)` from SIGKILL, nor say whether the kernel
//! OOM-killed a child. So `runner_image/launch.py` waits for the program and writes one line to
//! stderr (see [`TRAILER_PREFIX`]): the ending, the cgroup's OOM-kill count, whether its watchdog
//! fired, and an HMAC-SHA256 of those words under a per-run key that only we and the launcher
//! know. The program shares the stderr pipe, so it can read the real line or print lookalikes; it
//! cannot make a valid line for an ending that did not happen. [`TrailerScanner`] takes valid
//! lines out of the stream and leaves everything else as output.

use std::fs::File;
use std::io::Read;

use sha2::{Digest, Sha256};

use crate::sandbox::TRAILER_PREFIX;

/// The words of a real trailer fit easily; a longer "trailer" is output.
const MAX_TRAILER_LINE: usize = 160;
const SIGKILL: i32 = 9;

/// How the program ended, in the launcher's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramEnd {
    Exited(i32),
    Signalled(i32),
}

/// A verified trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LauncherReport {
    pub ending: ProgramEnd,
    /// OOM kills the kernel counted in the container's memory cgroup while the program ran.
    pub oom_kills: u64,
    /// The launcher's own watchdog (our deadline, enforced inside) killed the program.
    pub watchdog: bool,
}

impl LauncherReport {
    /// The exit code init gives the container for this ending; a trailer that disagrees with the
    /// engine's record is not believed.
    pub fn container_exit_code(&self) -> i32 {
        match self.ending {
            ProgramEnd::Exited(code) => code,
            ProgramEnd::Signalled(signal) => 128 + signal,
        }
    }

    /// Killed by the watchdog, whoever's clock noticed first.
    pub fn timed_out(&self) -> bool {
        self.watchdog && self.ending == ProgramEnd::Signalled(SIGKILL)
    }
}

/// A fresh key: 128 random bits as 32 hex digits, from the kernel's generator; if that is
/// unreadable, from std's randomly keyed SipHash (still unknown to the program).
pub fn new_key() -> String {
    let mut bytes = [0u8; 16];
    let from_kernel =
        File::open("/dev/urandom").and_then(|mut random| random.read_exact(&mut bytes));
    if from_kernel.is_err() {
        use std::hash::{BuildHasher, Hasher};
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        for (index, half) in bytes.chunks_mut(8).enumerate() {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_usize(index);
            hasher.write_u128(now);
            half.copy_from_slice(&hasher.finish().to_le_bytes());
        }
    }
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|k| k ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The line after the prefix, `exit 137 oom 0 watchdog 0 <mac>`, checked under `key`.
fn verify(line: &[u8], key: &str) -> Option<LauncherReport> {
    let text = std::str::from_utf8(line).ok()?;
    let (words, mac) = text.rsplit_once(' ')?;
    // Comparing hex strings of a MAC the program cannot compute: no timing to protect.
    if hex(&hmac_sha256(key.as_bytes(), words.as_bytes())) != mac {
        return None;
    }
    let fields: Vec<&str> = words.split(' ').collect();
    let [how, number, "oom", oom_kills, "watchdog", watchdog] = fields[..] else {
        return None;
    };
    let number: i32 = number.parse().ok()?;
    let ending = match how {
        "exit" if (0..=255).contains(&number) => ProgramEnd::Exited(number),
        "signal" if (1..=64).contains(&number) => ProgramEnd::Signalled(number),
        _ => return None,
    };
    Some(LauncherReport {
        ending,
        oom_kills: oom_kills.parse().ok()?,
        watchdog: match watchdog {
            "0" => false,
            "1" => true,
            _ => return None,
        },
    })
}

/// Takes the launcher's trailer out of a byte stream, wherever it falls, and passes everything
/// else through in order. Bytes that might start a trailer are held back until the rest of the
/// line tells; lookalikes without a valid MAC are output.
pub struct TrailerScanner {
    key: String,
    pending: Vec<u8>,
    found: Option<LauncherReport>,
}

impl TrailerScanner {
    pub fn new(key: &str) -> TrailerScanner {
        TrailerScanner {
            key: key.to_owned(),
            pending: Vec::new(),
            found: None,
        }
    }

    /// Take `bytes`; append to `output` what is certainly output.
    pub fn feed(&mut self, bytes: &[u8], output: &mut Vec<u8>) {
        if self.found.is_some() {
            output.extend_from_slice(bytes);
            return;
        }
        self.pending.extend_from_slice(bytes);
        let pending = std::mem::take(&mut self.pending);
        let mut from = 0;
        loop {
            let rest = &pending[from..];
            let Some(start) = find(rest, TRAILER_PREFIX) else {
                let keep = partial_match_len(rest, TRAILER_PREFIX);
                output.extend_from_slice(&rest[..rest.len() - keep]);
                self.pending = rest[rest.len() - keep..].to_vec();
                return;
            };
            output.extend_from_slice(&rest[..start]);
            let line = &rest[start + TRAILER_PREFIX.len()..];
            let Some(end) = line.iter().position(|&byte| byte == b'\n') else {
                if line.len() > MAX_TRAILER_LINE {
                    // Too long to be ours: output, and look for another one after it.
                    output.extend_from_slice(&rest[start..start + TRAILER_PREFIX.len()]);
                    from += start + TRAILER_PREFIX.len();
                    continue;
                }
                self.pending = rest[start..].to_vec();
                return;
            };
            let whole = start + TRAILER_PREFIX.len() + end + 1;
            match (end <= MAX_TRAILER_LINE)
                .then(|| verify(&line[..end], &self.key))
                .flatten()
            {
                Some(report) => {
                    self.found = Some(report);
                    output.extend_from_slice(&rest[whole..]);
                    return;
                }
                None => {
                    output.extend_from_slice(&rest[start..whole]);
                    from += whole;
                }
            }
        }
    }

    /// The trailer, once it has been seen.
    pub fn found(&self) -> Option<LauncherReport> {
        self.found
    }

    /// The stream ended: whatever was held back was output after all. Returns the trailer.
    pub fn finish(&mut self, output: &mut Vec<u8>) -> Option<LauncherReport> {
        output.append(&mut self.pending);
        self.found
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while let Some(offset) = haystack[from..].iter().position(|&byte| byte == first) {
        let at = from + offset;
        if haystack[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The length of the longest tail of `haystack` that is a proper prefix of `needle`.
fn partial_match_len(haystack: &[u8], needle: &[u8]) -> usize {
    let longest = haystack.len().min(needle.len().saturating_sub(1));
    (1..=longest)
        .rev()
        .find(|&len| needle.starts_with(&haystack[haystack.len() - len..]))
        .unwrap_or(0)
}

/// A trailer line as the launcher writes it, signed with `key`.
#[cfg(test)]
pub(crate) fn signed_line(words: &str, key: &str) -> Vec<u8> {
    let mac = hex(&hmac_sha256(key.as_bytes(), words.as_bytes()));
    let mut bytes = TRAILER_PREFIX.to_vec();
    bytes.extend_from_slice(format!("{words} {mac}\n").as_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "00112233445566778899aabbccddeeff";

    fn scan(chunks: &[&[u8]]) -> (Vec<u8>, Option<LauncherReport>) {
        let mut scanner = TrailerScanner::new(KEY);
        let mut output = Vec::new();
        for chunk in chunks {
            scanner.feed(chunk, &mut output);
        }
        let found = scanner.finish(&mut output);
        (output, found)
    }

    fn trailer(words: &str, key: &str) -> Vec<u8> {
        signed_line(words, key)
    }

    #[test]
    fn hmac_matches_python_s() {
        // python3 -c 'import hmac; print(hmac.new(b"k", b"m", "sha256").hexdigest())'
        assert_eq!(
            hex(&hmac_sha256(b"k", b"m")),
            "b60090e3052297aeb5a080889ce2fc4bca957e756faeb4df7d31800ca1e771ec"
        );
    }

    #[test]
    fn the_trailer_is_taken_out_of_the_stream_however_it_is_split() {
        let mut stream = b"Traceback\n".to_vec();
        stream.extend(trailer("exit 137 oom 0 watchdog 0", KEY));
        stream.extend_from_slice(b"late child output");
        let expected = Some(LauncherReport {
            ending: ProgramEnd::Exited(137),
            oom_kills: 0,
            watchdog: false,
        });
        for split in 0..stream.len() {
            let (output, found) = scan(&[&stream[..split], &stream[split..]]);
            assert_eq!(output, b"Traceback\nlate child output", "split at {split}");
            assert_eq!(found, expected, "split at {split}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(
            scan(&bytes),
            (b"Traceback\nlate child output".to_vec(), expected)
        );
    }

    #[test]
    fn lookalikes_are_output_and_the_real_line_after_them_still_counts() {
        let forged = trailer(
            "exit 0 oom 0 watchdog 0",
            "ffffffffffffffffffffffffffffffff",
        );
        let unsigned = b"\0safe-exec:end exit 0 oom 0 watchdog 0\n".to_vec();
        let real = trailer("signal 9 oom 1 watchdog 0", KEY);
        let mut stream = forged.clone();
        stream.extend(&unsigned);
        stream.extend(&real);
        let (output, found) = scan(&[&stream]);
        assert_eq!(output, [forged, unsigned].concat());
        assert_eq!(
            found,
            Some(LauncherReport {
                ending: ProgramEnd::Signalled(9),
                oom_kills: 1,
                watchdog: false
            })
        );
    }

    #[test]
    fn partial_and_odd_streams_are_all_output() {
        let cut_short = &trailer("signal 9 oom 1 watchdog 0", KEY)[..30];
        assert_eq!(scan(&[cut_short]), (cut_short.to_vec(), None));
        let nul_heavy = b"\0\0\0\0x\0";
        assert_eq!(scan(&[nul_heavy]), (nul_heavy.to_vec(), None));
        let mut endless = TRAILER_PREFIX.to_vec();
        endless.extend(std::iter::repeat_n(b'x', 1000));
        assert_eq!(scan(&[&endless]), (endless.clone(), None));
    }

    #[test]
    fn only_well_formed_signed_words_count() {
        for words in [
            "exit 256 oom 0 watchdog 0",
            "signal 0 oom 0 watchdog 0",
            "exit 1 oom 0",
            "exit 1 oom -1 watchdog 0",
            "exit 1 oom 0 watchdog 2",
            "quit 1 oom 0 watchdog 0",
        ] {
            let line = trailer(words, KEY);
            assert_eq!(scan(&[&line]).1, None, "{words}");
        }
        let line = trailer("signal 9 oom 0 watchdog 1", KEY);
        let report = scan(&[&line]).1.unwrap();
        assert!(report.timed_out());
        assert_eq!(report.container_exit_code(), 137);
    }

    #[test]
    fn keys_are_32_hex_digits_and_differ() {
        let first = new_key();
        assert_eq!(first.len(), 32);
        assert!(first.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
        assert_ne!(first, new_key());
    }
}
