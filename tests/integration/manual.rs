//! What `pullstart --generate` prints: the man page, whose EXIT STATUS must say what the README's
//! exit-code table says (which a unit test in src/exit.rs holds to the code), and the shell
//! completions, tried in the real shells.
//!
//! `doc/pullstart.1` is the committed man page: a snapshot like those of snapshots.rs, rewritten
//! by `SNAPSHOTS=overwrite cargo test --features failpoints --test integration manual`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use assert_cmd::prelude::*;

use crate::support::*;

/// `pullstart --generate WHAT`'s stdout.
fn generate(what: &str) -> String {
    let mut cmd = Command::cargo_bin("pullstart").expect("the pullstart binary");
    hermetic(&mut cmd, Path::new("/nonexistent"));
    let out = cmd
        .args(["--generate", what])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "--generate {what}: {out:?}");
    assert!(out.stderr.is_empty(), "--generate {what}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// One exit code as a table states it: the code, its JSON `result` values, its meaning; without
/// the README's backticks or roff's escapes.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    code: String,
    results: Vec<String>,
    meaning: String,
}

fn readme_rows() -> Vec<Row> {
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    let section = readme
        .split("### Exit codes\n")
        .nth(1)
        .expect("README has `### Exit codes`");
    section
        .lines()
        .skip_while(|line| !line.starts_with("| code |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
            assert_eq!(cells.len(), 3, "{line}");
            Row {
                code: cells[0].trim().to_owned(),
                results: cells[1]
                    .split(", ")
                    .map(|r| r.trim().trim_matches('`').to_owned())
                    .collect(),
                meaning: cells[2].trim().replace('`', ""),
            }
        })
        .collect()
}

/// The text of a roff line: font changes dropped, escapes undone.
fn roff_text(line: &str) -> String {
    line.replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
        .replace("\\-", "-")
        .replace("\\*(Aq", "'")
}

/// The EXIT STATUS section: `.TP`, then the tag line `CODE (RESULT, ...)`, then the meaning.
fn man_rows(page: &str) -> Vec<Row> {
    let section: Vec<&str> = page
        .lines()
        .skip_while(|line| *line != ".SH \"EXIT STATUS\"")
        .skip(1)
        .take_while(|line| !line.starts_with(".SH "))
        .filter(|line| !line.starts_with(".ie ") && !line.starts_with(".el "))
        .collect();
    assert!(!section.is_empty(), "no EXIT STATUS section in\n{page}");
    section
        .chunks(3)
        .map(|paragraph| {
            let [tp, tag, meaning] = paragraph else {
                panic!("an EXIT STATUS paragraph of other than 3 lines: {paragraph:?}");
            };
            assert_eq!(*tp, ".TP");
            let tag = roff_text(tag);
            let (code, results) = tag.split_once(" (").expect("CODE (RESULTS)");
            Row {
                code: code.to_owned(),
                results: results
                    .trim_end_matches(')')
                    .split(", ")
                    .map(str::to_owned)
                    .collect(),
                meaning: roff_text(meaning),
            }
        })
        .collect()
}

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn the_man_page_exit_status_is_the_readme_table() {
    let page = generate("man");
    let readme = readme_rows();
    assert_eq!(readme.len(), 12, "README lists codes 0 to 11");
    assert_eq!(man_rows(&page), readme);
}

#[test]
fn the_committed_man_page_is_the_generated_one() {
    snapbox::Assert::new()
        .action_env(snapbox::assert::DEFAULT_ACTION_ENV)
        .eq(
            generate("man"),
            snapbox::file!["../../doc/pullstart.1"].raw(),
        );
}

#[test]
fn man_reads_the_man_page_without_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("pullstart.1");
    std::fs::write(&page, generate("man")).unwrap();
    if !crate::support::servers::available("man_reads_the_man_page_without_a_warning", &["groff"]) {
        return;
    }
    let out = Command::new("groff")
        .args(["-man", "-ww", "-z"])
        .arg(&page)
        .output()
        .expect("run groff");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "groff warns");
}

/// Runs `script` with `shell`'s arguments, `None` when the shell is not installed.
fn shell(program: &str, args: &[&str], script: &str) -> Option<String> {
    if !crate::support::servers::available(&format!("{program} completions"), &[program]) {
        return None;
    }
    let out = Command::new(program)
        .args(args)
        .arg(script)
        .output()
        .unwrap_or_else(|err| panic!("run {program}: {err}"));
    assert!(out.status.success(), "{program}: {out:?}");
    Some(String::from_utf8(out.stdout).unwrap())
}

/// The completions script for `what`, written to a file in `dir`.
fn completions_file(dir: &Path, what: &str) -> PathBuf {
    let path = dir.join(what);
    std::fs::write(&path, generate(what)).unwrap();
    path
}

#[test]
fn bash_completes_subcommands_and_their_options() {
    let dir = tempfile::tempdir().unwrap();
    let script = completions_file(dir.path(), "complete-bash");
    let complete = |words: &str| {
        let line = format!(
            "source '{}'; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; \
             _pullstart pullstart \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        shell("bash", &["--norc", "-c"], &line).expect("bash is installed")
    };
    assert_eq!(complete("pullstart wat"), "watch\n");
    assert!(complete("pullstart watch --ev").contains("--every"));
    assert!(complete("pullstart entrypoint --d").contains("--dir"));
    assert!(complete("pullstart --rebuild-policy st").contains("stop"));
}

#[test]
fn fish_completes_subcommands_and_their_options() {
    let dir = tempfile::tempdir().unwrap();
    let script = completions_file(dir.path(), "complete-fish");
    let complete = |line: &str| {
        let command = format!("source '{}'; complete -C '{line}'", script.display());
        shell("fish", &["--no-config", "-c"], &command)
    };
    let Some(subcommands) = complete("pullstart wat") else {
        return;
    };
    assert!(subcommands.starts_with("watch\t"), "{subcommands}");
    let options = complete("pullstart watch --ev").unwrap();
    assert!(options.contains("--every"), "{options}");
}

#[test]
fn zsh_reads_its_completions() {
    let dir = tempfile::tempdir().unwrap();
    let script = completions_file(dir.path(), "complete-zsh");
    // Running zsh's completion system takes a terminal; parsing the function is what can go wrong.
    let Some(_) = shell("zsh", &["-n"], path_str(&script)) else {
        return;
    };
    let defines = format!(
        "autoload -Uz compinit && compinit -u -D; source '{}'; whence -w _pullstart",
        script.display()
    );
    let found = shell("zsh", &["-f", "-c"], &defines).unwrap();
    assert_eq!(found.trim(), "_pullstart: function");
}

#[test]
fn generate_is_refused_with_a_subcommand() {
    let mut cmd = Command::cargo_bin("pullstart").expect("the pullstart binary");
    hermetic(&mut cmd, Path::new("/nonexistent"));
    let out = cmd
        .args(["--generate", "man", "check"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--generate takes no subcommand"));
}

#[test]
fn contrib_generate_sh_writes_the_page_and_every_shell_s_completions() {
    let out = tempfile::tempdir().unwrap();
    let binary = assert_cmd::cargo::cargo_bin("pullstart");
    let status = Command::new("bash")
        .arg(repo_file("contrib/generate.sh"))
        .arg(out.path())
        .env("PULLSTART", &binary)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "generate.sh: {status:?}");
    let read = |path: &str| std::fs::read_to_string(out.path().join(path)).unwrap();
    assert_eq!(read("man/man1/pullstart.1"), generate("man"));
    assert_eq!(
        read("completions/pullstart.bash"),
        generate("complete-bash")
    );
    assert_eq!(read("completions/_pullstart"), generate("complete-zsh"));
    assert_eq!(
        read("completions/pullstart.fish"),
        generate("complete-fish")
    );
}
