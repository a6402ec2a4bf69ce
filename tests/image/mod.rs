//! `safe-exec image build` against the real engine: a copy of the runner image built under a tag
//! of the test's own from the context the binary carries, which runs programs, carries this
//! binary's context hash, and is not built again while current. The installed image
//! (`safe-exec-python:3.11`) and the offline base are never rebuilt or removed.

use std::process::{Command as StdCommand, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use assert_cmd::Command;
use predicates::prelude::*;
use safe_exec::image::context;

use crate::common::{require_engine, Session};

/// A runner image under a tag no one else uses, built by `safe-exec image build` and removed
/// (untagged, should another tag share it) when dropped.
pub struct TempImage {
    pub tag: String,
    /// What the first build printed on stderr.
    pub build_stderr: String,
}

impl TempImage {
    pub fn build() -> TempImage {
        require_engine();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let tag = format!("safe-exec-python:test-{}-{nanos}", std::process::id());
        // Owned (and so removed) from before the build: a build that fails half-way is removed too.
        let mut image = TempImage {
            tag,
            build_stderr: String::new(),
        };
        let output = image_build(&image.tag);
        image.build_stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(
            output.status.code(),
            Some(0),
            "`safe-exec image build --tag {}` failed:\n{}",
            image.tag,
            image.build_stderr
        );
        image
    }

    /// `docker image inspect --format FORMAT` of this image.
    pub fn inspect(&self, format: &str) -> String {
        inspect(&self.tag, format)
    }
}

impl Drop for TempImage {
    fn drop(&mut self) {
        let _ = StdCommand::new("docker").args(["rmi", &self.tag]).output();
    }
}

pub fn inspect(image: &str, format: &str) -> String {
    let output = StdCommand::new("docker")
        .args(["image", "inspect", "--format", format, image])
        .output()
        .expect("docker image inspect");
    assert!(
        output.status.success(),
        "docker image inspect {image}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// `safe-exec image build --tag TAG`, choosing its base as a user's would (no SAFE_EXEC_BASE).
pub fn image_build(tag: &str) -> Output {
    Command::cargo_bin("safe-exec")
        .unwrap()
        .args(["image", "build", "--tag", tag])
        .env_remove("SAFE_EXEC_BASE")
        .env_remove("SAFE_EXEC_IMAGE")
        .timeout(std::time::Duration::from_secs(600))
        .output()
        .unwrap()
}

#[test]
fn image_build_makes_a_labelled_image_that_runs_and_is_not_built_again() {
    let image = TempImage::build();
    assert!(
        image.build_stderr.contains("built from"),
        "{}",
        image.build_stderr
    );
    assert_eq!(
        image.inspect("{{ index .Config.Labels \"safe-exec.context\" }}"),
        context::hash(),
        "the label is the hash of the context this binary carries"
    );
    let base = image.inspect("{{ index .Config.Labels \"safe-exec.base\" }}");
    assert!(
        ["python:3.11-slim", "safe-exec-base:bookworm"].contains(&base.as_str()),
        "{base}"
    );
    let id = image.inspect("{{.Id}}");

    let session = Session::new();
    session
        .safe_exec()
        .env("SAFE_EXEC_IMAGE", &image.tag)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "examples/hello.py"])
        .assert()
        .code(0)
        .stdout("Hello from the sandbox!\n");
    session.assert_clean();

    // Current: nothing is built (no `docker build`, the same image).
    let again = image_build(&image.tag);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("is up to date"), "{stderr}");
    assert!(!stderr.contains("building"), "{stderr}");
    assert_eq!(image.inspect("{{.Id}}"), id);
}

#[test]
fn a_stale_image_is_rebuilt_and_a_base_that_is_not_local_is_refused() {
    let image = TempImage::build();
    // The same image with another context label: what an image from an older launcher looks like.
    let stale = format!("{}-stale", image.tag);
    let output = StdCommand::new("docker")
        .args([
            "build",
            "--quiet",
            "--label",
            "safe-exec.context=older",
            "--tag",
            &stale,
            "-",
        ])
        .env("DOCKER_BUILDKIT", "0")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(format!("FROM {}\n", image.tag).as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(output.status.success());
    let stale = TempImage {
        tag: stale,
        build_stderr: String::new(),
    };
    let rebuilt = image_build(&stale.tag);
    let stderr = String::from_utf8_lossy(&rebuilt.stderr);
    assert_eq!(rebuilt.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("is stale (built from context older"),
        "{stderr}"
    );
    assert_eq!(
        stale.inspect("{{ index .Config.Labels \"safe-exec.context\" }}"),
        context::hash()
    );

    Command::cargo_bin("safe-exec")
        .unwrap()
        .args([
            "image",
            "build",
            "--tag",
            &stale.tag,
            "--base",
            "safe-exec-no-such-base:0",
        ])
        .assert()
        .code(125)
        .stderr(predicate::str::contains(
            "the base image `safe-exec-no-such-base:0` is not a local image",
        ));
}
