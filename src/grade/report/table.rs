//! The human summary printed on stdout after a batch: one row per submission (verdict, score,
//! accepted cases, slowest case), then the failed cases of each submission that was not accepted,
//! with messages as the student may see them. Every name and message goes through
//! [`crate::sanitize`], so a file name or message cannot drive the terminal or start a line of
//! its own.

use std::fmt::Write;

use super::{seconds, Counts};
use crate::grade::score::SubmissionResult;
use crate::grade::suite::{show_score, Suite};
use crate::grade::verdict::Verdict;

/// Failed cases listed per submission; the JSON report has all of them.
const MAX_LISTED: usize = 5;

pub fn render(suite: &Suite, results: &[SubmissionResult]) -> String {
    let rows: Vec<[String; 5]> = results
        .iter()
        .map(|result| {
            let counts = Counts::of(result);
            [
                clean(&result.name()),
                result.verdict.to_string(),
                format!(
                    "{}/{}",
                    show_score(result.score),
                    show_score(result.max_score)
                ),
                format!("{}/{}", counts.accepted, counts.total),
                result
                    .slowest()
                    .map_or("-".to_owned(), |time| format!("{:.3} s", seconds(time))),
            ]
        })
        .collect();
    let header = ["SUBMISSION", "VERDICT", "SCORE", "CASES AC", "SLOWEST"].map(str::to_owned);
    let mut widths = header.clone().map(|title| title.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    let accepted = results.iter().filter(|result| result.accepted()).count();
    let _ = writeln!(
        out,
        "\n{accepted} of {} submission(s) accepted on {} ({} case(s)).",
        results.len(),
        clean(&suite.name),
        suite.cases.len()
    );
    for result in results.iter().filter(|result| !result.accepted()) {
        let _ = writeln!(
            out,
            "\n{}: {} ({}), {} of {} points",
            clean(&result.name()),
            result.verdict,
            result.verdict.describe(),
            show_score(result.score),
            show_score(result.max_score)
        );
        if result.verdict == Verdict::CE {
            for line in result.message.as_deref().unwrap_or("").lines() {
                let _ = writeln!(out, "    {}", clean(line));
            }
            continue;
        }
        let failed: Vec<usize> = (0..result.cases.len())
            .filter(|&case| !matches!(result.cases[case].verdict, Verdict::AC | Verdict::Skipped))
            .collect();
        let name_width = failed
            .iter()
            .take(MAX_LISTED)
            .map(|&case| suite.cases[case].name.chars().count())
            .max()
            .unwrap_or(0);
        for &case in failed.iter().take(MAX_LISTED) {
            let outcome = &result.cases[case];
            let _ = writeln!(
                out,
                "  {:<name_width$}  {:<3}  {}",
                clean(&suite.cases[case].name),
                outcome.verdict.as_str(),
                clean(&outcome.message)
            );
            if let Some(hint) = &suite.cases[case].hint {
                let _ = writeln!(out, "  {:<name_width$}       hint: {}", "", clean(hint));
            }
            // Full feedback (samples): the error itself is the most useful line.
            let last_stderr = outcome.feedback.as_ref().and_then(|feedback| {
                feedback
                    .stderr
                    .lines()
                    .rev()
                    .find(|line| !line.trim().is_empty())
            });
            if let Some(line) = last_stderr {
                let line: String = line.trim().chars().take(120).collect();
                let _ = writeln!(out, "  {:<name_width$}       stderr: {}", "", clean(&line));
            }
        }
        if failed.len() > MAX_LISTED {
            let _ = writeln!(
                out,
                "  … and {} more (see --json for all)",
                failed.len() - MAX_LISTED
            );
        }
        let skipped = Counts::of(result).skipped;
        if skipped > 0 {
            let _ = writeln!(
                out,
                "  {skipped} case(s) skipped after the first failure (--fail-fast)"
            );
        }
    }
    out
}

/// Text from outside (names, messages, output) as the terminal may show it.
fn clean(text: &str) -> String {
    crate::sanitize::text(text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grade::report::fixture;

    #[test]
    fn table_lists_submissions_then_failures() {
        let suite = fixture::suite();
        let text = render(&suite, &fixture::results(&suite));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("SUBMISSION"));
        assert!(
            lines[1].starts_with("subs/ac.py     AC       100/100  4/4"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("subs/mixed.py  RTE      0/100    0/4       1.000 s"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("subs/ce.py     CE       0/100    0/4       -"),
            "{text}"
        );
        assert!(text.contains("1 of 4 submission(s) accepted"));
        assert!(
            text.contains("  secret/g1/2  TLE  time limit exceeded"),
            "{text}"
        );
        assert!(text.contains("hint: mind the overflow"));
        assert!(
            text.contains("stderr: Traceback: ```` </system-err> ]]> | pipe"),
            "{text}"
        );
        assert!(text.contains("    SyntaxError: '(' was never closed"));
        assert!(text.contains("3 case(s) skipped"));
        assert!(!text.contains("SECRET"));
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'));
    }
}
