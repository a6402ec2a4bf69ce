//! `serve` and `run --server` refusals that happen before any engine is asked: where to listen,
//! TLS files, the token rule, and server URLs.

use std::time::Duration;

use crate::common::RecordingDocker;

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `--unix PATH` over something that is not a socket is refused and left alone; TLS files that
/// cannot be used and a token in clear text on a public address are usage errors. None of it
/// asks the engine.
#[test]
fn serve_refuses_what_it_cannot_listen_with() {
    let docker = RecordingDocker::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "keep me").unwrap();
    let serve = |args: &[&str]| {
        docker
            .safe_exec()
            .arg("serve")
            .args(args)
            .env_remove("SAFE_EXEC_TOKEN")
            .timeout(Duration::from_secs(30))
            .output()
            .unwrap()
    };
    let refused = serve(&["--unix", file.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(125), "{}", stderr(&refused));
    assert!(
        stderr(&refused)
            .contains("something that is not a socket is there; refusing to replace it"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");

    let missing = serve(&[
        "--tls-cert",
        "/nonexistent/cert.pem",
        "--tls-key",
        "/nonexistent/key.pem",
    ]);
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("--tls-cert /nonexistent/cert.pem: no such file"),
        "{}",
        stderr(&missing)
    );
    let half = serve(&["--tls-cert", "/nonexistent/cert.pem"]);
    assert_eq!(half.status.code(), Some(2), "{}", stderr(&half));

    let clear = serve(&["--addr", "0.0.0.0:0", "--token", "0123456789abcdef0123"]);
    assert_eq!(clear.status.code(), Some(2), "{}", stderr(&clear));
    assert!(stderr(&clear).contains("refusing to take the token in clear text"));
    let both = serve(&["--unix", file.to_str().unwrap(), "--addr", "127.0.0.1:0"]);
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
    docker.assert_never_called();
}
