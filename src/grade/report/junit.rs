//! `--junit PATH`: JUnit XML, as GitLab, Jenkins and the GitHub test-report actions read it.
//!
//! The document follows the Jenkins xunit schema `junit-10.xsd` (the one pytest checks its own
//! reports against; a test validates a real report with it). The root `<testsuites>` carries
//! `name`, `tests`, `failures`, `errors` and `time` (the schema allows no `skipped` there). One
//! `<testsuite>` per submission (named by its path, with `tests`, `failures`, `errors`,
//! `skipped`, `time` and the `verdict`, `score` and `max_score` properties), one `<testcase>` per
//! case (`name` the case name, `classname` the submission and group, `time` in seconds). `WA`, `TLE`, `MLE`, `OLE` are `<failure>`s; `RTE`, `CE`, `JE` are
//! `<error>`s; `SKIPPED` cases are `<skipped/>`. The body explains the case as the student may
//! see it (full feedback only where allowed). Characters XML 1.0 cannot carry (control
//! characters, U+FFFE/U+FFFF) are stripped.
//!
//! Written here rather than with the `quick-junit` crate (which nextest uses): every release of
//! it writes an attribute `junit-10.xsd` refuses whatever the report holds (0.6 puts `disabled`
//! on each `<testsuite>`, 0.7 `skipped` on `<testsuites>`), and the writer is a screen of code.

use std::fmt::Write;

use super::{case_details, seconds, Counts};
use crate::grade::score::SubmissionResult;
use crate::grade::suite::{show_score, Suite};
use crate::grade::verdict::Verdict;

pub fn render(suite: &Suite, results: &[SubmissionResult]) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let mut totals = Counts::default();
    let mut total_time = 0.0;
    for result in results {
        let counts = Counts::of(result);
        totals.total += counts.total;
        totals.failures += counts.failures;
        totals.errors += counts.errors;
        total_time += seconds(result.total_time());
    }
    // The root has no `skipped`: the Jenkins schema does not allow it there (each
    // `<testsuite>` carries its own).
    let _ = writeln!(
        xml,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{:.3}\">",
        attr(&format!("safe-exec grade {}", suite.name)),
        totals.total,
        totals.failures,
        totals.errors,
        total_time
    );
    for result in results {
        render_submission(&mut xml, suite, result);
    }
    xml.push_str("</testsuites>\n");
    xml
}

fn render_submission(xml: &mut String, suite: &Suite, result: &SubmissionResult) {
    let counts = Counts::of(result);
    let name = result.name();
    let _ = writeln!(
        xml,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
        attr(&name),
        counts.total,
        counts.failures,
        counts.errors,
        counts.skipped,
        seconds(result.total_time())
    );
    xml.push_str("    <properties>\n");
    for (key, value) in [
        ("verdict", result.verdict.to_string()),
        ("score", show_score(result.score)),
        ("max_score", show_score(result.max_score)),
    ] {
        let _ = writeln!(
            xml,
            "      <property name=\"{key}\" value=\"{}\"/>",
            attr(&value)
        );
    }
    xml.push_str("    </properties>\n");
    let stem = result
        .path
        .file_stem()
        .map(|stem| stem.to_string_lossy().replace('.', "_"))
        .unwrap_or_else(|| "submission".to_owned());
    for (index, case) in result.cases.iter().enumerate() {
        let spec = &suite.cases[index];
        let classname = format!("{stem}.{}", suite.groups[spec.group].name.replace('/', "."));
        let _ = write!(
            xml,
            "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\"",
            attr(&spec.name),
            attr(&classname),
            case.time.map(seconds).unwrap_or(0.0)
        );
        let mut details = case_details(suite, index, case);
        if case.verdict == Verdict::CE {
            if let Some(error) = &result.message {
                details.push_str(&format!("\n{error}"));
            }
        }
        let element = match case.verdict {
            Verdict::AC => None,
            Verdict::Skipped => {
                let _ = writeln!(
                    xml,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                    attr(&case.message)
                );
                continue;
            }
            verdict if verdict.is_failure() => Some("failure"),
            _ => Some("error"),
        };
        match element {
            None => xml.push_str("/>\n"),
            Some(element) => {
                let _ = writeln!(
                    xml,
                    ">\n      <{element} type=\"{}\" message=\"{}\">{}</{element}>\n    </testcase>",
                    case.verdict,
                    attr(&format!("{}: {}", case.verdict, case.message)),
                    text(&details)
                );
            }
        }
    }
    if let Some(message) = &result.message {
        let _ = writeln!(xml, "    <system-out>{}</system-out>", text(message));
    }
    xml.push_str("  </testsuite>\n");
}

/// Is `c` allowed in an XML 1.0 document?
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Escaped element content. Line breaks are character references too: the text (a program's
/// output among it) then never starts a line of the document, so a report written to a log
/// (`--junit /dev/stdout` under GitHub Actions) cannot start a workflow command. Parsers read
/// the same text either way.
fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars().filter(|c| xml_char(*c)) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            '\n' => out.push_str("&#10;"),
            c => out.push(c),
        }
    }
    out
}

/// Escaped attribute value; whitespace other than spaces is kept as character references (a
/// parser would otherwise turn it into spaces).
fn attr(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars().filter(|c| xml_char(*c)) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grade::report::fixture;

    #[test]
    fn parses_back_with_the_documented_structure() {
        let suite = fixture::suite();
        let xml = render(&suite, &fixture::results(&suite));
        let document =
            roxmltree::Document::parse(&xml).unwrap_or_else(|error| panic!("{error}\n{xml}"));
        let root = document.root_element();
        assert_eq!(root.tag_name().name(), "testsuites");
        assert_eq!(
            root.attribute("name"),
            Some("safe-exec grade Fixture <&> \"quoted\"")
        );
        assert_eq!(root.attribute("tests"), Some("16"));
        assert_eq!(
            root.attribute("skipped"),
            None,
            "not allowed by junit-10.xsd"
        );
        let suites: Vec<_> = root
            .children()
            .filter(|node| node.has_tag_name("testsuite"))
            .collect();
        assert_eq!(suites.len(), 4);
        assert_eq!(suites[1].attribute("name"), Some("subs/mixed.py"));
        let property = |suite: &roxmltree::Node, name: &str| {
            suite
                .descendants()
                .find(|node| node.has_tag_name("property") && node.attribute("name") == Some(name))
                .and_then(|node| node.attribute("value"))
                .map(str::to_owned)
        };
        assert_eq!(property(&suites[0], "verdict").as_deref(), Some("AC"));
        assert_eq!(property(&suites[0], "score").as_deref(), Some("100"));
        assert_eq!(property(&suites[1], "verdict").as_deref(), Some("RTE"));

        let cases: Vec<_> = suites[1]
            .children()
            .filter(|node| node.has_tag_name("testcase"))
            .collect();
        assert_eq!(cases.len(), 4);
        assert_eq!(cases[0].attribute("name"), Some("sample/1"));
        assert_eq!(cases[0].attribute("classname"), Some("mixed.sample"));
        assert_eq!(cases[2].attribute("classname"), Some("mixed.secret.g1"));
        assert_eq!(cases[2].attribute("time"), Some("1.000"));
        let child = |case: &roxmltree::Node| {
            case.first_element_child()
                .map(|node| node.tag_name().name().to_owned())
        };
        assert_eq!(child(&cases[0]).as_deref(), Some("failure"), "WA");
        assert_eq!(child(&cases[2]).as_deref(), Some("failure"), "TLE");
        assert_eq!(child(&cases[3]).as_deref(), Some("error"), "RTE");
        let failure = cases[2].first_element_child().unwrap();
        assert_eq!(failure.attribute("type"), Some("TLE"));
        assert!(failure.text().unwrap().contains("hint: mind the overflow"));
        let rte = cases[3].first_element_child().unwrap().text().unwrap();
        assert!(
            rte.contains("::error::forged") && rte.contains("</system-err>"),
            "kept as text: {rte}"
        );
        assert!(rte.contains("\n::error::forged\n"), "lines kept: {rte}");
        assert!(
            xml.lines().all(|line| !line.trim_start().starts_with("::")),
            "a line of the document GitHub would run:\n{xml}"
        );

        let ac_cases: Vec<_> = suites[0]
            .children()
            .filter(|node| node.has_tag_name("testcase"))
            .collect();
        assert!(ac_cases
            .iter()
            .all(|case| case.first_element_child().is_none()));
        let ce_case = suites[2]
            .children()
            .find(|node| node.has_tag_name("testcase"))
            .unwrap();
        let error = ce_case.first_element_child().unwrap();
        assert_eq!(
            (error.tag_name().name(), error.attribute("type")),
            ("error", Some("CE"))
        );
        assert!(error.text().unwrap().contains("SyntaxError"));
        let skipped = suites[3]
            .children()
            .filter(|node| node.has_tag_name("testcase"))
            .nth(1)
            .unwrap();
        assert!(skipped
            .first_element_child()
            .unwrap()
            .has_tag_name("skipped"));
        assert_eq!(suites[3].attribute("skipped"), Some("3"));
        assert_eq!(suites[3].attribute("errors"), Some("1"));
    }

    #[test]
    fn control_characters_are_stripped_and_secrets_absent() {
        let suite = fixture::suite();
        let xml = render(&suite, &fixture::results(&suite));
        assert!(
            !xml.chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\t')),
            "control characters left"
        );
        assert!(
            xml.contains("[31mred"),
            "the printable rest of the line stays"
        );
        assert!(!xml.contains("SECRET"));
        assert_eq!(text("a\u{0}b\u{1b}c\u{fffe}d"), "abcd");
        assert_eq!(attr("x\n\"y\""), "x&#10;&quot;y&quot;");
    }
}
