//! The compose command: what it is called with, where, when, and exit 6 with its retry.

use crate::support::*;

#[test]
fn services_reach_the_stub_in_the_given_order() {
    let t = Fixture::new();
    t.push_files(&[("app/main.py", "v2\n")]);
    let out = t.run(&["run", "--services", "worker,web,beat"]);
    out.code(0);
    assert_eq!(
        t.restart_calls(),
        vec!["restart worker web beat".to_string()]
    );
    let s = out.summary();
    assert_eq!(s.restarted, "worker web beat", "{}", s.line);
}

#[test]
fn compose_files_and_project_name_come_before_restart() {
    let t = Fixture::new();
    t.push_files(&[("app/main.py", "v2\n")]);
    t.run(&[
        "run",
        "-f",
        "base.yml",
        "--compose-file",
        "prod.yml",
        "-p",
        "shop",
    ])
    .code(0);
    assert_eq!(
        t.restart_calls(),
        vec!["-f base.yml -f prod.yml -p shop restart web worker".to_string()]
    );
}

#[test]
fn compose_command_is_split_into_words() {
    let t = Fixture::new();
    t.push_files(&[("app/main.py", "v2\n")]);
    let cmd = format!("'{}' compose --ansi never", t.stub.display());
    t.run(&["run", "--compose-command", &cmd]).code(0);
    assert_eq!(
        t.restart_calls(),
        vec!["compose --ansi never restart web worker".to_string()]
    );
}

#[test]
fn compose_runs_in_the_checkout_directory() {
    let t = Fixture::new();
    t.push_files(&[("app/main.py", "v2\n")]);
    t.run(&["run"]).code(0);
    let calls = t.compose_calls();
    assert!(!calls.is_empty());
    for c in calls {
        assert_eq!(c.cwd, t.checkout, "compose must run in the checkout: {c:?}");
    }
}

#[test]
fn restart_failure_exits_6_and_the_next_run_retries() {
    let t = Fixture::new();
    let old = t.head();
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    t.fail_restart(
        1,
        "Error response from daemon: container web is unhealthy\n",
    );

    let out = t.run(&["run"]);
    out.code(6);
    let line = out.error_line();
    assert!(
        line.contains("container web is unhealthy"),
        "the stub's stderr belongs in the error line: {line}"
    );
    // The code is updated, the deployed ref is not.
    assert_git_clean(&t, &Clean::strict());
    assert_eq!(
        t.deployed(),
        Some(old.clone()),
        "a failed restart leaves the deployed ref where it was"
    );
    assert_eq!(t.restart_calls(), vec![RESTART_DEFAULT.to_string()]);

    // Still failing: still 6, still retried.
    let again = t.run(&["run"]);
    again.code(6);
    assert_eq!(
        t.restart_calls().len(),
        2,
        "the second run must retry although HEAD == tip"
    );
    assert_eq!(t.deployed(), Some(old.clone()));

    // Healed: the retry succeeds, and only now the deployed ref moves.
    t.heal_restart();
    t.clear_compose_log();
    t.run(&["run"]).code(0).stderr_empty();
    assert_eq!(
        t.restart_calls(),
        vec![RESTART_DEFAULT.to_string()],
        "the retry restarts the same services"
    );
    assert_eq!(t.deployed(), Some(tip.clone()));
    assert_eq!(t.head(), tip);

    // Then nothing left to do.
    t.clear_compose_log();
    t.run(&["run"]).code(0).silent();
    assert!(t.restart_calls().is_empty());
}

#[test]
fn restart_failure_with_another_exit_code_is_still_6() {
    let t = Fixture::new();
    t.push_files(&[("app/main.py", "v2\n")]);
    t.fail_restart(17, "boom\n");
    let out = t.run(&["run"]);
    out.code(6);
    assert!(out.error_line().contains("boom"));
}

#[test]
fn retry_with_detailed_exitcode_is_10() {
    let t = Fixture::new();
    t.push_files(&[("app/main.py", "v2\n")]);
    t.fail_restart(1, "boom\n");
    t.run(&["run"]).code(6);
    t.heal_restart();
    t.run(&["run", "--detailed-exitcode"]).code(10);
}

#[test]
fn update_that_leaves_the_tree_identical_restarts_nothing() {
    let t = Fixture::new();
    t.run(&["run"]).code(0); // deployed := HEAD
    let tip = t.dev_commit("empty commit, same tree");
    t.push();
    t.clear_compose_log();
    let out = t.run(&["run"]);
    out.code(0).stderr_empty();
    assert_eq!(t.head(), tip, "HEAD still moves");
    assert!(
        t.restart_calls().is_empty(),
        "same tree, nothing to restart: {:?}",
        t.restart_calls()
    );
    assert_git_clean(&t, &Clean::strict());
    assert_eq!(t.deployed(), Some(tip));
}

#[test]
fn restarts_when_the_deployed_ref_lags_behind_head() {
    let t = Fixture::new();
    t.run(&["run"]).code(0);
    let old = t.deployed().unwrap();
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    // Someone pulled by hand: HEAD is at the tip but the containers still run the old code.
    t.git(&t.checkout, &["pull", "-q", "--ff-only"]);
    assert_eq!(t.head(), tip);
    assert_eq!(t.deployed(), Some(old));
    t.clear_compose_log();
    t.run(&["run"]).code(0);
    assert_eq!(
        t.restart_calls(),
        vec![RESTART_DEFAULT.to_string()],
        "deployed != tip: restart"
    );
    assert_eq!(t.deployed(), Some(tip));
}

#[test]
fn restarts_all_services_when_the_compose_project_cannot_be_read() {
    let t = Fixture::new();
    t.push_files(&[("app/main.py", "v2\n")]);
    // No --services, no config; the stub fails every read-only subcommand.
    let out = t.run_exact(&[
        "run".as_ref(),
        "-C".as_ref(),
        t.checkout.as_os_str(),
        "--compose-command".as_ref(),
        t.stub.as_os_str(),
        "--health-timeout".as_ref(),
        "0".as_ref(),
    ]);
    out.code(0);
    assert_eq!(
        t.restart_calls(),
        vec!["restart".to_string()],
        "all services: `restart` with no names"
    );
    let s = out.summary();
    assert!(
        s.restarted.contains("all"),
        "the summary should say all services were restarted: {}",
        s.line
    );
}

#[test]
fn refused_and_failed_fetch_runs_do_not_restart() {
    let t = Fixture::new();
    t.co_write("app/main.py", "local\n");
    t.push_files(&[("app/main.py", "upstream\n")]);
    t.run(&["run"]).code(4);
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
    assert!(t.restart_calls().is_empty(), "{:?}", t.restart_calls());
}
