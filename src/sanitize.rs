//! The one sanitiser for bytes that came from outside and end up in something safe-exec prints.
//!
//! Paths, file and suite names, engine messages and the launcher's diagnostics can hold anything:
//! ESC and OSC sequences that drive a terminal, a lone CR that a terminal (and the GitHub Actions
//! runner, which splits lines on it) treats as a new line, so `::warning ...::` smuggled inside a
//! path would start a workflow command of its own, or bidirectional overrides that make a name
//! read differently from what it is. Every such piece of text goes through [`text`], [`path`] or
//! [`bytes`] before it reaches stderr, a table, a report or an HTTP answer, in every subcommand.
//!
//! What is escaped: every control character (C0, DEL, C1 — so CR, LF, TAB, ESC and NEL too),
//! the Unicode line and paragraph separators, and the bidirectional formatting characters. They
//! are written as Rust-style escapes (`\r`, `\n`, `\t`, `\u{1b}`), and bytes that are not UTF-8 as
//! `\xNN`, so the reader sees exactly which bytes were there. Printable text passes unchanged.
//!
//! This module only transforms text; it never decides whether something may be printed at all
//! (a secret case's answer never reaches a report however it is escaped).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `text` with every character that could steer a terminal or a log parser escaped.
pub fn text(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for character in text.chars() {
        push_char(&mut shown, character);
    }
    Cow::Owned(shown)
}

/// A path as it may be printed: its bytes as UTF-8 where they are, `\xNN` where not, with
/// [`text`]'s escapes.
pub fn path(path: &Path) -> String {
    bytes(path.as_os_str().as_bytes())
}

/// Raw bytes (an engine's message, a launcher's complaint) as printable text.
pub fn bytes(bytes: &[u8]) -> String {
    let mut shown = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for character in chunk.valid().chars() {
            push_char(&mut shown, character);
        }
        for byte in chunk.invalid() {
            let _ = write!(shown, "\\x{byte:02x}");
        }
    }
    shown
}

/// A multi-line message from outside (an engine's or launcher's error output) folded into one
/// printable line: surrounding whitespace trimmed, then [`bytes`]'s escapes (newlines become `\n`).
pub fn one_line(raw: &[u8]) -> String {
    bytes(raw.trim_ascii())
}

fn needs_escape(character: char) -> bool {
    character.is_control()
        || matches!(
            character,
            // Line and paragraph separators.
            '\u{2028}' | '\u{2029}'
            // Bidirectional embeddings, overrides and isolates, and the marks.
            | '\u{200e}' | '\u{200f}' | '\u{061c}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
        )
}

fn push_char(shown: &mut String, character: char) {
    if !needs_escape(character) {
        shown.push(character);
        return;
    }
    match character {
        '\n' => shown.push_str("\\n"),
        '\r' => shown.push_str("\\r"),
        '\t' => shown.push_str("\\t"),
        other => {
            let _ = write!(shown, "\\u{{{:x}}}", u32::from(other));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn printable_text_is_unchanged_and_borrowed() {
        for plain in ["submission.py", "déjà vu/ü.py", "a b::c", "日本語", ""] {
            assert!(matches!(text(plain), Cow::Borrowed(same) if same == plain));
        }
    }

    #[test]
    fn terminal_and_log_controls_are_escaped() {
        assert_eq!(text("a\rb"), "a\\rb");
        assert_eq!(text("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(text("\u{1b}]0;title\u{7}x"), "\\u{1b}]0;title\\u{7}x");
        assert_eq!(text("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(text("\u{85}next"), "\\u{85}next");
        assert_eq!(text("x\u{7f}"), "x\\u{7f}");
        assert_eq!(text("a\u{2028}b"), "a\\u{2028}b");
        assert_eq!(text("evil\u{202e}yp.exe"), "evil\\u{202e}yp.exe");
        assert_eq!(text("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
    }

    #[test]
    fn a_forged_workflow_command_cannot_start_a_line() {
        let shown = text("sub.py\r::warning file=x::forged\n::error::also");
        assert!(!shown.contains('\r') && !shown.contains('\n'));
        assert!(shown.lines().all(|line| !line.starts_with("::")));
    }

    #[test]
    fn paths_show_bytes_that_are_not_utf8() {
        let raw = Path::new(OsStr::from_bytes(b"dir/\xff\xfe\x1b.py"));
        assert_eq!(path(raw), "dir/\\xff\\xfe\\u{1b}.py");
        assert_eq!(path(Path::new("plain/ok.py")), "plain/ok.py");
    }

    #[test]
    fn one_line_folds_and_trims() {
        assert_eq!(
            one_line(b"  Error: boom\n  at line 2\r\n"),
            "Error: boom\\n  at line 2"
        );
        assert_eq!(one_line(b"\xc3("), "\\xc3(");
    }
}
