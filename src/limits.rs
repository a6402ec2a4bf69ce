//! Validated resource limits for one run, with the documented defaults.
//!
//! The parsers here back the command-line flags (`--memory 128m`, `--timeout 2.5`) and any other
//! front end (suite files, HTTP), so a limit means the same thing everywhere. Nothing in this
//! module talks to docker; `sandbox::docker` turns a [`Limits`] into flags.

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The wall-clock backstop is this many times the time limit, plus [`WALL_TIMEOUT_SLACK`], unless
/// set: generous enough that a program waiting for a CPU its neighbours hold is not cut short.
pub const WALL_TIMEOUT_FACTOR: u32 = 2;
pub const WALL_TIMEOUT_SLACK: Duration = Duration::from_secs(1);
pub const DEFAULT_MEMORY_BYTES: u64 = 128 * MIB;
pub const DEFAULT_CPUS: f64 = 1.0;
pub const DEFAULT_PIDS: u32 = 64;
pub const DEFAULT_MAX_CODE_CHARS: usize = 5000;
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = MIB;

/// Docker refuses memory limits below 6 MiB.
pub const MIN_MEMORY_BYTES: u64 = 6 * MIB;
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
pub const MAX_PIDS: u32 = 32_768;
pub const MAX_CODE_CHARS: usize = 1_000_000;
pub const MAX_OUTPUT_BYTES: u64 = 1024 * MIB;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// The limits one run gets. Construct with [`Limits::default`] and [`Limits::with`]; every field
/// is already validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// The time limit: CPU time used by all of the program's processes together, counted from the
    /// program's start (as Kattis and DOMjudge judge), so a busy neighbour cannot make a program
    /// late. Container start-up is never part of it.
    pub timeout: Duration,
    /// The wall-clock backstop, counted from the program's start: ends a program that waits
    /// (sleeps, blocks on input) instead of computing. Default [`default_wall_timeout`].
    pub wall_timeout: Duration,
    /// Memory limit in bytes; swap is set to the same value, so no swap is added on top.
    pub memory_bytes: u64,
    /// CPU quota in cores.
    pub cpus: f64,
    /// Most processes and threads alive at once in the container.
    pub pids: u32,
    /// Most Unicode characters of source code accepted.
    pub max_code_chars: usize,
    /// Most bytes kept from each of stdout and stderr before the run is stopped.
    pub max_output_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: DEFAULT_TIMEOUT,
            wall_timeout: default_wall_timeout(DEFAULT_TIMEOUT),
            memory_bytes: DEFAULT_MEMORY_BYTES,
            cpus: DEFAULT_CPUS,
            pids: DEFAULT_PIDS,
            max_code_chars: DEFAULT_MAX_CODE_CHARS,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

/// Limits a user asked for explicitly; `None` keeps whatever the base (defaults, a suite) says.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LimitOverrides {
    pub timeout: Option<Duration>,
    pub wall_timeout: Option<Duration>,
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
    pub pids: Option<u32>,
    pub max_code_chars: Option<usize>,
    pub max_output_bytes: Option<u64>,
}

impl Limits {
    /// These limits with every override that is set applied on top. A new time limit without a
    /// wall-clock limit of its own brings the default backstop for it.
    pub fn with(self, overrides: &LimitOverrides) -> Limits {
        let timeout = overrides.timeout.unwrap_or(self.timeout);
        Limits {
            timeout,
            wall_timeout: match (overrides.wall_timeout, overrides.timeout) {
                (Some(wall), _) => wall,
                (None, Some(_)) => default_wall_timeout(timeout),
                (None, None) => self.wall_timeout,
            },
            memory_bytes: overrides.memory_bytes.unwrap_or(self.memory_bytes),
            cpus: overrides.cpus.unwrap_or(self.cpus),
            pids: overrides.pids.unwrap_or(self.pids),
            max_code_chars: overrides.max_code_chars.unwrap_or(self.max_code_chars),
            max_output_bytes: overrides.max_output_bytes.unwrap_or(self.max_output_bytes),
        }
    }

    /// The limits as reported in JSON (`limits` in the run report).
    pub fn applied(&self) -> AppliedLimits {
        AppliedLimits {
            timeout_secs: self.timeout.as_secs_f64(),
            wall_timeout_secs: self.wall_timeout.as_secs_f64(),
            memory_bytes: self.memory_bytes,
            cpus: self.cpus,
            pids: self.pids,
            max_code_chars: self.max_code_chars,
            max_output_bytes: self.max_output_bytes,
        }
    }
}

/// The `limits` object of the JSON report: what was applied to the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliedLimits {
    /// The time limit in seconds: CPU time of all the program's processes.
    pub timeout_secs: f64,
    /// The wall-clock backstop in seconds.
    pub wall_timeout_secs: f64,
    /// Memory (and memory+swap) limit in bytes.
    pub memory_bytes: u64,
    /// CPU quota in cores.
    pub cpus: f64,
    /// Process and thread limit.
    pub pids: u32,
    /// Source length limit in Unicode characters.
    pub max_code_chars: usize,
    /// Per-stream output cap in bytes.
    pub max_output_bytes: u64,
}

impl AppliedLimits {
    /// The limits these describe (a server's report read back by `run --server`). Values no
    /// [`Limits`] could hold (negative or not finite seconds) become the defaults'.
    pub fn to_limits(&self) -> Limits {
        let defaults = Limits::default();
        let secs =
            |secs: f64, default: Duration| Duration::try_from_secs_f64(secs).unwrap_or(default);
        Limits {
            timeout: secs(self.timeout_secs, defaults.timeout),
            wall_timeout: secs(self.wall_timeout_secs, defaults.wall_timeout),
            memory_bytes: self.memory_bytes,
            cpus: self.cpus,
            pids: self.pids,
            max_code_chars: self.max_code_chars,
            max_output_bytes: self.max_output_bytes,
        }
    }
}

/// The wall-clock backstop for time limit `timeout` when none is given:
/// [`WALL_TIMEOUT_FACTOR`] × `timeout` + [`WALL_TIMEOUT_SLACK`], at most [`MAX_TIMEOUT`].
pub fn default_wall_timeout(timeout: Duration) -> Duration {
    (timeout * WALL_TIMEOUT_FACTOR + WALL_TIMEOUT_SLACK).min(MAX_TIMEOUT)
}

/// Seconds as a positive decimal (`10`, `2.5`), at most a day.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds (try `10` or `2.5`)"))?;
    check_timeout_secs(secs).map_err(|reason| format!("`{text}`: {reason}"))
}

/// A time limit of `secs` seconds, however it was given (a flag, a suite file): more than 0, at
/// most [`MAX_TIMEOUT`]. The error is the reason, for the caller to prefix with what it checked.
pub fn check_timeout_secs(secs: f64) -> Result<Duration, String> {
    if !secs.is_finite() || secs <= 0.0 {
        return Err("the timeout must be more than 0 seconds".to_owned());
    }
    let timeout = Duration::from_secs_f64(secs);
    if timeout > MAX_TIMEOUT {
        return Err(format!(
            "the timeout can be at most {} seconds",
            MAX_TIMEOUT.as_secs()
        ));
    }
    Ok(timeout)
}

/// `mib` MiB in bytes, as suite files give sizes; `None` when that does not fit in a `u64`.
pub fn mib_to_bytes(mib: u64) -> Option<u64> {
    mib.checked_mul(MIB)
}

/// A size in bytes: a plain number, or with a suffix `k`, `m`, `g` (binary: 1k = 1024), with an
/// optional trailing `b`/`ib` (`128m`, `128MiB`, `1g`, `65536`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let without_b = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (number, unit) = match without_b.char_indices().last() {
        Some((at, 'k')) => (&without_b[..at], KIB),
        Some((at, 'm')) => (&without_b[..at], MIB),
        Some((at, 'g')) => (&without_b[..at], GIB),
        _ => (without_b, 1),
    };
    let value: u64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a size (try `128m`, `1g` or a number of bytes)"))?;
    value
        .checked_mul(unit)
        .ok_or_else(|| format!("`{text}` is too large"))
}

pub fn parse_memory(text: &str) -> Result<u64, String> {
    check_memory_bytes(parse_size(text)?).map_err(|reason| format!("`{text}`: {reason}"))
}

/// A memory limit of `bytes`, however it was given: at least [`MIN_MEMORY_BYTES`]. The error is
/// the reason.
pub fn check_memory_bytes(bytes: u64) -> Result<u64, String> {
    if bytes < MIN_MEMORY_BYTES {
        return Err("the memory limit must be at least 6m (Docker's minimum)".to_owned());
    }
    Ok(bytes)
}

pub fn parse_output_size(text: &str) -> Result<u64, String> {
    check_output_bytes(parse_size(text)?).map_err(|reason| format!("`{text}`: {reason}"))
}

/// A per-stream output cap of `bytes`, however it was given: 1 byte to [`MAX_OUTPUT_BYTES`]. The
/// error is the reason.
pub fn check_output_bytes(bytes: u64) -> Result<u64, String> {
    if bytes == 0 || bytes > MAX_OUTPUT_BYTES {
        return Err("the output cap must be between 1 byte and 1g".to_owned());
    }
    Ok(bytes)
}

pub fn parse_cpus(text: &str) -> Result<f64, String> {
    let cpus: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of CPUs (try `1` or `0.5`)"))?;
    if !cpus.is_finite() || !(0.01..=1024.0).contains(&cpus) {
        return Err(format!(
            "`{text}`: CPUs must be between 0.01 and the host's core count"
        ));
    }
    Ok(cpus)
}

pub fn parse_pids(text: &str) -> Result<u32, String> {
    let pids: u32 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number of processes"))?;
    // Python itself, the init process and the watchdog need a few.
    if !(8..=MAX_PIDS).contains(&pids) {
        return Err(format!(
            "`{text}`: the pids limit must be between 8 and {MAX_PIDS}"
        ));
    }
    Ok(pids)
}

pub fn parse_code_chars(text: &str) -> Result<usize, String> {
    let chars: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number of characters"))?;
    if !(1..=MAX_CODE_CHARS).contains(&chars) {
        return Err(format!(
            "`{text}`: the code limit must be between 1 and {MAX_CODE_CHARS} characters"
        ));
    }
    Ok(chars)
}

/// `134217728` → `128 MiB`, for messages.
pub fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= GIB && b % GIB == 0 => format!("{} GiB", b / GIB),
        b if b >= MIB && b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b >= KIB && b % KIB == 0 => format!("{} KiB", b / KIB),
        b => format!("{b} bytes"),
    }
}

/// `10s` → `10 s`, `2.5s` → `2.5 s`, for messages.
pub fn human_secs(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("{secs:.0} s")
    } else {
        format!("{} s", (secs * 1000.0).round() / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_docker_style_suffixes() {
        assert_eq!(parse_size("128m"), Ok(128 * MIB));
        assert_eq!(parse_size("128MiB"), Ok(128 * MIB));
        assert_eq!(parse_size("1g"), Ok(GIB));
        assert_eq!(parse_size("64k"), Ok(64 * KIB));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10b"), Ok(10));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1m").is_err());
        assert!(parse_size("99999999999999g").is_err());
    }

    #[test]
    fn memory_below_docker_minimum_is_refused() {
        assert!(parse_memory("4m").unwrap_err().contains("6m"));
        assert_eq!(parse_memory("6m"), Ok(6 * MIB));
    }

    #[test]
    fn timeouts_are_positive_and_bounded() {
        assert_eq!(parse_timeout("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_timeout("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_timeout("3s"), Ok(Duration::from_secs(3)));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("-1").is_err());
        assert!(parse_timeout("NaN").is_err());
        assert!(parse_timeout("inf").is_err());
        assert!(parse_timeout("100000").is_err());
    }

    #[test]
    fn cpus_pids_and_code_chars_are_range_checked() {
        assert_eq!(parse_cpus("0.5"), Ok(0.5));
        assert!(parse_cpus("0").is_err());
        assert_eq!(parse_pids("64"), Ok(64));
        assert!(parse_pids("1").is_err());
        assert_eq!(parse_code_chars("5000"), Ok(5000));
        assert!(parse_code_chars("0").is_err());
        assert!(parse_output_size("0").is_err());
    }

    #[test]
    fn overrides_replace_only_what_is_set() {
        let overrides = LimitOverrides {
            timeout: Some(Duration::from_secs(2)),
            ..LimitOverrides::default()
        };
        let limits = Limits::default().with(&overrides);
        assert_eq!(limits.timeout, Duration::from_secs(2));
        assert_eq!(limits.wall_timeout, Duration::from_secs(5));
        let both = LimitOverrides {
            wall_timeout: Some(Duration::from_secs(3)),
            ..overrides
        };
        assert_eq!(
            Limits::default().with(&both).wall_timeout,
            Duration::from_secs(3)
        );
        let unrelated = LimitOverrides {
            pids: Some(10),
            ..LimitOverrides::default()
        };
        assert_eq!(limits.with(&unrelated).wall_timeout, Duration::from_secs(5));
        assert_eq!(Limits::default().wall_timeout, Duration::from_secs(21));
        assert_eq!(limits.memory_bytes, DEFAULT_MEMORY_BYTES);
        assert_eq!(limits.pids, DEFAULT_PIDS);
    }

    #[test]
    fn applied_limits_read_back_as_they_were() {
        let limits = Limits::default().with(&LimitOverrides {
            timeout: Some(Duration::from_millis(2500)),
            wall_timeout: Some(Duration::from_millis(100)),
            memory_bytes: Some(64 * MIB),
            cpus: Some(0.5),
            pids: Some(9),
            max_code_chars: Some(77),
            max_output_bytes: Some(3),
        });
        assert_eq!(limits.applied().to_limits(), limits);
        let broken = AppliedLimits {
            timeout_secs: -1.0,
            wall_timeout_secs: f64::NAN,
            ..limits.applied()
        };
        assert_eq!(broken.to_limits().timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn human_renderings() {
        assert_eq!(human_bytes(128 * MIB), "128 MiB");
        assert_eq!(human_bytes(1500), "1500 bytes");
        assert_eq!(human_secs(Duration::from_secs(10)), "10 s");
        assert_eq!(human_secs(Duration::from_millis(2500)), "2.5 s");
    }
}
