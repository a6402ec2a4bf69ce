//! What a run is given: the program, its input, its limits, and where its output goes. Built only
//! from validated parts (`source`, `limits`); nothing here runs anything.

use std::fs::File;
use std::io::Write;

use crate::limits::Limits;
use crate::source::Program;

/// What the program reads on its standard input.
#[derive(Debug)]
pub enum ProgramStdin {
    /// Nothing: the first read gets end-of-file.
    Empty,
    /// These bytes, then end-of-file.
    Bytes(Vec<u8>),
    /// The contents of an open file, then end-of-file.
    File(File),
    /// safe-exec's own standard input, as `python3 script.py` would read it.
    Inherit,
}

/// Most files given beside a program (the launcher takes more; this keeps requests small).
pub const MAX_INPUT_FILES: usize = 32;
/// Most bytes of files given beside a program, all together: they live in `/tmp`, whose 16 MiB
/// count against the memory limit.
pub const MAX_INPUT_BYTES: u64 = 8 * 1024 * 1024;
/// How many bytes of artifacts a run collects unless told otherwise.
pub const DEFAULT_ARTIFACT_BYTES: u64 = 8 * 1024 * 1024;

/// A file placed beside the program, read-only to it. Built only from validated parts (a name
/// from [`InputFile::new`], a size within the caps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    name: String,
    bytes: Vec<u8>,
}

impl InputFile {
    /// A file named `name` (the launcher's rule: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}`, no `..`, not
    /// `out`), or why not.
    pub fn new(name: &str, bytes: Vec<u8>) -> Result<InputFile, String> {
        let valid = (1..=100).contains(&name.len())
            && name
                .bytes()
                .next()
                .is_some_and(|first| first.is_ascii_alphanumeric() || first == b'_')
            && name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'))
            && !name.contains("..")
            && name != crate::sandbox::ARTIFACT_DIR;
        if valid {
            Ok(InputFile {
                name: name.to_owned(),
                bytes,
            })
        } else {
            Err(format!(
                "`{}` is not a usable file name: use letters, digits, `_`, `.` and `-` (at most 100, not starting with `.` or `-`, not `out`)",
                crate::sanitize::text(name)
            ))
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// One program to run, with its input and limits. Built only from validated parts.
#[derive(Debug)]
pub struct Job {
    pub program: Program,
    /// Files placed beside the program, read-only to it.
    pub files: Vec<InputFile>,
    pub stdin: ProgramStdin,
    pub limits: Limits,
}

impl Job {
    /// A copy to run again, when the input can be given twice (not a file or our own stdin, which
    /// a first attempt may have read from).
    pub fn try_clone(&self) -> Option<Job> {
        let stdin = match &self.stdin {
            ProgramStdin::Empty => ProgramStdin::Empty,
            ProgramStdin::Bytes(bytes) => ProgramStdin::Bytes(bytes.clone()),
            ProgramStdin::File(_) | ProgramStdin::Inherit => return None,
        };
        Some(Job {
            program: self.program.clone(),
            files: self.files.clone(),
            stdin,
            limits: self.limits,
        })
    }
}

/// Where the program's output goes while it runs.
pub struct RunIo {
    /// Written to as stdout arrives (text mode streams to our own stdout).
    pub stdout: Option<Box<dyn Write + Send>>,
    /// Written to as stderr arrives.
    pub stderr: Option<Box<dyn Write + Send>>,
    /// Keep the bytes (up to the cap) in the [`Outcome`](crate::report::Outcome); without it only counts are kept.
    pub keep: bool,
    /// Collect what the program leaves in `out/`, up to this many bytes (0: not at all).
    pub artifact_bytes: u64,
}

impl RunIo {
    /// This capture-only `RunIo` again, for a second attempt at the same job.
    pub fn capture_again(&self) -> Option<RunIo> {
        self.is_capture_only().then_some(RunIo {
            stdout: None,
            stderr: None,
            keep: self.keep,
            artifact_bytes: self.artifact_bytes,
        })
    }

    /// Captures only (no writers): a run can be given the same again.
    pub fn is_capture_only(&self) -> bool {
        self.stdout.is_none() && self.stderr.is_none()
    }

    /// Keep everything in memory (up to the cap): for `--json`, grading and HTTP.
    pub fn capture() -> RunIo {
        RunIo {
            stdout: None,
            stderr: None,
            keep: true,
            artifact_bytes: 0,
        }
    }

    /// Stream to our own stdout and stderr as the bytes arrive, keeping nothing.
    pub fn passthrough() -> RunIo {
        RunIo {
            stdout: Some(Box::new(std::io::stdout())),
            stderr: Some(Box::new(std::io::stderr())),
            keep: false,
            artifact_bytes: 0,
        }
    }
}
