//! The directory walk: from a suite directory to its groups and cases, reading every
//! configuration file on the way.
//!
//! Listings come from the directories' paths, but every file is read through the suite's
//! directory descriptor without following a link ([`SuiteDir::open_file`]), and every entry of a
//! group directory must be a regular file or a directory ([`list_dir`]): a link or special file
//! is refused by name, whatever it is called and whether or not it would be read.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::yaml::{
    self, CaseYaml, Format, GroupKind, LegacyTestdataYaml, ProblemYaml, Settings, TestGroupYaml,
};
use super::{malformed, Case, Child, Group, SuiteError, SuiteKind};
use crate::files::{FileId, FileKind, OpenError, SuiteDir};
use crate::grade::compare::parse_flags;
use crate::limits::LimitOverrides;
use crate::runner::job::{InputFile, MAX_INPUT_BYTES, MAX_INPUT_FILES};
use crate::source::describe_io;

/// A package's directory of files placed beside the submission in every case.
pub const INPUT_FILES_DIR: &str = "files";

/// Directories under `data/` that hold validator tests, not cases to grade.
const VALIDATOR_TEST_DIRS: &[&str] = &[
    "invalid_input",
    "invalid_output",
    "valid_output",
    "invalid_answer",
];

/// What the walk found, before scores are shared out.
pub(super) struct Walked {
    pub kind: SuiteKind,
    /// `name` from `problem.yaml`.
    pub name: Option<String>,
    pub limits: LimitOverrides,
    pub groups: Vec<Group>,
    pub cases: Vec<Case>,
    /// Directory of each group, for messages.
    pub dirs: Vec<PathBuf>,
    pub explicit_max: Vec<Option<f64>>,
    pub require_pass_names: Vec<Vec<String>>,
    pub secret: usize,
    pub sample: Option<usize>,
    /// Every file read, by identity: path relative to the suite.
    pub files: BTreeMap<FileId, PathBuf>,
    /// `files/` of a package: placed beside the submission in every case.
    pub input_files: Vec<InputFile>,
}

/// Walk the suite in `dir`: a package, or a bare directory graded as `secret`.
pub(super) fn walk(dir: &SuiteDir) -> Result<Walked, SuiteError> {
    let mut walker = Walker {
        dir,
        found: Walked {
            kind: SuiteKind::Directory,
            name: None,
            limits: LimitOverrides::default(),
            groups: Vec::new(),
            cases: Vec::new(),
            dirs: Vec::new(),
            explicit_max: Vec::new(),
            require_pass_names: Vec::new(),
            secret: 0,
            sample: None,
            files: BTreeMap::new(),
            input_files: Vec::new(),
        },
    };
    let is_package =
        present(&dir.path(Path::new("problem.yaml"))) || present(&dir.path(Path::new("data")));
    if is_package {
        let problem_yaml = Path::new("problem.yaml");
        let problem: ProblemYaml = if present(&dir.path(problem_yaml)) {
            walker.read_yaml(problem_yaml)?
        } else {
            ProblemYaml::default()
        };
        let shown = dir.path(problem_yaml);
        problem.check(&shown)?;
        walker.refuse_unsupported_dirs()?;
        walker.found.limits = problem.limit_overrides(&shown)?;
        walker.found.name = problem.display_name();
        let base = Settings {
            flags: problem.validator_flags(&shown)?,
            full_feedback: false,
        };
        walker.load_package(&base)?;
        walker.load_input_files()?;
        walker.found.kind = SuiteKind::Package;
    } else {
        let secret = walker.load_group(
            Path::new(""),
            "secret".to_owned(),
            None,
            GroupKind::Secret,
            &Settings::default(),
        )?;
        walker.found.secret = secret;
    }
    Ok(walker.found)
}

/// Is there anything (a link counts) at `path`?
fn present(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// A suite entry that is neither a regular file nor a directory: refused by name.
fn refused(file: &Path, kind: FileKind) -> SuiteError {
    let fix = if kind == FileKind::Symlink {
        "replace the link with a copy of what it points to"
    } else {
        "replace it with a regular file"
    };
    malformed(
        file,
        format!(
            "it is {}: a suite holds only regular files and directories, never links or special files ({fix})",
            kind.describe()
        ),
    )
}

/// One entry of a group directory.
struct Entry {
    name: String,
    is_dir: bool,
}

struct Walker<'a> {
    dir: &'a SuiteDir,
    found: Walked,
}

impl Walker<'_> {
    /// Open the suite file `relative`, remembering its identity.
    fn open(&mut self, relative: &Path) -> Result<fs::File, SuiteError> {
        match self.dir.open_file(relative) {
            Ok((file, id)) => {
                self.found.files.insert(id, relative.to_path_buf());
                Ok(file)
            }
            Err(OpenError::Kind(kind)) => Err(refused(&self.dir.path(relative), kind)),
            Err(OpenError::Component(path, kind)) => Err(refused(&path, kind)),
            Err(OpenError::Io(error)) => Err(SuiteError::Unreadable {
                path: self.dir.path(relative),
                message: describe_io(&error),
            }),
        }
    }

    /// A configuration, hint or description file as text.
    fn read_text(&mut self, relative: &Path) -> Result<String, SuiteError> {
        let shown = self.dir.path(relative);
        let mut file = self.open(relative)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|error| SuiteError::Unreadable {
                path: shown.clone(),
                message: describe_io(&error),
            })?;
        String::from_utf8(bytes).map_err(|_| malformed(&shown, "not valid UTF-8: save it as UTF-8"))
    }

    fn read_yaml<T: Format>(&mut self, relative: &Path) -> Result<T, SuiteError> {
        let text = self.read_text(relative)?;
        yaml::parse(&text, &self.dir.path(relative))
    }

    /// Names in the group directory `relative` (hidden ones skipped), sorted by bytes; anything
    /// but a regular file or a directory is refused.
    fn list_dir(&self, relative: &Path) -> Result<Vec<Entry>, SuiteError> {
        let path = self.dir.path(relative);
        let unreadable = |error: std::io::Error| SuiteError::Unreadable {
            path: path.clone(),
            message: describe_io(&error),
        };
        let mut entries = Vec::new();
        for entry in fs::read_dir(&path).map_err(unreadable)? {
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
            // The entry itself, not what a link points to.
            let kind = FileKind::of(entry.file_type().map_err(unreadable)?);
            match kind {
                FileKind::Directory | FileKind::Regular => entries.push(Entry {
                    name,
                    is_dir: kind == FileKind::Directory,
                }),
                other => return Err(refused(&entry.path(), other)),
            }
        }
        entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        Ok(entries)
    }

    /// Custom output validators and included files change what a verdict means: refused.
    fn refuse_unsupported_dirs(&self) -> Result<(), SuiteError> {
        for (name, problem) in [
            (
                "output_validator",
                "custom output validators are not supported: safe-exec grade uses the default validator (remove the directory or grade elsewhere)",
            ),
            (
                "include",
                "included files (added to every submission) are not supported",
            ),
        ] {
            let path = self.dir.path(Path::new(name));
            let kind = fs::symlink_metadata(&path).map(|metadata| FileKind::of(metadata.file_type()));
            if matches!(kind, Ok(FileKind::Directory | FileKind::Symlink)) {
                return Err(malformed(&path, problem));
            }
        }
        Ok(())
    }

    /// `files/` at the package's root: regular files placed beside the submission (read-only)
    /// in every case, as `run --file` places them; within `run`'s caps.
    fn load_input_files(&mut self) -> Result<(), SuiteError> {
        let files = Path::new(INPUT_FILES_DIR);
        let path = self.dir.path(files);
        match fs::symlink_metadata(&path).map(|metadata| FileKind::of(metadata.file_type())) {
            Err(_) => return Ok(()),
            Ok(FileKind::Directory) => {}
            Ok(kind) => return Err(refused(&path, kind)),
        }
        let mut total = 0u64;
        for entry in self.list_dir(files)? {
            let relative = files.join(&entry.name);
            if entry.is_dir {
                return Err(malformed(
                    &self.dir.path(&relative),
                    "files/ holds only files (placed beside the submission under their own names), no directories",
                ));
            }
            if self.found.input_files.len() == MAX_INPUT_FILES {
                return Err(malformed(
                    &path,
                    format!(
                        "more than {MAX_INPUT_FILES} files: a case gets at most {MAX_INPUT_FILES}"
                    ),
                ));
            }
            let shown = self.dir.path(&relative);
            let mut bytes = Vec::new();
            self.open(&relative)?
                .take(MAX_INPUT_BYTES - total + 1)
                .read_to_end(&mut bytes)
                .map_err(|error| SuiteError::Unreadable {
                    path: shown.clone(),
                    message: describe_io(&error),
                })?;
            total += bytes.len() as u64;
            if total > MAX_INPUT_BYTES {
                return Err(malformed(
                    &path,
                    format!(
                        "its files come to more than {} in all: a case gets at most that",
                        crate::limits::human_bytes(MAX_INPUT_BYTES)
                    ),
                ));
            }
            let file =
                InputFile::new(&entry.name, bytes).map_err(|problem| malformed(&shown, problem))?;
            self.found.input_files.push(file);
        }
        Ok(())
    }

    fn load_package(&mut self, base: &Settings) -> Result<(), SuiteError> {
        let data = Path::new("data");
        let data_path = self.dir.path(data);
        match fs::symlink_metadata(&data_path).map(|metadata| FileKind::of(metadata.file_type())) {
            Ok(FileKind::Directory) => {}
            Ok(
                kind @ (FileKind::Symlink
                | FileKind::Fifo
                | FileKind::CharDevice
                | FileKind::BlockDevice
                | FileKind::Socket),
            ) => return Err(refused(&data_path, kind)),
            _ => {
                return Err(malformed(
                    &data_path,
                    "no data/ directory: put the cases in data/secret (and data/sample)",
                ))
            }
        }
        let mut has_sample = false;
        let mut has_secret = false;
        for entry in self.list_dir(data)? {
            let name = entry.name.as_str();
            has_sample |= entry.is_dir && name == "sample";
            has_secret |= entry.is_dir && name == "secret";
            let known = matches!(name, "sample" | "secret") || VALIDATOR_TEST_DIRS.contains(&name);
            if entry.is_dir && !known {
                return Err(malformed(
                    &data_path.join(name),
                    "unexpected directory: cases go in data/sample or data/secret (a group is a directory inside data/secret)",
                ));
            }
            if !entry.is_dir && (name.ends_with(".in") || name.ends_with(".ans")) {
                return Err(malformed(
                    &data_path.join(name),
                    "test case directly in data/: move it to data/secret (or data/sample)",
                ));
            }
        }
        if has_sample {
            let sample_settings = Settings {
                full_feedback: true,
                ..base.clone()
            };
            let sample = self.load_group(
                &data.join("sample"),
                "sample".to_owned(),
                None,
                GroupKind::Sample,
                &sample_settings,
            )?;
            if self.found.groups[sample].children.is_empty() {
                // An empty data/sample is allowed; it is not a group to report on. It was the
                // last group added (samples cannot have subgroups).
                self.found.groups.pop();
                self.found.dirs.pop();
                self.found.explicit_max.pop();
                self.found.require_pass_names.pop();
            } else {
                self.found.sample = Some(sample);
            }
        }
        if !has_secret {
            return Err(malformed(
                &data_path.join("secret"),
                "missing: the graded cases go in data/secret (NAME.in + NAME.ans, or groups as subdirectories)",
            ));
        }
        let secret = self.load_group(
            &data.join("secret"),
            "secret".to_owned(),
            None,
            GroupKind::Secret,
            base,
        )?;
        self.found.secret = secret;
        Ok(())
    }

    /// The group in directory `relative` (to the suite), named `name`, and everything below it.
    fn load_group(
        &mut self,
        relative: &Path,
        name: String,
        parent: Option<usize>,
        kind: GroupKind,
        inherited: &Settings,
    ) -> Result<usize, SuiteError> {
        let entries = self.list_dir(relative)?;
        let shown = self.dir.path(relative);
        let has = |file: &str| {
            entries
                .iter()
                .any(|entry| entry.name == file && !entry.is_dir)
        };
        let group_yaml = relative.join("test_group.yaml");
        let legacy_yaml = relative.join("testdata.yaml");
        if has("test_group.yaml") && has("testdata.yaml") {
            return Err(malformed(
                &self.dir.path(&legacy_yaml),
                "both test_group.yaml and the legacy testdata.yaml are present: keep only test_group.yaml",
            ));
        }
        let config: TestGroupYaml = if has("test_group.yaml") {
            self.read_yaml(&group_yaml)?
        } else if has("testdata.yaml") {
            let legacy: LegacyTestdataYaml =
                self.read_yaml(&legacy_yaml).map_err(|error| match error {
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
        let config_file = self.dir.path(if has("testdata.yaml") {
            &legacy_yaml
        } else {
            &group_yaml
        });
        let settings = config.settings(&config_file, inherited)?;
        // A bad flag in a group's configuration is an error even when no case of its own uses it.
        parse_flags(&settings.flags).map_err(|error| malformed(&config_file, error.to_string()))?;
        let (aggregation, explicit_max, require_pass) = config.scoring(&config_file, kind)?;

        let index = self.found.groups.len();
        self.found.groups.push(Group {
            name: name.clone(),
            parent,
            aggregation,
            max_score: 0.0,
            require_pass: Vec::new(),
            children: Vec::new(),
            scored: kind != GroupKind::Sample,
        });
        self.found.dirs.push(shown.clone());
        self.found.explicit_max.push(explicit_max);
        self.found.require_pass_names.push(require_pass);

        // Sort the directory into cases, their companion files and subgroups.
        let mut stems: BTreeMap<String, CaseFiles> = BTreeMap::new();
        let mut subdirs: Vec<String> = Vec::new();
        for entry in &entries {
            if entry.is_dir && entry.name.ends_with(".files") {
                return Err(malformed(
                    &shown.join(&entry.name),
                    "input files for a case (NAME.files) are not supported: the program reads its input from standard input only",
                ));
            }
            if entry.is_dir {
                subdirs.push(entry.name.clone());
                continue;
            }
            if entry.name == "test_group.yaml" || entry.name == "testdata.yaml" {
                continue;
            }
            for (suffix, slot) in [
                (".in", Companion::Input),
                (".ans", Companion::Answer),
                (".yaml", Companion::Yaml),
                (".hint", Companion::Hint),
                (".desc", Companion::Description),
            ] {
                if let Some(stem) = entry
                    .name
                    .strip_suffix(suffix)
                    .filter(|stem| !stem.is_empty())
                {
                    stems.entry(stem.to_owned()).or_default().set(slot);
                }
            }
        }
        if kind == GroupKind::Sample {
            if let Some(sub) = subdirs.first() {
                return Err(malformed(
                    &shown.join(sub),
                    "data/sample must not contain test groups: put sample cases directly in data/sample",
                ));
            }
        }

        let mut children: Vec<(String, Child)> = Vec::new();
        for (stem, files) in &stems {
            let input = relative.join(format!("{stem}.in"));
            if !files.input {
                let extension = files.first_companion();
                return Err(malformed(
                    &shown.join(format!("{stem}{extension}")),
                    format!("no matching {stem}.in: every case needs NAME.in and NAME.ans (remove or rename this file)"),
                ));
            }
            if !files.answer {
                return Err(malformed(
                    &self.dir.path(&input),
                    format!("no matching {stem}.ans: every case needs NAME.in and NAME.ans"),
                ));
            }
            if stem == "test_group" || stem == "testdata" {
                return Err(malformed(
                    &self.dir.path(&input),
                    "a case cannot be named like the group configuration file: rename it",
                ));
            }
            if subdirs.contains(stem) {
                return Err(malformed(
                    &self.dir.path(&input),
                    format!("a case and a group are both named `{stem}`: rename one of them"),
                ));
            }
            let answer = relative.join(format!("{stem}.ans"));
            // Readable now, as regular files: grading must not find out later.
            for file in [&input, &answer] {
                self.open(file)?;
            }
            let yaml_path = relative.join(format!("{stem}.yaml"));
            let case_yaml: CaseYaml = if files.yaml {
                self.read_yaml(&yaml_path)?
            } else {
                CaseYaml::default()
            };
            let yaml_shown = self.dir.path(&yaml_path);
            let case_settings = case_yaml.settings(&yaml_shown, &settings)?;
            let compare = parse_flags(&case_settings.flags).map_err(|error| {
                let file = if case_yaml.output_validator_args.is_some() {
                    yaml_shown.clone()
                } else {
                    config_file.clone()
                };
                malformed(&file, error.to_string())
            })?;
            let hint = match case_yaml.hint {
                Some(hint) => Some(hint),
                None if files.hint => Some(self.read_text(&relative.join(format!("{stem}.hint")))?),
                None => None,
            };
            let description = match case_yaml.description {
                Some(description) => Some(description),
                None if files.description => {
                    Some(self.read_text(&relative.join(format!("{stem}.desc")))?)
                }
                None => None,
            };
            let case = self.found.cases.len();
            self.found.cases.push(Case {
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
                &relative.join(&sub),
                format!("{name}/{sub}"),
                Some(index),
                GroupKind::Subgroup,
                &settings,
            )?;
            children.push((sub, Child::Group(child)));
        }
        children.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        self.found.groups[index].children = children.into_iter().map(|(_, child)| child).collect();
        Ok(index)
    }
}

/// Which files of a case a directory holds.
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
