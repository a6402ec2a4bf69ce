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
//! This module reads the suite's files and nothing else; it never runs anything.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml::Value;
use thiserror::Error;

use super::compare::{parse_flags, CompareOptions};
use crate::exit_codes;
use crate::limits::{LimitOverrides, MAX_OUTPUT_BYTES, MAX_TIMEOUT, MIN_MEMORY_BYTES};
use crate::source::describe_io;

/// Points `secret` is worth unless its `test_group.yaml` says otherwise.
pub const DEFAULT_SECRET_SCORE: f64 = 100.0;

/// Scores are compared with this much slack (they are shared out as fractions).
const SCORE_EPSILON: f64 = 1e-9;

/// Why a suite cannot be graded. Nothing has run when one is reported.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SuiteError {
    #[error("suite {path} not found: pass a Kattis problem package or a directory of NAME.in + NAME.ans files")]
    NotFound { path: PathBuf },
    #[error("cannot read {path}: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error("malformed suite: {file}: {problem}")]
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

/// How a group's score is computed from its children.
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
    pub input: PathBuf,
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
#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    pub root: PathBuf,
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

    /// Load and validate the suite at `root`.
    pub fn load(root: &Path) -> Result<Suite, SuiteError> {
        let metadata = fs::metadata(root).map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => SuiteError::NotFound {
                path: root.to_path_buf(),
            },
            _ => SuiteError::Unreadable {
                path: root.to_path_buf(),
                message: describe_io(&error),
            },
        })?;
        if !metadata.is_dir() {
            return Err(SuiteError::Unreadable {
                path: root.to_path_buf(),
                message: "it is a file: the suite is a directory (a Kattis problem package or NAME.in + NAME.ans files)"
                    .to_owned(),
            });
        }
        let mut builder = Builder::default();
        let problem_yaml = root.join("problem.yaml");
        let is_package = problem_yaml.exists() || root.join("data").is_dir();
        let (kind, name, limits) = if is_package {
            let problem: ProblemYaml = if problem_yaml.exists() {
                read_yaml(&problem_yaml)?
            } else {
                ProblemYaml::default()
            };
            problem.check(&problem_yaml, root)?;
            let limits = problem.limit_overrides(&problem_yaml)?;
            let base = Settings {
                flags: problem.validator_flags(&problem_yaml)?,
                full_feedback: false,
            };
            builder.load_package(root, &base)?;
            let name = problem.display_name().unwrap_or_else(|| dir_name(root));
            (SuiteKind::Package, name, limits)
        } else {
            let base = Settings {
                flags: Vec::new(),
                full_feedback: false,
            };
            let secret =
                builder.load_group(root, "secret".to_owned(), None, GroupKind::Secret, &base)?;
            builder.secret = Some(secret);
            (
                SuiteKind::Directory,
                dir_name(root),
                LimitOverrides::default(),
            )
        };
        let secret = builder.secret.expect("secret is always loaded");
        let mut suite = Suite {
            root: root.to_path_buf(),
            kind,
            name,
            limits,
            groups: builder.groups,
            cases: builder.cases,
            secret,
            sample: builder.sample,
        };
        suite.check_not_empty(&builder.dirs)?;
        suite.share_scores(&builder.dirs, &builder.explicit_max)?;
        suite.resolve_require_pass(&builder.dirs, &builder.require_pass_names)?;
        suite.order_cases();
        Ok(suite)
    }

    /// Every group needs a case somewhere below it; `secret` needs at least one.
    fn check_not_empty(&self, dirs: &[PathBuf]) -> Result<(), SuiteError> {
        for (index, group) in self.groups.iter().enumerate() {
            if Some(index) != self.sample && self.cases_in(index).is_empty() {
                return Err(malformed(
                    &dirs[index],
                    format!(
                        "test group `{}` has no test cases: add NAME.in + NAME.ans files to it",
                        group.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Give every group and case its maximum score, top down from `secret`.
    fn share_scores(
        &mut self,
        dirs: &[PathBuf],
        explicit: &[Option<f64>],
    ) -> Result<(), SuiteError> {
        let secret = self.secret;
        self.groups[secret].max_score = explicit[secret].unwrap_or(DEFAULT_SECRET_SCORE);
        let mut pending = vec![secret];
        while let Some(index) = pending.pop() {
            let group = self.groups[index].clone();
            let dir = &dirs[index];
            let config = dir.join("test_group.yaml");
            let subgroup_max = |child: &Child| match *child {
                Child::Group(sub) => explicit[sub],
                Child::Case(_) => None,
            };
            let shares: Vec<f64> = match group.aggregation {
                Aggregation::Sum => {
                    let given: f64 = group.children.iter().filter_map(subgroup_max).sum();
                    let open = group
                        .children
                        .iter()
                        .filter(|child| subgroup_max(child).is_none())
                        .count();
                    if given > group.max_score + SCORE_EPSILON {
                        return Err(malformed(
                            &config,
                            format!(
                                "the max_score of the groups in `{}` add up to {}, more than its max_score {}: lower them or raise max_score",
                                group.name,
                                show_score(given),
                                show_score(group.max_score)
                            ),
                        ));
                    }
                    if open == 0 && given < group.max_score - SCORE_EPSILON {
                        return Err(malformed(
                            &config,
                            format!(
                                "the max_score of the groups in `{}` add up to {}, less than its max_score {}: \
                                 no submission could get full marks; make them add up (or leave one out to give it the rest)",
                                group.name,
                                show_score(given),
                                show_score(group.max_score)
                            ),
                        ));
                    }
                    let rest = if open == 0 {
                        0.0
                    } else {
                        (group.max_score - given).max(0.0) / open as f64
                    };
                    group
                        .children
                        .iter()
                        .map(|child| subgroup_max(child).unwrap_or(rest))
                        .collect()
                }
                Aggregation::Min | Aggregation::PassFail => {
                    for child in &group.children {
                        if let Some(given) = subgroup_max(child) {
                            if (given - group.max_score).abs() > SCORE_EPSILON {
                                let Child::Group(sub) = *child else {
                                    unreachable!()
                                };
                                return Err(malformed(
                                    &dirs[sub].join("test_group.yaml"),
                                    format!(
                                        "max_score {} differs from the max_score {} of `{}`, whose score_aggregation is {}: \
                                         every child of a {} group is worth the whole group; remove max_score here",
                                        show_score(given),
                                        show_score(group.max_score),
                                        group.name,
                                        group.aggregation.as_str(),
                                        group.aggregation.as_str()
                                    ),
                                ));
                            }
                        }
                    }
                    vec![group.max_score; group.children.len()]
                }
            };
            for (child, share) in group.children.iter().zip(shares) {
                match *child {
                    Child::Case(case) => {
                        self.cases[case].max_score = match group.aggregation {
                            Aggregation::PassFail => 0.0,
                            Aggregation::Sum | Aggregation::Min => share,
                        };
                    }
                    Child::Group(sub) => {
                        if group.aggregation == Aggregation::PassFail
                            && self.groups[sub].aggregation != Aggregation::PassFail
                        {
                            return Err(malformed(
                                &dirs[sub].join("test_group.yaml"),
                                format!(
                                    "score_aggregation {} inside `{}`, which is pass-fail: groups inside a pass-fail group must be pass-fail too",
                                    self.groups[sub].aggregation.as_str(),
                                    group.name
                                ),
                            ));
                        }
                        self.groups[sub].max_score = share;
                        pending.push(sub);
                    }
                }
            }
        }
        Ok(())
    }

    fn resolve_require_pass(
        &mut self,
        dirs: &[PathBuf],
        names: &[Vec<String>],
    ) -> Result<(), SuiteError> {
        for index in 0..self.groups.len() {
            let mut required = Vec::new();
            for name in &names[index] {
                let config = dirs[index].join("test_group.yaml");
                let found = self.groups.iter().position(|group| &group.name == name);
                let Some(target) = found else {
                    if name == "sample" {
                        // No sample cases: nothing to pass.
                        continue;
                    }
                    return Err(malformed(
                        &config,
                        format!("require_pass names `{name}`, which is not a test group (names are paths under data/, e.g. `sample` or `secret/group1`)"),
                    ));
                };
                let this = &self.groups[index].name;
                if name.as_str() >= this.as_str() || this.starts_with(&format!("{name}/")) {
                    return Err(malformed(
                        &config,
                        format!("require_pass names `{name}`, which does not come before `{this}`: a group can only require earlier groups"),
                    ));
                }
                if self.groups[target].aggregation != Aggregation::PassFail {
                    return Err(malformed(
                        &config,
                        format!(
                            "require_pass names `{name}`, whose score_aggregation is not pass-fail"
                        ),
                    ));
                }
                required.push(target);
            }
            self.groups[index].require_pass = required;
        }
        Ok(())
    }

    /// Cases were collected depth-first in directory order; make `cases` the run order and
    /// renumber the references to them.
    fn order_cases(&mut self) {
        let mut order = Vec::new();
        if let Some(sample) = self.sample {
            self.collect_cases(sample, &mut order);
        }
        self.collect_cases(self.secret, &mut order);
        let mut new_index = vec![0; self.cases.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = new;
        }
        self.cases = order.iter().map(|&old| self.cases[old].clone()).collect();
        for group in &mut self.groups {
            for child in &mut group.children {
                if let Child::Case(case) = child {
                    *case = new_index[*case];
                }
            }
        }
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
    let absolute = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    absolute
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| root.display().to_string())
}

/// Settings a group passes down to its cases and subgroups.
#[derive(Debug, Clone)]
struct Settings {
    flags: Vec<String>,
    full_feedback: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GroupKind {
    Sample,
    Secret,
    Subgroup,
}

#[derive(Default)]
struct Builder {
    groups: Vec<Group>,
    cases: Vec<Case>,
    /// Directory of each group, for messages.
    dirs: Vec<PathBuf>,
    explicit_max: Vec<Option<f64>>,
    require_pass_names: Vec<Vec<String>>,
    secret: Option<usize>,
    sample: Option<usize>,
}

/// Directories under `data/` that hold validator tests, not cases to grade.
const VALIDATOR_TEST_DIRS: &[&str] = &[
    "invalid_input",
    "invalid_output",
    "valid_output",
    "invalid_answer",
];

impl Builder {
    fn load_package(&mut self, root: &Path, base: &Settings) -> Result<(), SuiteError> {
        let data = root.join("data");
        if !data.is_dir() {
            return Err(malformed(
                &data,
                "no data/ directory: put the cases in data/secret (and data/sample)",
            ));
        }
        for (name, is_dir) in list_dir(&data)? {
            let known = matches!(name.as_str(), "sample" | "secret")
                || VALIDATOR_TEST_DIRS.contains(&name.as_str());
            if is_dir && !known {
                return Err(malformed(
                    &data.join(&name),
                    "unexpected directory: cases go in data/sample or data/secret (a group is a directory inside data/secret)",
                ));
            }
            if !is_dir && (name.ends_with(".in") || name.ends_with(".ans")) {
                return Err(malformed(
                    &data.join(&name),
                    "test case directly in data/: move it to data/secret (or data/sample)",
                ));
            }
        }
        let sample_dir = data.join("sample");
        if sample_dir.is_dir() {
            let sample_settings = Settings {
                full_feedback: true,
                ..base.clone()
            };
            let sample = self.load_group(
                &sample_dir,
                "sample".to_owned(),
                None,
                GroupKind::Sample,
                &sample_settings,
            )?;
            if self.groups[sample].children.is_empty() {
                // An empty data/sample is allowed; it is not a group to report on. It was the
                // last group added (samples cannot have subgroups).
                self.groups.pop();
                self.dirs.pop();
                self.explicit_max.pop();
                self.require_pass_names.pop();
            } else {
                self.sample = Some(sample);
            }
        }
        let secret_dir = data.join("secret");
        if !secret_dir.is_dir() {
            return Err(malformed(
                &secret_dir,
                "missing: the graded cases go in data/secret (NAME.in + NAME.ans, or groups as subdirectories)",
            ));
        }
        let secret = self.load_group(
            &secret_dir,
            "secret".to_owned(),
            None,
            GroupKind::Secret,
            base,
        )?;
        self.secret = Some(secret);
        Ok(())
    }

    fn load_group(
        &mut self,
        dir: &Path,
        name: String,
        parent: Option<usize>,
        kind: GroupKind,
        inherited: &Settings,
    ) -> Result<usize, SuiteError> {
        let entries = list_dir(dir)?;
        let has = |file: &str| entries.iter().any(|(name, is_dir)| name == file && !is_dir);
        let group_yaml = dir.join("test_group.yaml");
        let legacy_yaml = dir.join("testdata.yaml");
        if has("test_group.yaml") && has("testdata.yaml") {
            return Err(malformed(
                &legacy_yaml,
                "both test_group.yaml and the legacy testdata.yaml are present: keep only test_group.yaml",
            ));
        }
        let config: TestGroupYaml = if has("test_group.yaml") {
            read_yaml(&group_yaml)?
        } else if has("testdata.yaml") {
            let legacy: LegacyTestdataYaml = read_yaml(&legacy_yaml).map_err(|error| match error {
                SuiteError::Malformed { file, problem } => SuiteError::Malformed {
                    file,
                    problem: format!(
                        "{problem} (of the legacy testdata.yaml only output_validator_flags is read: \
                         describe scores in a test_group.yaml with max_score and score_aggregation)"
                    ),
                },
                other => other,
            })?;
            legacy.into_test_group()
        } else {
            TestGroupYaml::default()
        };
        let config_file = if has("testdata.yaml") {
            legacy_yaml
        } else {
            group_yaml
        };
        let settings = config.settings(&config_file, inherited)?;
        // A bad flag in a group's configuration is an error even when no case of its own uses it.
        parse_flags(&settings.flags).map_err(|error| malformed(&config_file, error.to_string()))?;
        let (aggregation, explicit_max, require_pass) = config.scoring(&config_file, kind)?;

        let index = self.groups.len();
        self.groups.push(Group {
            name: name.clone(),
            parent,
            aggregation,
            max_score: 0.0,
            require_pass: Vec::new(),
            children: Vec::new(),
            scored: kind != GroupKind::Sample,
        });
        self.dirs.push(dir.to_path_buf());
        self.explicit_max.push(explicit_max);
        self.require_pass_names.push(require_pass);

        // Sort the directory into cases, their companion files and subgroups.
        let mut stems: BTreeMap<String, CaseFiles> = BTreeMap::new();
        let mut subdirs: Vec<String> = Vec::new();
        for (entry, is_dir) in &entries {
            if *is_dir && entry.ends_with(".files") {
                return Err(malformed(
                    &dir.join(entry),
                    "input files for a case (NAME.files) are not supported: the program reads its input from standard input only",
                ));
            }
            if *is_dir {
                subdirs.push(entry.clone());
                continue;
            }
            if entry == "test_group.yaml" || entry == "testdata.yaml" {
                continue;
            }
            for (suffix, slot) in [
                (".in", Companion::Input),
                (".ans", Companion::Answer),
                (".yaml", Companion::Yaml),
                (".hint", Companion::Hint),
                (".desc", Companion::Description),
            ] {
                if let Some(stem) = entry.strip_suffix(suffix).filter(|stem| !stem.is_empty()) {
                    stems.entry(stem.to_owned()).or_default().set(slot);
                }
            }
        }
        if kind == GroupKind::Sample {
            if let Some(sub) = subdirs.first() {
                return Err(malformed(
                    &dir.join(sub),
                    "data/sample must not contain test groups: put sample cases directly in data/sample",
                ));
            }
        }

        let mut children: Vec<(String, Child)> = Vec::new();
        for (stem, files) in &stems {
            let input = dir.join(format!("{stem}.in"));
            if !files.input {
                let extension = files.first_companion();
                return Err(malformed(
                    &dir.join(format!("{stem}{extension}")),
                    format!("no matching {stem}.in: every case needs NAME.in and NAME.ans (remove or rename this file)"),
                ));
            }
            if !files.answer {
                return Err(malformed(
                    &input,
                    format!("no matching {stem}.ans: every case needs NAME.in and NAME.ans"),
                ));
            }
            if stem == "test_group" || stem == "testdata" {
                return Err(malformed(
                    &input,
                    "a case cannot be named like the group configuration file: rename it",
                ));
            }
            if subdirs.contains(stem) {
                return Err(malformed(
                    &input,
                    format!("a case and a group are both named `{stem}`: rename one of them"),
                ));
            }
            let answer = dir.join(format!("{stem}.ans"));
            for file in [&input, &answer] {
                if let Err(error) = fs::File::open(file) {
                    return Err(SuiteError::Unreadable {
                        path: file.clone(),
                        message: describe_io(&error),
                    });
                }
            }
            let case_yaml: CaseYaml = if files.yaml {
                read_yaml(&dir.join(format!("{stem}.yaml")))?
            } else {
                CaseYaml::default()
            };
            let yaml_path = dir.join(format!("{stem}.yaml"));
            let case_settings = case_yaml.settings(&yaml_path, &settings)?;
            let compare = parse_flags(&case_settings.flags).map_err(|error| {
                let file = if case_yaml.output_validator_args.is_some() {
                    yaml_path.clone()
                } else {
                    config_file.clone()
                };
                malformed(&file, error.to_string())
            })?;
            let hint = match case_yaml.hint {
                Some(hint) => Some(hint),
                None if files.hint => Some(read_text(&dir.join(format!("{stem}.hint")))?),
                None => None,
            };
            let description = match case_yaml.description {
                Some(description) => Some(description),
                None if files.description => Some(read_text(&dir.join(format!("{stem}.desc")))?),
                None => None,
            };
            let case = self.cases.len();
            self.cases.push(Case {
                name: format!("{name}/{stem}"),
                group: index,
                input,
                answer,
                compare,
                full_feedback: case_settings.full_feedback,
                max_score: 0.0,
                hint: hint
                    .map(|text| text.trim().to_owned())
                    .filter(|text| !text.is_empty()),
                description: description
                    .map(|text| text.trim().to_owned())
                    .filter(|text| !text.is_empty()),
            });
            children.push((stem.clone(), Child::Case(case)));
        }
        for sub in subdirs {
            let child = self.load_group(
                &dir.join(&sub),
                format!("{name}/{sub}"),
                Some(index),
                GroupKind::Subgroup,
                &settings,
            )?;
            children.push((sub, Child::Group(child)));
        }
        children.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        self.groups[index].children = children.into_iter().map(|(_, child)| child).collect();
        Ok(index)
    }
}

#[derive(Debug, Default)]
struct CaseFiles {
    input: bool,
    answer: bool,
    yaml: bool,
    hint: bool,
    description: bool,
}

#[derive(Debug, Clone, Copy)]
enum Companion {
    Input,
    Answer,
    Yaml,
    Hint,
    Description,
}

impl CaseFiles {
    fn set(&mut self, companion: Companion) {
        match companion {
            Companion::Input => self.input = true,
            Companion::Answer => self.answer = true,
            Companion::Yaml => self.yaml = true,
            Companion::Hint => self.hint = true,
            Companion::Description => self.description = true,
        }
    }

    /// The extension of a companion file that exists, for naming it in a message.
    fn first_companion(&self) -> &'static str {
        if self.answer {
            ".ans"
        } else if self.yaml {
            ".yaml"
        } else if self.hint {
            ".hint"
        } else {
            ".desc"
        }
    }
}

/// Names in `dir` (hidden ones skipped), each with whether it is a directory, sorted by bytes.
fn list_dir(dir: &Path) -> Result<Vec<(String, bool)>, SuiteError> {
    let unreadable = |error: std::io::Error| SuiteError::Unreadable {
        path: dir.to_path_buf(),
        message: describe_io(&error),
    };
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(malformed(
                &entry.path(),
                "file name is not valid UTF-8: rename it",
            ));
        };
        if name.starts_with('.') {
            continue;
        }
        // Follow symlinks: a linked case or group counts as what it points to.
        let is_dir = fs::metadata(entry.path()).map_err(unreadable)?.is_dir();
        entries.push((name, is_dir));
    }
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(entries)
}

fn read_text(path: &Path) -> Result<String, SuiteError> {
    let bytes = fs::read(path).map_err(|error| SuiteError::Unreadable {
        path: path.to_path_buf(),
        message: describe_io(&error),
    })?;
    String::from_utf8(bytes).map_err(|_| malformed(path, "not valid UTF-8: save it as UTF-8"))
}

/// Parse a YAML file into `T`; an empty file (or only comments) is `T::default()`.
fn read_yaml<T: DeserializeOwned + Default>(path: &Path) -> Result<T, SuiteError> {
    let text = read_text(path)?;
    let value: Value = serde_yaml::from_str(&text)
        .map_err(|error| malformed(path, format!("bad YAML: {error}")))?;
    if value.is_null() {
        return Ok(T::default());
    }
    serde_yaml::from_str(&text).map_err(|error| malformed(path, error.to_string()))
}

/// `output_validator_args`: a sequence of strings, or (legacy) one space-separated string.
fn validator_args(value: &Value, file: &Path, key: &str) -> Result<Vec<String>, SuiteError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::String(text) => Ok(text.split_whitespace().map(str::to_owned).collect()),
        Value::Sequence(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.clone()),
                Value::Number(number) => Ok(number.to_string()),
                _ => Err(malformed(
                    file,
                    format!("{key} must be a list of strings (e.g. [float_tolerance, \"1e-6\"])"),
                )),
            })
            .collect(),
        _ => Err(malformed(
            file,
            format!("{key} must be a list of strings (e.g. [float_tolerance, \"1e-6\"])"),
        )),
    }
}

fn refuse_program_args(value: &Option<Value>, file: &Path) -> Result<(), SuiteError> {
    match value {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Sequence(items)) if items.is_empty() => Ok(()),
        Some(_) => Err(malformed(
            file,
            "`args` (command-line arguments for the submission) are not supported: submissions read standard input only",
        )),
    }
}

/// `problem.yaml`. Every key of the legacy, 2023-07 and 2025-09 formats is accepted; only the
/// limits, the validation kind and `validator_flags` change anything here.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProblemYaml {
    #[serde(rename = "type")]
    problem_type: Option<Value>,
    name: Option<Value>,
    limits: Option<LimitsYaml>,
    validation: Option<Value>,
    validator_flags: Option<Value>,
    // Metadata with no effect on grading.
    #[allow(dead_code)]
    problem_format_version: Option<Value>,
    #[allow(dead_code)]
    uuid: Option<Value>,
    #[allow(dead_code)]
    version: Option<Value>,
    #[allow(dead_code)]
    credits: Option<Value>,
    #[allow(dead_code)]
    author: Option<Value>,
    #[allow(dead_code)]
    source: Option<Value>,
    #[allow(dead_code)]
    source_url: Option<Value>,
    #[allow(dead_code)]
    license: Option<Value>,
    #[allow(dead_code)]
    rights_owner: Option<Value>,
    #[allow(dead_code)]
    embargo_until: Option<Value>,
    #[allow(dead_code)]
    grading: Option<Value>,
    #[allow(dead_code)]
    keywords: Option<Value>,
    #[allow(dead_code)]
    languages: Option<Value>,
    #[allow(dead_code)]
    allow_file_writing: Option<Value>,
    #[allow(dead_code)]
    constants: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsYaml {
    /// Seconds per case.
    time_limit: Option<f64>,
    /// MiB.
    memory: Option<u64>,
    /// MiB, per stream.
    output: Option<u64>,
    // Accepted, no effect: timing inference, compilation, validation and code size.
    #[allow(dead_code)]
    time_multiplier: Option<Value>,
    #[allow(dead_code)]
    time_multipliers: Option<Value>,
    #[allow(dead_code)]
    time_safety_margin: Option<Value>,
    #[allow(dead_code)]
    time_resolution: Option<Value>,
    #[allow(dead_code)]
    code: Option<Value>,
    #[allow(dead_code)]
    compilation_time: Option<Value>,
    #[allow(dead_code)]
    compilation_memory: Option<Value>,
    #[allow(dead_code)]
    validation_time: Option<Value>,
    #[allow(dead_code)]
    validation_memory: Option<Value>,
    #[allow(dead_code)]
    validation_output: Option<Value>,
    #[allow(dead_code)]
    validation_passes: Option<Value>,
}

const MIB: u64 = 1024 * 1024;

impl ProblemYaml {
    /// Refuse problems this grader cannot judge faithfully.
    fn check(&self, file: &Path, root: &Path) -> Result<(), SuiteError> {
        let unsupported = |what: &str| {
            malformed(
                file,
                format!("{what} problems are not supported: safe-exec grade runs each case once with the default output validator"),
            )
        };
        let types: Vec<String> = match &self.problem_type {
            None => Vec::new(),
            Some(Value::String(text)) => text.split_whitespace().map(str::to_owned).collect(),
            Some(Value::Sequence(items)) => items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect(),
            Some(_) => {
                return Err(malformed(
                    file,
                    "type must be a string or a list of strings",
                ))
            }
        };
        for problem_type in &types {
            match problem_type.as_str() {
                "pass-fail" | "scoring" => {}
                "interactive" | "multi-pass" | "submit-answer" => {
                    return Err(unsupported(problem_type))
                }
                other => {
                    return Err(malformed(
                        file,
                        format!("unknown problem type `{other}` (expected pass-fail or scoring)"),
                    ))
                }
            }
        }
        match &self.validation {
            None => {}
            Some(Value::String(text)) if text.trim() == "default" => {}
            Some(Value::String(text)) if text.split_whitespace().next() == Some("custom") => {
                return Err(unsupported("custom-validator"));
            }
            Some(Value::Mapping(map))
                if map.values().any(|value| value.as_bool() == Some(true)) =>
            {
                return Err(unsupported(
                    "custom-validator (interactive, multi-pass or scoring)",
                ));
            }
            // 2023-07 style `validation: {interaction: false, ...}`: the default validator.
            Some(Value::Mapping(_)) => {}
            Some(_) => {
                return Err(malformed(
                    file,
                    "validation must be `default` (custom validators are not supported)",
                ))
            }
        }
        if root.join("output_validator").is_dir() {
            return Err(malformed(
                &root.join("output_validator"),
                "custom output validators are not supported: safe-exec grade uses the default validator (remove the directory or grade elsewhere)",
            ));
        }
        if root.join("include").is_dir() {
            return Err(malformed(
                &root.join("include"),
                "included files (added to every submission) are not supported",
            ));
        }
        Ok(())
    }

    fn limit_overrides(&self, file: &Path) -> Result<LimitOverrides, SuiteError> {
        let mut overrides = LimitOverrides::default();
        let Some(limits) = &self.limits else {
            return Ok(overrides);
        };
        if let Some(secs) = limits.time_limit {
            if !secs.is_finite() || secs <= 0.0 || secs > MAX_TIMEOUT.as_secs_f64() {
                return Err(malformed(
                    file,
                    format!(
                        "limits.time_limit {secs} is out of range: give seconds, more than 0 and at most {}",
                        MAX_TIMEOUT.as_secs()
                    ),
                ));
            }
            overrides.timeout = Some(std::time::Duration::from_secs_f64(secs));
        }
        if let Some(mib) = limits.memory {
            let bytes = mib
                .checked_mul(MIB)
                .filter(|bytes| *bytes >= MIN_MEMORY_BYTES);
            overrides.memory_bytes = Some(bytes.ok_or_else(|| {
                malformed(file, format!("limits.memory {mib} is out of range: give MiB, at least 6 (Docker's minimum)"))
            })?);
        }
        if let Some(mib) = limits.output {
            let bytes = mib
                .checked_mul(MIB)
                .filter(|bytes| (1..=MAX_OUTPUT_BYTES).contains(bytes));
            overrides.max_output_bytes = Some(bytes.ok_or_else(|| {
                malformed(
                    file,
                    format!("limits.output {mib} is out of range: give MiB, from 1 to 1024"),
                )
            })?);
        }
        Ok(overrides)
    }

    /// Legacy `validator_flags`: the default validator's arguments for every case.
    fn validator_flags(&self, file: &Path) -> Result<Vec<String>, SuiteError> {
        let flags = match &self.validator_flags {
            Some(value) => validator_args(value, file, "validator_flags")?,
            None => Vec::new(),
        };
        parse_flags(&flags).map_err(|error| malformed(file, error.to_string()))?;
        Ok(flags)
    }

    fn display_name(&self) -> Option<String> {
        match &self.name {
            Some(Value::String(name)) => Some(name.clone()),
            Some(Value::Mapping(names)) => names
                .get("en")
                .or_else(|| names.values().next())
                .and_then(Value::as_str)
                .map(str::to_owned),
            _ => None,
        }
    }
}

/// `test_group.yaml` (2023-07 / 2025-09).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroupYaml {
    max_score: Option<Value>,
    score_aggregation: Option<Aggregation>,
    require_pass: Option<Value>,
    output_validator_args: Option<Value>,
    full_feedback: Option<bool>,
    args: Option<Value>,
    static_validation_score: Option<Value>,
    static_validator_args: Option<Value>,
    // Accepted, no effect: validation and visualisation of the test data itself.
    #[allow(dead_code)]
    input_validator_args: Option<Value>,
    #[allow(dead_code)]
    input_visualizer_args: Option<Value>,
    #[allow(dead_code)]
    output_visualizer_args: Option<Value>,
}

impl TestGroupYaml {
    fn settings(&self, file: &Path, inherited: &Settings) -> Result<Settings, SuiteError> {
        refuse_program_args(&self.args, file)?;
        if self.static_validation_score.is_some() || self.static_validator_args.is_some() {
            return Err(malformed(
                file,
                "static validation is not supported: remove static_validation_score",
            ));
        }
        Ok(Settings {
            flags: match &self.output_validator_args {
                Some(value) => validator_args(value, file, "output_validator_args")?,
                None => inherited.flags.clone(),
            },
            full_feedback: self.full_feedback.unwrap_or(inherited.full_feedback),
        })
    }

    /// (aggregation, explicit max_score, require_pass names).
    fn scoring(
        &self,
        file: &Path,
        kind: GroupKind,
    ) -> Result<(Aggregation, Option<f64>, Vec<String>), SuiteError> {
        if kind == GroupKind::Sample {
            for (key, present) in [
                ("max_score", self.max_score.is_some()),
                ("score_aggregation", self.score_aggregation.is_some()),
                ("require_pass", self.require_pass.is_some()),
            ] {
                if present {
                    return Err(malformed(
                        file,
                        format!("{key} is not allowed in data/sample: samples are worth 0 points"),
                    ));
                }
            }
            return Ok((Aggregation::PassFail, Some(0.0), Vec::new()));
        }
        let default = if kind == GroupKind::Secret {
            Aggregation::Sum
        } else {
            Aggregation::PassFail
        };
        let max_score = match &self.max_score {
            None => None,
            Some(Value::Number(number)) => match number.as_f64() {
                Some(score) if score.is_finite() && score >= 0.0 => Some(score),
                _ => return Err(malformed(file, format!("max_score {number} must be a non-negative number"))),
            },
            Some(Value::String(text)) if text == "unbounded" => {
                return Err(malformed(
                    file,
                    "max_score: unbounded needs a custom output validator that writes score.txt, which is not supported: give a number",
                ))
            }
            Some(_) => return Err(malformed(file, "max_score must be a non-negative number")),
        };
        let require_pass = match &self.require_pass {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(name)) => vec![name.clone()],
            Some(Value::Sequence(items)) => items
                .iter()
                .map(|item| {
                    item.as_str().map(str::to_owned).ok_or_else(|| {
                        malformed(file, "require_pass must be a group name or a list of them")
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(malformed(
                    file,
                    "require_pass must be a group name or a list of them",
                ))
            }
        };
        Ok((
            self.score_aggregation.unwrap_or(default),
            max_score,
            require_pass,
        ))
    }
}

/// The legacy `testdata.yaml`: only the validator flags carry over; its scoring keys belong to a
/// different model (accept_score, grader_flags) and are refused rather than misread.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyTestdataYaml {
    output_validator_flags: Option<Value>,
    #[allow(dead_code)]
    input_validator_flags: Option<Value>,
}

impl LegacyTestdataYaml {
    fn into_test_group(self) -> TestGroupYaml {
        TestGroupYaml {
            output_validator_args: self.output_validator_flags,
            ..TestGroupYaml::default()
        }
    }
}

/// `NAME.yaml` next to `NAME.in`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseYaml {
    output_validator_args: Option<Value>,
    full_feedback: Option<bool>,
    hint: Option<String>,
    description: Option<String>,
    args: Option<Value>,
    #[allow(dead_code)]
    input_validator_args: Option<Value>,
    #[allow(dead_code)]
    input_visualizer_args: Option<Value>,
    #[allow(dead_code)]
    output_visualizer_args: Option<Value>,
}

impl CaseYaml {
    fn settings(&self, file: &Path, inherited: &Settings) -> Result<Settings, SuiteError> {
        refuse_program_args(&self.args, file)?;
        Ok(Settings {
            flags: match &self.output_validator_args {
                Some(value) => validator_args(value, file, "output_validator_args")?,
                None => inherited.flags.clone(),
            },
            full_feedback: self.full_feedback.unwrap_or(inherited.full_feedback),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A suite on disk: `files` are (relative path, contents).
    fn suite_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, contents) in files {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, contents).unwrap();
        }
        dir
    }

    fn load(files: &[(&str, &str)]) -> Result<Suite, SuiteError> {
        let dir = suite_dir(files);
        Suite::load(dir.path())
    }

    fn problem(error: SuiteError) -> (String, String) {
        match error {
            SuiteError::Malformed { file, problem } => (file.display().to_string(), problem),
            other => panic!("expected a malformed suite, got {other:?}"),
        }
    }

    fn names(suite: &Suite) -> Vec<&str> {
        suite.cases.iter().map(|case| case.name.as_str()).collect()
    }

    #[test]
    fn bare_directory_is_secret_with_equal_shares_in_byte_order() {
        let suite = load(&[
            ("b.in", "1"),
            ("b.ans", "1"),
            ("a.in", "1"),
            ("a.ans", "1"),
            ("B.in", "1"),
            ("B.ans", "1"),
            ("notes.txt", "x"),
        ])
        .unwrap();
        assert_eq!(suite.kind, SuiteKind::Directory);
        assert_eq!(names(&suite), ["secret/B", "secret/a", "secret/b"]);
        assert_eq!(suite.max_score(), 100.0);
        assert_eq!(suite.groups[suite.secret].aggregation, Aggregation::Sum);
        for case in &suite.cases {
            assert!((case.max_score - 100.0 / 3.0).abs() < 1e-9);
            assert!(!case.full_feedback);
        }
        assert_eq!(suite.sample, None);
    }

    #[test]
    fn package_with_samples_nested_groups_and_settings() {
        let suite = load(&[
            ("problem.yaml", "name: Sum\nlimits:\n  time_limit: 1.5\n  memory: 64\n  output: 2\nlicense: cc by\n"),
            ("data/sample/1.in", "1 2"),
            ("data/sample/1.ans", "3"),
            ("data/secret/test_group.yaml", "max_score: 50\n"),
            ("data/secret/g2/test_group.yaml", "max_score: 20\nscore_aggregation: sum\noutput_validator_args: [float_tolerance, \"1e-6\"]\n"),
            ("data/secret/g2/b.in", "1"),
            ("data/secret/g2/b.ans", "1"),
            ("data/secret/g2/a.in", "1"),
            ("data/secret/g2/a.ans", "1"),
            ("data/secret/g2/a.yaml", "hint: think about zero\ndescription: zero\nfull_feedback: true\n"),
            ("data/secret/g1/x.in", "1"),
            ("data/secret/g1/x.ans", "1"),
            ("data/secret/g1/x.hint", "legacy hint\n"),
            ("data/secret/g1/deep/y.in", "1"),
            ("data/secret/g1/deep/y.ans", "1"),
        ])
        .unwrap();
        assert_eq!(suite.kind, SuiteKind::Package);
        assert_eq!(suite.name, "Sum");
        assert_eq!(
            suite.limits.timeout,
            Some(std::time::Duration::from_millis(1500))
        );
        assert_eq!(suite.limits.memory_bytes, Some(64 * MIB));
        assert_eq!(suite.limits.max_output_bytes, Some(2 * MIB));
        assert_eq!(
            names(&suite),
            [
                "sample/1",
                "secret/g1/deep/y",
                "secret/g1/x",
                "secret/g2/a",
                "secret/g2/b"
            ]
        );
        let sample = &suite.cases[0];
        assert!(sample.full_feedback);
        assert_eq!(sample.max_score, 0.0);
        assert_eq!(suite.max_score(), 50.0);
        let group = |name: &str| {
            suite
                .groups
                .iter()
                .find(|group| group.name == name)
                .unwrap()
        };
        // g1 leaves max_score out: it gets what g2 does not take.
        assert_eq!(group("secret/g1").max_score, 30.0);
        assert_eq!(group("secret/g1").aggregation, Aggregation::PassFail);
        assert_eq!(group("secret/g1/deep").max_score, 30.0);
        assert_eq!(group("secret/g2").max_score, 20.0);
        assert_eq!(
            suite.cases[2].max_score, 0.0,
            "cases of a pass-fail group score as a whole"
        );
        assert_eq!(suite.cases[2].hint.as_deref(), Some("legacy hint"));
        let a = &suite.cases[3];
        assert_eq!(a.max_score, 10.0);
        assert_eq!(a.hint.as_deref(), Some("think about zero"));
        assert_eq!(a.description.as_deref(), Some("zero"));
        assert!(a.full_feedback);
        assert_eq!(a.compare.float_absolute_tolerance, Some(1e-6));
        assert!(!suite.cases[4].full_feedback);
        assert_eq!(suite.cases[4].compare.float_relative_tolerance, Some(1e-6));
        assert_eq!(suite.cases[1].compare, CompareOptions::default());
        // Group children point at the reordered cases.
        assert_eq!(suite.cases_in(suite.secret), vec![1, 2, 3, 4]);
        assert_eq!(suite.cases_in(suite.sample.unwrap()), vec![0]);
    }

    #[test]
    fn validator_flags_inherit_and_override() {
        let suite = load(&[
            ("problem.yaml", "validator_flags: case_sensitive\n"),
            ("data/sample/1.in", ""),
            ("data/sample/1.ans", ""),
            (
                "data/secret/g/testdata.yaml",
                "output_validator_flags: float_tolerance 0.1\n",
            ),
            ("data/secret/g/test_group.yaml.bak", ""),
            ("data/secret/g/1.in", ""),
            ("data/secret/g/1.ans", ""),
            ("data/secret/g/2.in", ""),
            ("data/secret/g/2.ans", ""),
            ("data/secret/g/2.yaml", "output_validator_args: []\n"),
            ("data/secret/h/1.in", ""),
            ("data/secret/h/1.ans", ""),
        ])
        .unwrap();
        assert!(suite.cases[0].compare.case_sensitive);
        assert_eq!(suite.cases[1].compare.float_absolute_tolerance, Some(0.1));
        assert!(!suite.cases[1].compare.case_sensitive);
        assert_eq!(suite.cases[2].compare, CompareOptions::default());
        assert!(suite.cases[3].compare.case_sensitive);
        // Two pass-fail groups without max_score share secret's 100.
        assert_eq!(suite.groups[suite.secret].children.len(), 2);
        assert!(suite
            .groups
            .iter()
            .filter(|group| group.name.starts_with("secret/"))
            .all(|group| group.max_score == 50.0));
    }

    #[test]
    fn min_and_require_pass() {
        let suite = load(&[
            ("data/sample/1.in", ""),
            ("data/sample/1.ans", ""),
            (
                "data/secret/test_group.yaml",
                "score_aggregation: min\nmax_score: 10\nrequire_pass: sample\n",
            ),
            ("data/secret/1.in", ""),
            ("data/secret/1.ans", ""),
            ("data/secret/2.in", ""),
            ("data/secret/2.ans", ""),
        ])
        .unwrap();
        assert!(suite.cases[1..].iter().all(|case| case.max_score == 10.0));
        assert_eq!(
            suite.groups[suite.secret].require_pass,
            vec![suite.sample.unwrap()]
        );
    }

    #[test]
    fn missing_answer_names_the_file() {
        let (file, message) =
            problem(load(&[("a.in", "1"), ("b.in", "1"), ("b.ans", "1")]).unwrap_err());
        assert!(file.ends_with("a.in"), "{file}");
        assert!(message.contains("a.ans"), "{message}");
        let (file, message) =
            problem(load(&[("a.ans", "1"), ("b.in", "1"), ("b.ans", "1")]).unwrap_err());
        assert!(file.ends_with("a.ans"), "{file}");
        assert!(message.contains("a.in"), "{message}");
    }

    #[test]
    fn bad_yaml_and_unknown_keys_name_the_file_and_the_key() {
        let (file, message) = problem(
            load(&[
                ("problem.yaml", "limits: [\n"),
                ("data/secret/1.in", ""),
                ("data/secret/1.ans", ""),
            ])
            .unwrap_err(),
        );
        assert!(file.ends_with("problem.yaml"));
        assert!(message.starts_with("bad YAML"), "{message}");
        let (file, message) = problem(
            load(&[
                ("problem.yaml", "time_limit: 2\n"),
                ("data/secret/1.in", ""),
                ("data/secret/1.ans", ""),
            ])
            .unwrap_err(),
        );
        assert!(file.ends_with("problem.yaml"));
        assert!(message.contains("unknown field `time_limit`"), "{message}");
        let (file, message) = problem(
            load(&[
                ("data/secret/g/test_group.yaml", "max_scor: 5\n"),
                ("data/secret/g/1.in", ""),
                ("data/secret/g/1.ans", ""),
            ])
            .unwrap_err(),
        );
        assert!(file.ends_with("g/test_group.yaml"));
        assert!(message.contains("max_scor"), "{message}");
        let (file, message) =
            problem(load(&[("1.in", ""), ("1.ans", ""), ("1.yaml", "hnt: x\n")]).unwrap_err());
        assert!(file.ends_with("1.yaml"));
        assert!(message.contains("hnt"), "{message}");
        let (_, message) = problem(
            load(&[
                ("1.in", ""),
                ("1.ans", ""),
                ("test_group.yaml", "score_aggregation: avg\n"),
            ])
            .unwrap_err(),
        );
        assert!(message.contains("avg"), "{message}");
        let (_, message) = problem(
            load(&[
                ("g/testdata.yaml", "grader_flags: min\n"),
                ("g/1.in", ""),
                ("g/1.ans", ""),
            ])
            .unwrap_err(),
        );
        assert!(message.contains("grader_flags"), "{message}");
    }

    #[test]
    fn empty_configuration_files_are_defaults() {
        let suite = load(&[
            ("problem.yaml", "# nothing yet\n"),
            ("data/secret/test_group.yaml", ""),
            ("data/secret/1.in", ""),
            ("data/secret/1.ans", ""),
            ("data/secret/1.yaml", "\n"),
        ])
        .unwrap();
        assert_eq!(suite.max_score(), 100.0);
    }

    #[test]
    fn bad_validator_flags_are_malformed() {
        let (file, message) = problem(
            load(&[
                ("test_group.yaml", "output_validator_args: [ignore_case]\n"),
                ("1.in", ""),
                ("1.ans", ""),
            ])
            .unwrap_err(),
        );
        assert!(file.ends_with("test_group.yaml"));
        assert!(message.contains("ignore_case"));
        let (file, _) = problem(
            load(&[
                ("1.in", ""),
                ("1.ans", ""),
                ("1.yaml", "output_validator_args: [float_tolerance]\n"),
            ])
            .unwrap_err(),
        );
        assert!(file.ends_with("1.yaml"));
    }

    #[test]
    fn unsupported_features_are_refused_not_ignored() {
        let secret = [("data/secret/1.in", ""), ("data/secret/1.ans", "")];
        for (path, contents, expected) in [
            ("problem.yaml", "validation: custom\n", "custom"),
            ("problem.yaml", "type: interactive\n", "interactive"),
            (
                "problem.yaml",
                "type: [scoring, multi-pass]\n",
                "multi-pass",
            ),
            (
                "output_validator/validate.py",
                "",
                "custom output validators",
            ),
            ("include/default/x.py", "", "included files"),
            ("data/secret/1.yaml", "args: [--fast]\n", "args"),
            (
                "data/secret/test_group.yaml",
                "max_score: unbounded\n",
                "unbounded",
            ),
            (
                "data/secret/test_group.yaml",
                "static_validation_score: 5\n",
                "static",
            ),
            ("data/secret/1.files/x.txt", "", "NAME.files"),
            ("data/extra/1.in", "", "unexpected directory"),
            ("data/sample/g/1.in", "", "must not contain test groups"),
        ] {
            let mut files = secret.to_vec();
            files.push((path, contents));
            let (_, message) = problem(load(&files).unwrap_err());
            assert!(message.contains(expected), "{path}: {message}");
        }
    }

    #[test]
    fn score_sharing_errors() {
        let (_, message) = problem(
            load(&[
                ("test_group.yaml", "max_score: 10\n"),
                ("g/test_group.yaml", "max_score: 20\n"),
                ("g/1.in", ""),
                ("g/1.ans", ""),
            ])
            .unwrap_err(),
        );
        assert!(message.contains("more than its max_score 10"), "{message}");
        let (_, message) = problem(
            load(&[
                ("g/test_group.yaml", "max_score: 30\n"),
                ("g/1.in", ""),
                ("g/1.ans", ""),
            ])
            .unwrap_err(),
        );
        assert!(message.contains("less than its max_score 100"), "{message}");
        let (_, message) = problem(
            load(&[
                ("test_group.yaml", "score_aggregation: pass-fail\n"),
                ("g/test_group.yaml", "score_aggregation: sum\n"),
                ("g/1.in", ""),
                ("g/1.ans", ""),
            ])
            .unwrap_err(),
        );
        assert!(message.contains("must be pass-fail too"), "{message}");
        let (_, message) =
            problem(load(&[("g/x.txt", ""), ("1.in", ""), ("1.ans", "")]).unwrap_err());
        assert!(message.contains("no test cases"), "{message}");
        let (_, message) = problem(
            load(&[
                ("a/test_group.yaml", "require_pass: secret/b\n"),
                ("a/1.in", ""),
                ("a/1.ans", ""),
                ("b/1.in", ""),
                ("b/1.ans", ""),
            ])
            .unwrap_err(),
        );
        assert!(message.contains("does not come before"), "{message}");
    }

    #[test]
    fn limits_are_validated() {
        for (yaml, expected) in [
            ("limits:\n  time_limit: 0\n", "time_limit"),
            ("limits:\n  memory: 1\n", "memory"),
            ("limits:\n  output: 0\n", "output"),
            ("limits:\n  cpu: 1\n", "unknown field `cpu`"),
        ] {
            let (_, message) = problem(
                load(&[
                    ("problem.yaml", yaml),
                    ("data/secret/1.in", ""),
                    ("data/secret/1.ans", ""),
                ])
                .unwrap_err(),
            );
            assert!(message.contains(expected), "{yaml}: {message}");
        }
    }

    #[test]
    fn missing_suite_is_a_missing_path() {
        let error = Suite::load(Path::new("/nonexistent/suite")).unwrap_err();
        assert_eq!(error.exit_code(), exit_codes::MISSING_PATH);
        assert!(error.to_string().contains("/nonexistent/suite"));
        let file = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(
            Suite::load(file.path()).unwrap_err().exit_code(),
            exit_codes::MISSING_PATH
        );
        let (file, _) = problem(load(&[("problem.yaml", "")]).unwrap_err());
        assert!(file.ends_with("data"), "{file}");
        let (file, _) =
            problem(load(&[("data/sample/1.in", ""), ("data/sample/1.ans", "")]).unwrap_err());
        assert!(file.ends_with("data/secret"), "{file}");
    }

    #[test]
    fn scores_render_compactly() {
        assert_eq!(show_score(100.0), "100");
        assert_eq!(show_score(100.0 / 3.0), "33.33");
        assert_eq!(show_score(2.5), "2.5");
        assert_eq!(show_score(0.0), "0");
    }
}
