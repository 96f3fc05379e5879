//! `check` and `--dry-run`: fetch and report what a run would do; change no worktree, index,
//! branch, state ref or container; exit with the code the run would exit with.

use crate::support::*;

/// Everything `check` must leave alone, the deployed ref included.
struct Frozen {
    state: RepoState,
    snap: Snapshot,
}

impl Frozen {
    fn capture(t: &Fixture) -> Frozen {
        Frozen {
            state: RepoState::capture(t, true),
            snap: Snapshot::of(&t.checkout),
        }
    }

    #[track_caller]
    fn assert(&self, t: &Fixture) {
        assert_eq!(
            RepoState::capture(t, true),
            self.state,
            "check changed HEAD, the index, a branch or refs/pullstart"
        );
        self.snap.assert_same(&Snapshot::of(&t.checkout), "check");
        assert!(
            t.restart_calls().is_empty(),
            "check restarted: {:?}",
            t.restart_calls()
        );
    }
}

fn pending_update(t: &Fixture) -> String {
    t.dev_write("app/main.py", "print('v2')\n");
    t.dev_write("app/added.py", "added\n");
    t.dev_remove("docs/guide.md");
    let tip = t.dev_commit("v2");
    t.push();
    tip
}

#[test]
fn check_lists_changed_paths_and_changes_nothing() {
    let t = Fixture::new();
    let tip = pending_update(&t);
    let frozen = Frozen::capture(&t);
    let out = t.run(&["check"]);
    out.code(0);
    for p in ["app/main.py", "app/added.py", "docs/guide.md"] {
        out.stdout_contains(p);
    }
    frozen.assert(&t);
    assert_eq!(t.deployed(), None, "check must not create the deployed ref");

    // The update is still pending: a run applies it.
    t.run(&["run"]).code(0);
    assert_eq!(t.head(), tip);
    assert_git_clean(&t, &Clean::strict());
}

#[test]
fn check_lists_the_services_that_would_restart() {
    let t = Fixture::new();
    pending_update(&t);
    let out = t.run(&["check", "--services", "api,queue"]);
    out.code(0).stdout_contains("api").stdout_contains("queue");
    assert!(t.restart_calls().is_empty());
}

#[test]
fn dry_run_is_the_same_as_check() {
    let t = Fixture::new();
    pending_update(&t);
    let frozen = Frozen::capture(&t);
    let out = t.run(&["run", "--dry-run"]);
    out.code(0)
        .stdout_contains("app/main.py")
        .stdout_contains("app/added.py");
    frozen.assert(&t);
}

#[test]
fn check_does_not_move_an_existing_deployed_ref() {
    let t = Fixture::new();
    t.run(&["run"]).code(0);
    let deployed = t.deployed().expect("created by the first run");
    pending_update(&t);
    let frozen = Frozen::capture(&t);
    t.run(&["check"]).code(0);
    frozen.assert(&t);
    assert_eq!(t.deployed(), Some(deployed));
}

#[test]
fn check_with_detailed_exitcode_exits_10_when_an_update_is_pending() {
    let t = Fixture::new();
    pending_update(&t);
    let frozen = Frozen::capture(&t);
    t.run(&["check", "--detailed-exitcode"]).code(10);
    frozen.assert(&t);
}

#[test]
fn check_with_detailed_exitcode_exits_0_when_up_to_date() {
    let t = Fixture::new();
    t.run(&["check", "--detailed-exitcode"]).code(0);
    assert!(t.restart_calls().is_empty());
}

#[test]
fn check_exits_4_where_a_run_would_refuse_local_changes() {
    let t = Fixture::new();
    t.co_write("app/main.py", "local edit\n");
    pending_update(&t);
    let frozen = Frozen::capture(&t);
    let out = t.run(&["check"]);
    out.code(4);
    assert!(out.error_line().contains("app/main.py"));
    frozen.assert(&t);
}

#[test]
fn check_exits_5_where_a_run_would_refuse_not_fast_forward() {
    let t = Fixture::new();
    t.co_write("docs/local.md", "local\n");
    t.git(&t.checkout, &["add", "."]);
    t.git(&t.checkout, &["commit", "-q", "-m", "local"]);
    pending_update(&t);
    let frozen = Frozen::capture(&t);
    let out = t.run(&["check"]);
    out.code(5);
    out.error_line();
    frozen.assert(&t);
}

#[test]
fn check_json_reports_would_update() {
    let t = Fixture::new();
    let head = t.head();
    let tip = pending_update(&t);
    let out = t.run(&["check", "--output", "json"]);
    out.code(0);
    let j = out.json();
    assert_eq!(j["result"], "would_update", "{j}");
    assert_eq!(j["exit_code"], 0, "{j}");
    assert_eq!(j["from"], head.as_str(), "{j}");
    assert_eq!(j["to"], tip.as_str(), "{j}");
    // The ref does not exist after `check`: null; HEAD (where a run would first create it) is
    // a defensible reading too.
    assert!(
        j["deployed"].is_null() || j["deployed"] == head.as_str(),
        "deployed after check: {j}"
    );
    let mut paths: Vec<String> = j["changed_paths"]
        .as_array()
        .expect("changed_paths array")
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    paths.sort();
    assert_eq!(paths, changed_paths(&t, &head, &tip), "{j}");
    assert_eq!(j["services"], serde_json::json!(["web", "worker"]), "{j}");
    assert!(j["error"].is_null(), "{j}");
    assert_eq!(t.head(), head);
}

#[test]
fn status_is_offline_and_changes_nothing() {
    let t = Fixture::new();
    pending_update(&t);
    // A remote that cannot be reached: status must not try.
    t.git(
        &t.checkout,
        &[
            "remote",
            "set-url",
            "origin",
            path_str(&t.root.join("gone.git")),
        ],
    );
    let frozen = Frozen::capture(&t);
    let out = t.run(&["status"]);
    out.code(0).stdout_contains("main");
    frozen.assert(&t);
}
