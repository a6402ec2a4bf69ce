//! Hostile clients and hostile outside text against the real server and engine: what a client
//! that never reads, a flood of addresses or a rebinding page can do now, and that text from
//! outside reaches the server's stderr only through the sanitiser.

use std::time::Duration;

use crate::common::Session;

/// A path holding terminal controls (OSC title, CR and a forged workflow command) reaches stderr
/// escaped, never raw.
#[test]
fn paths_in_serve_messages_are_sanitised() {
    let session = Session::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join("missing\u{1b}]0;pwned\u{7}\r::warning::forged")
        .join("audit.jsonl");
    let output = session
        .safe_exec()
        .args(["serve", "--addr", "127.0.0.1:0", "--audit-log"])
        .arg(&path)
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    assert_ne!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot open the audit log"), "{stderr}");
    assert!(
        stderr.contains("missing\\u{1b}]0;pwned\\u{7}\\r::warning::forged"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\r'),
        "{stderr:?}"
    );
}
