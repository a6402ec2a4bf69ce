//! Test suites: a Kattis problem package, or a bare directory of `NAME.in` + `NAME.ans`, parsed
//! and validated into a [`Suite`] before anything runs.
//!
//! A **package** is recognised by `problem.yaml` or a `data/` directory:
//!
//! - `problem.yaml`: `limits.time_limit` (seconds), `limits.memory` and `limits.output` (MiB) set
//!   the limits of every case; the other keys of the legacy, 2023-07 and 2025-09 formats are
//!   accepted and have no effect; unknown keys are errors. Custom, interactive, multi-pass and
//!   submit-answer problems are refused (only the default output validator is implemented).
//! - `data/sample/*.in|.ans`: run first, full feedback, worth 0 points.
//! - `data/secret/**`: the graded cases; each subdirectory is a test group, nested to any depth,
//!   configured by `test_group.yaml` (`max_score`, `score_aggregation`, `require_pass`,
//!   `output_validator_args`, `full_feedback`; the legacy `testdata.yaml` with
//!   `output_validator_flags` is read too).
//! - `NAME.yaml` next to `NAME.in`: per-case `output_validator_args`, `full_feedback`, `hint`,
//!   `description` (legacy `NAME.hint` / `NAME.desc` files also work).
//!
//! A **bare directory** is treated exactly like `data/secret`: its cases are named `secret/NAME`.
//!
//! Cases and groups run in lexicographic (byte) order of their names. Every problem found is a
//! [`SuiteError::Malformed`] naming the file and what to change. Scores: `secret` is worth
//! `max_score` (100 by default) and aggregates with `sum` by default; its groups default to
//! `pass-fail`. Where a group leaves `max_score` out, the points its parent has not given to
//! other children are shared equally (the format itself would require every group to say).
//!
//! **No links, no special files.** The suite's own path must name a directory, not a symbolic
//! link to one (exit 66). Below it, `problem.yaml`, `data/` and every entry of a group directory
//! (of `data/sample`, `data/secret` and its groups, or of a bare directory) must be a regular
//! file or a directory: a symbolic link, FIFO, device or socket there makes the suite malformed
//! (exit 65), named in the message. Files are read through the suite's directory descriptor
//! without following a link in any component ([`SuiteDir`]), so a link planted later is never
//! followed either. A link could otherwise publish a secret answer as a sample's expected
//! output, or a host file.
//!
//! Rooms: this module holds the model and [`Suite::load`]; `walk` reads the directories and
//! files, `yaml` the configuration formats, `scoring` shares out scores and checks the group
//! tree. None of them runs anything.

mod scoring;
mod walk;
mod yaml;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use super::compare::CompareOptions;
use crate::exit_codes;
use crate::files::{FileId, OpenError, SuiteDir};
use crate::limits::LimitOverrides;
use crate::runner::job::InputFile;
use crate::sanitize;

/// Points `secret` is worth unless its `test_group.yaml` says otherwise.
pub const DEFAULT_SECRET_SCORE: f64 = 100.0;

/// Why a suite cannot be graded. Nothing has run when one is reported. Paths and problems are
/// shown through [`crate::sanitize`]: both can hold bytes from the suite's files and names.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SuiteError {
    #[error("suite {} not found: pass a Kattis problem package or a directory of NAME.in + NAME.ans files", sanitize::path(.path))]
    NotFound { path: PathBuf },
    #[error("cannot read {}: {}", sanitize::path(.path), sanitize::text(.message))]
    Unreadable { path: PathBuf, message: String },
    #[error("malformed suite: {}: {}", sanitize::path(.file), sanitize::text(.problem))]
    Malformed { file: PathBuf, problem: String },
}

impl SuiteError {
    /// [`exit_codes::MISSING_PATH`] for paths that are not there, [`exit_codes::MALFORMED_SUITE`]
    /// for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            SuiteError::NotFound { .. } | SuiteError::Unreadable { .. } => exit_codes::MISSING_PATH,
            SuiteError::Malformed { .. } => exit_codes::MALFORMED_SUITE,
        }
    }
}

fn malformed(file: &Path, problem: impl Into<String>) -> SuiteError {
    SuiteError::Malformed {
        file: file.to_path_buf(),
        problem: problem.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Aggregation {
    /// Full points if every case in the group is accepted, else 0.
    #[serde(rename = "pass-fail")]
    PassFail,
    /// The sum of the children's scores.
    #[serde(rename = "sum")]
    Sum,
    /// The smallest of the children's scores.
    #[serde(rename = "min")]
    Min,
}

impl Aggregation {
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregation::PassFail => "pass-fail",
            Aggregation::Sum => "sum",
            Aggregation::Min => "min",
        }
    }
}

/// Which layout the suite uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuiteKind {
    /// A Kattis problem package (`problem.yaml`, `data/sample`, `data/secret`).
    Package,
    /// A bare directory of `NAME.in` + `NAME.ans`, graded as `secret`.
    Directory,
}

/// A child of a group, in run order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Child {
    Case(usize),
    Group(usize),
}

/// A test group: `sample`, `secret` or a directory below `secret`.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Path under `data/`: `sample`, `secret`, `secret/group1`.
    pub name: String,
    pub parent: Option<usize>,
    pub aggregation: Aggregation,
    /// What the group is worth; 0 for `sample`.
    pub max_score: f64,
    /// Groups (or `sample`) whose cases must all be accepted for this group to score.
    pub require_pass: Vec<usize>,
    pub children: Vec<Child>,
    /// False for `sample`, whose result never counts towards the score.
    pub scored: bool,
}

/// One test case: an input, an answer, and how to compare.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Path under `data/` without extension: `sample/1`, `secret/group1/03-big`.
    pub name: String,
    /// Index of the group that directly contains it.
    pub group: usize,
    /// The input file, relative to the suite's directory: read it with [`Suite::open`], name it
    /// with [`Suite::path`].
    pub input: PathBuf,
    /// The answer file, relative to the suite's directory.
    pub answer: PathBuf,
    pub compare: CompareOptions,
    /// Expected output, input, the program's output and diffs may be shown for this case.
    pub full_feedback: bool,
    /// What the case is worth on its own: its share in a `sum` group, the group's `max_score` in
    /// a `min` group, 0 in a `pass-fail` group (which scores as a whole) and in `sample`.
    pub max_score: f64,
    /// Shown to the student when the case fails.
    pub hint: Option<String>,
    /// What the case tests; for course staff.
    pub description: Option<String>,
}

/// A validated suite, ready to grade.
#[derive(Debug, Clone)]
pub struct Suite {
    /// The suite's path as given (reports show it).
    pub root: PathBuf,
    /// The suite's directory, held open: every file of the suite is read through it.
    dir: SuiteDir,
    /// Every file the suite was read from, by identity (a submission must not be one of them).
    files: BTreeMap<FileId, PathBuf>,
    pub kind: SuiteKind,
    /// `name` from `problem.yaml`, or the directory's name.
    pub name: String,
    /// Limits the suite sets (`problem.yaml`); command-line limits override them.
    pub limits: LimitOverrides,
    pub groups: Vec<Group>,
    /// Every case, in run order (lexicographic by name).
    pub cases: Vec<Case>,
    /// Index of `secret` in `groups`.
    pub secret: usize,
    /// Index of `sample` in `groups`, when there are sample cases.
    pub sample: Option<usize>,
    /// The package's `files/`: placed beside the submission in every case, read-only.
    pub input_files: Vec<InputFile>,
}

impl Suite {
    /// What a perfect submission scores: `secret`'s `max_score`.
    pub fn max_score(&self) -> f64 {
        self.groups[self.secret].max_score
    }

    /// Every case in `group` and its subgroups, in run order.
    pub fn cases_in(&self, group: usize) -> Vec<usize> {
        let mut cases = Vec::new();
        self.collect_cases(group, &mut cases);
        cases
    }

    fn collect_cases(&self, group: usize, into: &mut Vec<usize>) {
        for child in &self.groups[group].children {
            match *child {
                Child::Case(case) => into.push(case),
                Child::Group(sub) => self.collect_cases(sub, into),
            }
        }
    }

    /// Open a file of the suite (a case's [`Case::input`] or [`Case::answer`]) to read, without
    /// following a link; see [`SuiteDir::open_file`].
    pub fn open(&self, relative: &Path) -> Result<File, OpenError> {
        self.dir.open_file(relative).map(|(file, _)| file)
    }

    /// Where a file of the suite is, for messages.
    pub fn path(&self, relative: &Path) -> PathBuf {
        self.dir.path(relative)
    }

    /// The suite file (its path, for messages) that is the same file as `id`, if any.
    pub fn file_with_id(&self, id: FileId) -> Option<PathBuf> {
        self.files.get(&id).map(|relative| self.path(relative))
    }

    /// Load and validate the suite at `root`.
    pub fn load(root: &Path) -> Result<Suite, SuiteError> {
        let dir = SuiteDir::open(root).map_err(|error| match error {
            error if error.is_not_found() => SuiteError::NotFound {
                path: root.to_path_buf(),
            },
            OpenError::Kind(crate::files::FileKind::Symlink) => SuiteError::Unreadable {
                path: root.to_path_buf(),
                message: "it is a symbolic link: safe-exec reads a suite only from a real directory; pass the directory it points to".to_owned(),
            },
            OpenError::Kind(kind) => SuiteError::Unreadable {
                path: root.to_path_buf(),
                message: format!(
                    "it is {}: the suite is a directory (a Kattis problem package or NAME.in + NAME.ans files)",
                    kind.describe()
                ),
            },
            other => SuiteError::Unreadable {
                path: root.to_path_buf(),
                message: other.to_string(),
            },
        })?;
        let walked = walk::walk(&dir)?;
        let mut suite = Suite {
            root: root.to_path_buf(),
            dir,
            files: walked.files,
            kind: walked.kind,
            name: walked.name.unwrap_or_else(|| dir_name(root)),
            limits: walked.limits,
            groups: walked.groups,
            cases: walked.cases,
            secret: walked.secret,
            sample: walked.sample,
            input_files: walked.input_files,
        };
        suite.check_not_empty(&walked.dirs)?;
        suite.share_scores(&walked.dirs, &walked.explicit_max)?;
        suite.resolve_require_pass(&walked.dirs, &walked.require_pass_names)?;
        suite.order_cases();
        Ok(suite)
    }
}

/// `33.333333333333336` → `33.33`, `100` → `100`.
pub fn show_score(score: f64) -> String {
    let rounded = (score * 100.0).round() / 100.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        let text = format!("{rounded:.2}");
        text.trim_end_matches('0').to_owned()
    }
}

fn dir_name(root: &Path) -> String {
    let absolute = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    absolute
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| root.display().to_string())
}
