//! The suite's YAML files: `problem.yaml`, `test_group.yaml` (and the legacy `testdata.yaml`)
//! and `NAME.yaml`, each parsed from its text into what grading uses.
//!
//! Keys: each format's struct holds only the keys that change something here; serde ignores every
//! other key. Which other keys are allowed is said once per format, in its `ACCEPTED` list (keys
//! of the legacy, 2023-07 and 2025-09 package formats that have no effect on grading); a key in
//! neither is an error naming it ([`Format::check_keys`]), so a typo is never silently ignored.
//! The struct's own keys are asked of serde ([`fields_of`]), so the check cannot drift from it.
//!
//! Limits are validated by [`crate::limits`], the same checks the command-line flags get.
//!
//! This room turns text into values; it opens no files (`walk` reads them).

use std::path::Path;

use serde::de::{self, DeserializeOwned, Visitor};
use serde::Deserialize;
use serde_norway::{Mapping, Value};

use super::{malformed, Aggregation, SuiteError};
use crate::grade::compare::parse_flags;
use crate::limits::{self, LimitOverrides};

/// A YAML configuration format.
pub(super) trait Format: DeserializeOwned + Default {
    /// Keys of the format that are accepted and change nothing here.
    const ACCEPTED: &'static [&'static str];

    /// Refuse keys that are neither the struct's nor [`Format::ACCEPTED`] (nested mappings too,
    /// where a format has them).
    fn check_keys(mapping: &Mapping, file: &Path) -> Result<(), SuiteError> {
        check_keys(mapping, fields_of::<Self>(), Self::ACCEPTED, None, file)
    }
}

/// Parse `text` (the file `file`) as `T`: bad YAML and unknown keys name the file; an empty file
/// (or only comments) is `T::default()`.
pub(super) fn parse<T: Format>(text: &str, file: &Path) -> Result<T, SuiteError> {
    let value: Value = serde_norway::from_str(text)
        .map_err(|error| malformed(file, format!("bad YAML: {error}")))?;
    match &value {
        Value::Null => return Ok(T::default()),
        Value::Mapping(mapping) => T::check_keys(mapping, file)?,
        _ => {}
    }
    // From the text, not the value: serde's errors then say where (line and column).
    serde_norway::from_str(text).map_err(|error| malformed(file, error.to_string()))
}

fn check_keys(
    mapping: &Mapping,
    known: &[&str],
    accepted: &[&str],
    within: Option<&str>,
    file: &Path,
) -> Result<(), SuiteError> {
    for key in mapping.keys() {
        let name = match key {
            Value::String(name) => name.clone(),
            other => serde_norway::to_string(other)
                .map(|text| text.trim().to_owned())
                .unwrap_or_default(),
        };
        if known.contains(&name.as_str()) || accepted.contains(&name.as_str()) {
            continue;
        }
        let expected: Vec<String> = known
            .iter()
            .chain(accepted)
            .map(|key| format!("`{key}`"))
            .collect();
        let within = within.map_or_else(String::new, |within| format!(" in `{within}`"));
        return Err(malformed(
            file,
            format!(
                "unknown field `{name}`{within}, expected one of {}",
                expected.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The keys serde reads into `T`, a struct deriving `Deserialize` (renames applied): asked of
/// the derived code itself, which names them when it asks for a struct.
pub(super) fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    /// A deserializer that only records the field names it is asked for.
    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("only structs are probed"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields recorded"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// `output_validator_args`: a sequence of strings, or (legacy) one space-separated string.
fn validator_args(value: &Value, file: &Path, key: &str) -> Result<Vec<String>, SuiteError> {
    let not_a_list = || {
        malformed(
            file,
            format!("{key} must be a list of strings (e.g. [float_tolerance, \"1e-6\"])"),
        )
    };
    match value {
        Value::Null => Ok(Vec::new()),
        Value::String(text) => Ok(text.split_whitespace().map(str::to_owned).collect()),
        Value::Sequence(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.clone()),
                Value::Number(number) => Ok(number.to_string()),
                _ => Err(not_a_list()),
            })
            .collect(),
        _ => Err(not_a_list()),
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

/// Settings a group passes down to its cases and subgroups.
#[derive(Debug, Clone, Default)]
pub(super) struct Settings {
    pub flags: Vec<String>,
    pub full_feedback: bool,
}

/// Which kind of group a `test_group.yaml` configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GroupKind {
    Sample,
    Secret,
    Subgroup,
}

/// `problem.yaml`: only the limits, the problem type, the validation kind, the name and
/// `validator_flags` change anything here.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ProblemYaml {
    #[serde(rename = "type")]
    problem_type: Option<Value>,
    name: Option<Value>,
    limits: Option<LimitsYaml>,
    validation: Option<Value>,
    validator_flags: Option<Value>,
}

impl Format for ProblemYaml {
    /// Metadata with no effect on grading.
    const ACCEPTED: &'static [&'static str] = &[
        "problem_format_version",
        "uuid",
        "version",
        "credits",
        "author",
        "source",
        "source_url",
        "license",
        "rights_owner",
        "embargo_until",
        "grading",
        "keywords",
        "languages",
        "allow_file_writing",
        "constants",
    ];

    fn check_keys(mapping: &Mapping, file: &Path) -> Result<(), SuiteError> {
        check_keys(mapping, fields_of::<Self>(), Self::ACCEPTED, None, file)?;
        if let Some(Value::Mapping(limits)) = mapping.get("limits") {
            check_keys(
                limits,
                fields_of::<LimitsYaml>(),
                LimitsYaml::ACCEPTED,
                Some("limits"),
                file,
            )?;
        }
        Ok(())
    }
}

/// `limits` in `problem.yaml`.
#[derive(Debug, Default, Deserialize)]
struct LimitsYaml {
    /// Seconds per case.
    time_limit: Option<f64>,
    /// MiB.
    memory: Option<u64>,
    /// MiB, per stream.
    output: Option<u64>,
}

impl LimitsYaml {
    /// Accepted, no effect: timing inference, compilation, validation and code size.
    const ACCEPTED: &'static [&'static str] = &[
        "time_multiplier",
        "time_multipliers",
        "time_safety_margin",
        "time_resolution",
        "code",
        "compilation_time",
        "compilation_memory",
        "validation_time",
        "validation_memory",
        "validation_output",
        "validation_passes",
    ];
}

impl ProblemYaml {
    /// Refuse problems this grader cannot judge faithfully (by what `problem.yaml` says; the
    /// walk refuses the directories that mean the same).
    pub fn check(&self, file: &Path) -> Result<(), SuiteError> {
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
        Ok(())
    }

    /// The suite's limits, validated exactly as the command-line flags are.
    pub fn limit_overrides(&self, file: &Path) -> Result<LimitOverrides, SuiteError> {
        let mut overrides = LimitOverrides::default();
        let Some(given) = &self.limits else {
            return Ok(overrides);
        };
        if let Some(secs) = given.time_limit {
            let timeout = limits::check_timeout_secs(secs).map_err(|reason| {
                malformed(
                    file,
                    format!("limits.time_limit {secs} is out of range: {reason} (give seconds)"),
                )
            })?;
            overrides.timeout = Some(timeout);
        }
        if let Some(mib) = given.memory {
            let bytes = from_mib(mib, limits::check_memory_bytes).map_err(|reason| {
                malformed(
                    file,
                    format!("limits.memory {mib} is out of range: {reason} (give MiB)"),
                )
            })?;
            overrides.memory_bytes = Some(bytes);
        }
        if let Some(mib) = given.output {
            let bytes = from_mib(mib, limits::check_output_bytes).map_err(|reason| {
                malformed(
                    file,
                    format!("limits.output {mib} is out of range: {reason} (give MiB)"),
                )
            })?;
            overrides.max_output_bytes = Some(bytes);
        }
        Ok(overrides)
    }

    /// Legacy `validator_flags`: the default validator's arguments for every case.
    pub fn validator_flags(&self, file: &Path) -> Result<Vec<String>, SuiteError> {
        let flags = match &self.validator_flags {
            Some(value) => validator_args(value, file, "validator_flags")?,
            None => Vec::new(),
        };
        parse_flags(&flags).map_err(|error| malformed(file, error.to_string()))?;
        Ok(flags)
    }

    /// `name`: a string, or a map of languages to names (English first).
    pub fn display_name(&self) -> Option<String> {
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

/// `mib` MiB in bytes, checked by `check`.
fn from_mib(mib: u64, check: fn(u64) -> Result<u64, String>) -> Result<u64, String> {
    limits::mib_to_bytes(mib)
        .ok_or_else(|| "it is too large".to_owned())
        .and_then(check)
}

/// Keys of a group or case configuration that are accepted and change nothing here: validation
/// and visualisation of the test data itself.
const DATA_TOOL_KEYS: &[&str] = &[
    "input_validator_args",
    "input_visualizer_args",
    "output_visualizer_args",
];

/// `test_group.yaml` (2023-07 / 2025-09).
#[derive(Debug, Default, Deserialize)]
pub(super) struct TestGroupYaml {
    max_score: Option<Value>,
    score_aggregation: Option<Aggregation>,
    require_pass: Option<Value>,
    output_validator_args: Option<Value>,
    full_feedback: Option<bool>,
    args: Option<Value>,
    static_validation_score: Option<Value>,
    static_validator_args: Option<Value>,
}

impl Format for TestGroupYaml {
    const ACCEPTED: &'static [&'static str] = DATA_TOOL_KEYS;
}

impl TestGroupYaml {
    pub fn settings(&self, file: &Path, inherited: &Settings) -> Result<Settings, SuiteError> {
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
    pub fn scoring(
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
pub(super) struct LegacyTestdataYaml {
    output_validator_flags: Option<Value>,
}

impl Format for LegacyTestdataYaml {
    const ACCEPTED: &'static [&'static str] = &["input_validator_flags"];
}

impl LegacyTestdataYaml {
    pub fn into_test_group(self) -> TestGroupYaml {
        TestGroupYaml {
            output_validator_args: self.output_validator_flags,
            ..TestGroupYaml::default()
        }
    }
}

/// `NAME.yaml` next to `NAME.in`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct CaseYaml {
    pub output_validator_args: Option<Value>,
    full_feedback: Option<bool>,
    pub hint: Option<String>,
    pub description: Option<String>,
    args: Option<Value>,
}

impl Format for CaseYaml {
    const ACCEPTED: &'static [&'static str] = DATA_TOOL_KEYS;
}

impl CaseYaml {
    pub fn settings(&self, file: &Path, inherited: &Settings) -> Result<Settings, SuiteError> {
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

    #[test]
    fn fields_are_asked_of_serde() {
        assert_eq!(
            fields_of::<ProblemYaml>(),
            ["type", "name", "limits", "validation", "validator_flags"]
        );
        assert_eq!(
            fields_of::<LimitsYaml>(),
            ["time_limit", "memory", "output"]
        );
        assert_eq!(
            fields_of::<LegacyTestdataYaml>(),
            ["output_validator_flags"]
        );
    }

    #[test]
    fn accepted_keys_are_ignored_and_unknown_ones_named() {
        let file = Path::new("problem.yaml");
        let problem: ProblemYaml = parse(
            "uuid: x\nlicense: cc0\nlimits:\n  time_limit: 2\n  time_multipliers: {ac_to_time_limit: 2}\n",
            file,
        )
        .unwrap();
        assert_eq!(
            problem.limit_overrides(file).unwrap().timeout,
            Some(std::time::Duration::from_secs(2))
        );
        let message = |text: &str| match parse::<ProblemYaml>(text, file) {
            Err(SuiteError::Malformed { problem, .. }) => problem,
            other => panic!("{other:?}"),
        };
        let top = message("licence: cc0\n");
        assert!(
            top.starts_with("unknown field `licence`, expected one of `type`"),
            "{top}"
        );
        assert!(top.contains("`license`"), "accepted keys are listed: {top}");
        let nested = message("limits:\n  memory: 64\n  cpus: 2\n");
        assert!(
            nested.starts_with("unknown field `cpus` in `limits`"),
            "{nested}"
        );
        assert!(message("1: x\n").starts_with("unknown field `1`"));
        // A type error still says where.
        let typed = message("limits:\n  memory: lots\n");
        assert!(typed.contains("line 2"), "{typed}");
        let case: CaseYaml = parse("input_validator_args: [--max, 5]\nhint: h\n", file).unwrap();
        assert_eq!(case.hint.as_deref(), Some("h"));
    }

    #[test]
    fn suite_limits_use_the_flags_checks() {
        let file = Path::new("problem.yaml");
        let limits = |text: &str| parse::<ProblemYaml>(text, file)?.limit_overrides(file);
        let parsed = limits("limits:\n  time_limit: 1.5\n  memory: 64\n  output: 2\n").unwrap();
        assert_eq!(parsed.memory_bytes, Some(64 << 20));
        assert_eq!(parsed.max_output_bytes, Some(2 << 20));
        for (text, reason) in [
            (
                "limits:\n  time_limit: 0\n",
                limits::check_timeout_secs(0.0).err(),
            ),
            (
                "limits:\n  time_limit: 100000\n",
                limits::check_timeout_secs(100_000.0).err(),
            ),
            (
                "limits:\n  memory: 5\n",
                limits::check_memory_bytes(5 << 20).err(),
            ),
            (
                "limits:\n  output: 1025\n",
                limits::check_output_bytes(1025 << 20).err(),
            ),
        ] {
            let reason = reason.unwrap();
            let error = limits(text).unwrap_err().to_string();
            assert!(error.contains(&reason), "{text}: {error} lacks {reason}");
        }
        let huge = limits("limits:\n  memory: 18446744073709551615\n")
            .unwrap_err()
            .to_string();
        assert!(huge.contains("too large"), "{huge}");
    }
}
