//! Where a program's source comes from, and the checks it must pass before any container exists.
//!
//! Code arrives from a file, from standard input or inline (`-c`, an HTTP body, a suite). Every
//! path ends in [`Program::from_bytes`], so a BOM, CRLF line endings, a NUL byte or an over-long
//! program behave the same however they arrive. This module never starts anything.

use std::io::Read;
use std::path::Path;

use thiserror::Error;

/// Why code was refused before anything ran. Each message names the limit or the problem and
/// what to do about it.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RejectReason {
    #[error("code is too long: {chars} characters, the limit is {limit} (raise it with --max-code-chars)")]
    TooLong { chars: usize, limit: usize },
    #[error("code is not valid UTF-8 (first bad byte at offset {offset}): save it as UTF-8")]
    NotUtf8 { offset: usize },
    #[error(
        "code contains a NUL byte (line {line}, column {column}): Python source cannot contain NUL"
    )]
    NulByte { line: usize, column: usize },
    #[error("no code to run: the program is empty or only whitespace")]
    Empty,
    /// `path` is already safe to print (see [`crate::sanitize::path`]).
    #[error("cannot read {path}: {message}")]
    Unreadable { path: String, message: String },
}

/// Source code that passed every check: valid UTF-8, no BOM, `\n` line endings, no NUL, within the
/// character limit, not blank. `filename` is what the program sees as `__file__`'s base name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    source: String,
    filename: String,
}

/// The base name a program runs under when its own name cannot be used.
pub const DEFAULT_FILENAME: &str = "main.py";

impl Program {
    /// Validate raw bytes as a program of at most `max_chars` Unicode characters.
    ///
    /// A leading UTF-8 BOM is dropped and CRLF / lone CR become LF (as Python's own file reader
    /// does) before characters are counted, so the same text gives the same verdict from a
    /// Windows editor, a pipe or a JSON string.
    pub fn from_bytes(bytes: &[u8], max_chars: usize) -> Result<Program, RejectReason> {
        let text = std::str::from_utf8(bytes).map_err(|error| RejectReason::NotUtf8 {
            offset: error.valid_up_to(),
        })?;
        Program::from_text(text, max_chars)
    }

    /// As [`Program::from_bytes`], for text that is already a `str`.
    pub fn from_text(text: &str, max_chars: usize) -> Result<Program, RejectReason> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let source = normalize_newlines(text);
        if let Some(at) = source.find('\0') {
            let before = &source[..at];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            return Err(RejectReason::NulByte { line, column });
        }
        let chars = source.chars().count();
        if chars > max_chars {
            return Err(RejectReason::TooLong {
                chars,
                limit: max_chars,
            });
        }
        if source.trim().is_empty() {
            return Err(RejectReason::Empty);
        }
        Ok(Program {
            source,
            filename: DEFAULT_FILENAME.to_owned(),
        })
    }

    /// Read and validate a program from `reader`, reading no more than could possibly be valid so
    /// an endless pipe cannot exhaust our memory.
    pub fn from_reader(
        reader: impl Read,
        max_chars: usize,
        what: &str,
    ) -> Result<Program, RejectReason> {
        // Four bytes per character at most, plus a BOM and CRs that normalisation removes.
        let budget = (max_chars as u64).saturating_mul(8).saturating_add(16);
        let mut bytes = Vec::new();
        reader
            .take(budget + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| RejectReason::Unreadable {
                path: what.to_owned(),
                message: error.to_string(),
            })?;
        if bytes.len() as u64 > budget {
            // Certainly too long; count what we have so the message still names the limit.
            let chars = String::from_utf8_lossy(&bytes).chars().count();
            return Err(RejectReason::TooLong {
                chars,
                limit: max_chars,
            });
        }
        Program::from_bytes(&bytes, max_chars)
    }

    /// Read and validate the program in `path`; it runs under the file's own base name when that
    /// is a plain Python file name.
    pub fn from_file(path: &Path, max_chars: usize) -> Result<Program, RejectReason> {
        // The path is shown in messages: through the sanitiser, as everything from outside.
        let shown = crate::sanitize::path(path);
        let unreadable = |message: String| RejectReason::Unreadable {
            path: shown.clone(),
            message,
        };
        let file = std::fs::File::open(path).map_err(|error| unreadable(describe_io(&error)))?;
        let metadata = file
            .metadata()
            .map_err(|error| unreadable(describe_io(&error)))?;
        if metadata.is_dir() {
            return Err(unreadable(
                "it is a directory, not a Python file".to_owned(),
            ));
        }
        let program = Program::from_reader(file, max_chars, &shown)?;
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        Ok(program.named(name))
    }

    /// The same program under base name `name`, if `name` is a safe Python file name
    /// (`[A-Za-z0-9_][A-Za-z0-9_.-]*\.py`, at most 100 characters); otherwise unchanged.
    pub fn named(mut self, name: &str) -> Program {
        if is_safe_filename(name) {
            self.filename = name.to_owned();
        }
        self
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn filename(&self) -> &str {
        &self.filename
    }
}

/// The name a program asked to run as `name` runs under: `name` when it is a plain Python file
/// name, [`DEFAULT_FILENAME`] otherwise (as [`Program::named`] decides).
pub fn run_filename(name: Option<&str>) -> &str {
    name.filter(|name| is_safe_filename(name))
        .unwrap_or(DEFAULT_FILENAME)
}

fn is_safe_filename(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".py") else {
        return false;
    };
    let mut chars = stem.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    first_ok
        && name.len() <= 100
        && !name.contains("..")
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn normalize_newlines(text: &str) -> String {
    if !text.contains('\r') {
        return text.to_owned();
    }
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// An I/O error in words a user can act on.
pub fn describe_io(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_counts_characters_not_bytes() {
        let exactly = "é".repeat(4999) + "\n";
        assert!(Program::from_text(&exactly, 5000).is_ok());
        let emoji = "#".to_owned() + &"😀".repeat(4999);
        assert!(Program::from_text(&emoji, 5000).is_ok());
        let over = "x".repeat(5001);
        assert_eq!(
            Program::from_text(&over, 5000),
            Err(RejectReason::TooLong {
                chars: 5001,
                limit: 5000
            })
        );
        assert!(RejectReason::TooLong {
            chars: 5001,
            limit: 5000
        }
        .to_string()
        .contains("5000"));
    }

    #[test]
    fn bom_and_line_endings_are_normalised_before_counting() {
        let crlf =
            Program::from_bytes(b"\xef\xbb\xbfprint(1)\r\nprint(2)\rprint(3)\n", 100).unwrap();
        assert_eq!(crlf.source(), "print(1)\nprint(2)\nprint(3)\n");
        let five = "x = 1\r\n".repeat(714) + "y=1\r\n"; // 5003 chars with CRs, 4289 without
        assert!(Program::from_text(&five, 5000).is_ok());
    }

    #[test]
    fn nul_bytes_are_located() {
        assert_eq!(
            Program::from_bytes(b"print(1)\nab\0c", 100),
            Err(RejectReason::NulByte { line: 2, column: 3 })
        );
    }

    #[test]
    fn invalid_utf8_is_rejected_with_offset() {
        assert_eq!(
            Program::from_bytes(b"print(1)\xff", 100),
            Err(RejectReason::NotUtf8 { offset: 8 })
        );
    }

    #[test]
    fn blank_code_is_rejected() {
        assert_eq!(Program::from_text("", 100), Err(RejectReason::Empty));
        assert_eq!(
            Program::from_text(" \n\t\r\n", 100),
            Err(RejectReason::Empty)
        );
    }

    #[test]
    fn reader_stops_early_on_endless_input() {
        let endless = std::io::repeat(b'x');
        let result = Program::from_reader(endless, 10, "stdin");
        assert!(matches!(
            result,
            Err(RejectReason::TooLong { limit: 10, .. })
        ));
    }

    #[test]
    fn only_plain_python_names_are_kept() {
        let program = Program::from_text("pass", 10).unwrap();
        assert_eq!(
            program.clone().named("solution.py").filename(),
            "solution.py"
        );
        assert_eq!(
            program.clone().named("../x.py").filename(),
            DEFAULT_FILENAME
        );
        assert_eq!(program.clone().named("a b.py").filename(), DEFAULT_FILENAME);
        assert_eq!(
            program.clone().named(".hidden.py").filename(),
            DEFAULT_FILENAME
        );
        assert_eq!(program.named("script.txt").filename(), DEFAULT_FILENAME);
    }

    #[test]
    fn unreadable_files_name_the_path() {
        let missing = Program::from_file(Path::new("/nonexistent/x.py"), 10).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/x.py"));
        assert!(missing.to_string().contains("no such file"));
        let dir = Program::from_file(Path::new("/"), 10).unwrap_err();
        assert!(dir.to_string().contains("directory"));
        let hostile = Program::from_file(Path::new("/nonexistent/\r::warning::x\u{1b}.py"), 10)
            .unwrap_err()
            .to_string();
        assert!(
            hostile.contains("/nonexistent/\\r::warning::x\\u{1b}.py"),
            "{hostile}"
        );
    }
}
