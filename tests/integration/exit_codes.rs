//! One test (at least) per exit code of the contract: 0, 10, 2, 3 here; 4 and 5 in refusals,
//! 6 in restart, 7 in lock.

use crate::support::*;

#[test]
fn up_to_date_run_is_silent_and_exits_0() {
    let t = Fixture::new();
    let head = t.head();
    t.run(&["run"]).code(0).silent();
    assert_eq!(t.head(), head);
    assert_eq!(
        t.restart_calls(),
        Vec::<String>::new(),
        "nothing changed, nothing to restart"
    );
}

#[test]
fn up_to_date_run_creates_the_deployed_ref_at_head() {
    let t = Fixture::new();
    assert_eq!(t.deployed(), None, "a fresh clone has no deployed ref");
    t.run(&["run"]).code(0).silent();
    assert_eq!(
        t.deployed(),
        Some(t.head()),
        "a run creates refs/pullstart/deployed at HEAD when missing"
    );
}

#[test]
fn update_exits_0_with_one_summary_line() {
    let t = Fixture::new();
    let old = t.head();
    t.dev_write("app/main.py", "print('v2')\n");
    t.dev_write("app/new.py", "new\n");
    let tip = t.dev_commit("v2");
    t.push();

    let out = t.run(&["run"]);
    out.code(0).stderr_empty();
    let s = out.summary();
    assert_eq!(s.branch, "main", "{}", s.line);
    s.assert_range(&old, &tip);
    assert_eq!(s.files, 2, "two files changed: {}", s.line);
    assert_eq!(s.restarted, "web worker", "{}", s.line);

    assert_git_clean(&t, &Clean::strict());
    assert_eq!(t.deployed(), Some(tip.clone()));
    assert_eq!(t.restart_calls(), vec![RESTART_DEFAULT.to_string()]);
}

#[test]
fn run_is_the_default_subcommand() {
    let t = Fixture::new();
    let tip = t.push_files(&[("app/main.py", "print('v2')\n")]);
    let out = t.run(&[]);
    out.code(0).stderr_empty();
    out.summary();
    assert_eq!(t.head(), tip);
    assert_git_clean(&t, &Clean::strict());
}

#[test]
fn second_run_after_an_update_is_silent() {
    let t = Fixture::new();
    t.push_files(&[("app/main.py", "print('v2')\n")]);
    t.run(&["run"]).code(0);
    t.clear_compose_log();
    t.run(&["run"]).code(0).silent();
    assert!(
        t.restart_calls().is_empty(),
        "second run restarted again: {:?}",
        t.restart_calls()
    );
}

#[test]
fn detailed_exitcode_exits_10_after_an_update() {
    let t = Fixture::new();
    let tip = t.push_files(&[("app/main.py", "print('v2')\n")]);
    let out = t.run(&["run", "--detailed-exitcode"]);
    out.code(10).stderr_empty();
    out.summary();
    assert_eq!(t.head(), tip);
    assert_eq!(t.deployed(), Some(tip));
    assert_git_clean(&t, &Clean::strict());
}

#[test]
fn detailed_exitcode_exits_0_when_up_to_date() {
    let t = Fixture::new();
    t.run(&["run", "--detailed-exitcode"]).code(0).silent();
}

// ----- exit 2: usage and configuration errors -----

fn assert_usage_error_touched_nothing(t: &Fixture, before: &RepoState, snap: &Snapshot) {
    assert_eq!(
        &RepoState::capture(t, false),
        before,
        "a usage error changed the repository"
    );
    snap.assert_same(&Snapshot::of(&t.checkout), "usage error");
    assert!(
        t.restart_calls().is_empty(),
        "a usage error restarted: {:?}",
        t.restart_calls()
    );
}

#[test]
fn not_a_git_checkout_exits_2() {
    let t = Fixture::new();
    let plain = t.root.join("plain-dir");
    std::fs::create_dir(&plain).unwrap();
    let out = t.run(&["run", "-C", path_str(&plain)]);
    out.code(2).stdout_empty();
    let line = out.error_line();
    assert!(
        line.contains("plain-dir"),
        "the error should name the directory: {line}"
    );
    assert!(t.restart_calls().is_empty());
}

#[test]
fn missing_repo_directory_exits_2() {
    let t = Fixture::new();
    let out = t.run(&["run", "-C", path_str(&t.root.join("no-such-dir"))]);
    out.code(2).stdout_empty();
    out.error_line();
}

#[test]
fn detached_head_exits_2() {
    let t = Fixture::new();
    t.git(&t.checkout, &["checkout", "-q", "--detach"]);
    t.push_files(&[("app/main.py", "print('v2')\n")]);
    let before = RepoState::capture(&t, false);
    let snap = Snapshot::of(&t.checkout);
    let out = t.run(&["run"]);
    out.code(2).stdout_empty();
    let line = out.error_line();
    assert!(
        line.to_lowercase().contains("detached"),
        "the error should say HEAD is detached: {line}"
    );
    assert_usage_error_touched_nothing(&t, &before, &snap);
}

#[test]
fn unknown_remote_exits_2() {
    let t = Fixture::new();
    let before = RepoState::capture(&t, false);
    let snap = Snapshot::of(&t.checkout);
    let out = t.run(&["run", "--remote", "nosuchremote"]);
    out.code(2).stdout_empty();
    let line = out.error_line();
    assert!(
        line.contains("nosuchremote"),
        "the error should name the remote: {line}"
    );
    assert_usage_error_touched_nothing(&t, &before, &snap);
}

#[test]
fn branch_missing_on_the_remote_exits_2() {
    let t = Fixture::new();
    let before = RepoState::capture(&t, false);
    let snap = Snapshot::of(&t.checkout);
    let out = t.run(&["run", "--branch", "nosuchbranch"]);
    out.code(2).stdout_empty();
    let line = out.error_line();
    assert!(
        line.contains("nosuchbranch"),
        "the error should name the branch: {line}"
    );
    assert_usage_error_touched_nothing(&t, &before, &snap);
}

#[test]
fn bad_flag_exits_2_with_clap_message() {
    let t = Fixture::new();
    let out = t.run(&["run", "--no-such-flag"]);
    out.code(2).stdout_empty().stderr_contains("--no-such-flag");
    assert!(t.restart_calls().is_empty());
}

#[test]
fn bad_output_format_exits_2() {
    let t = Fixture::new();
    let out = t.run(&["run", "--output", "xml"]);
    out.code(2).stdout_empty().stderr_contains("xml");
}

#[test]
fn unknown_subcommand_exits_2() {
    let t = Fixture::new();
    t.run(&["frobnicate"]).code(2).stdout_empty();
}

// ----- exit 3: fetch failed -----

#[test]
fn fetch_from_a_remote_path_that_does_not_exist_exits_3() {
    let t = Fixture::new();
    let missing = t.root.join("gone.git");
    t.git(
        &t.checkout,
        &["remote", "set-url", "origin", path_str(&missing)],
    );
    let before = RepoState::capture(&t, false);
    let snap = Snapshot::of(&t.checkout);
    let out = t.run(&["run"]);
    out.code(3).stdout_empty();
    out.error_line();
    assert_eq!(RepoState::capture(&t, false), before);
    snap.assert_same(&Snapshot::of(&t.checkout), "fetch failure");
    assert!(t.restart_calls().is_empty());
}

#[test]
fn fetch_from_a_git_port_nobody_listens_on_exits_3() {
    let t = Fixture::new();
    let url = format!("git://127.0.0.1:{}/remote.git", free_port());
    t.git(&t.checkout, &["remote", "set-url", "origin", &url]);
    let head = t.head();
    let out = t.run(&["run"]);
    out.code(3).stdout_empty();
    out.error_line();
    assert!(
        out.elapsed.as_secs() < 10,
        "a refused connection should fail fast, took {:?}",
        out.elapsed
    );
    assert_eq!(t.head(), head);
    assert!(t.restart_calls().is_empty());
}

#[test]
fn fetch_failure_is_retried_by_the_next_run() {
    let t = Fixture::new();
    let tip = t.push_files(&[("app/main.py", "print('v2')\n")]);
    let good = path_str(&t.remote).to_string();
    t.git(
        &t.checkout,
        &[
            "remote",
            "set-url",
            "origin",
            path_str(&t.root.join("gone.git")),
        ],
    );
    t.run(&["run"]).code(3);
    t.git(&t.checkout, &["remote", "set-url", "origin", &good]);
    t.run(&["run"]).code(0);
    assert_eq!(t.head(), tip);
    assert_git_clean(&t, &Clean::strict());
}
