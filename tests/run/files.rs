//! Files in (`--file`) and files out (`out/` → `--artifacts DIR`, `--json`): the program gets its
//! inputs read-only beside it and an empty `out/` every run; what it leaves there comes back
//! capped, regular files only, and is never written through a link.

use std::fs;
use std::os::unix::fs::symlink;

use base64::Engine as _;
use safe_exec::report::{RunReport, Status};

use crate::common::{parse_report, Session};

fn run_json(session: &Session, args: &[&str]) -> (RunReport, i32) {
    let output = session
        .safe_exec()
        .args(["run", "--json"])
        .args(args)
        .output()
        .unwrap();
    (
        parse_report(&output.stdout),
        output.status.code().unwrap_or(-1),
    )
}

#[test]
fn input_files_sit_beside_the_program_read_only_and_out_is_empty() {
    let session = Session::new();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.csv");
    fs::write(&data, "a,b\n1,2\n").unwrap();
    let binary = dir.path().join("blob.bin");
    fs::write(&binary, [0u8, 255, 7]).unwrap();
    let code = "import os\n\
                print(open('data.csv').read().split()[1])\n\
                print(list(open('blob.bin', 'rb').read()))\n\
                print(os.listdir('out'))\n\
                try:\n    open('data.csv', 'a')\nexcept PermissionError:\n    print('read-only')";
    let (report, exit) = run_json(
        &session,
        &[
            "--file",
            data.to_str().unwrap(),
            "--file",
            binary.to_str().unwrap(),
            "-c",
            code,
        ],
    );
    assert_eq!((report.status, exit), (Status::Ok, 0), "{report:?}");
    assert_eq!(report.stdout, "1,2\n[0, 255, 7]\n[]\nread-only\n");
    session.assert_clean();
}

#[test]
fn artifacts_come_back_listed_with_content_when_asked() {
    let session = Session::new();
    let code = "import os\n\
                os.makedirs('out/plots')\n\
                open('out/plots/figure.png', 'wb').write(bytes(range(256)))\n\
                open('out/result.csv', 'w').write('x\\n1\\n')\n\
                raise SystemExit(3)";
    let (report, exit) = run_json(&session, &["--artifact-content", "-c", code]);
    // The run's own status is the program's.
    assert_eq!(
        (report.status, exit),
        (Status::RuntimeError, 3),
        "{report:?}"
    );
    let files = &report.artifacts.files;
    let names: Vec<&str> = files.iter().map(|file| file.name.as_str()).collect();
    assert_eq!(names, ["plots/figure.png", "result.csv"]);
    assert_eq!(files[0].media_type, "image/png");
    assert_eq!(files[0].size, 256);
    let content = base64::engine::general_purpose::STANDARD
        .decode(files[0].content_base64.as_ref().unwrap())
        .unwrap();
    assert_eq!(content, (0u8..=255).collect::<Vec<_>>());
    assert_eq!(files[1].media_type, "text/csv");
    // Without --artifact-content, only the listing.
    let (report, _) = run_json(&session, &["-c", code]);
    assert!(report.artifacts.files[0].content_base64.is_none());
    session.assert_clean();
}

#[test]
fn an_artifact_dir_holding_a_link_to_etc_is_never_written_through() {
    let session = Session::new();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("artifacts");
    fs::create_dir(&target).unwrap();
    let outside = tempfile::tempdir().unwrap();
    symlink(outside.path(), target.join("etc")).unwrap();
    symlink(outside.path().join("planted"), target.join("note.txt")).unwrap();
    let code = "import os\n\
                os.makedirs('out/etc')\n\
                open('out/etc/passwd', 'w').write('owned')\n\
                open('out/note.txt', 'w').write('owned')\n\
                open('out/fine.txt', 'w').write('ok')\n\
                os.symlink('/etc/shadow', 'out/shadow')";
    let output = session
        .safe_exec()
        .args(["run", "--artifacts", target.to_str().unwrap(), "-c", code])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(fs::read_to_string(target.join("fine.txt")).unwrap(), "ok");
    // Nothing reached the directory behind the links.
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    assert!(
        stderr.contains("artifact etc/passwd: not written"),
        "{stderr}"
    );
    assert!(
        stderr.contains("artifact note.txt: not written"),
        "{stderr}"
    );
    assert!(
        stderr.contains("artifact shadow: a symbolic link"),
        "{stderr}"
    );
    session.assert_clean();
}

#[test]
fn many_tiny_files_and_huge_ones_are_capped_and_say_so() {
    let session = Session::new();
    let code = "import os\n\
                for i in range(10000):\n    open('out/f%05d' % i, 'w').write('x')\n\
                print('made')";
    let (report, exit) = run_json(&session, &["-c", code]);
    assert_eq!((report.status, exit), (Status::Ok, 0), "{report:?}");
    assert_eq!(report.artifacts.files.len(), 64);
    assert!(report.artifacts.truncated);
    // Two 5 MiB files against the 8 MiB cap: the second is cut short and marked.
    let code = "for name in ('a.bin', 'b.bin'):\n    open('out/' + name, 'wb').write(b'z' * 5 * 1024 * 1024)";
    let (report, exit) = run_json(&session, &["--memory", "256m", "-c", code]);
    assert_eq!((report.status, exit), (Status::Ok, 0), "{report:?}");
    let files = &report.artifacts.files;
    assert_eq!(files.len(), 2, "{:?}", report.artifacts);
    assert!(!files[0].truncated && files[1].truncated, "{files:?}");
    assert!(report.artifacts.truncated);
    session.assert_clean();
}
