//! The files a package installs beside the binary, made from the same clap definitions as
//! `--help` so that they cannot drift from it: the man page (clap_mangen) and the shell
//! completions (clap_complete). The hidden `--generate WHAT` prints one of them to stdout, as
//! ripgrep's `--generate` does; `contrib/generate.sh` writes them all into a directory.
//!
//! The man page's EXIT STATUS section is made from [`EXIT_STATUSES`], the table a test holds the
//! README's to.

use std::io::{self, Write};

use clap::{Command, CommandFactory};
use clap_complete::Shell;
use clap_mangen::roff::{bold, italic, roman, Roff};
use clap_mangen::Man;

use crate::cli::{Cli, Generate, EXAMPLES};
use crate::exit::{ExitCode, EXIT_STATUSES};

/// Prints `what` to stdout; returns the exit code: 0, or 1 when stdout cannot be written.
/// clap's `exclusive` does not cover subcommands, so `with_subcommand` is refused here (exit 2),
/// before anything is printed.
pub fn print(what: Generate, with_subcommand: bool) -> i32 {
    if with_subcommand {
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--generate takes no subcommand",
            )
            .exit();
    }
    let mut out = io::stdout().lock();
    let written = match what {
        Generate::Man => write_man_page(&mut out),
        Generate::CompleteBash => write_completions(Shell::Bash, &mut out),
        Generate::CompleteZsh => write_completions(Shell::Zsh, &mut out),
        Generate::CompleteFish => write_completions(Shell::Fish, &mut out),
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => ExitCode::Success.code(),
        Err(err) => {
            eprintln!("pullstart: cannot write the generated file to stdout: {err}");
            ExitCode::Internal.code()
        }
    }
}

/// clap_complete offers hidden flags too, so the completions offer `--generate`: harmless, and
/// of use to the packagers it is for.
fn write_completions(shell: Shell, out: &mut dyn Write) -> io::Result<()> {
    clap_complete::generate(shell, &mut Cli::command(), "pullstart", out);
    Ok(())
}

/// pullstart(1): clap_mangen's sections for the command and its global options, a COMMANDS
/// section with each subcommand and the options only it takes, then the exit codes and the
/// examples. One page, as ripgrep's: clap_mangen's own SUBCOMMANDS section would point to a
/// page per subcommand.
pub fn write_man_page(out: &mut dyn Write) -> io::Result<()> {
    // The man page has its own EXIT STATUS and EXAMPLES sections in place of --help's epilogue.
    let command = Cli::command()
        .after_help(None::<&str>)
        .disable_help_subcommand(true);
    let man = Man::new(command.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    let mut heading = Roff::new();
    heading.control("SH", ["COMMANDS"]);
    out.write_all(heading.render().as_bytes())?;
    for subcommand in command.get_subcommands() {
        write_subcommand(subcommand, out)?;
    }
    out.write_all(exit_status_section().render().as_bytes())?;
    out.write_all(examples_section().render().as_bytes())?;
    man.render_version_section(out)
}

/// `.SS "pullstart watch"`: the subcommand's long description, the options that only it takes
/// (the global ones are in OPTIONS), and its own epilogue where it has one.
fn write_subcommand(subcommand: &Command, out: &mut dyn Write) -> io::Result<()> {
    let mut heading = Roff::new();
    heading.control(
        "SS",
        [format!("pullstart {}", subcommand.get_name()).as_str()],
    );
    out.write_all(heading.render().as_bytes())?;

    // Built on its own, the subcommand holds only its own arguments.
    let alone = subcommand.clone().disable_help_flag(true);
    let man = Man::new(alone.clone());
    out.write_all(&section_body(|w| man.render_description_section(w))?)?;
    if alone.get_arguments().any(|arg| !arg.is_hide_set()) {
        out.write_all(&section_body(|w| man.render_options_section(w))?)?;
    }
    let shared = Cli::command().get_after_help().map(ToString::to_string);
    if let Some(own) = alone.get_after_help().map(ToString::to_string) {
        if Some(&own) != shared.as_ref() {
            out.write_all(preformatted(&own).render().as_bytes())?;
        }
    }
    Ok(())
}

/// What `render` writes after its `.SH` heading line: a section's body, to go under another
/// heading.
fn section_body(render: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> io::Result<Vec<u8>> {
    let mut section = Vec::new();
    render(&mut section)?;
    let text = String::from_utf8_lossy(&section);
    let body: String = text
        .split_inclusive('\n')
        .skip_while(|line| !line.starts_with(".SH "))
        .skip(1)
        .collect();
    let mut paragraph = Roff::new();
    paragraph.control("PP", []);
    Ok([paragraph.to_roff().into_bytes(), body.into_bytes()].concat())
}

/// EXIT STATUS: one tagged paragraph per code, the code in bold, the JSON `result` values in
/// italics, then the meaning.
fn exit_status_section() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for status in EXIT_STATUSES {
        roff.control("TP", []);
        let mut tag = vec![bold(status.code.code().to_string()), roman(" (")];
        for (index, result) in status.results.iter().enumerate() {
            if index > 0 {
                tag.push(roman(", "));
            }
            tag.push(italic(*result));
        }
        tag.push(roman(")"));
        roff.text(tag);
        roff.text([roman(status.meaning.replace('`', ""))]);
    }
    roff
}

/// EXAMPLES: --help's examples, their columns kept.
fn examples_section() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["EXAMPLES"]);
    roff.control("nf", []);
    for line in EXAMPLES.lines() {
        roff.text([roman(line)]);
    }
    roff.control("fi", []);
    roff
}

/// `text` as lines kept as they are (no filling), after a paragraph break.
fn preformatted(text: &str) -> Roff {
    let mut roff = Roff::new();
    roff.control("PP", []);
    roff.control("nf", []);
    for line in text.lines() {
        roff.text([roman(line)]);
    }
    roff.control("fi", []);
    roff
}

#[cfg(test)]
mod tests {
    use super::*;

    fn man_page() -> String {
        let mut page = Vec::new();
        write_man_page(&mut page).unwrap();
        String::from_utf8(page).unwrap()
    }

    #[test]
    fn the_man_page_has_every_section_and_subcommand() {
        let page = man_page();
        for heading in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH DESCRIPTION",
            ".SH OPTIONS",
            ".SH COMMANDS",
            ".SS \"pullstart run\"",
            ".SS \"pullstart check\"",
            ".SS \"pullstart status\"",
            ".SS \"pullstart watch\"",
            ".SS \"pullstart entrypoint\"",
            ".SH \"EXIT STATUS\"",
            ".SH EXAMPLES",
        ] {
            assert!(page.contains(heading), "{heading} missing from\n{page}");
        }
        assert!(!page.contains("generate"), "the hidden flag shows:\n{page}");
    }

    #[test]
    fn completions_name_every_subcommand() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut script = Vec::new();
            write_completions(shell, &mut script).unwrap();
            let script = String::from_utf8(script).unwrap();
            for word in ["watch", "entrypoint", "every", "compose-file"] {
                assert!(script.contains(word), "{shell}: {word} missing");
            }
        }
    }
}
