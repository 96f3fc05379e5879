//! Transports of this issue: a local path, a file:// URL and git:// (against `git daemon`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::daemon::GitDaemon;
use crate::support::*;

fn update_over(t: &Fixture, url: &str) {
    t.git(&t.checkout, &["remote", "set-url", "origin", url]);
    let tip = t.push_files(&[("app/main.py", "v2\n"), ("app/new.py", "new\n")]);
    let out = t.run(&["run"]);
    out.code(0).stderr_empty();
    out.summary();
    assert_eq!(t.head(), tip);
    assert_git_clean(t, &Clean::strict());
    assert_eq!(t.deployed(), Some(tip));
}

#[test]
fn fetches_from_a_local_path() {
    let t = Fixture::new();
    let url = path_str(&t.remote).to_string();
    update_over(&t, &url);
}

#[test]
fn fetches_from_a_file_url() {
    let t = Fixture::new();
    let url = format!("file://{}", t.remote.display());
    update_over(&t, &url);
}

#[test]
fn fetches_over_git_protocol_from_git_daemon() {
    let t = Fixture::new();
    let daemon = GitDaemon::start(&t);
    let url = daemon.url("remote.git");
    update_over(&t, &url);
    // And a second update over the same transport (negotiation with existing history).
    let tip = t.push_files(&[("app/main.py", "v3\n")]);
    t.run(&["run"]).code(0);
    assert_eq!(t.head(), tip);
    assert_git_clean(&t, &Clean::strict());
}

#[test]
fn git_protocol_branch_missing_exits_2() {
    let t = Fixture::new();
    let daemon = GitDaemon::start(&t);
    t.git(
        &t.checkout,
        &["remote", "set-url", "origin", &daemon.url("remote.git")],
    );
    t.run(&["run", "--branch", "nosuchbranch"]).code(2);
}

#[test]
fn git_protocol_unknown_repository_exits_3() {
    let t = Fixture::new();
    let daemon = GitDaemon::start(&t);
    t.git(
        &t.checkout,
        &["remote", "set-url", "origin", &daemon.url("nosuchrepo.git")],
    );
    let out = t.run(&["run"]);
    out.code(3);
    out.error_line();
}

#[test]
fn works_without_a_git_identity_in_the_environment() {
    // Cron gives a bare environment: no GIT_* identity, a HOME without any git config.
    // pullstart still has to fetch and write its reflog entry.
    let t = Fixture::new();
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    let mut cmd = t.pullstart();
    for var in [
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_AUTHOR_DATE",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "GIT_COMMITTER_DATE",
    ] {
        cmd.env_remove(var);
    }
    cmd.args(t.full_args(&["run"]));
    let out = Outcome::of(&mut cmd, vec!["run (no identity)".into()]);
    out.code(0);
    assert_eq!(t.head(), tip);
    assert_git_clean(&t, &Clean::strict());
}

/// No child inherits `PULLSTART_TOKEN`: neither what gitoxide starts (for a local remote, the
/// `git-upload-pack` it finds on PATH; ssh, credential helpers and LFS filters are started the
/// same way) nor compose.
#[test]
fn no_child_inherits_the_token() {
    let t = Fixture::new();
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    let spy_bin = t.root.join("spy-bin");
    fs::create_dir(&spy_bin).unwrap();
    let seen = t.root.join("seen");
    let spy = |path: &Path, name: &str, then: &str| {
        let script = format!(
            "#!/bin/sh\necho \"{name} ${{PULLSTART_TOKEN-unset}}\" >> '{}'\n{then}\n",
            seen.display()
        );
        fs::write(path, script).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    };
    // `git upload-pack` runs git's own, not this wrapper again.
    spy(
        &spy_bin.join("git-upload-pack"),
        "upload-pack",
        "exec git upload-pack \"$@\"",
    );
    let compose = t.root.join("compose-spy");
    spy(&compose, "compose", "exit 0");
    let path = format!("{}:{}", spy_bin.display(), std::env::var("PATH").unwrap());
    let args = t.full_args(&["run", "--compose-command", path_str(&compose)]);
    let mut cmd = t.pullstart();
    cmd.env("PATH", path)
        .env("PULLSTART_TOKEN", "s3cr3t-Wx42")
        .args(&args);
    let out = Outcome::of(&mut cmd, vec!["run".into()]);
    out.code(0);
    assert_eq!(t.head(), tip);
    assert_eq!(
        fs::read_to_string(&seen).unwrap(),
        "upload-pack unset\ncompose unset\n"
    );
}
