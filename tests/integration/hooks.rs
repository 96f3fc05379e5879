//! Hooks from the host-side config: `before` the action, `after_success` and `on_failure`, run
//! with `sh -c` in the checkout with the run's facts in `PULLSTART_*`. A config file inside the
//! checkout may not define hooks (exit 2, nothing touched).
//!
//! The hook script appends `<cwd>\tHOOK <name>` to the stub's own log, so the order of hooks
//! and compose calls is one list, and dumps its `PULLSTART_*` environment to
//! `<root>/hook-<name>.env`. A file `<root>/hook-<name>.fail` makes that hook fail.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::support::*;

fn install_hook_script(t: &Fixture) -> PathBuf {
    let script = t.root.join("hook.sh");
    let root = t.root.display();
    let log = t.log.display();
    fs::write(
        &script,
        format!(
            r#"#!/bin/sh
printf '%s\tHOOK %s\n' "$(pwd -P)" "$1" >> '{log}'
env | grep '^PULLSTART_' | sort > '{root}/hook-'"$1"'.env'
if [ -f '{root}/hook-'"$1"'.fail' ]; then
  echo "hook $1 says no" >&2
  exit 3
fi
"#
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// The config text that wires every hook to the script.
fn hooks_config(script: &std::path::Path) -> String {
    let s = script.display();
    format!(
        "hooks:\n  before: \"'{s}' before\"\n  after_success: \"'{s}' after_success\"\n  on_failure: \"'{s}' on_failure\"\n"
    )
}

/// A fixture with the hook script and a config outside the checkout that uses it.
fn hooked() -> (Fixture, PathBuf) {
    let t = Fixture::new();
    let script = install_hook_script(&t);
    let cfg = t.config_file(&hooks_config(&script));
    (t, cfg)
}

/// The `PULLSTART_*` environment the hook `name` ran with, or None if it did not run.
fn hook_env(t: &Fixture, name: &str) -> Option<BTreeMap<String, String>> {
    let text = fs::read_to_string(t.root.join(format!("hook-{name}.env"))).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn fail_hook(t: &Fixture, name: &str) {
    fs::write(t.root.join(format!("hook-{name}.fail")), "").unwrap();
}

fn heal_hook(t: &Fixture, name: &str) {
    let _ = fs::remove_file(t.root.join(format!("hook-{name}.fail")));
}

fn forget_hooks(t: &Fixture) {
    for name in ["before", "after_success", "on_failure"] {
        let _ = fs::remove_file(t.root.join(format!("hook-{name}.env")));
    }
}

/// The log as "args" strings (hooks and compose calls alike), each checked to run in the
/// checkout.
#[track_caller]
fn sequence(t: &Fixture) -> Vec<String> {
    t.log_lines()
        .into_iter()
        .map(|line| {
            let (cwd, what) = line.split_once('\t').expect("log line");
            assert_eq!(
                std::path::Path::new(cwd),
                t.checkout,
                "hooks and compose run in the checkout: {line}"
            );
            what.to_string()
        })
        .collect()
}

#[track_caller]
fn get<'a>(env: &'a BTreeMap<String, String>, key: &str) -> &'a str {
    env.get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("{key} is not set: {env:?}"))
}

#[test]
fn before_and_after_success_run_around_the_restart_with_the_runs_facts() {
    let (t, cfg) = hooked();
    t.run(&["run"]).code(0); // deployed := HEAD; nothing to do, no hook
    assert!(
        t.log_lines().is_empty(),
        "no hook runs when there is nothing to do: {:?}",
        t.log_lines()
    );
    let old = t.head();
    let tip = t.push_files(&[("app/main.py", "v2\n")]);

    let out = t.run(&["run", "--config", path_str(&cfg)]);
    out.code(0).stderr_empty();
    out.summary().assert_range(&old, &tip);
    assert_eq!(
        sequence(&t),
        vec![
            "HOOK before".to_string(),
            RESTART_DEFAULT.to_string(),
            "HOOK after_success".to_string(),
        ]
    );

    let before = hook_env(&t, "before").unwrap();
    assert_eq!(get(&before, "PULLSTART_HOOK"), "before");
    assert_eq!(get(&before, "PULLSTART_FROM"), old);
    assert_eq!(get(&before, "PULLSTART_TO"), tip);
    assert_eq!(get(&before, "PULLSTART_BRANCH"), "main");
    assert_eq!(get(&before, "PULLSTART_SERVICES"), "web worker");
    assert_eq!(get(&before, "PULLSTART_DEPLOYED"), old, "not yet deployed");
    assert_eq!(get(&before, "PULLSTART_EXIT_CODE"), "0");
    assert_eq!(get(&before, "PULLSTART_ERROR"), "");
    assert!(!get(&before, "PULLSTART_RESULT").is_empty());

    let after = hook_env(&t, "after_success").unwrap();
    assert_eq!(get(&after, "PULLSTART_HOOK"), "after_success");
    assert_eq!(get(&after, "PULLSTART_RESULT"), "updated");
    assert_eq!(get(&after, "PULLSTART_FROM"), old);
    assert_eq!(get(&after, "PULLSTART_TO"), tip);
    assert_eq!(get(&after, "PULLSTART_BRANCH"), "main");
    assert_eq!(get(&after, "PULLSTART_SERVICES"), "web worker");
    assert_eq!(get(&after, "PULLSTART_DEPLOYED"), tip);
    assert_eq!(get(&after, "PULLSTART_EXIT_CODE"), "0");
    assert_eq!(hook_env(&t, "on_failure"), None, "nothing failed");
}

#[test]
fn hooks_interleave_with_every_compose_action_in_order() {
    let t = crate::support::project::compose_fixture();
    let script = install_hook_script(&t);
    let cfg = t.config_file(&hooks_config(&script));
    t.push_files(&[
        ("config/nginx.conf", "worker_processes 2;\n"),
        ("web.env", "GREETING=hi\n"),
        ("worker/requirements.txt", "requests==2.32.0\n"),
    ]);
    t.run_mapped(&["run", "--config", path_str(&cfg)]).code(0);
    let acting: Vec<String> = sequence(&t)
        .into_iter()
        .filter(|s| !s.starts_with("config"))
        .collect();
    assert_eq!(
        acting,
        vec![
            "HOOK before".to_string(),
            "up -d --build --no-deps worker".to_string(),
            "up -d --no-deps web".to_string(),
            "restart proxy".to_string(),
            "HOOK after_success".to_string(),
        ]
    );
    let before = hook_env(&t, "before").unwrap();
    assert_eq!(get(&before, "PULLSTART_SERVICES"), "proxy web worker");
}

#[test]
fn on_failure_runs_after_a_failed_restart_with_exit_code_6_and_the_error() {
    let (t, cfg) = hooked();
    t.run(&["run"]).code(0);
    let old = t.head();
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    t.fail_restart(
        1,
        "Error response from daemon: container web is unhealthy\n",
    );

    let out = t.run(&["run", "--config", path_str(&cfg)]);
    out.code(6).stdout_empty();
    let line = out.error_line();
    assert!(line.contains("container web is unhealthy"), "{line}");
    assert_eq!(
        sequence(&t),
        vec![
            "HOOK before".to_string(),
            RESTART_DEFAULT.to_string(),
            // After a failed restart pullstart asks which services have a container.
            "ps -a --services".to_string(),
            "HOOK on_failure".to_string(),
        ]
    );
    let env = hook_env(&t, "on_failure").unwrap();
    assert_eq!(get(&env, "PULLSTART_HOOK"), "on_failure");
    assert_eq!(get(&env, "PULLSTART_EXIT_CODE"), "6");
    assert_eq!(get(&env, "PULLSTART_RESULT"), "restart_failed");
    assert_eq!(get(&env, "PULLSTART_FROM"), old);
    assert_eq!(get(&env, "PULLSTART_TO"), tip);
    assert_eq!(get(&env, "PULLSTART_DEPLOYED"), old);
    assert_eq!(get(&env, "PULLSTART_BRANCH"), "main");
    assert_eq!(get(&env, "PULLSTART_SERVICES"), "web worker");
    let error = get(&env, "PULLSTART_ERROR");
    assert_eq!(
        format!("pullstart: {error}"),
        line,
        "PULLSTART_ERROR is the error line's message"
    );
    assert_eq!(hook_env(&t, "after_success"), None);
    assert_eq!(t.deployed(), Some(old));
}

#[test]
fn a_failing_before_hook_stops_the_action_and_the_next_run_retries() {
    let (t, cfg) = hooked();
    t.run(&["run"]).code(0);
    let old = t.head();
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    fail_hook(&t, "before");

    let out = t.run(&["run", "--config", path_str(&cfg)]);
    out.code(6).stdout_empty();
    let line = out.error_line();
    assert!(
        line.contains("before"),
        "the error should name the hook: {line}"
    );
    assert!(
        line.contains("hook before says no"),
        "the hook's output: {line}"
    );
    assert!(
        t.action_calls().is_empty(),
        "no compose action after a failed `before`: {:?}",
        t.action_calls()
    );
    assert_eq!(t.deployed(), Some(old.clone()), "the deployed ref stays");
    assert_eq!(
        sequence(&t),
        vec!["HOOK before".to_string(), "HOOK on_failure".to_string()]
    );
    let env = hook_env(&t, "on_failure").unwrap();
    assert_eq!(get(&env, "PULLSTART_EXIT_CODE"), "6");
    assert!(get(&env, "PULLSTART_ERROR").contains("before"));

    // Still failing: still 6, nothing acted.
    t.clear_compose_log();
    t.run(&["run", "--config", path_str(&cfg)]).code(6);
    assert!(t.action_calls().is_empty());

    // Healed: the next run runs the hook and the restart, and only now deploys.
    heal_hook(&t, "before");
    forget_hooks(&t);
    t.clear_compose_log();
    let out = t.run(&["run", "--config", path_str(&cfg)]);
    out.code(0).stderr_empty();
    assert_eq!(
        sequence(&t),
        vec![
            "HOOK before".to_string(),
            RESTART_DEFAULT.to_string(),
            "HOOK after_success".to_string(),
        ]
    );
    assert_eq!(t.head(), tip);
    assert_eq!(t.deployed(), Some(tip));
}

#[test]
fn a_failing_after_success_hook_does_not_undo_the_update() {
    let (t, cfg) = hooked();
    t.run(&["run"]).code(0);
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    fail_hook(&t, "after_success");
    let out = t.run(&["run", "--config", path_str(&cfg)]);
    out.code(0);
    assert!(
        out.stderr.contains("after_success"),
        "a warning: {}",
        out.stderr
    );
    assert_eq!(t.deployed(), Some(tip));
    assert_eq!(t.restart_calls(), vec![RESTART_DEFAULT.to_string()]);
}

#[test]
fn hooks_do_not_run_for_check_or_for_an_up_to_date_run() {
    let (t, cfg) = hooked();
    t.push_files(&[("app/main.py", "v2\n")]);
    t.run(&["check", "--config", path_str(&cfg)]).code(0);
    assert!(t.log_lines().is_empty(), "{:?}", t.log_lines());
    t.run(&["run", "--config", path_str(&cfg)]).code(0);
    t.clear_compose_log();
    forget_hooks(&t);
    t.run(&["run", "--config", path_str(&cfg)]).code(0).silent();
    assert!(t.log_lines().is_empty(), "{:?}", t.log_lines());
}

#[test]
fn hooks_from_a_config_inside_the_checkout_exit_2_and_touch_nothing() {
    let t = Fixture::new();
    let script = install_hook_script(&t);
    // The config is tracked in the repository: anyone who can push could change the hooks.
    t.push_files(&[("deploy/pullstart.yml", &hooks_config(&script))]);
    t.git(&t.checkout, &["pull", "-q", "--ff-only"]);
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    let cfg = t.checkout.join("deploy/pullstart.yml");
    let head = t.head();
    let state = RepoState::capture(&t, true);
    let snap = Snapshot::of(&t.checkout);

    for command in ["run", "check"] {
        let out = t.run(&[command, "--config", path_str(&cfg)]);
        out.code(2).stdout_empty();
        let line = out.error_line();
        assert!(
            line.contains(path_str(&cfg)),
            "the error should name the file: {line}"
        );
        assert!(line.contains("hooks"), "{line}");
    }
    assert_eq!(RepoState::capture(&t, true), state);
    snap.assert_same(&Snapshot::of(&t.checkout), "a refused config");
    assert_eq!(t.head(), head);
    assert_ne!(t.head(), tip);
    assert_eq!(t.deployed(), None, "not even the deployed ref is recorded");
    assert!(
        t.log_lines().is_empty(),
        "no hook, no compose: {:?}",
        t.log_lines()
    );

    // JSON: one object, usage_error.
    let v = t
        .run(&["run", "--config", path_str(&cfg), "--output", "json"])
        .json();
    assert_eq!(v["result"], "usage_error");
    assert_eq!(v["exit_code"], 2);
}

#[test]
fn a_config_outside_reached_through_a_symlink_into_the_checkout_is_refused() {
    let t = Fixture::new();
    let script = install_hook_script(&t);
    t.co_write("pullstart.yml", hooks_config(&script));
    let link = t.root.join("etc-pullstart.yml");
    std::os::unix::fs::symlink(t.co("pullstart.yml"), &link).unwrap();
    t.push_files(&[("app/main.py", "v2\n")]);
    let out = t.run(&["run", "--config", path_str(&link)]);
    out.code(2);
    assert!(out.error_line().contains("hooks"), "{}", out.stderr);
    assert!(t.log_lines().is_empty());
}

#[test]
fn a_config_inside_the_checkout_without_hooks_is_allowed() {
    let t = Fixture::new();
    t.push_files(&[("deploy/pullstart.yml", "services: [web]\n")]);
    t.git(&t.checkout, &["pull", "-q", "--ff-only"]);
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    let cfg = t.checkout.join("deploy/pullstart.yml");
    t.run_mapped(&["run", "--config", path_str(&cfg)]).code(0);
    assert_eq!(t.head(), tip);
    assert_eq!(t.restart_calls(), vec!["restart web".to_string()]);
}

#[test]
fn hooks_see_no_credentials_from_the_remote_url_in_pullstart_error() {
    // PULLSTART_ERROR is redacted like every other output.
    let (t, cfg) = hooked();
    t.push_files(&[("app/main.py", "v2\n")]);
    t.fail_restart(1, "cannot pull https://deploy:s3cr3t@registry.example/x\n");
    t.run(&["run", "--config", path_str(&cfg)]).code(6);
    let env = hook_env(&t, "on_failure").unwrap();
    let error = get(&env, "PULLSTART_ERROR");
    assert!(!error.contains("s3cr3t"), "{error}");
    assert!(error.contains("deploy:***@"), "{error}");
}

#[test]
fn a_hook_over_the_restart_timeout_is_killed_and_the_run_exits_6() {
    let t = Fixture::new();
    t.run(&["run"]).code(0);
    let old = t.head();
    t.push_files(&[("app/main.py", "v2\n")]);
    let cfg = t.config_file("hooks:\n  before: \"sleep 30\"\n");
    let out = t.run(&["run", "--config", path_str(&cfg), "--restart-timeout", "1s"]);
    out.code(6).stdout_empty();
    let line = out.error_line();
    assert!(line.contains("before"), "{line}");
    assert!(line.contains("did not finish"), "{line}");
    assert!(
        out.elapsed < std::time::Duration::from_secs(15),
        "the hook's time limit must hold: took {:?}",
        out.elapsed
    );
    assert!(t.action_calls().is_empty());
    assert_eq!(t.deployed(), Some(old));
}
