//! A real `--junit` report, validated against the Jenkins xunit schema `junit-10.xsd` (the one
//! pytest validates its own reports against). The schema is not ours to commit: it is taken from
//! pytest's source distribution on PyPI at test time and cached under `target/`. The test fails,
//! never skips, when the schema cannot be had or `xmllint` is missing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{grade, path_str, stderr, submission, SUITE};
use crate::common::Session;

/// The pytest release the schema is taken from, and the schema's SHA-256 in it: a different file
/// would be a different test.
const PYTEST: &str = "8.3.5";
const SCHEMA_SHA256: &str = "a1a816f58d1bf95ebabf371994df0b9246dee66ea9572fbec4f9296f1b2c0ff6";

/// `junit-10.xsd`, downloaded once into `target/` (`CARGO_TARGET_TMPDIR`).
fn junit_schema() -> PathBuf {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("junit-xsd-{PYTEST}"));
    let schema = cache.join("junit-10.xsd");
    if !schema.exists() {
        fs::create_dir_all(&cache).unwrap();
        let downloaded = StdCommand::new("python3")
            .args(["-m", "pip", "download", "--quiet", "--no-deps"])
            .args(["--no-binary", ":all:"])
            .arg(format!("pytest=={PYTEST}"))
            .arg("--dest")
            .arg(&cache)
            .output()
            .unwrap_or_else(|error| {
                panic!("cannot run `python3 -m pip` ({error}): install Python 3 and pip to fetch junit-10.xsd")
            });
        assert!(
            downloaded.status.success(),
            "cannot download pytest {PYTEST}'s source distribution (for junit-10.xsd): {}",
            String::from_utf8_lossy(&downloaded.stderr)
        );
        let sdist = cache.join(format!("pytest-{PYTEST}.tar.gz"));
        let member = format!("pytest-{PYTEST}/testing/example_scripts/junit-10.xsd");
        let extracted = StdCommand::new("tar")
            .arg("-xzf")
            .arg(&sdist)
            .arg("-C")
            .arg(&cache)
            .arg(&member)
            .status()
            .unwrap();
        assert!(extracted.success(), "no {member} in {}", sdist.display());
        fs::rename(cache.join(&member), &schema).unwrap();
    }
    let digest = hex::encode(Sha256::digest(fs::read(&schema).unwrap()));
    assert_eq!(
        digest,
        SCHEMA_SHA256,
        "{} is not the expected junit-10.xsd: delete it to fetch it again",
        schema.display()
    );
    schema
}

/// Validate `report` against `schema` with xmllint; the error output when it does not validate.
fn validate(schema: &Path, report: &Path) -> Result<(), String> {
    let output = StdCommand::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(schema)
        .arg(report)
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run xmllint ({error}): install it with `apt-get install libxml2-utils` (scripts/test.sh does)")
        });
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[test]
fn a_junit_report_validates_against_junit_10_xsd() {
    let schema = junit_schema();
    // The checker itself refuses what the schema refuses (a report as the writer made it before).
    let out = tempfile::tempdir().unwrap();
    let old_root = out.path().join("old.xml");
    fs::write(
        &old_root,
        "<testsuites name=\"x\" tests=\"0\" failures=\"0\" errors=\"0\" skipped=\"0\" time=\"0.000\"></testsuites>\n",
    )
    .unwrap();
    let refused = validate(&schema, &old_root).unwrap_err();
    assert!(refused.contains("skipped"), "{refused}");

    // A real report with every kind of case: accepted, failures (WA, TLE), errors (RTE, CE) and
    // skipped ones (--fail-fast), and a submission whose name holds markup.
    let session = Session::new();
    let odd = out.path().join("a<b>&\"c\".py");
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(submission("ac")),
        &odd,
    )
    .unwrap();
    let junit = out.path().join("grade.xml");
    let subs: Vec<String> = ["ac", "wa", "rte", "ce", "tle"]
        .iter()
        .map(|name| submission(name))
        .collect();
    let mut args = vec![
        SUITE,
        "--fail-fast",
        "--jobs",
        "2",
        "--junit",
        path_str(&junit),
    ];
    args.extend(subs.iter().map(String::as_str));
    args.push(path_str(&odd));
    let output = grade(&session, &args);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let xml = fs::read_to_string(&junit).unwrap();
    for element in ["<failure", "<error", "<skipped"] {
        assert!(xml.contains(element), "no {element} in the report:\n{xml}");
    }
    if let Err(problems) = validate(&schema, &junit) {
        panic!("the report does not validate against junit-10.xsd:\n{problems}\n{xml}");
    }
    session.assert_clean_within(Duration::from_secs(2));
}
