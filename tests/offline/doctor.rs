//! `safe-exec doctor`, `image build` and `generate` where no engine is needed: a missing docker
//! client, refused arguments, completions for every shell and a man page that renders.

use std::io::Write;
use std::process::{Command as StdCommand, Stdio};

use assert_cmd::Command;
use predicates::prelude::*;
use safe_exec::doctor::checks::{ids, CheckStatus};
use safe_exec::doctor::DoctorReport;

fn safe_exec() -> Command {
    let mut command = Command::cargo_bin("safe-exec").expect("binary built");
    command.timeout(std::time::Duration::from_secs(60));
    command
}

#[test]
fn doctor_without_a_docker_client_fails_its_row_with_the_fix() {
    let output = safe_exec()
        .env("SAFE_EXEC_DOCKER", "/nonexistent/docker")
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report: DoctorReport = serde_json::from_slice(&output.stdout).unwrap();
    assert!(!report.healthy);
    let client = &report.checks[0];
    assert_eq!(
        (client.id.as_str(), client.status),
        (ids::CLIENT, CheckStatus::Fail)
    );
    assert_eq!(client.detail, "`/nonexistent/docker` not found");
    assert!(client.fix.as_deref().unwrap().contains("SAFE_EXEC_DOCKER"));
    assert!(report.checks[1..]
        .iter()
        .all(|row| row.status == CheckStatus::Skipped));

    safe_exec()
        .env("SAFE_EXEC_DOCKER", "/nonexistent/docker")
        .arg("doctor")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("FAIL    docker client"))
        .stdout(predicate::str::contains("fix: install Docker"));
}

#[test]
fn doctor_and_image_build_refuse_bad_arguments() {
    safe_exec().args(["doctor", "--bogus"]).assert().code(2);
    safe_exec()
        .args(["image", "build", "--pull-timeout", "0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("more than 0 seconds"));
    safe_exec().args(["image"]).assert().code(2);
    safe_exec()
        .args(["image", "build", "--ds-tag", "x:1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--ds"));
    safe_exec()
        .args(["image", "build", "--help"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("--offline").and(predicate::str::contains("--base")));
}

#[test]
fn image_build_without_an_engine_says_how_to_start_it() {
    let unreachable = tempfile::tempdir().unwrap();
    // A docker that answers like a client whose engine is down.
    let program = unreachable.path().join("docker");
    std::fs::write(
        &program,
        "#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///x.sock. Is the docker daemon running?' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    safe_exec()
        .env("SAFE_EXEC_DOCKER", &program)
        .args(["image", "build", "--tag", "x:1"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("cannot reach the Docker engine"))
        .stderr(predicate::str::contains("scripts/setup.sh starts it"));
}

/// An executable shell script `docker` in a fresh directory.
fn stub_docker(script: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("docker");
    std::fs::write(&program, format!("#!/bin/sh\n{script}")).unwrap();
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    (dir, program)
}

#[test]
fn image_build_without_a_base_or_debootstrap_says_what_to_do() {
    // An engine with no image at all; `--offline`, so the offline base is the only way left.
    let (_dir, docker) = stub_docker(
        "if [ \"$1 $2\" = \"image inspect\" ]; then echo \"Error: No such image: $5\" >&2; exit 1; fi\n\
         echo \"unexpected: $*\" >&2; exit 3\n",
    );
    let empty = tempfile::tempdir().unwrap();
    safe_exec()
        .env("SAFE_EXEC_DOCKER", &docker)
        // No debootstrap on this PATH (nor anything else).
        .env("PATH", empty.path())
        .args([
            "image",
            "build",
            "--tag",
            "x:1",
            "--offline",
            "--offline-base",
            "base:x",
        ])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("the offline base `base:x` needs"))
        .stderr(predicate::str::contains(
            "give a local base with --base IMAGE",
        ))
        .stderr(predicate::str::contains("unexpected").not());
}

#[test]
fn completions_for_every_shell_name_every_subcommand() {
    let subcommands = ["run", "grade", "serve", "gc", "doctor", "image", "generate"];
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = safe_exec()
            .args(["generate", "completions", shell])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{shell}");
        let script = String::from_utf8(output.stdout).unwrap();
        for name in subcommands {
            assert!(script.contains(name), "{shell} completions lack `{name}`");
        }
    }
    safe_exec()
        .args(["generate", "completions", "tcsh"])
        .assert()
        .code(2);
}

#[test]
fn the_bash_completions_load_in_bash() {
    let output = safe_exec()
        .args(["generate", "completions", "bash"])
        .output()
        .unwrap();
    let script = String::from_utf8(output.stdout).unwrap();
    let check = format!("{script}\ncomplete -p safe-exec\n");
    let loaded = StdCommand::new("bash")
        .args(["--norc", "-c", &check])
        .output()
        .unwrap();
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert!(String::from_utf8_lossy(&loaded.stdout).contains("safe-exec"));
}

#[test]
fn the_man_page_renders_without_warnings() {
    let page = safe_exec().args(["generate", "man"]).output().unwrap();
    assert_eq!(page.status.code(), Some(0));
    let mut man = StdCommand::new("man")
        .args(["--warnings", "-l", "-"])
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!("cannot run `man` ({error}): apt-get install man-db groff-base")
        });
    man.stdin.take().unwrap().write_all(&page.stdout).unwrap();
    let rendered = man.wait_with_output().unwrap();
    assert!(rendered.status.success());
    let stderr = String::from_utf8_lossy(&rendered.stderr);
    assert!(stderr.trim().is_empty(), "roff warnings:\n{stderr}");
    let text = String::from_utf8_lossy(&rendered.stdout);
    for heading in [
        "NAME",
        "SYNOPSIS",
        "SUBCOMMANDS",
        "SAFE-EXEC RUN",
        "SAFE-EXEC DOCTOR",
        "SAFE-EXEC IMAGE BUILD",
        "SAFE-EXEC GENERATE COMPLETIONS",
    ] {
        assert!(text.contains(heading), "no {heading} in\n{text}");
    }
    assert!(text.contains("--max-output"), "{text}");
}
