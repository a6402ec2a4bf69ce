//! `Suite::load` end to end, on suites written to a temporary directory.

use std::fs;

use super::*;
use crate::exit_codes;
use crate::limits::mib_to_bytes;

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
    assert_eq!(suite.limits.memory_bytes, mib_to_bytes(64));
    assert_eq!(suite.limits.max_output_bytes, mib_to_bytes(2));
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
    let (_, message) = problem(load(&[("g/x.txt", ""), ("1.in", ""), ("1.ans", "")]).unwrap_err());
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

#[test]
fn links_and_special_files_are_refused_by_name() {
    use std::os::unix::fs::symlink;
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("x"), "1").unwrap();
    fs::create_dir(outside.path().join("g")).unwrap();
    fs::write(outside.path().join("g/1.in"), "1").unwrap();
    fs::write(outside.path().join("g/1.ans"), "1").unwrap();
    let base: &[(&str, &str)] = &[("data/secret/1.in", "1"), ("data/secret/1.ans", "1")];
    let fifo = |path: &Path| {
        let made = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(made.success());
    };
    type Plant<'a> = (&'a str, Box<dyn Fn(&Path) + 'a>, &'a str);
    let plants: Vec<Plant> = vec![
        (
            "data/secret/2.ans",
            Box::new(|root: &Path| {
                fs::write(root.join("data/secret/2.in"), "1").unwrap();
                symlink(outside.path().join("x"), root.join("data/secret/2.ans")).unwrap();
            }),
            "symbolic link",
        ),
        (
            "data/secret/g",
            Box::new(|root: &Path| {
                symlink(outside.path().join("g"), root.join("data/secret/g")).unwrap()
            }),
            "symbolic link",
        ),
        (
            "data/secret/notes.txt",
            Box::new(|root: &Path| {
                symlink(outside.path().join("x"), root.join("data/secret/notes.txt")).unwrap()
            }),
            "symbolic link",
        ),
        (
            "problem.yaml",
            Box::new(|root: &Path| {
                symlink(outside.path().join("x"), root.join("problem.yaml")).unwrap()
            }),
            "symbolic link",
        ),
        (
            "data/secret/3.in",
            Box::new(|root: &Path| {
                fifo(&root.join("data/secret/3.in"));
                fs::write(root.join("data/secret/3.ans"), "1").unwrap();
            }),
            "FIFO",
        ),
    ];
    for (file, plant, what) in plants {
        let dir = suite_dir(base);
        plant(dir.path());
        let error = Suite::load(dir.path()).unwrap_err();
        assert_eq!(
            error.exit_code(),
            exit_codes::MALFORMED_SUITE,
            "{file}: {error}"
        );
        let (shown, message) = problem(error);
        assert_eq!(shown, dir.path().join(file).display().to_string());
        assert!(message.contains(what), "{file}: {message}");
    }
    // `data` itself as a link, and the suite's own path as one.
    let dir = suite_dir(&[("problem.yaml", "")]);
    let data = tempfile::tempdir().unwrap();
    fs::create_dir_all(data.path().join("secret")).unwrap();
    symlink(data.path(), dir.path().join("data")).unwrap();
    let (shown, _) = problem(Suite::load(dir.path()).unwrap_err());
    assert!(shown.ends_with("/data"), "{shown}");
    let real = suite_dir(base);
    let links = tempfile::tempdir().unwrap();
    symlink(real.path(), links.path().join("suite")).unwrap();
    let error = Suite::load(&links.path().join("suite")).unwrap_err();
    assert_eq!(error.exit_code(), exit_codes::MISSING_PATH);
    assert!(error.to_string().contains("symbolic link"), "{error}");
    // A hidden entry is never read, whatever it is.
    let dir = suite_dir(base);
    symlink("/etc/passwd", dir.path().join("data/secret/.hidden")).unwrap();
    assert!(Suite::load(dir.path()).is_ok());
}

#[test]
fn suite_files_are_known_by_identity() {
    let dir = suite_dir(&[("1.in", "1"), ("1.ans", "2"), ("notes.txt", "x")]);
    let suite = Suite::load(dir.path()).unwrap();
    let id = |name: &str| crate::files::FileId::of(&fs::metadata(dir.path().join(name)).unwrap());
    assert_eq!(
        suite.file_with_id(id("1.ans")),
        Some(dir.path().join("1.ans"))
    );
    assert_eq!(
        suite.file_with_id(id("1.in")),
        Some(dir.path().join("1.in"))
    );
    assert_eq!(suite.file_with_id(id("notes.txt")), None, "never read");
    // Cases name their files relative to the suite, and open them through it.
    let case = &suite.cases[0];
    assert_eq!(case.input, Path::new("1.in"));
    let mut text = String::new();
    std::io::Read::read_to_string(&mut suite.open(&case.answer).unwrap(), &mut text).unwrap();
    assert_eq!(text, "2");
}

#[test]
fn messages_show_hostile_names_safely() {
    let dir = suite_dir(&[("a\r::warning::x\u{1b}.in", "1")]);
    let error = Suite::load(dir.path()).unwrap_err().to_string();
    assert!(error.contains("a\\r::warning::x\\u{1b}.in"), "{error}");
    assert!(!error.chars().any(char::is_control), "{error:?}");
}
