//! Tests that facts written in two places still agree: the launcher's protocol constants in
//! `runner_image/launch.py` against `src/sandbox/mod.rs` (the frame tags and uids are checked
//! beside the constants there), and every protocol version the
//! repository's documents name against both. Test-only; nothing here is compiled into the binary.
//!
//! The exit codes have their own such test, next to the constants in `src/exit_codes.rs`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::sandbox;

const LAUNCH_PY: &str = include_str!("../runner_image/launch.py");
const DOCKERFILE: &str = include_str!("../runner_image/Dockerfile");
const SANDBOX_MOD: &str = include_str!("sandbox/mod.rs");

/// The word every protocol version starts with (`SAFE-EXEC/2` is version 2).
const PROTOCOL_WORD: &str = "SAFE-EXEC/";

/// The value of `NAME = b"..."` in launch.py, with Python's escapes undone.
fn launcher_bytes(name: &str) -> Vec<u8> {
    let prefix = format!("{name} = b\"");
    let line = LAUNCH_PY
        .lines()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("launch.py has no line `{prefix}...\"`"));
    let literal = line[prefix.len()..]
        .strip_suffix('"')
        .unwrap_or_else(|| panic!("launch.py: `{line}` is not one bytes literal"));
    unescape_python_bytes(literal)
}

/// The escapes launch.py's constants use: `\xNN`, `\n`, `\\` and `\"`.
fn unescape_python_bytes(literal: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = literal.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buffer = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
            continue;
        }
        match chars.next() {
            Some('n') => out.push(b'\n'),
            Some('\\') => out.push(b'\\'),
            Some('"') => out.push(b'"'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&hex, 16).expect("two hex digits after \\x"));
            }
            other => panic!("escape \\{other:?} in a launch.py constant: teach this test about it"),
        }
    }
    out
}

/// Every `SAFE-EXEC/<digits>` in `text`, with the line it is on.
fn protocol_versions(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        for (start, _) in line.match_indices(PROTOCOL_WORD) {
            let rest = &line[start + PROTOCOL_WORD.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            found.push((number + 1, format!("{PROTOCOL_WORD}{digits}")));
        }
    }
    found
}

/// Every number written between `before` and `after` in `text` (e.g. "Protocol (version " and
/// ")" → "2"); other occurrences of `before` are not about the protocol and are skipped.
fn numbers_between(text: &str, before: &str, after: &str) -> Vec<String> {
    text.match_indices(before)
        .filter_map(|(start, _)| {
            let rest = &text[start + before.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let followed = rest[digits.len()..].starts_with(after);
            (!digits.is_empty() && followed).then_some(digits)
        })
        .collect()
}

fn version_number() -> &'static str {
    sandbox::PROTOCOL
        .strip_prefix(PROTOCOL_WORD)
        .expect("sandbox::PROTOCOL starts with SAFE-EXEC/")
}

/// The documents that may name the protocol: the README, DEVELOPERS.md and every file of docs/.
fn documents() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = vec![root.join("README.md"), root.join("DEVELOPERS.md")];
    let docs = root.join("docs");
    let entries = fs::read_dir(&docs).unwrap_or_else(|e| panic!("{}: {e}", docs.display()));
    for entry in entries {
        let path = entry.expect("a docs/ entry").path();
        if path.extension().is_some_and(|ext| ext == "md") {
            paths.push(path);
        }
    }
    paths.sort();
    paths
}

#[test]
fn the_launcher_speaks_the_supervisors_protocol_version() {
    assert_eq!(
        launcher_bytes("PROTOCOL"),
        sandbox::PROTOCOL.as_bytes(),
        "PROTOCOL differs between runner_image/launch.py and src/sandbox/mod.rs: change both"
    );
    assert!(
        version_number().parse::<u32>().is_ok(),
        "sandbox::PROTOCOL is SAFE-EXEC/<number>"
    );
}

#[test]
fn the_image_puts_the_launcher_where_the_supervisor_starts_it() {
    assert!(
        DOCKERFILE
            .lines()
            .any(|line| line.trim() == format!("COPY launch.py {}", sandbox::LAUNCHER_SOURCE)),
        "runner_image/Dockerfile must copy launch.py to {}",
        sandbox::LAUNCHER_SOURCE
    );
    assert!(
        DOCKERFILE.contains(&format!("cfile=\"{}\"", sandbox::LAUNCHER)),
        "runner_image/Dockerfile must compile launch.py to {}",
        sandbox::LAUNCHER
    );
}

#[test]
fn every_protocol_version_named_in_the_sources_is_the_current_one() {
    for (file, text) in [
        ("runner_image/launch.py", LAUNCH_PY),
        ("src/sandbox/mod.rs", SANDBOX_MOD),
    ] {
        for (line, named) in protocol_versions(text) {
            assert_eq!(
                named,
                sandbox::PROTOCOL,
                "{file}:{line} names {named}, the protocol is {}",
                sandbox::PROTOCOL
            );
        }
    }
    let described = numbers_between(LAUNCH_PY, "(protocol version ", ")");
    assert!(
        !described.is_empty(),
        "launch.py's docstring says which protocol version it speaks"
    );
    for number in described {
        assert_eq!(
            number,
            version_number(),
            "launch.py's docstring describes protocol version {number}"
        );
    }
    for number in numbers_between(SANDBOX_MOD, "Version ", " of the stdin protocol") {
        assert_eq!(
            number,
            version_number(),
            "src/sandbox/mod.rs documents protocol version {number}"
        );
    }
}

#[test]
fn every_protocol_version_named_in_the_documents_is_the_current_one() {
    for path in documents() {
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (line, named) in protocol_versions(&text) {
            assert_eq!(
                named,
                sandbox::PROTOCOL,
                "{}:{line} names {named}, the protocol is {} (src/sandbox/mod.rs, \
                 runner_image/launch.py)",
                path.display(),
                sandbox::PROTOCOL
            );
        }
    }
}

#[test]
fn the_version_finder_finds_versions() {
    assert_eq!(
        protocol_versions("a SAFE-EXEC/1 b\nSAFE-EXEC/12"),
        [
            (1, "SAFE-EXEC/1".to_owned()),
            (2, "SAFE-EXEC/12".to_owned())
        ]
    );
    assert_eq!(unescape_python_bytes(r"\x00a\n"), b"\0a\n");
    assert_eq!(
        numbers_between(
            "Version 3 of the stdin protocol; Version 4 of X",
            "Version ",
            " of the stdin protocol"
        ),
        ["3"]
    );
}
