//! `safe-exec generate`: shell completions and the man page, both made from the clap definitions
//! in [`crate::cli`], so `--help`, the completions and the man page cannot say different things.
//!
//! The man page is one page, as ripgrep's and just's are: the top-level sections (name, synopsis,
//! description, options, subcommands), then one section per subcommand (`SAFE-EXEC RUN`, ...,
//! `SAFE-EXEC IMAGE BUILD`) holding its synopsis, options and notes (exit status included). The
//! pieces come from `clap_mangen`; this module only orders them and turns each subcommand's
//! headings into subheadings.

use std::io::Write;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;

use crate::cli::{Cli, GenerateArgs, GenerateCommand};
use crate::exit_codes;

/// The name completions are registered for: the binary's.
const BIN_NAME: &str = "safe-exec";

pub fn execute(args: GenerateArgs) -> anyhow::Result<u8> {
    let mut text = Vec::new();
    match args.what {
        GenerateCommand::Completions { shell } => completions(shell, &mut text),
        GenerateCommand::Man => man_page(&mut text).context("cannot render the man page")?,
    }
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&text).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(exit_codes::SUCCESS),
        // A reader that went away (`| head`) is not our failure.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit_codes::SUCCESS),
        Err(error) => Err(error).context("cannot write to stdout"),
    }
}

/// The completion script for `shell`.
pub fn completions(shell: Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut Cli::command(), BIN_NAME, out);
}

/// The man page (roff, section 1), every subcommand included.
pub fn man_page(out: &mut dyn Write) -> std::io::Result<()> {
    let mut page = Vec::new();
    render_pieces(&mut page)?;
    // Each piece clap_mangen renders starts by defining the `Aq` string (an apostrophe that
    // works in every roff): once, at the top, is enough.
    let page = String::from_utf8_lossy(&page);
    let preamble: Vec<&str> = page
        .lines()
        .take_while(|line| line.starts_with(".ie ") || line.starts_with(".el "))
        .collect();
    for line in &preamble {
        writeln!(out, "{line}")?;
    }
    for line in page.lines().filter(|line| !preamble.contains(line)) {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

fn render_pieces(out: &mut dyn Write) -> std::io::Result<()> {
    let mut root = Cli::command();
    // Built, every subcommand knows its full name (`safe-exec image build`).
    root.build();
    let man = Man::new(root.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    writeln!(out, ".SH SUBCOMMANDS")?;
    let mut sections = Vec::new();
    for command in documented(&root) {
        list_with_descendants(command, &mut sections);
    }
    for command in &sections {
        writeln!(out, ".TP")?;
        writeln!(out, "{}", bold(full_name(command)))?;
        if let Some(about) = command.get_about() {
            writeln!(out, "{}", roff_text(&about.to_string()))?;
        }
    }
    for command in sections {
        subcommand_section(command, out)?;
    }
    man.render_version_section(out)?;
    Ok(())
}

/// The subcommands worth a section: not hidden, not clap's own `help`.
fn documented(command: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
}

/// `command` and its subcommands, depth first, each before its own.
fn list_with_descendants<'a>(command: &'a clap::Command, into: &mut Vec<&'a clap::Command>) {
    into.push(command);
    for sub in documented(command) {
        list_with_descendants(sub, into);
    }
}

fn full_name(command: &clap::Command) -> String {
    command
        .get_bin_name()
        .unwrap_or_else(|| command.get_name())
        .to_owned()
}

/// `.SH "SAFE-EXEC RUN"`, the description, then the synopsis, options and notes as subsections.
fn subcommand_section(command: &clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, ".SH \"{}\"", full_name(command).to_uppercase())?;
    let man = Man::new(command.clone());
    let mut parts = Vec::new();
    man.render_description_section(&mut parts)?;
    man.render_synopsis_section(&mut parts)?;
    let has_options = command
        .get_arguments()
        .any(|arg| !arg.is_hide_set() && arg.get_id() != "help");
    if has_options {
        man.render_options_section(&mut parts)?;
    }
    if command.get_after_help().is_some() || command.get_after_long_help().is_some() {
        man.render_extra_section(&mut parts)?;
    }
    let parts = String::from_utf8_lossy(&parts);
    for line in parts.lines() {
        match line.strip_prefix(".SH ") {
            Some("DESCRIPTION") => {}
            Some("EXTRA") => writeln!(out, ".SS NOTES")?,
            Some(heading) => writeln!(out, ".SS {heading}")?,
            None => writeln!(out, "{line}")?,
        }
    }
    Ok(())
}

fn bold(text: String) -> String {
    format!("\\fB{}\\fR", roff_text(&text))
}

/// Plain text as a roff text line: backslashes and hyphens escaped, and a leading `.` or `'`
/// (which would start a request) guarded.
fn roff_text(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subcommand_names() -> Vec<String> {
        Cli::command()
            .get_subcommands()
            .map(|sub| sub.get_name().to_owned())
            .collect()
    }

    #[test]
    fn completions_name_every_subcommand_in_every_shell() {
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::Elvish,
            Shell::PowerShell,
        ] {
            let mut script = Vec::new();
            completions(shell, &mut script);
            let script = String::from_utf8(script).unwrap();
            for name in subcommand_names() {
                assert!(script.contains(&name), "{shell}: no `{name}` in\n{script}");
            }
            assert!(
                script.contains("pull-timeout"),
                "{shell}: image build's flags"
            );
        }
    }

    #[test]
    fn the_man_page_has_a_section_per_subcommand() {
        let mut page = Vec::new();
        man_page(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        let mut lines = page
            .lines()
            .skip_while(|line| line.starts_with(".ie ") || line.starts_with(".el "));
        assert!(
            lines.next().unwrap().starts_with(".TH safe-exec 1 "),
            "{page}"
        );
        assert_eq!(
            page.matches(".ds Aq").count(),
            2,
            "the Aq string is defined once"
        );
        for heading in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH DESCRIPTION",
            ".SH SUBCOMMANDS",
        ] {
            assert!(page.contains(heading), "no {heading}");
        }
        for name in [
            "run",
            "grade",
            "serve",
            "gc",
            "doctor",
            "image",
            "image build",
            "generate",
        ] {
            let heading = format!(".SH \"SAFE-EXEC {}\"", name.to_uppercase());
            assert!(page.contains(&heading), "no {heading}");
        }
        assert!(!page.contains("SAFE-EXEC HELP"));
        // Every flag of `run` is documented, with its help.
        assert!(page.contains("\\-\\-max\\-output"), "{page}");
        assert!(page.contains("Exit status"));
        // Every request line is a known macro (no stray `.` from the text).
        for line in page.lines().filter(|line| line.starts_with('.')) {
            let request = line.split_whitespace().next().unwrap();
            assert!(
                [
                    ".TH", ".SH", ".SS", ".TP", ".PP", ".IP", ".RS", ".RE", ".br", ".sp", ".B",
                    ".I", ".ie", ".el", ".nh", ".ad", ".\\\"", ".EX", ".EE", ".in", ".fi", ".nf"
                ]
                .contains(&request),
                "unexpected request {line:?}"
            );
        }
    }

    #[test]
    fn roff_text_guards_requests_and_escapes() {
        assert_eq!(roff_text(".hidden"), "\\&.hidden");
        assert_eq!(roff_text("a-b\\c"), "a\\-b\\ec");
    }
}
