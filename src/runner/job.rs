//! What a run is given: the program, its input, its limits, and where its output goes. Built only
//! from validated parts (`source`, `limits`); nothing here runs anything.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;

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

/// Why a set of files to place beside a program is refused. The messages name no flag or field:
/// each caller says where the files came from (`--file`, an MCP call's `files`, a request's
/// `files`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputFilesError {
    #[error("{count} files given, at most {MAX_INPUT_FILES} are taken")]
    TooMany { count: usize },
    #[error(
        "the files given come to more than {} in all",
        crate::limits::human_bytes(MAX_INPUT_BYTES)
    )]
    TooLarge,
    /// `name` is already safe to print.
    #[error("another file (or the program) is already called `{name}`")]
    Taken { name: String },
    /// [`InputFile::new`]'s reason, which names the file.
    #[error("{0}")]
    Name(String),
}

/// The one check of the files given beside a program, whoever gives them (`run --file`, `mcp`,
/// `serve`): at most [`MAX_INPUT_FILES`] files and [`MAX_INPUT_BYTES`] in all, each under a
/// usable name ([`InputFile::new`]) that no other file and not the program has. Files are added
/// one at a time, so a reader can stop at [`InputFiles::room`] instead of reading a huge file
/// whole first.
#[derive(Debug)]
pub struct InputFiles {
    program: String,
    files: Vec<InputFile>,
    total: u64,
}

impl InputFiles {
    /// Room for `count` files beside the program called `program`, or why not.
    pub fn new(program: &str, count: usize) -> Result<InputFiles, InputFilesError> {
        if count > MAX_INPUT_FILES {
            return Err(InputFilesError::TooMany { count });
        }
        Ok(InputFiles {
            program: program.to_owned(),
            files: Vec::with_capacity(count),
            total: 0,
        })
    }

    /// Bytes the next file may have before the files together are too large.
    pub fn room(&self) -> u64 {
        MAX_INPUT_BYTES - self.total
    }

    /// Add the file `name` holding `bytes`, or say why it is refused.
    pub fn add(&mut self, name: &str, bytes: Vec<u8>) -> Result<(), InputFilesError> {
        if self.files.len() == MAX_INPUT_FILES {
            return Err(InputFilesError::TooMany {
                count: self.files.len() + 1,
            });
        }
        if bytes.len() as u64 > self.room() {
            return Err(InputFilesError::TooLarge);
        }
        if name == self.program || self.files.iter().any(|file| file.name() == name) {
            return Err(InputFilesError::Taken {
                name: crate::sanitize::text(name).into_owned(),
            });
        }
        self.total += bytes.len() as u64;
        self.files
            .push(InputFile::new(name, bytes).map_err(InputFilesError::Name)?);
        Ok(())
    }

    pub fn into_files(self) -> Vec<InputFile> {
        self.files
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
    /// A copy to run again, when the input can be given twice: not our own stdin, which a first
    /// attempt may have read from. A regular file is opened again through `/proc/self/fd`, so
    /// the copy reads from its start whatever the first attempt read; a pipe cannot be.
    pub fn try_clone(&self) -> Option<Job> {
        let stdin = match &self.stdin {
            ProgramStdin::Empty => ProgramStdin::Empty,
            ProgramStdin::Bytes(bytes) => ProgramStdin::Bytes(bytes.clone()),
            ProgramStdin::File(file) => ProgramStdin::File(reopen(file)?),
            ProgramStdin::Inherit => return None,
        };
        Some(Job {
            program: self.program.clone(),
            files: self.files.clone(),
            stdin,
            limits: self.limits,
        })
    }
}

/// `file` opened again with an offset of its own, when it is a regular file.
fn reopen(file: &File) -> Option<File> {
    use std::os::fd::AsRawFd;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    File::open(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

/// Makes the output writers of a [`RunIo`] again, for a second attempt at a job whose program
/// never started (so nothing was written yet).
pub type Renew = Arc<dyn Fn() -> RunIo + Send + Sync>;

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
    /// Keep the artifacts' bytes; without it only their names and sizes come back, and the run
    /// holds none of their bytes.
    pub keep_artifacts: bool,
    /// Makes this `RunIo` again for a second attempt (writers cannot be cloned). Without it, a
    /// `RunIo` with writers gets no second attempt: a run whose warm container turned out gone
    /// before its program started is a `sandbox_error` instead of running again, cold.
    pub renew: Option<Renew>,
}

impl RunIo {
    /// This `RunIo` again, for a second attempt at the same job: captures only, or writers made
    /// again by [`RunIo::renew`].
    pub fn again(&self) -> Option<RunIo> {
        if let Some(renew) = &self.renew {
            return Some(renew());
        }
        self.is_capture_only().then_some(RunIo {
            stdout: None,
            stderr: None,
            keep: self.keep,
            artifact_bytes: self.artifact_bytes,
            keep_artifacts: self.keep_artifacts,
            renew: None,
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
            keep_artifacts: true,
            renew: None,
        }
    }

    /// Stream to our own stdout and stderr as the bytes arrive, keeping nothing.
    pub fn passthrough() -> RunIo {
        RunIo {
            stdout: Some(Box::new(std::io::stdout())),
            stderr: Some(Box::new(std::io::stderr())),
            keep: false,
            artifact_bytes: 0,
            keep_artifacts: true,
            renew: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek};

    #[test]
    fn input_files_are_checked_against_run_s_caps() {
        let mut files = InputFiles::new("main.py", 2).unwrap();
        files.add("data.csv", b"a,1\n".to_vec()).unwrap();
        assert_eq!(files.room(), MAX_INPUT_BYTES - 4);
        assert_eq!(
            files.add("data.csv", Vec::new()),
            Err(InputFilesError::Taken {
                name: "data.csv".into()
            })
        );
        assert!(matches!(
            files.add("main.py", Vec::new()),
            Err(InputFilesError::Taken { .. })
        ));
        for bad in ["../x", "a/b", ".hidden", "-x", "out", "", "é.txt", "x\n"] {
            assert!(
                matches!(files.add(bad, Vec::new()), Err(InputFilesError::Name(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            files.add("big", vec![0; MAX_INPUT_BYTES as usize - 3]),
            Err(InputFilesError::TooLarge)
        );
        files
            .add("fits", vec![0; MAX_INPUT_BYTES as usize - 4])
            .unwrap();
        assert_eq!(files.room(), 0);
        assert_eq!(files.into_files().len(), 2);
        assert_eq!(
            InputFiles::new("main.py", MAX_INPUT_FILES + 1).unwrap_err(),
            InputFilesError::TooMany {
                count: MAX_INPUT_FILES + 1
            }
        );
        let mut many = InputFiles::new("main.py", 0).unwrap();
        for index in 0..MAX_INPUT_FILES {
            many.add(&format!("f{index}"), Vec::new()).unwrap();
        }
        assert!(matches!(
            many.add("one-more", Vec::new()),
            Err(InputFilesError::TooMany { .. })
        ));
    }

    #[test]
    fn a_file_input_is_cloned_with_its_own_offset() {
        let mut input = tempfile::tempfile().unwrap();
        input.write_all(b"12 34\n").unwrap();
        input.rewind().unwrap();
        let mut first = [0u8; 3];
        input.read_exact(&mut first).unwrap();
        let job = Job {
            program: Program::from_bytes(b"print(1)", 100).unwrap(),
            files: Vec::new(),
            stdin: ProgramStdin::File(input),
            limits: Limits::default(),
        };
        let Some(Job {
            stdin: ProgramStdin::File(mut copy),
            ..
        }) = job.try_clone()
        else {
            panic!("a regular file can be given twice");
        };
        let mut text = String::new();
        copy.read_to_string(&mut text).unwrap();
        assert_eq!(text, "12 34\n");
    }
}
