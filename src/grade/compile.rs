//! The compile check: does a submission compile? Asked once per submission, in the sandbox,
//! before its cases run.
//!
//! The check is a small Python program run through the same supervisor as every case: it reads
//! the submission's source from its standard input and calls `compile(source, FILENAME, "exec")`,
//! which is exactly what Python does to a script before running it (same parser, same encoding
//! rules). Nothing is compiled on the host. A `SyntaxError` (or `IndentationError`, `TabError`,
//! `ValueError` for a bad encoding, `RecursionError`/`MemoryError` for pathological nesting) is
//! printed after a marker line and the checker exits with [`COMPILE_ERROR_EXIT`]; anything else
//! the engine reports is a judge error, never the student's.
//!
//! This module builds the checker and interprets its outcome; running it is the batch's job.

use crate::limits::Limits;
use crate::report::{status_message, Outcome, Status};
use crate::source::Program;

/// The checker's exit code for "does not compile".
pub const COMPILE_ERROR_EXIT: i32 = 3;
/// First line of the checker's stdout when the submission does not compile.
const MARKER: &str = "SAFE-EXEC-COMPILE-ERROR";
/// Longest compile error kept (the formatted error with the offending line and caret).
const MAX_MESSAGE_CHARS: usize = 2000;

/// The checker for a submission that runs as `filename` (already a safe file name, see
/// [`Program::named`]), so errors name the student's file.
pub fn checker(filename: &str) -> Program {
    let filename_literal = format!("{filename:?}");
    let source = format!(
        r#"import sys
source = sys.stdin.buffer.read()
try:
    compile(source, {filename_literal}, "exec", dont_inherit=True)
except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as error:
    import traceback
    sys.stdout.write("{MARKER}\n")
    sys.stdout.write("".join(traceback.format_exception_only(type(error), error)))
    sys.stdout.flush()
    sys.exit({COMPILE_ERROR_EXIT})
"#
    );
    Program::from_text(&source, source.chars().count()).expect("the checker is valid source")
}

/// Limits for the checker: the defaults, whatever the suite says. It only parses at most
/// `--max-code-chars` of source, and a tight suite time limit must not turn a slow container start
/// into a judge error.
pub fn checker_limits(base: &Limits) -> Limits {
    Limits {
        cpus: base.cpus,
        ..Limits::default()
    }
}

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileCheck {
    Compiles,
    /// The submission does not compile; the error as Python formats it.
    Error(String),
    /// The check itself could not be done (engine trouble): a judge error.
    Broken(String),
    /// The batch is being interrupted.
    Interrupted,
}

/// Read the checker's outcome.
pub fn interpret(outcome: &Outcome) -> CompileCheck {
    let stdout = String::from_utf8_lossy(&outcome.stdout.bytes);
    match outcome.status {
        Status::Ok => CompileCheck::Compiles,
        Status::Interrupted => CompileCheck::Interrupted,
        Status::RuntimeError
            if outcome.exit_code == Some(COMPILE_ERROR_EXIT) && stdout.starts_with(MARKER) =>
        {
            let error = stdout[MARKER.len()..].trim();
            let mut message: String = error.chars().take(MAX_MESSAGE_CHARS).collect();
            if error.chars().count() > MAX_MESSAGE_CHARS {
                message.push('…');
            }
            CompileCheck::Error(message)
        }
        _ => CompileCheck::Broken(format!(
            "the compile check failed: {}",
            status_message(outcome)
                .or_else(|| outcome.error.clone())
                .unwrap_or_else(|| outcome.status.as_str().to_owned())
        )),
    }
}

/// The last line of a compile error with its location: `SyntaxError: invalid syntax (main.py,
/// line 3)`, for one-line displays.
pub fn short_message(error: &str) -> String {
    let last = error
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("")
        .trim();
    let location = error
        .lines()
        .find_map(|line| line.trim().strip_prefix("File "))
        .map(|location| location.replace('"', ""));
    match location {
        Some(location) => format!("{last} ({location})"),
        None => last.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Captured;

    fn outcome(status: Status, exit_code: Option<i32>, stdout: &str) -> Outcome {
        Outcome {
            exit_code,
            stdout: Captured {
                bytes: stdout.as_bytes().to_vec(),
                seen: stdout.len() as u64,
                truncated: false,
            },
            ..Outcome::not_run(status, "docker went away", Limits::default())
        }
    }

    #[test]
    fn checker_names_the_file_and_is_valid_source() {
        let program = checker("wa_solution.py");
        assert!(program.source().contains("\"wa_solution.py\""));
        assert!(program.source().contains("sys.exit(3)"));
    }

    #[test]
    fn outcomes_are_interpreted() {
        assert_eq!(
            interpret(&outcome(Status::Ok, Some(0), "")),
            CompileCheck::Compiles
        );
        let error = "SAFE-EXEC-COMPILE-ERROR\n  File \"x.py\", line 2\n    print(\n         ^\nSyntaxError: '(' was never closed\n";
        let CompileCheck::Error(message) =
            interpret(&outcome(Status::RuntimeError, Some(3), error))
        else {
            panic!("not a compile error")
        };
        assert!(message.starts_with("File \"x.py\", line 2"), "{message}");
        assert_eq!(
            short_message(&message),
            "SyntaxError: '(' was never closed (x.py, line 2)"
        );
        // Exit 3 without the marker is not a compile error (the checker did not say so).
        assert!(matches!(
            interpret(&outcome(Status::RuntimeError, Some(3), "")),
            CompileCheck::Broken(_)
        ));
        let broken = interpret(&outcome(Status::SandboxError, None, ""));
        assert_eq!(
            broken,
            CompileCheck::Broken("the compile check failed: docker went away".into())
        );
        assert_eq!(
            interpret(&outcome(Status::Interrupted, None, "")),
            CompileCheck::Interrupted
        );
    }

    #[test]
    fn checker_limits_ignore_tight_suite_limits() {
        let tight = Limits {
            timeout: std::time::Duration::from_millis(100),
            memory_bytes: 8 << 20,
            ..Limits::default()
        };
        assert_eq!(checker_limits(&tight), Limits::default());
        assert_eq!(
            short_message("ValueError: source code string cannot contain null bytes"),
            "ValueError: source code string cannot contain null bytes"
        );
    }
}
