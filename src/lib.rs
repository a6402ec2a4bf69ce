//! safe-exec runs untrusted Python code inside a locked-down Docker container and reports exactly
//! what happened.
//!
//! The crate is a library with a thin binary on top. Rooms:
//!
//! - [`cli`]: clap types only, converted to domain types before use;
//! - [`limits`] and [`source`]: validated limits and programs (nothing runs there);
//! - [`sandbox`]: the image, labels and the pure `docker create` argv builder;
//! - [`runner`]: the one supervisor every run goes through (spawn, pipes, deadline, kill, inspect);
//! - [`report`]: outcomes, the versioned JSON report, messages and exit codes;
//! - [`sanitize`]: the one escaper for outside text in anything we print;
//! - [`client`] and [`tls`]: `run --server` / `grade --server` speaking to a running `serve`;
//! - [`signals`] and [`sync`]: two-stage signal handling and the shared lock, used by every room;
//! - [`image`]: the runner image's build context, carried in the binary, and building it;
//! - [`run_command`], [`grade`], [`serve`], [`doctor`], [`generate`], [`mcp`]: the subcommands.

pub mod cli;
pub mod client;
#[cfg(test)]
mod docs_drift;
pub mod doctor;
pub mod exit_codes;
pub mod files;
pub mod generate;
pub mod grade;
pub mod image;
pub mod limits;
pub mod mcp;
pub mod report;
pub mod run_command;
pub mod runner;
pub mod sandbox;
pub mod sanitize;
pub mod serve;
pub mod signals;
pub mod source;
pub mod sync;
pub mod tls;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// Parse `args` and run the subcommand; the exit code of the whole process.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() {
                exit_codes::USAGE
            } else {
                exit_codes::SUCCESS
            });
        }
    };
    let result = match cli.command {
        Command::Run(args) => run_command::execute(args),
        Command::Grade(args) => grade::execute(args),
        Command::Serve(args) => serve::execute(args),
        Command::Gc(args) => run_command::collect_garbage(args),
        Command::Doctor(args) => doctor::execute(args),
        Command::Image(args) => image::execute(args),
        Command::Generate(args) => generate::execute(args),
        Command::Mcp(args) => mcp::execute(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("safe-exec: {error:#}");
            ExitCode::from(exit_codes::SANDBOX_ERROR)
        }
    }
}
