//! GitHub Actions (`GITHUB_ACTIONS=true`): a Markdown summary appended to
//! `$GITHUB_STEP_SUMMARY`, a few `::error` annotations, and protection of the log.
//!
//! Student-controlled text (file names, messages quoting output, the output itself) must not be
//! able to forge Markdown in the summary or workflow commands in the log:
//!
//! - in the summary, table cells and list text escape every ASCII punctuation character
//!   ([`escape_markdown`]); program output appears only for full-feedback cases, inside a code
//!   fence longer than any backtick run in it ([`fence`]);
//! - in the log, everything we print that contains such text is wrapped in
//!   `::stop-commands::TOKEN` … `::TOKEN::` with an unguessable token ([`stop_commands`]), and our
//!   own annotations come after it, their outside text through [`crate::sanitize`] (no control
//!   character at all) and then escaped as the runner expects ([`annotation`]).

use std::fmt::Write;

use super::{case_details, seconds};
use crate::grade::compile::short_message;
use crate::grade::score::SubmissionResult;
use crate::grade::suite::{show_score, Suite};
use crate::grade::verdict::Verdict;
use crate::sanitize;

/// At most this many `::error` annotations per batch (GitHub shows 10 per step).
pub const MAX_ANNOTATIONS: usize = 5;
/// GitHub refuses step summaries over 1 MiB; details stop once this much is written.
const MAX_SUMMARY_BYTES: usize = 512 * 1024;
/// At most this many failed cases are detailed per submission in the summary.
const MAX_CASES_IN_SUMMARY: usize = 10;

/// The Markdown appended to `$GITHUB_STEP_SUMMARY`.
pub fn summary(suite: &Suite, results: &[SubmissionResult]) -> String {
    let mut md = String::new();
    let accepted = results.iter().filter(|result| result.accepted()).count();
    let _ = writeln!(
        md,
        "### safe-exec grade: {}\n\n{accepted} of {} submissions accepted.\n",
        escape_markdown(&suite.name),
        results.len()
    );
    md.push_str("| Submission | Verdict | Score | Slowest case |\n|---|---|---|---|\n");
    for result in results {
        let _ = writeln!(
            md,
            "| {} | {} {} | {} / {} | {} |",
            escape_markdown(&result.name()),
            if result.accepted() { "✅" } else { "❌" },
            result.verdict,
            show_score(result.score),
            show_score(result.max_score),
            result
                .slowest()
                .map_or("–".to_owned(), |time| format!("{:.3} s", seconds(time)))
        );
    }
    for result in results.iter().filter(|result| !result.accepted()) {
        let _ = write!(
            md,
            "\n#### {}: {} ({})\n\n",
            escape_markdown(&result.name()),
            result.verdict,
            result.verdict.describe()
        );
        if result.verdict == Verdict::CE {
            if let Some(error) = &result.message {
                md.push_str(&fence(error));
            }
            continue;
        }
        let failed: Vec<usize> = (0..result.cases.len())
            .filter(|&case| !matches!(result.cases[case].verdict, Verdict::AC | Verdict::Skipped))
            .collect();
        for &case in failed.iter().take(MAX_CASES_IN_SUMMARY) {
            let outcome = &result.cases[case];
            let _ = writeln!(
                md,
                "- **{}** {}: {}",
                escape_markdown(&suite.cases[case].name),
                outcome.verdict,
                escape_markdown(&outcome.message)
            );
            if let Some(hint) = suite.cases[case].hint.as_deref() {
                let _ = writeln!(md, "  hint: {}", escape_markdown(hint));
            }
            if outcome.feedback.is_some() {
                md.push('\n');
                md.push_str(&fence(&case_details(suite, case, outcome)));
            }
        }
        if failed.len() > MAX_CASES_IN_SUMMARY {
            let _ = writeln!(
                md,
                "- … and {} more failed cases",
                failed.len() - MAX_CASES_IN_SUMMARY
            );
        }
        if md.len() > MAX_SUMMARY_BYTES {
            md.push_str("\n*The summary is cut here to stay within GitHub's size limit; the other reports have everything.*\n");
            break;
        }
    }
    md
}

/// `::error` lines for the submissions that were not accepted (at most [`MAX_ANNOTATIONS`], then
/// one `::notice` for the rest).
pub fn annotations(results: &[SubmissionResult]) -> Vec<String> {
    let rejected: Vec<&SubmissionResult> =
        results.iter().filter(|result| !result.accepted()).collect();
    let mut lines: Vec<String> = rejected
        .iter()
        .take(MAX_ANNOTATIONS)
        .map(|result| {
            let mut message = result.headline();
            if let Some(detail) = &result.message {
                let line = if result.verdict == Verdict::CE {
                    short_message(detail)
                } else {
                    detail.lines().next().unwrap_or("").to_owned()
                };
                message.push_str(&format!(" — {line}"));
            }
            // Names and messages come from outside: no control character reaches the log,
            // escaped or not (the runner would unescape %0D back into a carriage return).
            let name = sanitize::text(&result.name()).into_owned();
            annotation(
                "error",
                &[
                    ("file", &name),
                    ("title", &format!("{name}: {}", result.verdict)),
                ],
                &sanitize::text(&message),
            )
        })
        .collect();
    if rejected.len() > MAX_ANNOTATIONS {
        lines.push(annotation(
            "notice",
            &[],
            &format!(
                "{} more submissions were not accepted: see the step summary",
                rejected.len() - MAX_ANNOTATIONS
            ),
        ));
    }
    lines
}

/// One workflow command, escaped the way the runner unescapes it.
pub fn annotation(command: &str, properties: &[(&str, &str)], message: &str) -> String {
    let properties: Vec<String> = properties
        .iter()
        .map(|(key, value)| format!("{key}={}", escape_property(value)))
        .collect();
    let separator = if properties.is_empty() { "" } else { " " };
    format!(
        "::{command}{separator}{}::{}",
        properties.join(","),
        escape_data(message)
    )
}

fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// `text` in the log with workflow commands switched off: nothing inside can be read as one.
pub fn stop_commands(token: &str, text: &str) -> String {
    let mut out = format!("::stop-commands::{token}\n{text}");
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!("::{token}::\n"));
    out
}

/// An unguessable token for [`stop_commands`]: 128 bits from the operating system's random
/// source; `None` when there is none (then nothing may be printed under the token's protection).
pub fn new_token() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

/// Plain text that Markdown shows as it is: every ASCII punctuation character is
/// backslash-escaped (CommonMark allows that for all of them), line breaks and control
/// characters become spaces.
pub fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.push(' ');
        } else if c.is_ascii_punctuation() {
            out.push('\\');
            out.push(c);
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` as a fenced code block whose fence no line of `text` can close.
pub fn fence(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    let ticks = "`".repeat((longest + 1).max(3));
    let body: String = text
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect();
    let newline = if body.ends_with('\n') { "" } else { "\n" };
    format!("{ticks}text\n{body}{newline}{ticks}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grade::report::fixture;

    #[test]
    fn summary_has_a_row_per_submission_and_no_secrets() {
        let suite = fixture::suite();
        let md = summary(&suite, &fixture::results(&suite));
        assert!(md.contains("1 of 4 submissions accepted"));
        assert!(
            md.contains("| subs\\/ac\\.py | ✅ AC | 100 / 100 | 0.043 s |"),
            "{md}"
        );
        assert!(
            md.contains("| subs\\/mixed\\.py | ❌ RTE | 0 / 100 |"),
            "{md}"
        );
        assert!(md.contains("hint: mind the overflow"));
        assert!(!md.contains("SECRET"));
        // The RTE output has a run of four backticks: the fence is five long.
        assert!(md.contains("`````text\n"), "{md}");
    }

    #[test]
    fn summary_stays_within_github_s_limit() {
        let suite = fixture::suite();
        let results = fixture::results(&suite);
        let many: Vec<SubmissionResult> = std::iter::repeat_n(results[1].clone(), 2000).collect();
        let md = summary(&suite, &many);
        assert!(md.len() < 1024 * 1024, "{} bytes", md.len());
        assert!(md.contains("The summary is cut here"));
    }

    #[test]
    fn student_text_cannot_break_out_of_a_fence() {
        let nasty = "```\n# heading\n````\n<script>x</script>\n";
        let block = fence(nasty);
        assert!(block.starts_with("`````text\n"));
        assert!(block.ends_with("\n`````\n\n"));
        // No line inside is a fence of the same length or longer.
        let inner: Vec<&str> = block.trim_end().lines().skip(1).collect();
        let inner = &inner[..inner.len() - 1];
        assert!(inner
            .iter()
            .all(|line| !line.trim_start().starts_with("`````")));
        assert!(!fence("a\u{1b}[31m").contains('\u{1b}'));
    }

    #[test]
    fn markdown_escaping_neutralises_syntax() {
        assert_eq!(escape_markdown("a|b"), "a\\|b");
        assert_eq!(
            escape_markdown("[x](http://e)"),
            "\\[x\\]\\(http\\:\\/\\/e\\)"
        );
        assert_eq!(escape_markdown("<img src=x>"), "\\<img src\\=x\\>");
        assert_eq!(escape_markdown("line\nbreak"), "line break");
        assert_eq!(escape_markdown("é ✓"), "é ✓");
    }

    #[test]
    fn annotations_are_few_and_escaped() {
        let suite = fixture::suite();
        let results = fixture::results(&suite);
        let lines = annotations(&results);
        assert_eq!(lines.len(), 3);
        assert!(lines
            .iter()
            .all(|line| line.starts_with("::error file=subs/") && !line.contains('\n')));
        assert!(
            lines[0].contains("title=subs/mixed.py%3A RTE::RTE (run-time error)"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].ends_with("— SyntaxError: '(' was never closed (ce.py, line 1)"),
            "{}",
            lines[1]
        );
        let many: Vec<SubmissionResult> = std::iter::repeat_n(results[1].clone(), 8).collect();
        let lines = annotations(&many);
        assert_eq!(lines.len(), MAX_ANNOTATIONS + 1);
        assert!(lines.last().unwrap().starts_with("::notice::3 more"));
        assert_eq!(
            annotation(
                "error",
                &[("file", "a,b:c")],
                "50% done\r\n::set-output name=x::y"
            ),
            "::error file=a%2Cb%3Ac::50%25 done%0D%0A::set-output name=x::y"
        );
    }

    #[test]
    fn outside_text_in_annotations_has_no_control_character() {
        let suite = fixture::suite();
        let mut results = fixture::results(&suite);
        results[1].path = "subs/x\r::warning file=a::forged\u{1b}]0;t\u{7}.py".into();
        results[1].message = Some("boom\r\n::error::again\u{1b}[31m".into());
        let lines = annotations(&results);
        let line = &lines[0];
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(!line.contains("%0D") && !line.contains("%0A"), "{line:?}");
        assert!(
            line.starts_with(
                "::error file=subs/x\\r%3A%3Awarning file=a%3A%3Aforged\\u{1b}]0;t\\u{7}.py,"
            ),
            "{line}"
        );
    }

    #[test]
    fn stop_commands_wrap_the_log() {
        let token = new_token().unwrap();
        assert_eq!(token.len(), 32);
        assert!(token.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_ne!(Some(token.clone()), new_token());
        let wrapped = stop_commands(&token, "::error::forged\n");
        assert_eq!(
            wrapped,
            format!("::stop-commands::{token}\n::error::forged\n::{token}::\n")
        );
    }
}
