//! Every exit code safe-exec itself chooses, in one place.
//!
//! When the sandboxed program ends by itself, `safe-exec run` exits with the program's own code
//! (0–255), as `python3 script.py` would; a death by signal N that no limit of ours caused gives
//! 128+N, as shells do. The codes below are the ones safe-exec adds. They follow conventions users
//! already know: GNU `timeout` uses 124 for a time limit, `docker run` 125 for its own failures,
//! shells 128+N after signal N (130 after Ctrl-C), clap 2 for usage errors, and the BSD
//! `sysexits.h` 65/66/73 for bad input data, a missing input file and an output file that cannot
//! be created.
//!
//! `docs/statuses-and-exit-codes.md` lists every code with the name of its constant here; the
//! tests below fail when that table, or the `Exit status` lines of `run --help` and
//! `grade --help`, disagree with this module. Change them together.

/// The program ran and exited 0 (run), every submission was accepted (grade), a clean shutdown
/// after a signal (serve), or success (gc).
pub const SUCCESS: u8 = 0;
/// `grade`: everything was graded and at least one submission is not accepted.
pub const GRADE_NOT_ACCEPTED: u8 = 1;
/// `doctor`: at least one check failed (or was skipped because one before it failed); the report
/// gives the fix for each.
pub const DOCTOR_FOUND_PROBLEMS: u8 = 1;
/// A command-line usage error (unknown flag, bad value). Printed by clap; no JSON document.
pub const USAGE: u8 = 2;
/// `grade`: the suite is malformed (missing `.ans`, bad YAML, unknown key). Nothing ran.
pub const MALFORMED_SUITE: u8 = 65;
/// `grade`: a suite or submission path does not exist or cannot be read. Nothing ran.
pub const MISSING_PATH: u8 = 66;
/// `grade`: a report (`--json`, `--junit`, `--gradescope`) cannot be written: found before
/// anything ran (its directory is missing, it is a directory, no file can be created there), or
/// when writing it after grading failed (a full disk), in which case the other reports were
/// written. `run`: the `--artifacts` directory cannot be used (nothing ran). sysexits'
/// `EX_CANTCREAT`.
pub const CANNOT_CREATE: u8 = 73;
/// `run`: a process of the run was OOM-killed at the memory limit (the engine reports it, or the
/// kernel's OOM-kill counter for the container's memory cgroup rose).
pub const MEMORY_LIMIT: u8 = 121;
/// `run`: stdout or stderr passed `--max-output`; the program was stopped at the cap.
pub const OUTPUT_LIMIT: u8 = 122;
/// `run`: the input was refused before anything ran (too long, NUL byte, not UTF-8, empty,
/// unreadable file; a limit the engine refuses, such as `--cpus` above the host's CPU count). No
/// container was created.
pub const REJECTED: u8 = 123;
/// `run`: the wall-clock limit (`--timeout`) was reached and the program was killed.
pub const TIMEOUT: u8 = 124;
/// The sandbox could not do its job: docker missing, engine unreachable, image missing, a docker
/// call failed or timed out; also any other failure of safe-exec itself. The program's code never
/// ran on the host.
pub const SANDBOX_ERROR: u8 = 125;
/// Interrupted by Ctrl-C (SIGINT). SIGTERM and SIGHUP give 128+N likewise (143, 129).
pub const INTERRUPTED: u8 = 130;

/// The shell convention for death by signal `signal`: 128+N, saturating at 255.
pub fn for_signal(signal: i32) -> u8 {
    u8::try_from(128 + signal.clamp(0, 127)).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    //! This module, its documentation and the command-line help must not drift apart.

    use clap::CommandFactory;

    use super::*;
    use crate::cli::Cli;

    const SOURCE: &str = include_str!("exit_codes.rs");
    const DOCS_PATH: &str = "docs/statuses-and-exit-codes.md";
    const DOCS: &str = include_str!("../docs/statuses-and-exit-codes.md");

    /// `(NAME, value)` of every `pub const NAME: u8 = value;` in this file, read from its source so
    /// a new constant cannot be left out of the docs.
    fn constants() -> Vec<(String, u8)> {
        let constants: Vec<(String, u8)> = SOURCE
            .lines()
            .filter_map(|line| line.strip_prefix("pub const "))
            .map(|rest| {
                let (name, value) = rest
                    .split_once(": u8 = ")
                    .unwrap_or_else(|| panic!("`pub const {rest}`: expected `NAME: u8 = N;`"));
                let value = value.trim_end_matches(';').parse().unwrap_or_else(|_| {
                    panic!("`pub const {rest}`: the value must be a plain number")
                });
                (name.to_owned(), value)
            })
            .collect();
        // The reading of the source agrees with the compiler.
        for (name, value) in &constants {
            assert_eq!(Some(*value), compiled(name), "{name}");
        }
        constants
    }

    /// The compiled value of a constant, to check the source was read right.
    fn compiled(name: &str) -> Option<u8> {
        Some(match name {
            "SUCCESS" => SUCCESS,
            "GRADE_NOT_ACCEPTED" => GRADE_NOT_ACCEPTED,
            "DOCTOR_FOUND_PROBLEMS" => DOCTOR_FOUND_PROBLEMS,
            "USAGE" => USAGE,
            "MALFORMED_SUITE" => MALFORMED_SUITE,
            "MISSING_PATH" => MISSING_PATH,
            "CANNOT_CREATE" => CANNOT_CREATE,
            "MEMORY_LIMIT" => MEMORY_LIMIT,
            "OUTPUT_LIMIT" => OUTPUT_LIMIT,
            "REJECTED" => REJECTED,
            "TIMEOUT" => TIMEOUT,
            "SANDBOX_ERROR" => SANDBOX_ERROR,
            "INTERRUPTED" => INTERRUPTED,
            _ => panic!("new exit code {name}: add it to `compiled` in this test"),
        })
    }

    /// The cells of every table row in `text` (header and separator rows excluded), with the
    /// heading the table is under.
    fn table_rows(text: &str) -> Vec<(String, Vec<String>)> {
        let mut heading = String::new();
        let mut rows = Vec::new();
        let mut previous_was_row = false;
        for line in text.lines() {
            if let Some(title) = line.strip_prefix('#') {
                heading = title.trim_start_matches('#').trim().to_owned();
            }
            let is_row = line.starts_with('|');
            // A table's first row is its header; the next one is the `|---|` separator.
            if is_row && previous_was_row && !line.starts_with("|---") {
                let cells = line
                    .trim_matches('|')
                    .split(" | ")
                    .map(|cell| cell.trim().to_owned())
                    .collect();
                rows.push((heading.clone(), cells));
            }
            previous_was_row = is_row;
        }
        rows
    }

    #[test]
    fn the_docs_table_names_every_constant_with_its_number() {
        let rows: Vec<Vec<String>> = table_rows(DOCS)
            .into_iter()
            .filter(|(heading, _)| heading == "Every exit code")
            .map(|(_, cells)| cells)
            .collect();
        assert!(
            !rows.is_empty(),
            "{DOCS_PATH} has no table under `## Every exit code`"
        );
        let constants = constants();
        for (name, value) in &constants {
            let named: Vec<&Vec<String>> = rows
                .iter()
                .filter(|cells| cells[1] == format!("`{name}`"))
                .collect();
            assert_eq!(
                named.len(),
                1,
                "{DOCS_PATH}: `{name}` must have exactly one row"
            );
            assert_eq!(
                named[0][0],
                value.to_string(),
                "{DOCS_PATH}: `{name}` is {value} in src/exit_codes.rs"
            );
        }
        for cells in &rows {
            if let Ok(code) = cells[0].parse::<u8>() {
                assert!(
                    constants
                        .iter()
                        .any(|(name, value)| *value == code && cells[1] == format!("`{name}`")),
                    "{DOCS_PATH}: exit code {code} ({}) is not a constant of src/exit_codes.rs",
                    cells[1]
                );
            }
        }
    }

    #[test]
    fn every_code_in_the_docs_tables_is_a_constant() {
        let values: Vec<u8> = constants().into_iter().map(|(_, value)| value).collect();
        for (heading, cells) in table_rows(DOCS) {
            if let Ok(code) = cells[0].parse::<u8>() {
                assert!(
                    values.contains(&code),
                    "{DOCS_PATH}, `{heading}`: exit code {code} is not in src/exit_codes.rs"
                );
            }
            // The statuses table gives the code in its second column.
            if heading == "Statuses" {
                let code = cells[1].split_whitespace().next().unwrap_or_default();
                if let Ok(code) = code.parse::<u8>() {
                    assert!(
                        values.contains(&code),
                        "{DOCS_PATH}, status {}: exit code {code} is not in src/exit_codes.rs",
                        cells[0]
                    );
                }
            }
        }
    }

    /// The `Exit status: ...` paragraph of a subcommand's help.
    fn exit_status_help(subcommand: &str) -> String {
        let command = Cli::command();
        let help = command
            .find_subcommand(subcommand)
            .and_then(|sub| sub.get_after_help())
            .unwrap_or_else(|| panic!("`{subcommand} --help` has no after-help"))
            .to_string();
        let start = help
            .find("Exit status:")
            .unwrap_or_else(|| panic!("`{subcommand} --help` does not give its exit status"));
        help[start..].to_owned()
    }

    /// Every `code description` pair is in the help, and the help names no other code.
    fn check_help(subcommand: &str, expected: &[(u8, &str)]) {
        let help = exit_status_help(subcommand);
        for (code, words) in expected {
            assert!(
                help.contains(&format!("{code} {words}")),
                "`{subcommand} --help` should say `{code} {words}`: {help}"
            );
        }
        let named: Vec<u8> = help
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|word| word.parse().ok())
            .collect();
        for code in named {
            assert!(
                expected.iter().any(|(known, _)| *known == code),
                "`{subcommand} --help` names exit code {code}, which this test does not expect: \
                 {help}"
            );
        }
    }

    #[test]
    fn run_help_gives_the_constants_numbers() {
        check_help(
            "run",
            &[
                (TIMEOUT, "timeout"),
                (MEMORY_LIMIT, "memory limit"),
                (OUTPUT_LIMIT, "output limit"),
                (REJECTED, "rejected input"),
                (CANNOT_CREATE, "the --artifacts directory cannot be used"),
                (SANDBOX_ERROR, "sandbox error"),
                (INTERRUPTED, "interrupted"),
                (USAGE, "usage"),
            ],
        );
    }

    #[test]
    fn grade_help_gives_the_constants_numbers() {
        check_help(
            "grade",
            &[
                (SUCCESS, "every submission accepted"),
                (GRADE_NOT_ACCEPTED, "some not accepted"),
                (MALFORMED_SUITE, "malformed suite"),
                (MISSING_PATH, "missing path"),
                (CANNOT_CREATE, "a report cannot be written"),
                (SANDBOX_ERROR, "engine unavailable"),
                (INTERRUPTED, "interrupted"),
                (USAGE, "usage"),
            ],
        );
    }

    #[test]
    fn doctor_help_gives_the_constants_numbers() {
        check_help(
            "doctor",
            &[
                (SUCCESS, "every check passed"),
                (DOCTOR_FOUND_PROBLEMS, "a check failed"),
                (INTERRUPTED, "interrupted"),
                (USAGE, "usage"),
            ],
        );
    }

    #[test]
    fn image_build_help_gives_the_constants_numbers() {
        let command = Cli::command();
        let help = command
            .find_subcommand("image")
            .and_then(|image| image.find_subcommand("build"))
            .and_then(|build| build.get_after_help())
            .expect("`image build --help` has an after-help")
            .to_string();
        for (code, words) in [
            (SUCCESS, "built or up to date"),
            (SANDBOX_ERROR, "the build failed"),
            (INTERRUPTED, "interrupted"),
            (USAGE, "usage"),
        ] {
            assert!(
                help.contains(&format!("{code} {words}")),
                "`image build --help` should say `{code} {words}`: {help}"
            );
        }
    }

    #[test]
    fn a_signal_gives_128_plus_its_number() {
        assert_eq!(for_signal(2), INTERRUPTED);
        assert_eq!(for_signal(15), 143);
        assert_eq!(for_signal(200), u8::MAX);
    }
}
