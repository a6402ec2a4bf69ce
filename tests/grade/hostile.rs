//! Hostile files and names given to `safe-exec grade` (issue 8): a submission that is a symbolic
//! link (to a secret answer, to a host file), a hard link to a suite file, a FIFO or a device; a
//! suite that is a link or holds links or special files; paths whose bytes would drive a terminal
//! or forge a GitHub workflow command. Each is refused before anything runs, without hanging,
//! with a message that names the file, and nothing of a secret case reaches any report.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output};
use std::time::{Duration, Instant};

use safe_exec::grade::verdict::Verdict;

use super::{path_str, stderr, suite_dir, Files};
use crate::common::{RecordingDocker, Session};

/// The secret answer: a first line that is a Python syntax error, so a compile error quoting it
/// would show it.
const SECRET: &str = "SECRET 4242 LEAKED";

/// A package whose secret answer is [`SECRET`], with a sample (full feedback) beside it.
fn secret_suite() -> tempfile::TempDir {
    let secret_answer = format!("{SECRET}\n");
    let files: Files = &[
        ("problem.yaml", b"name: Hostile\n"),
        ("data/sample/1.in", b"1 2\n"),
        ("data/sample/1.ans", b"3\n"),
        ("data/secret/1.in", b"SECRET-INPUT 7\n"),
        ("data/secret/1.ans", secret_answer.as_bytes()),
    ];
    suite_dir(files)
}

/// Every report a grade run can write, and where.
struct Reports {
    dir: tempfile::TempDir,
}

impl Reports {
    fn new() -> Reports {
        let reports = Reports {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::write(reports.summary(), "earlier steps\n").unwrap();
        reports
    }

    fn json(&self) -> PathBuf {
        self.dir.path().join("grade.json")
    }

    fn junit(&self) -> PathBuf {
        self.dir.path().join("grade.xml")
    }

    fn gradescope(&self) -> PathBuf {
        self.dir.path().join("results.json")
    }

    fn summary(&self) -> PathBuf {
        self.dir.path().join("summary.md")
    }

    /// `safe-exec grade SUITE SUBMISSION` writing every report, as GitHub Actions runs it.
    fn grade(&self, session: &Session, docker: Option<&Path>, suite: &Path, sub: &Path) -> Output {
        let mut command = session.safe_exec();
        if let Some(docker) = docker {
            command.env("SAFE_EXEC_DOCKER", docker);
        }
        command
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_STEP_SUMMARY", self.summary())
            .timeout(Duration::from_secs(60))
            .arg("grade")
            .arg(suite)
            .arg(sub)
            .arg("--json")
            .arg(self.json())
            .arg("--junit")
            .arg(self.junit())
            .arg("--gradescope")
            .arg(self.gradescope())
            .output()
            .expect("safe-exec runs")
    }

    /// No report, no summary, no line of stdout or stderr holds `secret`.
    fn assert_nothing_shows(&self, output: &Output, secret: &str) {
        for (what, text) in [
            (
                "stdout (the table)",
                String::from_utf8_lossy(&output.stdout),
            ),
            ("stderr", String::from_utf8_lossy(&output.stderr)),
        ] {
            assert!(!text.contains(secret), "{secret:?} in {what}:\n{text}");
        }
        for path in [self.json(), self.junit(), self.gradescope(), self.summary()] {
            let text = fs::read_to_string(&path).unwrap_or_default();
            assert!(
                !text.contains(secret),
                "{secret:?} in {}:\n{text}",
                path.display()
            );
        }
    }
}

#[test]
fn a_symlinked_submission_is_refused_and_no_secret_reaches_any_report() {
    let session = Session::new();
    let suite = secret_suite();
    let subs = tempfile::tempdir().unwrap();
    for (name, target, first_line) in [
        (
            "to-answer.py",
            suite.path().join("data/secret/1.ans"),
            SECRET.to_owned(),
        ),
        (
            "to-input.py",
            suite.path().join("data/secret/1.in"),
            "SECRET-INPUT 7".to_owned(),
        ),
        (
            "to-passwd.py",
            PathBuf::from("/etc/passwd"),
            fs::read_to_string("/etc/passwd")
                .unwrap()
                .lines()
                .next()
                .unwrap()
                .to_owned(),
        ),
    ] {
        let link = subs.path().join(name);
        symlink(&target, &link).unwrap();
        let reports = Reports::new();
        let output = reports.grade(&session, None, suite.path(), &link);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(66), "{name}: {message}");
        assert!(
            message.contains(&format!("submission {}", link.display()))
                && message.contains("symbolic link"),
            "{name}: {message}"
        );
        reports.assert_nothing_shows(&output, &first_line);
        assert!(!reports.json().exists() && !reports.junit().exists());
        assert!(!reports.gradescope().exists());
        assert_eq!(
            fs::read_to_string(reports.summary()).unwrap(),
            "earlier steps\n"
        );
        assert!(session.containers().is_empty(), "{name}: nothing may run");
    }
}

#[test]
fn a_hard_link_to_a_suite_file_is_refused() {
    let session = Session::new();
    let suite = secret_suite();
    // Same file system as the suite, or the link cannot be made.
    let link = suite.path().join("solution.py");
    fs::hard_link(suite.path().join("data/secret/1.ans"), &link).unwrap();
    let reports = Reports::new();
    let docker = RecordingDocker::new();
    let output = reports.grade(&session, Some(&docker.program), suite.path(), &link);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(66), "{message}");
    assert!(
        message.contains("is a file of the suite") && message.contains("secret/1"),
        "{message}"
    );
    reports.assert_nothing_shows(&output, SECRET);
    docker.assert_never_called();
}

#[test]
fn fifo_and_device_submissions_are_refused_without_hanging() {
    let session = Session::new();
    let suite = secret_suite();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.py");
    let made = StdCommand::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let docker = RecordingDocker::new();
    for (path, what) in [
        (fifo.as_path(), "FIFO"),
        (Path::new("/dev/zero"), "character device"),
        (Path::new("/dev/null"), "character device"),
    ] {
        let reports = Reports::new();
        let output = reports.grade(&session, Some(&docker.program), suite.path(), path);
        let message = stderr(&output);
        assert_eq!(
            output.status.code(),
            Some(66),
            "{}: {message}",
            path.display()
        );
        assert!(
            message.contains(what) && message.contains(&path.display().to_string()),
            "{message}"
        );
    }
    docker.assert_never_called();
}

#[test]
fn a_suite_that_is_or_holds_a_link_or_a_special_file_is_refused() {
    let session = Session::new();
    let ac = Path::new(env!("CARGO_MANIFEST_DIR")).join(super::submission("ac"));
    let docker = RecordingDocker::new();
    let grade = |suite: &Path| {
        session
            .safe_exec()
            .env("SAFE_EXEC_DOCKER", &docker.program)
            .timeout(Duration::from_secs(60))
            .arg("grade")
            .arg(suite)
            .arg(&ac)
            .output()
            .unwrap()
    };

    // The suite itself is a symbolic link to a directory: refused, naming it.
    let real = secret_suite();
    let links = tempfile::tempdir().unwrap();
    let linked_suite = links.path().join("suite");
    symlink(real.path(), &linked_suite).unwrap();
    let output = grade(&linked_suite);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(66), "{message}");
    assert!(
        message.contains(path_str(&linked_suite)) && message.contains("symbolic link"),
        "{message}"
    );

    // Inside the suite: a linked answer, a linked input, a linked group, a linked
    // configuration file, and a FIFO where an input belongs. Each is malformed, by name.
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("x.ans"), "3\n").unwrap();
    fs::create_dir(outside.path().join("group")).unwrap();
    fs::write(outside.path().join("group/1.in"), "1 2\n").unwrap();
    fs::write(outside.path().join("group/1.ans"), "3\n").unwrap();
    fs::write(outside.path().join("test_group.yaml"), "max_score: 100\n").unwrap();
    let secret_answer = real.path().join("data/secret/1.ans");
    type Plant<'a> = Box<dyn Fn(&Path) + 'a>;
    let cases: Vec<(&str, Plant)> = vec![
        (
            "data/secret/2.ans",
            Box::new(|suite: &Path| {
                fs::write(suite.join("data/secret/2.in"), "1 2\n").unwrap();
                symlink(
                    outside.path().join("x.ans"),
                    suite.join("data/secret/2.ans"),
                )
                .unwrap();
            }),
        ),
        (
            "data/sample/2.ans",
            Box::new(|suite: &Path| {
                // A sample shows its answer: a link to a secret one would publish it.
                fs::write(suite.join("data/sample/2.in"), "1 2\n").unwrap();
                symlink(&secret_answer, suite.join("data/sample/2.ans")).unwrap();
            }),
        ),
        (
            "data/secret/g",
            Box::new(|suite: &Path| {
                symlink(outside.path().join("group"), suite.join("data/secret/g")).unwrap();
            }),
        ),
        (
            "data/secret/test_group.yaml",
            Box::new(|suite: &Path| {
                symlink(
                    outside.path().join("test_group.yaml"),
                    suite.join("data/secret/test_group.yaml"),
                )
                .unwrap();
            }),
        ),
        (
            "data/secret/3.in",
            Box::new(|suite: &Path| {
                let made = StdCommand::new("mkfifo")
                    .arg(suite.join("data/secret/3.in"))
                    .status()
                    .unwrap();
                assert!(made.success());
                fs::write(suite.join("data/secret/3.ans"), "3\n").unwrap();
            }),
        ),
    ];
    for (file, plant) in cases {
        let suite = secret_suite();
        plant(suite.path());
        let output = grade(suite.path());
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(65), "{file}: {message}");
        assert!(
            message.contains("malformed suite")
                && message.contains(path_str(&suite.path().join(file))),
            "{file}: {message}"
        );
        assert!(!message.contains(SECRET), "{message}");
    }
    docker.assert_never_called();
}

/// A file name that, printed raw, would return the carriage, start a GitHub workflow command,
/// set the terminal's title and ring its bell.
const HOSTILE_NAME: &str = "x\r::warning file=a,line=1::forged\u{1b}]0;owned\u{7}.py";
/// How the sanitiser shows it.
const HOSTILE_SHOWN: &str = "x\\r::warning file=a,line=1::forged\\u{1b}]0;owned\\u{7}.py";

/// No raw control character, and no line that GitHub would read as a workflow command.
fn assert_inert(text: &str) {
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "raw control characters: {text:?}"
    );
    assert!(
        text.lines()
            .all(|line| !line.trim_start().starts_with("::")),
        "a line GitHub would run: {text:?}"
    );
}

#[test]
fn hostile_path_bytes_are_escaped_in_grade_s_messages() {
    let session = Session::new();
    let suite = secret_suite();
    let dir = tempfile::tempdir().unwrap();
    let docker = RecordingDocker::new();
    let missing = dir.path().join(HOSTILE_NAME);
    let directory = dir.path().join(format!("{HOSTILE_NAME}.d"));
    fs::create_dir(&directory).unwrap();
    let linked = dir.path().join(format!("{HOSTILE_NAME}.link"));
    symlink("/etc/passwd", &linked).unwrap();
    let missing_suite = dir.path().join(format!("suite-{HOSTILE_NAME}"));
    let ac = Path::new(env!("CARGO_MANIFEST_DIR")).join(super::submission("ac"));
    for (args, mentions) in [
        (vec![suite.path(), &missing], "no such file"),
        (vec![suite.path(), &directory], "directory"),
        (vec![suite.path(), &linked], "symbolic link"),
        (vec![&missing_suite, &ac], "not found"),
    ] {
        let output = session
            .safe_exec()
            .env("SAFE_EXEC_DOCKER", &docker.program)
            .arg("grade")
            .args(&args)
            .output()
            .unwrap();
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(66), "{message:?}");
        assert!(message.contains(mentions), "{message:?}");
        assert!(message.contains(HOSTILE_SHOWN), "{message:?}");
        assert_inert(&message);
    }
    docker.assert_never_called();
}

/// Submissions that attack the judge's clock and their neighbours (issue 8), graded on the sum
/// example: each gets an honest verdict, quickly, and none makes the batch a judge error.
#[test]
fn a_submission_cannot_hold_the_judge_or_flip_its_neighbour_s_verdict() {
    let session = Session::new();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, code: &str| {
        let path = dir.path().join(name);
        fs::write(&path, code).unwrap();
        path
    };
    // Tries to stop its launcher at the end and leaves a child working on: the old way to get
    // time for free, or to stall every case into a judge error.
    let holder = write(
        "holder.py",
        "import os, signal, sys, time\n\
         n, *numbers = map(int, sys.stdin.read().split())\n\
         if os.fork() == 0:\n    time.sleep(0.2)\n    while True: pass\n\
         for target in (1, os.getppid()):\n    try:\n        os.kill(target, signal.SIGSTOP)\n    except PermissionError:\n        pass\n\
         print(sum(numbers[:n]))\n",
    );
    // Writes single bytes to both streams as fast as it can: the noisy neighbour.
    let noisy = write(
        "noisy.py",
        "import os\nwhile True:\n    os.write(1, b'1')\n    os.write(2, b'2')\n",
    );
    // An honest solution that needs about 0.3 s of CPU: well within the 1 s limit, whatever the
    // neighbours do to the wall clock.
    let honest = write(
        "honest.py",
        "import sys, time\n\
         n, *numbers = map(int, sys.stdin.read().split())\n\
         while time.process_time() < 0.3:\n    pass\n\
         print(sum(numbers[:n]))\n",
    );
    let json = dir.path().join("report.json");
    let started = Instant::now();
    let output = super::grade(
        &session,
        &[
            super::SUITE,
            path_str(&holder),
            path_str(&noisy),
            path_str(&honest),
            "--jobs",
            "2",
            "--exit-zero",
            // The time limit is CPU time, which a neighbour cannot take; the wall-clock backstop
            // (by default 2 x 1 s + 1 s) is moved out of the way so that a machine loaded by more
            // than this test cannot decide the verdict either.
            "--wall-timeout",
            "60",
            "--json",
            path_str(&json),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report = super::read_json(&json);
    let verdict = |name: &str| super::by_name(&report, name).verdict;
    assert_eq!(verdict("holder"), Verdict::AC, "{report:#?}");
    assert_eq!(verdict("honest"), Verdict::AC, "{report:#?}");
    assert_ne!(verdict("noisy"), Verdict::JE);
    let honest = super::by_name(&report, "honest");
    assert!(
        honest.cases.iter().all(|case| case.time_s.unwrap() <= 1.0),
        "{honest:#?}"
    );
    // Five cases each, two at a time: nowhere near 20 s a case.
    assert!(started.elapsed() < Duration::from_secs(120));
    session.assert_clean();
}
