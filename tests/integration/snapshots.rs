//! Snapshots of what users read, so that a change to it shows as a diff in review: `--help` of
//! the command and of each subcommand (files in `snapshots/`), and what the real binary prints
//! for each exit code (inline below), each driven there by the smallest real setup.
//!
//! After an intended change, rewrite them and review the diff:
//! `SNAPSHOTS=overwrite cargo test --features failpoints --test integration snapshots`.
//!
//! Paths under the fixture's temporary root read `[ROOT]`, process ids `[PID]`; commit ids are
//! stable because the fixture fixes the authors and dates.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use assert_cmd::prelude::*;
use snapbox::{str, IntoData};

use crate::support::project::compose_fixture;
use crate::support::*;

/// Compares `actual` to the snapshot, `SNAPSHOTS=overwrite` rewriting it, with `root` (a
/// fixture's temporary directory) shown as `[ROOT]`.
#[track_caller]
fn assert_snapshot(actual: String, expected: impl IntoData, root: Option<&Path>) {
    let mut redactions = snapbox::Redactions::new();
    if let Some(root) = root {
        redactions.insert("[ROOT]", root.to_path_buf()).unwrap();
    }
    // A temporary file's name carries the writer's process id.
    let pid = regex::Regex::new(r"\.pullstart-(?<redacted>[0-9]+)\.tmp").unwrap();
    redactions.insert("[PID]", pid).unwrap();
    snapbox::Assert::new()
        .action_env(snapbox::assert::DEFAULT_ACTION_ENV)
        .redact_with(redactions)
        .eq(actual, expected);
}

/// The exit code and both streams of one run, as a snapshot shows them.
fn transcript(out: &Outcome) -> String {
    let code = out
        .code
        .map_or("a signal".to_string(), |code| code.to_string());
    format!(
        "exit: {code}\n--- stdout\n{}--- stderr\n{}",
        out.stdout, out.stderr
    )
}

#[track_caller]
fn assert_run(t: &Fixture, out: &Outcome, expected: impl IntoData) {
    assert_snapshot(transcript(out), expected, Some(&t.root));
}

// ----- --help -----

/// `pullstart ARGS` with nothing of the caller's environment (no COLUMNS: clap wraps at 100).
fn help(args: &[&str]) -> String {
    let mut cmd = Command::cargo_bin("pullstart").expect("the pullstart binary");
    hermetic(&mut cmd, Path::new("/nonexistent"));
    let out = cmd.args(args).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "pullstart {args:?}: {out:?}");
    assert!(out.stderr.is_empty(), "pullstart {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_of_the_command() {
    assert_snapshot(
        help(&["--help"]),
        snapbox::file!["snapshots/help.txt"].raw(),
        None,
    );
    assert_snapshot(
        help(&["-h"]),
        snapbox::file!["snapshots/help-short.txt"].raw(),
        None,
    );
}

#[test]
fn help_of_each_subcommand() {
    assert_snapshot(
        help(&["run", "--help"]),
        snapbox::file!["snapshots/help-run.txt"].raw(),
        None,
    );
    assert_snapshot(
        help(&["check", "--help"]),
        snapbox::file!["snapshots/help-check.txt"].raw(),
        None,
    );
    assert_snapshot(
        help(&["status", "--help"]),
        snapbox::file!["snapshots/help-status.txt"].raw(),
        None,
    );
    assert_snapshot(
        help(&["watch", "--help"]),
        snapbox::file!["snapshots/help-watch.txt"].raw(),
        None,
    );
    assert_snapshot(
        help(&["entrypoint", "--help"]),
        snapbox::file!["snapshots/help-entrypoint.txt"].raw(),
        None,
    );
}

// ----- one test per exit code -----

#[test]
fn exit_0_up_to_date_and_updated() {
    let t = Fixture::new();
    assert_run(
        &t,
        &t.run(&["run"]),
        str![[r#"
exit: 0
--- stdout
--- stderr

"#]],
    );
    t.push_files(&[("app/main.py", "print('v2')\n")]);
    assert_run(
        &t,
        &t.run(&["run"]),
        str![[r#"
exit: 0
--- stdout
updated main ecfc443..056d6eb (1 file); restarted: web worker
--- stderr

"#]],
    );
}

#[test]
fn exit_1_a_run_that_does_not_finish_within_its_timeout() {
    let t = Fixture::new();
    t.push_files(&[("app/main.py", "v2\n")]);
    // A FIFO in place of the remote-tracking ref blocks the ref read until the watchdog ends it.
    t.git(&t.checkout, &["pack-refs", "--all"]);
    let tracking = t.checkout.join(".git/refs/remotes/origin/main");
    fs::create_dir_all(tracking.parent().unwrap()).unwrap();
    let made = Command::new("mkfifo").arg(&tracking).status().unwrap();
    assert!(made.success(), "mkfifo");
    assert_run(
        &t,
        &t.run(&["run", "--timeout", "2s"]),
        str![[r#"
exit: 1
--- stdout
--- stderr
pullstart: the run did not finish within --timeout 2s and was ended before the update started; nothing was touched, the next run starts over; run with --verbose to see the last step it reached

"#]],
    );
}

#[test]
fn exit_2_usage_errors() {
    let t = Fixture::new();
    assert_run(
        &t,
        &t.run(&["run", "--remote", "nosuchremote"]),
        str![[r#"
exit: 2
--- stdout
--- stderr
pullstart: unknown remote `nosuchremote` in `[ROOT]/checkout`; see `git remote -v` or pass --remote

"#]],
    );
    let config = t.config_file("servics: [web]\n");
    assert_run(
        &t,
        &t.run(&["run", "--config", path_str(&config)]),
        str![[r#"
exit: 2
--- stdout
--- stderr
pullstart: config `[ROOT]/pullstart.yml` line 1 column 1: unknown key `servics` (did you mean `services`?); expected one of: repo, remote, branch, compose_command, compose_files, project_name, services, restart_timeout, rebuild_policy, submodules, health_timeout, health_settle, rollback, detailed_exitcode, output, quiet, verbose, ignore, dependency_files, hooks, timeout, splay, metrics_file, ssh_key, token_file, verify_signatures, every, listen, webhook_secret_file

"#]],
    );
    // clap's own message, several lines.
    assert_run(
        &t,
        &t.run(&["run", "--no-such-flag"]),
        str![[r#"
exit: 2
--- stdout
--- stderr
error: unexpected argument '--no-such-flag' found

Usage: pullstart run [OPTIONS]

For more information, try '--help'.

"#]],
    );
}

#[test]
fn exit_3_fetch_failed() {
    let t = Fixture::new();
    let gone = t.root.join("gone.git");
    t.git(
        &t.checkout,
        &["remote", "set-url", "origin", path_str(&gone)],
    );
    assert_run(
        &t,
        &t.run(&["run"]),
        str![[r#"
exit: 3
--- stdout
--- stderr
pullstart: failed to fetch `main` from `[ROOT]/gone.git`: no such directory; the next run retries

"#]],
    );
}

#[test]
fn exit_4_local_changes_would_be_overwritten() {
    let t = Fixture::new();
    t.push_files(&[("app/main.py", "print('v2')\n")]);
    t.co_write("app/main.py", "print('hotfix')\n");
    assert_run(
        &t,
        &t.run(&["run"]),
        str![[r#"
exit: 4
--- stdout
--- stderr
pullstart: refused: local changes to app/main.py (modified) would be overwritten; commit, stash or remove them (nothing was touched)

"#]],
    );
}

#[test]
fn exit_5_not_a_fast_forward() {
    let t = Fixture::new();
    t.push_files(&[("app/main.py", "print('v2')\n")]);
    t.co_write("local.txt", "a local commit\n");
    t.git(&t.checkout, &["add", "local.txt"]);
    t.git(&t.checkout, &["commit", "-q", "-m", "local"]);
    assert_run(
        &t,
        &t.run(&["run"]),
        str![[r#"
exit: 5
--- stdout
--- stderr
pullstart: refused: not a fast-forward: `main` and `origin/main` have diverged; nothing was touched; push or drop the local commits, or `git reset --keep origin/main` to follow the remote

"#]],
    );
}

#[test]
fn exit_6_restart_failed() {
    let t = Fixture::new();
    t.push_files(&[("app/main.py", "print('v2')\n")]);
    t.fail_restart(1, "Error response from daemon: no such container\n");
    assert_run(
        &t,
        &t.run(&["run"]),
        str![[r#"
exit: 6
--- stdout
--- stderr
pullstart: restart failed: `[ROOT]/stub/compose restart web worker` exited with code 1: Error response from daemon: no such container; the next run retries

"#]],
    );
}

#[test]
fn exit_7_locked() {
    let t = Fixture::new();
    let _lock = hold_lock_with_flock(&t, 30);
    assert_run(
        &t,
        &t.run(&["run"]),
        str![[r#"
exit: 7
--- stdout
--- stderr
pullstart: skipped: another pullstart run holds `[ROOT]/checkout/.git/pullstart.lock`; the next scheduled run will try again

"#]],
    );
}

#[test]
fn exit_8_rebuild_required() {
    let t = compose_fixture();
    t.run_mapped(&["run"]).code(0);
    t.push_files(&[("worker/requirements.txt", "requests==2.32.0\n")]);
    assert_run(
        &t,
        &t.run_mapped(&["run", "--rebuild-policy", "stop"]),
        str![[r#"
exit: 8
--- stdout
--- stderr
pullstart: rebuild required: image files changed for `worker` (worker/requirements.txt); nothing was touched; run `pullstart --allow-rebuild` to update and rebuild (`[ROOT]/stub/compose up -d --build --no-deps worker`)

"#]],
    );
}

/// An SSH public key that signs nothing here: the allowed-signers file needs one to be valid.
const TRUSTED_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAVKupeKvqrCqEOk6ywxEszNWHVTh7SP/VMDTyTVmxjO";

#[test]
fn exit_9_untrusted_commit() {
    let t = Fixture::new();
    let signers = t.root.join("allowed_signers");
    fs::write(&signers, format!("dev@example.com {TRUSTED_KEY}\n")).unwrap();
    t.push_files(&[("app/main.py", "print('v2')\n")]);
    assert_run(
        &t,
        &t.run(&["run", "--allowed-signers", path_str(&signers)]),
        str![[r#"
exit: 9
--- stdout
--- stderr
pullstart: untrusted commit 056d6eb0b381c59b8a58049a0bdb789986e4a7b7: it is unsigned; nothing was changed; push a commit signed by a key in `[ROOT]/allowed_signers`

"#]],
    );
}

#[test]
fn exit_10_updated_with_detailed_exitcode() {
    let t = Fixture::new();
    t.push_files(&[("app/main.py", "print('v2')\n")]);
    assert_run(
        &t,
        &t.run(&["run", "--detailed-exitcode"]),
        str![[r#"
exit: 10
--- stdout
updated main ecfc443..056d6eb (1 file); restarted: web worker
--- stderr

"#]],
    );
}

#[test]
fn exit_11_update_incomplete() {
    let t = Fixture::new();
    t.dev_remove("docs/guide.md");
    t.dev_write("app/main.py", "print('v2')\n");
    t.dev_commit("v2");
    t.push();
    let Some(_immutable) = crate::refusals::Immutable::set(t.co("app/main.py")) else {
        return;
    };
    assert_run(
        &t,
        &t.run(&["run"]),
        str![[r#"
exit: 11
--- stdout
--- stderr
pullstart: the update to 3dfe9e0 stopped part-way: failed to rename `[ROOT]/checkout/app/.main.py.pullstart-[PID].tmp` to `[ROOT]/checkout/app/main.py`: Operation not permitted (os error 1); the checkout is mid-update and nothing was restarted; once the cause is fixed the next run finishes the update, or a newer remote commit replaces it

"#]],
    );
}
