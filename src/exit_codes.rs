//! Every exit code safe-exec itself chooses, in one place.
//!
//! When the sandboxed program ends by itself, `safe-exec run` exits with the program's own code
//! (0–255), as `python3 script.py` would; a death by signal N that no limit of ours caused gives
//! 128+N, as shells do. The codes below are the ones safe-exec adds. They follow conventions users
//! already know: GNU `timeout` uses 124 for a time limit, `docker run` 125 for its own failures,
//! shells 128+N after signal N (130 after Ctrl-C), clap 2 for usage errors, and the BSD
//! `sysexits.h` 65/66/73 for bad input data, a missing input file and an output file that cannot
//! be created. The README's table mirrors
//! this module; change both together.

/// The program ran and exited 0 (run), or every submission was accepted (grade).
pub const SUCCESS: u8 = 0;
/// `grade`: everything was graded and at least one submission is not accepted.
pub const GRADE_NOT_ACCEPTED: u8 = 1;
/// A command-line usage error (unknown flag, bad value). Printed by clap; no JSON document.
pub const USAGE: u8 = 2;
/// `grade`: the suite is malformed (missing `.ans`, bad YAML, unknown key). Nothing ran.
pub const MALFORMED_SUITE: u8 = 65;
/// `grade`: a suite or submission path does not exist or cannot be read. Nothing ran.
pub const MISSING_PATH: u8 = 66;
/// `grade`: a report (`--json`, `--junit`, `--gradescope`) cannot be written: found before
/// anything ran (its directory is missing, it is a directory, no file can be created there), or
/// when writing it after grading failed (a full disk), in which case the other reports were
/// written. sysexits' `EX_CANTCREAT`.
pub const CANNOT_CREATE: u8 = 73;
/// `run`: the engine reported that the container was killed for exceeding its memory limit.
pub const MEMORY_LIMIT: u8 = 121;
/// `run`: stdout or stderr passed `--max-output`; the program was stopped at the cap.
pub const OUTPUT_LIMIT: u8 = 122;
/// `run`: the input was refused before anything ran (too long, NUL byte, not UTF-8, empty,
/// unreadable file). No container was created.
pub const REJECTED: u8 = 123;
/// `run`: the wall-clock limit (`--timeout`) was reached and the program was killed.
pub const TIMEOUT: u8 = 124;
/// The sandbox could not do its job: docker missing, engine unreachable, image missing, a docker
/// call failed or timed out. The program's code never ran on the host.
pub const SANDBOX_ERROR: u8 = 125;
/// Interrupted by Ctrl-C (SIGINT). SIGTERM and SIGHUP give 128+N likewise (143, 129).
pub const INTERRUPTED: u8 = 130;

/// The shell convention for death by signal `signal`: 128+N, saturating at 255.
pub fn for_signal(signal: i32) -> u8 {
    u8::try_from(128 + signal.clamp(0, 127)).unwrap_or(u8::MAX)
}
