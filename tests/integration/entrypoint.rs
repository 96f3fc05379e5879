//! `pullstart entrypoint --url URL --dir DIR [--branch B] -- CMD`: the code is delivered at the
//! container's start, then CMD replaces pullstart in the same process.
//!
//! CMD is `sh -c` writing its own `$$` and the code it sees into files: `$$` equal to the pid
//! of the process the test spawned proves that CMD was exec'd (not spawned as a child), and the
//! file's content proves which code it started on.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::support::{path_str, Fixture, Outcome};

/// What CMD saw when it ran.
struct Started {
    outcome: Outcome,
    /// The pid pullstart was started with.
    pid: u32,
    /// `$$` inside CMD; `None` when CMD never ran.
    cmd_pid: Option<u32>,
    /// `app/main.py` as CMD read it (relative to its working directory, DIR).
    code: Option<String>,
}

/// Runs `pullstart entrypoint ARGS -- sh -c ...` from inside `dir`'s parent with `dir` as CMD's
/// working directory (CMD `cd`s there), and collects what CMD saw.
fn entrypoint(t: &Fixture, args: &[&str], dir: &Path) -> Started {
    let out = t.root.join("cmd.out");
    let pid_file = t.root.join("cmd.pid");
    let _ = fs::remove_file(&out);
    let _ = fs::remove_file(&pid_file);
    let script = format!(
        "echo $$ > '{}'; cd '{}' && cat app/main.py > '{}'",
        pid_file.display(),
        dir.display(),
        out.display()
    );
    let mut full: Vec<String> = vec!["entrypoint".into()];
    full.extend(args.iter().map(|a| a.to_string()));
    full.extend(["--".into(), "sh".into(), "-c".into(), script]);
    let mut cmd = t.pullstart();
    cmd.args(&full)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn pullstart");
    let pid = child.id();
    let output = child.wait_with_output().expect("wait for pullstart");
    Started {
        outcome: Outcome::from_output(output, full, Default::default()),
        pid,
        cmd_pid: fs::read_to_string(&pid_file)
            .ok()
            .map(|s| s.trim().parse().expect("a pid")),
        code: fs::read_to_string(&out).ok(),
    }
}

fn url(t: &Fixture) -> String {
    format!("file://{}", t.remote.display())
}

fn app_dir(t: &Fixture) -> PathBuf {
    t.root.join("app")
}

#[test]
fn clones_into_a_missing_dir_then_execs_the_command() {
    let t = Fixture::new();
    let dir = app_dir(&t);
    let url = url(&t);
    let s = entrypoint(&t, &["--url", &url, "--dir", path_str(&dir)], &dir);
    s.outcome.code(0).stderr_empty().stdout_contains("cloned ");
    assert_eq!(s.code.as_deref(), Some("print('hello')\n"));
    assert_eq!(s.cmd_pid, Some(s.pid), "CMD must replace pullstart (exec)");
    // A real checkout that git agrees with, on the remote's HEAD branch, with its upstream set
    // and the deployed commit recorded.
    assert_eq!(t.git(&dir, &["status", "--porcelain"]).trim(), "");
    assert_eq!(t.rev_parse(&dir, "HEAD"), t.remote_tip());
    assert_eq!(
        t.git(&dir, &["rev-parse", "--abbrev-ref", "HEAD@{upstream}"])
            .trim(),
        "origin/main"
    );
    assert_eq!(t.rev_parse(&dir, "refs/pullstart/deployed"), t.remote_tip());
}

#[test]
fn clones_into_an_empty_dir_on_the_given_branch() {
    let t = Fixture::new();
    t.git(&t.dev, &["switch", "-q", "-c", "prod"]);
    t.dev_write("app/main.py", "print('prod')\n");
    t.dev_commit("prod");
    t.git(&t.dev, &["push", "-q", "origin", "prod"]);
    let dir = app_dir(&t);
    fs::create_dir(&dir).unwrap();
    let url = url(&t);
    let s = entrypoint(
        &t,
        &["--url", &url, "--dir", path_str(&dir), "--branch", "prod"],
        &dir,
    );
    s.outcome.code(0).stderr_empty();
    assert_eq!(s.code.as_deref(), Some("print('prod')\n"));
    assert_eq!(s.cmd_pid, Some(s.pid));
    assert_eq!(t.git(&dir, &["branch", "--show-current"]).trim(), "prod");
}

#[test]
fn fast_forwards_an_existing_checkout_then_execs_without_compose() {
    let t = Fixture::new();
    let old = t.head();
    let new = t.push_files(&[("app/main.py", "print('v2')\n")]);
    // The checkout is the fixture's clone; the compose stub's log proves compose is never run
    // (not even `config`, to learn the project).
    let stub = t.stub.display().to_string();
    let s = entrypoint(
        &t,
        &[
            "--url",
            "unused://",
            "--dir",
            path_str(&t.checkout),
            "--compose-command",
            &stub,
        ],
        &t.checkout,
    );
    s.outcome.code(0).stderr_empty().stdout_contains(&format!(
        "updated main {}..{}",
        &old[..7],
        &new[..7]
    ));
    assert_eq!(s.code.as_deref(), Some("print('v2')\n"));
    assert_eq!(s.cmd_pid, Some(s.pid));
    assert_eq!(t.head(), new);
    assert_eq!(t.deployed().as_deref(), Some(new.as_str()));
    assert!(t.compose_calls().is_empty(), "{:?}", t.compose_calls());
    assert_eq!(t.git(&t.checkout, &["status", "--porcelain"]).trim(), "");
}

#[test]
fn unreachable_remote_with_a_checkout_warns_and_starts_on_it() {
    let t = Fixture::new();
    let head = t.head();
    t.git(
        &t.checkout,
        &["remote", "set-url", "origin", "/nonexistent/remote.git"],
    );
    let s = entrypoint(
        &t,
        &[
            "--url",
            "/nonexistent/remote.git",
            "--dir",
            path_str(&t.checkout),
        ],
        &t.checkout,
    );
    s.outcome.code(0).stdout_empty();
    let lines: Vec<&str> = s.outcome.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one warning line: {lines:?}");
    assert!(
        lines[0].starts_with("pullstart: warning: ") && lines[0].contains("starting the app"),
        "{lines:?}"
    );
    assert_eq!(s.code.as_deref(), Some("print('hello')\n"));
    assert_eq!(s.cmd_pid, Some(s.pid));
    assert_eq!(t.head(), head);
}

#[test]
fn local_changes_in_the_checkout_warn_and_start_on_what_is_there() {
    let t = Fixture::new();
    t.push_files(&[("app/main.py", "print('v2')\n")]);
    t.co_write("app/main.py", "print('local')\n");
    let s = entrypoint(
        &t,
        &["--url", "unused://", "--dir", path_str(&t.checkout)],
        &t.checkout,
    );
    s.outcome
        .code(0)
        .stderr_contains("pullstart: warning: refused");
    assert_eq!(s.code.as_deref(), Some("print('local')\n"));
    assert_eq!(s.cmd_pid, Some(s.pid));
}

#[test]
fn empty_dir_and_unreachable_remote_exit_3_and_start_nothing() {
    let t = Fixture::new();
    let dir = app_dir(&t);
    fs::create_dir(&dir).unwrap();
    let s = entrypoint(
        &t,
        &["--url", "/nonexistent/remote.git", "--dir", path_str(&dir)],
        &dir,
    );
    s.outcome.code(3).stdout_empty();
    assert_eq!(s.outcome.stderr.lines().count(), 1, "{}", s.outcome.stderr);
    assert!(s
        .outcome
        .stderr
        .starts_with("pullstart: clone of /nonexistent/remote.git"));
    assert_eq!(s.cmd_pid, None, "CMD must not start");
    // Nothing is left behind, so that the next start clones again.
    assert!(!dir.exists() || fs::read_dir(&dir).unwrap().next().is_none());
}

#[test]
fn a_dir_that_is_neither_empty_nor_a_checkout_is_a_usage_error() {
    let t = Fixture::new();
    let dir = app_dir(&t);
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("stray.txt"), "x").unwrap();
    let url = url(&t);
    let s = entrypoint(&t, &["--url", &url, "--dir", path_str(&dir)], &dir);
    s.outcome
        .code(2)
        .stderr_contains("neither empty nor a git checkout");
    assert_eq!(s.cmd_pid, None);
    assert_eq!(fs::read_to_string(dir.join("stray.txt")).unwrap(), "x");
}

#[test]
fn a_missing_command_is_a_usage_error() {
    let t = Fixture::new();
    let dir = app_dir(&t);
    let url = url(&t);
    for args in [
        &["entrypoint", "--url", &url, "--dir", path_str(&dir)][..],
        &["entrypoint", "--url", &url, "--dir", path_str(&dir), "--"],
        &["entrypoint", "--url", &url, "--", "true"],
    ] {
        t.run_exact(args)
            .code(2)
            .stdout_empty()
            .stderr_contains("Usage: pullstart entrypoint");
    }
    t.run_exact(&[
        "entrypoint",
        "--url",
        "",
        "--dir",
        path_str(&dir),
        "--",
        "true",
    ])
    .code(2)
    .stdout_empty()
    .stderr_contains("--url <URL>");
    // The URL may come from PULLSTART_URL instead (one image, several repositories), but from
    // one of the two.
    t.run_exact(&["entrypoint", "--dir", path_str(&dir), "--", "true"])
        .code(2)
        .stderr_contains("the repository URL is missing; give it with --url or in the environment variable PULLSTART_URL");
    // An empty program name gets past clap, and is refused before anything is cloned.
    t.run_exact(&[
        "entrypoint",
        "--url",
        &url,
        "--dir",
        path_str(&dir),
        "--",
        "",
    ])
    .code(2)
    .stderr_contains("the command to start is missing");
    assert!(!dir.exists());
}

#[test]
fn the_url_can_come_from_the_environment() {
    let t = Fixture::new();
    let dir = app_dir(&t);
    let mut cmd = t.pullstart();
    cmd.env("PULLSTART_URL", url(&t))
        .args([
            "entrypoint",
            "--dir",
            path_str(&dir),
            "--",
            "cat",
            "app/app/main.py",
        ])
        .current_dir(&t.root);
    // `cat` runs in the fixture root; app/ is the fresh clone.
    let out = Outcome::of(&mut cmd, vec!["entrypoint (PULLSTART_URL)".into()]);
    out.code(0).stdout_contains("print('hello')");
}

#[test]
fn a_command_that_cannot_be_started_exits_2() {
    let t = Fixture::new();
    let dir = app_dir(&t);
    let url = url(&t);
    t.run_exact(&[
        "entrypoint",
        "--url",
        &url,
        "--dir",
        path_str(&dir),
        "--",
        "/no/such/program",
    ])
    .code(2)
    .stderr_contains("cannot start `/no/such/program`");
}
