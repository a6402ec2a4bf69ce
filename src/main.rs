//! The `safe-exec` binary: parse the command line, hand it to the library, map the result to an
//! exit code. Everything else lives in the library so tests and other front ends share it.

use std::process::ExitCode;

fn main() -> ExitCode {
    safe_exec::main_with_args(std::env::args_os())
}
