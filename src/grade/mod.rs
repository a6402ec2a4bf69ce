//! `safe-exec grade`: batch grading against Kattis-format test suites. (In progress.)

pub mod compare;
pub mod suite;

use crate::cli::GradeArgs;

pub fn execute(_args: GradeArgs) -> anyhow::Result<u8> {
    anyhow::bail!("`safe-exec grade` is not implemented yet")
}
