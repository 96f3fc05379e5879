//! What a run may do before acting, and what `check` and `status` say about it: the rebuild
//! policy (exit 8 until `--allow-rebuild`), per-service `check` lines and JSON actions, the
//! mapping `status` prints, a health wait that finds no container (exit 6), and a remote tip
//! that `--rollback` rejected earlier (exit 6, skipped).

use serde_json::json;

use crate::support::project::*;
use crate::support::*;

/// Everything a refusing run or `check` must leave alone, refs/pullstart included.
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
    fn assert(&self, t: &Fixture, what: &str) {
        assert_eq!(
            RepoState::capture(t, true),
            self.state,
            "{what} changed HEAD, the index, a branch or refs/pullstart"
        );
        self.snap.assert_same(&Snapshot::of(&t.checkout), what);
        assert!(
            t.action_calls().is_empty(),
            "{what} acted on containers: {:?}",
            t.action_calls()
        );
    }
}

/// The compose project with its deployed ref recorded at HEAD by a run with nothing to do.
fn deployed_compose_fixture() -> Fixture {
    let t = compose_fixture();
    t.run_mapped(&["run"]).code(0).silent();
    assert_eq!(t.deployed(), Some(t.head()));
    t.clear_compose_log();
    t
}

// ----- the rebuild policy -----

#[test]
fn rebuild_policy_stop_exits_8_touching_nothing_until_allow_rebuild() {
    let t = deployed_compose_fixture();
    let old = t.head();
    let tip = t.push_files(&[("worker/requirements.txt", "requests==2.32.0\n")]);
    let frozen = Frozen::capture(&t);

    let out = t.run_mapped(&["run", "--rebuild-policy", "stop"]);
    out.code(8).stdout_empty();
    let line = out.error_line();
    assert!(
        line.contains("worker/requirements.txt"),
        "the error should name the file: {line}"
    );
    assert!(
        line.contains("--allow-rebuild"),
        "the error should name the way out: {line}"
    );
    frozen.assert(&t, "a run refused with exit 8");
    assert_eq!(t.deployed(), Some(old.clone()));

    // Refused again on the next run: the policy holds until the operator says otherwise.
    t.run_mapped(&["run", "--rebuild-policy", "stop"]).code(8);
    frozen.assert(&t, "a second refused run");

    // `check` says the same, and changes nothing either.
    let check = t.run_mapped(&["check", "--rebuild-policy", "stop"]);
    check.code(8).stdout_empty();
    assert_eq!(check.error_line(), line, "check reports what the run would");
    frozen.assert(&t, "check");

    // The operator allows it once: the update applies and the image is rebuilt.
    let out = t.run_mapped(&["run", "--rebuild-policy", "stop", "--allow-rebuild"]);
    out.code(0).stderr_empty();
    assert_eq!(
        out.stdout,
        format!(
            "updated main {}..{} (1 file); rebuilt: worker\n",
            short(&old),
            short(&tip)
        )
    );
    assert_eq!(
        t.action_calls(),
        vec!["up -d --build --no-deps worker".to_string()]
    );
    assert_eq!(t.head(), tip);
    assert_eq!(t.deployed(), Some(tip));
    assert_git_clean(&t, &Clean::strict());
}

#[test]
fn rebuild_policy_stop_from_the_config_and_json_result_rebuild_required() {
    let t = deployed_compose_fixture();
    let old = t.head();
    let tip = t.push_files(&[("worker/Dockerfile", "FROM python:3.13-slim\n")]);
    let cfg = t.config_file("rebuild_policy: stop\n");
    let frozen = Frozen::capture(&t);

    let out = t.run_mapped(&["run", "--config", path_str(&cfg), "--output", "json"]);
    out.code(8).stderr_empty();
    let v = out.json();
    assert_eq!(v["result"], "rebuild_required");
    assert_eq!(v["exit_code"], 8);
    assert_eq!(
        v["deployed"],
        json!(old),
        "deployed as it stands: unchanged"
    );
    let error = v["error"].as_str().expect("an error string on exit 8");
    assert!(error.contains("worker/Dockerfile"), "{error}");
    assert!(error.contains("--allow-rebuild"), "{error}");
    assert_eq!(v["changed_paths"], json!(["worker/Dockerfile"]));
    frozen.assert(&t, "a run refused with exit 8");

    // The text form: one line.
    let out = t.run_mapped(&["run", "--config", path_str(&cfg)]);
    out.code(8).stdout_empty();
    assert!(out.error_line().contains("worker/Dockerfile"));

    // `--allow-rebuild` is a flag only; with it the config's policy lets this run through.
    t.run_mapped(&["run", "--config", path_str(&cfg), "--allow-rebuild"])
        .code(0);
    assert_eq!(
        t.action_calls(),
        vec!["up -d --build --no-deps worker".to_string()]
    );
    assert_eq!(t.deployed(), Some(tip));
}

#[test]
fn the_flag_wins_over_the_configs_rebuild_policy() {
    let t = deployed_compose_fixture();
    t.push_files(&[("worker/requirements.txt", "requests==2.32.0\n")]);
    let cfg = t.config_file("rebuild_policy: stop\n");
    t.run_mapped(&[
        "run",
        "--config",
        path_str(&cfg),
        "--rebuild-policy",
        "rebuild",
    ])
    .code(0);
    assert_eq!(
        t.action_calls(),
        vec!["up -d --build --no-deps worker".to_string()]
    );
}

#[test]
fn allow_rebuild_is_not_a_config_key() {
    let t = Fixture::new();
    let cfg = t.config_file("allow_rebuild: true\n");
    let out = t.run_mapped(&["run", "--config", path_str(&cfg)]);
    out.code(2);
    assert!(out.error_line().contains("allow_rebuild"), "{}", out.stderr);
}

#[test]
fn rebuild_policy_stop_refuses_a_mixed_update_as_a_whole() {
    let t = deployed_compose_fixture();
    let old = t.head();
    t.push_files(&[
        ("web/app.py", "print('web v2')\n"),
        ("worker/requirements.txt", "requests==2.32.0\n"),
    ]);
    let frozen = Frozen::capture(&t);
    let out = t.run_mapped(&["run", "--rebuild-policy", "stop"]);
    out.code(8);
    let line = out.error_line();
    assert!(line.contains("worker/requirements.txt"), "{line}");
    assert!(
        !line.contains("web/app.py"),
        "only the files that need the rebuild are named: {line}"
    );
    frozen.assert(&t, "a run refused with exit 8");
    assert_eq!(t.deployed(), Some(old));
    assert_eq!(t.co_read("web/app.py"), "print('web v1')\n");
}

#[test]
fn rebuild_policy_stop_lets_a_code_change_through() {
    let t = deployed_compose_fixture();
    let tip = t.push_files(&[("web/app.py", "print('web v2')\n")]);
    t.run_mapped(&["run", "--rebuild-policy", "stop"])
        .code(0)
        .stderr_empty();
    assert_eq!(t.action_calls(), vec!["restart web".to_string()]);
    assert_eq!(t.deployed(), Some(tip));
}

// ----- check: per-service lines and JSON actions -----

fn mixed_update(t: &Fixture) -> String {
    t.push_files(&[
        ("config/nginx.conf", "worker_processes 2;\n"),
        ("web.env", "GREETING=hi\n"),
        ("worker/requirements.txt", "requests==2.32.0\n"),
    ])
}

#[test]
fn check_prints_the_action_per_service_and_changes_nothing() {
    let t = deployed_compose_fixture();
    let old = t.head();
    let tip = mixed_update(&t);
    let frozen = Frozen::capture(&t);
    let out = t.run_mapped(&["check"]);
    out.code(0).stderr_empty();
    assert_eq!(
        out.stdout,
        format!(
            "would update main {}..{} (3 files)\n\
             \x20 M config/nginx.conf\n\
             \x20 M web.env\n\
             \x20 M worker/requirements.txt\n\
             would restart proxy: config/nginx.conf [`config/nginx.conf` is bind-mounted as a single file: the container keeps the old file until restarted]\n\
             would recreate web: web.env [env file `web.env` changed]\n\
             would rebuild worker: worker/requirements.txt [dependency file `worker/requirements.txt` in the build context `worker`]\n",
            short(&old),
            short(&tip)
        )
    );
    frozen.assert(&t, "check");
}

#[test]
fn check_json_has_services_and_actions() {
    let t = deployed_compose_fixture();
    let old = t.head();
    let tip = mixed_update(&t);
    let frozen = Frozen::capture(&t);
    let out = t.run_mapped(&["check", "--output", "json"]);
    out.code(0).stderr_empty();
    let v = out.json();
    assert_eq!(v["result"], "would_update");
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["from"], json!(old));
    assert_eq!(v["to"], json!(tip));
    assert_eq!(v["deployed"], json!(old));
    assert_eq!(v["error"], json!(null));
    assert_eq!(v["services"], json!(["proxy", "web", "worker"]));
    assert_eq!(
        v["actions"],
        json!([
            {"service": "proxy", "action": "restart", "paths": ["config/nginx.conf"],
             "reason": "`config/nginx.conf` is bind-mounted as a single file: the container keeps the old file until restarted"},
            {"service": "web", "action": "recreate", "paths": ["web.env"],
             "reason": "env file `web.env` changed"},
            {"service": "worker", "action": "rebuild", "paths": ["worker/requirements.txt"],
             "reason": "dependency file `worker/requirements.txt` in the build context `worker`"},
        ])
    );
    frozen.assert(&t, "check");
}

#[test]
fn check_shows_at_most_three_paths_per_service() {
    let t = deployed_compose_fixture();
    t.push_files(&[
        ("web/a.py", "a\n"),
        ("web/b.py", "b\n"),
        ("web/c.py", "c\n"),
        ("web/d.py", "d\n"),
        ("web/e.py", "e\n"),
    ]);
    let out = t.run_mapped(&["check"]);
    out.code(0);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("would restart web: "))
        .unwrap_or_else(|| panic!("no line for web:\n{}", out.stdout));
    assert_eq!(
        line,
        "would restart web: web/a.py, web/b.py, web/c.py, (+2 more) [bind mount `web` -> /app]"
    );
    // JSON lists them all.
    let v = t.run_mapped(&["check", "--output", "json"]).json();
    assert_eq!(v["actions"][0]["paths"].as_array().unwrap().len(), 5);
}

#[test]
fn check_with_detailed_exitcode_is_10_and_a_check_of_nothing_is_silent() {
    let t = deployed_compose_fixture();
    t.push_files(&[("web/app.py", "v2\n")]);
    t.run_mapped(&["check", "--detailed-exitcode", "-q"])
        .code(10)
        .silent();
    t.run_mapped(&["run"]).code(0);
    t.clear_compose_log();
    t.run_mapped(&["check"]).code(0).silent();
    assert!(t.action_calls().is_empty());
}

// ----- status -----

#[test]
fn status_prints_the_mapping_and_the_pending_actions_and_changes_nothing() {
    let t = deployed_compose_fixture();
    let old = t.head();
    let tip = mixed_update(&t);
    // status does not fetch: bring the remote-tracking ref up to date the way an operator would.
    t.git(&t.checkout, &["fetch", "-q"]);
    let frozen = Frozen::capture(&t);
    let out = t.run_mapped(&["status"]);
    out.code(0).stderr_empty();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let expected = [
        "branch:   main (following refs/remotes/origin/main)".to_string(),
        format!("HEAD:     {old}"),
        format!("remote:   {tip} (as of the last fetch)"),
        format!("deployed: {old}"),
        "pending:  3 changed paths: config/nginx.conf, web.env, worker/requirements.txt".to_string(),
        "  would restart proxy: config/nginx.conf [`config/nginx.conf` is bind-mounted as a single file: the container keeps the old file until restarted]".to_string(),
        "  would recreate web: web.env [env file `web.env` changed]".to_string(),
        "  would rebuild worker: worker/requirements.txt [dependency file `worker/requirements.txt` in the build context `worker`]".to_string(),
        "local:    no changes to tracked files".to_string(),
        "compose:  defined by docker-compose.yml (a change recreates every service)".to_string(),
        "  proxy: bind config/nginx.conf -> /etc/nginx/nginx.conf (restart)".to_string(),
        "  web: bind web -> /app (restart); env web.env (recreate)".to_string(),
        "  worker: bind worker/src -> /app/src (restart); build worker with worker/Dockerfile (rebuild on: the Dockerfile; worker/Dockerfile.dockerignore, worker/.dockerignore; a file not bind-mounted that COPY/ADD reads (requirements.txt, lib.py, src))".to_string(),
    ];
    assert_eq!(lines, expected, "status output:\n{}", out.stdout);
    frozen.assert(&t, "status");
    // status only reads the project.
    assert!(
        t.compose_calls()
            .iter()
            .all(|c| c.args.starts_with("config")),
        "{:?}",
        t.compose_calls()
    );
}

#[test]
fn status_shows_the_path_rules_too() {
    let t = deployed_compose_fixture();
    let cfg = t.config_file("services:\n  web:\n    paths: [\"web/**\", \"web.env\"]\n");
    let out = t.run_mapped(&["status", "--config", path_str(&cfg)]);
    out.code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == "mapping:  path rules from the config")
        .unwrap_or_else(|| panic!("no rules section:\n{}", out.stdout));
    assert_eq!(lines[at + 1], "  web: web/**, web.env");
    assert!(
        out.stdout.contains("pending:  nothing, up to date"),
        "{}",
        out.stdout
    );
}

#[test]
fn status_says_when_the_project_cannot_be_read() {
    let t = Fixture::new();
    let out = t.run_mapped(&["status"]);
    out.code(0);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("compose:"))
        .unwrap_or_else(|| panic!("no compose line:\n{}", out.stdout));
    assert!(
        line.starts_with("compose:  could not read the project (")
            && line.ends_with("); a run restarts all services"),
        "{line}"
    );
}

// ----- the health wait, with no container to find -----

#[test]
fn a_health_wait_that_finds_no_container_exits_6_and_keeps_deployed() {
    let t = deployed_compose_fixture();
    let old = t.head();
    let tip = t.push_files(&[("web/app.py", "print('web v2')\n")]);
    t.compose_ps(""); // `ps -a -q web` prints nothing: no container
    let out = t.run_mapped(&["run", "--health-timeout", "5s", "--health-settle", "0"]);
    out.code(6).stdout_empty();
    let line = out.error_line();
    assert!(
        line.contains("web"),
        "the error should name the service: {line}"
    );
    assert!(line.contains("no container"), "{line}");
    assert!(line.contains("the next run retries"), "{line}");
    assert!(
        out.elapsed < std::time::Duration::from_secs(5),
        "no container is a failure at once, not a wait for the timeout: {:?}",
        out.elapsed
    );
    assert_eq!(t.head(), tip, "the code is updated");
    assert_eq!(t.deployed(), Some(old), "the deployed ref stays");
    let calls: Vec<String> = t.compose_calls().into_iter().map(|c| c.args).collect();
    let restart = calls.iter().position(|c| c == "restart web").unwrap();
    assert!(
        calls[restart + 1..].iter().any(|c| c == "ps -a -q web"),
        "the wait asks compose for the service's containers after the restart: {calls:?}"
    );

    // The next run retries the restart (and the wait), still failing.
    t.clear_compose_log();
    t.run_mapped(&["run", "--health-timeout", "5s", "--health-settle", "0"])
        .code(6);
    assert_eq!(t.action_calls(), vec!["restart web".to_string()]);

    // Without the wait the retry goes through, and only then the deployed ref moves.
    t.run_mapped(&["run"]).code(0);
    assert_eq!(t.deployed(), Some(tip));
}

#[test]
fn a_health_wait_with_json_reports_restart_failed() {
    let t = deployed_compose_fixture();
    let old = t.head();
    let tip = t.push_files(&[("web/app.py", "v2\n")]);
    t.compose_ps("");
    let out = t.run_mapped(&[
        "run",
        "--health-timeout",
        "5s",
        "--health-settle",
        "0",
        "--output",
        "json",
    ]);
    out.code(6).stderr_empty();
    let v = out.json();
    assert_eq!(v["result"], "restart_failed");
    assert_eq!(v["to"], json!(tip));
    assert_eq!(v["deployed"], json!(old));
    assert_eq!(v["services"], json!(["web"]));
}

// ----- a rejected remote tip -----

#[test]
fn a_rejected_tip_is_skipped_until_the_remote_moves_on() {
    let t = Fixture::new();
    t.run(&["run"]).code(0); // deployed := HEAD
    let old = t.head();
    let bad = t.push_files(&[("app/main.py", "print('broken')\n")]);
    // What `--rollback` leaves behind after the bad tip failed its health check (the run had
    // fetched it).
    t.git(&t.checkout, &["fetch", "-q"]);
    t.git(
        &t.checkout,
        &["update-ref", "refs/pullstart/rejected", &bad],
    );
    t.clear_compose_log();
    let frozen = Frozen::capture(&t);

    let out = t.run(&["run"]);
    out.code(6).stdout_empty();
    let line = out.error_line();
    assert!(line.contains("skipped"), "{line}");
    assert!(
        line.contains(short(&bad)),
        "the error should name the tip: {line}"
    );
    frozen.assert(&t, "a run skipping a rejected tip");
    assert_eq!(t.head(), old);
    assert_eq!(t.deployed(), Some(old.clone()));

    // JSON says restart_failed; check exits as the run would.
    let v = t.run(&["run", "--output", "json"]).json();
    assert_eq!(v["result"], "restart_failed");
    assert_eq!(v["exit_code"], 6);
    t.run(&["check"]).code(6);
    frozen.assert(&t, "check of a rejected tip");

    // A new push: a normal update.
    let fixed = t.push_files(&[("app/main.py", "print('fixed')\n")]);
    let out = t.run(&["run"]);
    out.code(0).stderr_empty();
    out.summary().assert_range(&old, &fixed);
    assert_eq!(t.head(), fixed);
    assert_eq!(t.deployed(), Some(fixed));
    assert_eq!(t.restart_calls(), vec![RESTART_DEFAULT.to_string()]);
    assert_git_clean(&t, &Clean::strict());
}

#[test]
fn a_rejected_tip_that_head_already_is_does_not_block() {
    // Rolled back by hand to the rejected commit: the checkout is there already, nothing to skip.
    let t = Fixture::new();
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    t.run(&["run"]).code(0);
    t.git(
        &t.checkout,
        &["update-ref", "refs/pullstart/rejected", &tip],
    );
    t.clear_compose_log();
    t.run(&["run"]).code(0).silent();
    assert!(t.restart_calls().is_empty());
}

// ----- time limits -----

#[test]
fn a_compose_call_over_the_restart_timeout_is_killed_and_exits_6() {
    let t = Fixture::new();
    t.run(&["run"]).code(0);
    let old = t.head();
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    t.slow_restart(30.0);
    let out = t.run(&["run", "--restart-timeout", "1s"]);
    out.code(6).stdout_empty();
    let line = out.error_line();
    assert!(line.contains("did not finish within 1s"), "{line}");
    assert!(
        out.elapsed < std::time::Duration::from_secs(15),
        "the time limit must hold although the stub's `sleep` child keeps its output open: took {:?}",
        out.elapsed
    );
    assert_eq!(t.head(), tip);
    assert_eq!(t.deployed(), Some(old));
}

#[test]
fn a_slow_rebuild_is_bounded_by_the_restart_timeout_too() {
    let t = compose_fixture();
    t.run_mapped(&["run"]).code(0);
    let old = t.head();
    t.push_files(&[("worker/requirements.txt", "requests==2.32.0\n")]);
    t.slow_restart(30.0);
    let out = t.run_mapped(&["run", "--restart-timeout", "1s"]);
    out.code(6);
    let line = out.error_line();
    assert!(line.contains("up -d --build --no-deps worker"), "{line}");
    assert!(line.contains("did not finish within 1s"), "{line}");
    assert!(
        out.elapsed < std::time::Duration::from_secs(15),
        "{:?}",
        out.elapsed
    );
    assert_eq!(t.deployed(), Some(old));
}

// ----- a changed `.env` -----

#[test]
fn a_changed_dotenv_of_the_project_recreates_every_service() {
    let mut files = PROJECT_FILES.to_vec();
    files.push((".env", "TAG=1\n"));
    let t = Fixture::with_files(&files);
    t.compose_config(CONFIG_V2);
    t.compose_config_raw(CONFIG_V2_RAW);
    t.push_files(&[(".env", "TAG=2\n")]);
    let out = t.run_mapped(&["run", "--output", "json"]);
    out.code(0);
    assert_eq!(
        t.action_calls(),
        vec!["up -d --no-deps proxy web worker".to_string()]
    );
    let reason = out.json()["actions"][0]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains(".env"), "{reason}");
}

// ----- check when nothing or everything would restart -----

#[test]
fn check_says_why_nothing_or_everything_would_restart() {
    let t = compose_fixture();
    t.push_files(&[("scripts/deploy.sh", "echo v2\n")]);
    let out = t.run_mapped(&["check"]);
    out.code(0);
    assert_eq!(
        out.stdout.lines().last(),
        Some("would restart nothing: no compose entry matches the changed paths"),
        "{}",
        out.stdout
    );

    let t = Fixture::new();
    t.push_files(&[("app/main.py", "v2\n")]);
    let out = t.run_mapped(&["check"]);
    out.code(0);
    let last = out.stdout.lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with("would restart all services: the compose project could not be read ("),
        "{}",
        out.stdout
    );
    assert!(t.action_calls().is_empty());
}
