//! Which services a change concerns and what each one gets: the config's path rules (in the
//! config's order, `ignore:` first, `--services` overriding them), else the compose project as
//! the stub's canned `docker compose config` describes it (bind mounts restart, compose and env
//! files recreate, Dockerfiles and dependency manifests in a build context rebuild, a
//! single-file bind mount always restarts), run as rebuild, recreate, restart.

use std::fs;

use serde_json::json;

use crate::support::project::*;
use crate::support::*;

/// `services:` path rules for `app/` (web) and `assistant/` (core), in this order.
const RULES: &str = "\
services:
  web:
    paths: [\"app/**\"]
  core:
    paths: [\"assistant/\", \"pyproject.toml\"]
";

fn run_with_config(t: &Fixture, text: &str) -> Outcome {
    let cfg = t.config_file(text);
    t.run_mapped(&["run", "--config", path_str(&cfg)])
}

/// The one stdout line, exactly.
#[track_caller]
fn assert_line(out: &Outcome, expected: &str) {
    assert_eq!(
        out.stdout,
        format!("{expected}\n"),
        "stdout\n{}",
        out.stderr
    );
}

// ----- path rules -----

#[test]
fn a_rule_restarts_only_the_service_it_names() {
    let t = Fixture::new();
    let old = t.head();
    let tip = t.push_files(&[("app/main.py", "print('v2')\n")]);
    let out = run_with_config(&t, RULES);
    out.code(0).stderr_empty();
    assert_eq!(t.action_calls(), vec!["restart web".to_string()]);
    assert_line(
        &out,
        &format!(
            "updated main {}..{} (1 file); restarted: web",
            short(&old),
            short(&tip)
        ),
    );
    assert_eq!(t.head(), tip);
    assert_eq!(t.deployed(), Some(tip));
    assert_git_clean(&t, &Clean::strict());
}

#[test]
fn a_glob_without_a_slash_matches_at_any_depth_and_one_with_a_slash_is_anchored() {
    let t = Fixture::new();
    // `pyproject.toml` (no slash) matches at any depth; `app/**` does not match `lib/app/x`.
    t.push_files(&[("lib/pyproject.toml", "[x]\n"), ("lib/app/x.py", "x\n")]);
    run_with_config(&t, RULES).code(0);
    assert_eq!(t.action_calls(), vec!["restart core".to_string()]);
}

#[test]
fn two_rules_restart_in_the_configs_order_with_their_paths_and_reasons() {
    let t = Fixture::new();
    t.push_files(&[
        ("assistant/bot.py", "bot\n"),
        ("app/main.py", "print('v2')\n"),
        ("pyproject.toml", "[project]\n"),
    ]);
    let cfg = t.config_file(RULES);
    let out = t.run_mapped(&["run", "--config", path_str(&cfg), "--output", "json"]);
    out.code(0).stderr_empty();
    // web comes first in the config although `core` sorts first and `app/` is not the first
    // changed path in git's order either way: the config's order wins.
    assert_eq!(t.action_calls(), vec!["restart web core".to_string()]);
    let v = out.json();
    assert_eq!(v["result"], "updated");
    assert_eq!(v["services"], json!(["web", "core"]));
    assert_eq!(
        v["actions"],
        json!([
            {"service": "web", "action": "restart", "paths": ["app/main.py"],
             "reason": "rule `services.web.paths`"},
            {"service": "core", "action": "restart",
             "paths": ["assistant/bot.py", "pyproject.toml"],
             "reason": "rule `services.core.paths`"},
        ])
    );
}

#[test]
fn the_reversed_config_order_reverses_the_restart() {
    let t = Fixture::new();
    t.push_files(&[("assistant/bot.py", "bot\n"), ("app/main.py", "v2\n")]);
    run_with_config(
        &t,
        "services:\n  core:\n    paths: [assistant/]\n  web:\n    paths: [app/]\n",
    )
    .code(0);
    assert_eq!(t.action_calls(), vec!["restart core web".to_string()]);
}

#[test]
fn a_change_matching_no_rule_restarts_nothing_and_says_so() {
    let t = Fixture::new();
    t.run(&["run"]).code(0); // deployed := HEAD
    t.clear_compose_log();
    let old = t.head();
    let tip = t.push_files(&[("scripts/cleanup.sh", "echo\n")]);
    let out = run_with_config(&t, RULES);
    out.code(0).stderr_empty();
    assert_line(
        &out,
        &format!(
            "updated main {}..{} (1 file); restarted: nothing (no rule matches the changed paths)",
            short(&old),
            short(&tip)
        ),
    );
    assert!(
        t.action_calls().is_empty(),
        "nothing to restart: {:?}",
        t.action_calls()
    );
    assert_eq!(t.head(), tip, "HEAD moves");
    assert_eq!(
        t.deployed(),
        Some(tip.clone()),
        "the services concern none of it: the deployed ref moves too"
    );
    assert_git_clean(&t, &Clean::strict());

    // Nothing left to do, nothing retried.
    t.clear_compose_log();
    run_with_config(&t, RULES).code(0).silent();
    assert!(t.compose_calls().iter().all(|c| !c.is_action()));
}

#[test]
fn ignore_globs_drop_docs_changes() {
    let t = Fixture::new();
    let config = "\
ignore: [\"docs/\", \"*.md\"]
services:
  web:
    paths: [\"**\"]
";
    // Only ignored paths: nothing to restart.
    let old = t.head();
    let tip = t.push_files(&[("docs/guide.md", "guide v2\n"), ("README.md", "# v2\n")]);
    let out = run_with_config(&t, config);
    out.code(0).stderr_empty();
    assert_line(
        &out,
        &format!(
            "updated main {}..{} (2 files); restarted: nothing (only ignored paths changed)",
            short(&old),
            short(&tip)
        ),
    );
    assert!(t.action_calls().is_empty(), "{:?}", t.action_calls());
    assert_eq!(t.deployed(), Some(tip));

    // Ignored paths next to a real change: the real change restarts, the docs are not its cause.
    t.push_files(&[
        ("docs/new/page.md", "page\n"),
        ("app/main.py", "v3\n"),
        ("app/NOTES.md", "notes\n"),
    ]);
    let cfg = t.config_file(config);
    let out = t.run_mapped(&["run", "--config", path_str(&cfg), "--output", "json"]);
    out.code(0);
    assert_eq!(t.action_calls(), vec!["restart web".to_string()]);
    let v = out.json();
    assert_eq!(
        v["changed_paths"],
        json!(["app/NOTES.md", "app/main.py", "docs/new/page.md"]),
        "changed_paths lists every path, ignored or not"
    );
    assert_eq!(v["actions"][0]["paths"], json!(["app/main.py"]));
}

#[test]
fn the_services_flag_overrides_the_rules() {
    let t = Fixture::new();
    let tip = t.push_files(&[("assistant/bot.py", "bot\n")]);
    let cfg = t.config_file(RULES);
    let out = t.run_mapped(&[
        "run",
        "--config",
        path_str(&cfg),
        "--services",
        "worker,web",
    ]);
    out.code(0);
    assert_eq!(t.action_calls(), vec!["restart worker web".to_string()]);
    assert_eq!(out.summary().restarted, "worker web");
    assert_eq!(t.deployed(), Some(tip));
}

#[test]
fn services_as_a_list_in_the_config_restart_exactly_those() {
    let t = Fixture::new();
    t.push_files(&[("anything.txt", "x\n")]);
    run_with_config(&t, "services: [beat, web]\n").code(0);
    assert_eq!(t.action_calls(), vec!["restart beat web".to_string()]);
}

// ----- the compose project -----

#[test]
fn code_under_a_bind_mount_restarts_that_service() {
    let t = compose_fixture();
    let old = t.head();
    let tip = t.push_files(&[("web/app.py", "print('web v2')\n")]);
    let out = t.run_mapped(&["run"]);
    out.code(0).stderr_empty();
    assert_eq!(t.action_calls(), vec!["restart web".to_string()]);
    assert_line(
        &out,
        &format!(
            "updated main {}..{} (1 file); restarted: web",
            short(&old),
            short(&tip)
        ),
    );
    // The project was read with `config` (read-only) before anything acted.
    let calls = t.compose_calls();
    assert_eq!(calls[0].args, "config", "{calls:?}");
    assert!(calls.iter().all(|c| c.cwd == t.checkout), "{calls:?}");
    assert_eq!(t.deployed(), Some(tip));
    assert_git_clean(&t, &Clean::strict());
}

#[test]
fn project_flags_reach_the_config_call_too() {
    let t = compose_fixture();
    t.push_files(&[("web/app.py", "v2\n")]);
    t.run_mapped(&["run", "-f", "docker-compose.yml", "-p", "demo"])
        .code(0);
    let calls: Vec<String> = t.compose_calls().into_iter().map(|c| c.args).collect();
    assert_eq!(
        calls[0], "-f docker-compose.yml -p demo config",
        "{calls:?}"
    );
    assert_eq!(
        t.action_calls(),
        vec!["-f docker-compose.yml -p demo restart web".to_string()]
    );
}

#[test]
fn a_changed_compose_file_recreates_every_service() {
    let t = compose_fixture();
    let old = t.head();
    let tip = t.push_files(&[(
        "docker-compose.yml",
        &format!("{COMPOSE_FILE}# scale later\n"),
    )]);
    let out = t.run_mapped(&["run"]);
    out.code(0).stderr_empty();
    assert_eq!(
        t.action_calls(),
        vec!["up -d --no-deps proxy web worker".to_string()]
    );
    assert_line(
        &out,
        &format!(
            "updated main {}..{} (1 file); recreated: proxy web worker",
            short(&old),
            short(&tip)
        ),
    );
    assert_eq!(t.deployed(), Some(tip));
}

#[test]
fn a_changed_env_file_recreates_its_service() {
    let t = compose_fixture();
    t.push_files(&[("web.env", "GREETING=hi\n")]);
    let out = t.run_mapped(&["run", "--output", "json"]);
    out.code(0);
    assert_eq!(t.action_calls(), vec!["up -d --no-deps web".to_string()]);
    // Compose v2 drops env_file from `config`: pullstart asks `config --no-interpolate`.
    assert!(
        t.compose_calls()
            .iter()
            .any(|c| c.args == "config --no-interpolate"),
        "{:?}",
        t.compose_calls()
    );
    let v = out.json();
    assert_eq!(
        v["actions"],
        json!([{"service": "web", "action": "recreate", "paths": ["web.env"],
                "reason": "env file `web.env` changed"}])
    );
}

#[test]
fn a_dependency_manifest_in_a_build_context_rebuilds() {
    let t = compose_fixture();
    let old = t.head();
    let tip = t.push_files(&[("worker/requirements.txt", "requests==2.32.0\n")]);
    let out = t.run_mapped(&["run"]);
    out.code(0).stderr_empty();
    assert_eq!(
        t.action_calls(),
        vec!["up -d --build --no-deps worker".to_string()]
    );
    assert_line(
        &out,
        &format!(
            "updated main {}..{} (1 file); rebuilt: worker",
            short(&old),
            short(&tip)
        ),
    );
    assert_eq!(t.deployed(), Some(tip));
}

#[test]
fn a_changed_dockerfile_rebuilds() {
    let t = compose_fixture();
    t.push_files(&[("worker/Dockerfile", "FROM python:3.13-slim\n")]);
    t.run_mapped(&["run"]).code(0);
    assert_eq!(
        t.action_calls(),
        vec!["up -d --build --no-deps worker".to_string()]
    );
}

#[test]
fn code_in_a_build_context_that_is_not_bind_mounted_rebuilds() {
    let t = compose_fixture();
    t.push_files(&[("worker/lib.py", "LIB = 2\n")]);
    let out = t.run_mapped(&["run", "--output", "json"]);
    out.code(0);
    assert_eq!(
        t.action_calls(),
        vec!["up -d --build --no-deps worker".to_string()]
    );
    let reason = out.json()["actions"][0]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("not bind-mounted"), "{reason}");
}

#[test]
fn code_in_a_bind_mount_inside_the_build_context_restarts() {
    let t = compose_fixture();
    t.push_files(&[("worker/src/job.py", "print('job v2')\n")]);
    t.run_mapped(&["run"]).code(0);
    assert_eq!(t.action_calls(), vec!["restart worker".to_string()]);
}

#[test]
fn a_mixed_update_runs_rebuild_then_recreate_then_restart() {
    let t = compose_fixture();
    let old = t.head();
    let tip = t.push_files(&[
        ("config/nginx.conf", "worker_processes 2;\n"),
        ("web.env", "GREETING=hi\n"),
        ("worker/requirements.txt", "requests==2.32.0\n"),
    ]);
    let out = t.run_mapped(&["run"]);
    out.code(0).stderr_empty();
    assert_eq!(
        t.action_calls(),
        vec![
            "up -d --build --no-deps worker".to_string(),
            "up -d --no-deps web".to_string(),
            "restart proxy".to_string(),
        ]
    );
    // Reading the project comes first, acting last.
    let calls = t.compose_calls();
    let first_action = calls.iter().position(Call::is_action).unwrap();
    assert!(
        calls[first_action..].iter().all(Call::is_action),
        "a read-only call after acting: {calls:?}"
    );
    assert_line(
        &out,
        &format!(
            "updated main {}..{} (3 files); rebuilt: worker; recreated: web; restarted: proxy",
            short(&old),
            short(&tip)
        ),
    );
    assert_eq!(t.deployed(), Some(tip));
    assert_git_clean(&t, &Clean::strict());
}

#[test]
fn the_strongest_action_wins_for_a_service() {
    let t = compose_fixture();
    // web: code (restart) and its env file (recreate) -> recreate only, once.
    t.push_files(&[("web/app.py", "v2\n"), ("web.env", "GREETING=hi\n")]);
    let out = t.run_mapped(&["run", "--output", "json"]);
    out.code(0);
    assert_eq!(t.action_calls(), vec!["up -d --no-deps web".to_string()]);
    let v = out.json();
    let actions = v["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "{v}");
    assert_eq!(actions[0]["service"], "web");
    assert_eq!(actions[0]["action"], "recreate");
    assert_eq!(actions[0]["reason"], "env file `web.env` changed");
    // Both paths concern web (in no particular order).
    let mut paths: Vec<&str> = actions[0]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    paths.sort();
    assert_eq!(paths, ["web.env", "web/app.py"]);
}

#[test]
fn a_single_file_bind_mount_restarts_even_when_no_rule_names_it() {
    let t = compose_fixture();
    t.push_files(&[
        ("config/nginx.conf", "worker_processes 2;\n"),
        ("web/app.py", "v2\n"),
    ]);
    let cfg = t.config_file("services:\n  web:\n    paths: [\"web/**\"]\n");
    let out = t.run_mapped(&["run", "--config", path_str(&cfg), "--output", "json"]);
    out.code(0);
    assert_eq!(t.action_calls(), vec!["restart web proxy".to_string()]);
    let v = out.json();
    assert_eq!(v["services"], json!(["web", "proxy"]));
    let proxy = &v["actions"][1];
    assert_eq!(proxy["service"], "proxy");
    assert_eq!(proxy["action"], "restart");
    assert_eq!(proxy["paths"], json!(["config/nginx.conf"]));
    let reason = proxy["reason"].as_str().unwrap();
    assert!(
        reason.contains("config/nginx.conf") && reason.contains("single file"),
        "the reason should say it is a single-file bind mount: {reason}"
    );
}

#[test]
fn a_single_file_bind_mount_alone_restarts_under_rules_that_match_nothing() {
    let t = compose_fixture();
    let tip = t.push_files(&[("config/nginx.conf", "worker_processes 2;\n")]);
    let cfg = t.config_file("services:\n  web:\n    paths: [\"web/**\"]\n");
    let out = t.run_mapped(&["run", "--config", path_str(&cfg)]);
    out.code(0);
    assert_eq!(t.action_calls(), vec!["restart proxy".to_string()]);
    assert_eq!(out.summary().restarted, "proxy");
    assert_eq!(t.deployed(), Some(tip));
}

#[test]
fn rules_still_get_the_compose_projects_recreate_and_rebuild() {
    let t = compose_fixture();
    t.push_files(&[
        ("worker/requirements.txt", "requests==2.32.0\n"),
        ("web/app.py", "v2\n"),
    ]);
    let cfg = t.config_file(
        "services:\n  web:\n    paths: [\"web/\"]\n  worker:\n    paths: [\"worker/\"]\n",
    );
    t.run_mapped(&["run", "--config", path_str(&cfg)]).code(0);
    assert_eq!(
        t.action_calls(),
        vec![
            "up -d --build --no-deps worker".to_string(),
            "restart web".to_string()
        ]
    );
}

#[test]
fn a_change_no_compose_entry_concerns_restarts_nothing() {
    let t = compose_fixture();
    let old = t.head();
    let tip = t.push_files(&[("scripts/deploy.sh", "echo deploy v2\n")]);
    let out = t.run_mapped(&["run"]);
    out.code(0).stderr_empty();
    assert_line(
        &out,
        &format!(
            "updated main {}..{} (1 file); restarted: nothing (no compose entry matches the changed paths)",
            short(&old),
            short(&tip)
        ),
    );
    assert!(t.action_calls().is_empty(), "{:?}", t.action_calls());
    assert_eq!(t.deployed(), Some(tip));
}

#[test]
fn an_unreadable_project_restarts_everything_and_the_summary_says_why() {
    let t = Fixture::with_files(PROJECT_FILES);
    // No canned config: the stub's `config` exits 1.
    t.push_files(&[("web/app.py", "v2\n")]);
    let out = t.run_mapped(&["run"]);
    out.code(0).stderr_empty();
    assert_eq!(t.action_calls(), vec!["restart".to_string()]);
    let s = out.summary();
    assert!(
        s.restarted
            .starts_with("all services (the compose project could not be read"),
        "{}",
        s.line
    );
}

/// A service that declares `develop.watch`: Compose's own say on what a change needs.
const CONFIG_WATCH: &str = "\
name: demo
services:
  bot:
    build:
      context: {CO}/bot
      dockerfile: Dockerfile
    develop:
      watch:
        - path: {CO}/bot
          action: sync+restart
          target: /app
          ignore:
            - '*.md'
        - path: {CO}/bot/static
          action: rebuild
    image: demo-bot
";

fn watch_fixture() -> Fixture {
    let t = Fixture::with_files(&[
        ("bot/Dockerfile", "FROM node:22\n"),
        ("bot/main.js", "v1\n"),
        ("bot/static/app.css", "body {}\n"),
        ("bot/NOTES.md", "notes\n"),
    ]);
    t.compose_config(CONFIG_WATCH);
    t
}

#[test]
fn develop_watch_sync_restart_restarts() {
    let t = watch_fixture();
    t.push_files(&[("bot/main.js", "v2\n")]);
    let out = t.run_mapped(&["run", "--output", "json"]);
    out.code(0);
    assert_eq!(t.action_calls(), vec!["restart bot".to_string()]);
    let reason = out.json()["actions"][0]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("develop.watch"), "{reason}");
}

#[test]
fn develop_watch_ignore_drops_the_path() {
    let t = watch_fixture();
    t.push_files(&[("bot/NOTES.md", "more notes\n")]);
    let out = t.run_mapped(&["run"]);
    out.code(0);
    assert!(t.action_calls().is_empty(), "{:?}", t.action_calls());
    assert!(
        out.summary().restarted.starts_with("nothing"),
        "{}",
        out.stdout
    );
}

/// Compose applies every watch rule that matches a changed file and rebuilds when any of them
/// says `rebuild` (compose `pkg/compose/watch.go`, `handleWatchBatch`: the rules are not
/// first-match), so a file under both a `sync+restart` directory and a `rebuild` path needs a
/// rebuild.
#[test]
fn develop_watch_rebuild_wins_over_an_enclosing_sync_restart() {
    let t = watch_fixture();
    t.push_files(&[("bot/static/app.css", "body { color: red }\n")]);
    t.run_mapped(&["run"]).code(0);
    assert_eq!(
        t.action_calls(),
        vec!["up -d --build --no-deps bot".to_string()],
        "compose would rebuild `bot` for a change under its `rebuild` watch path"
    );
}

// ----- the project as the update changes it -----

/// The compose project with its `config` output tracked in the repository
/// (`compose.config.yml`), so that the stub describes the project as the checkout has it at the
/// time of the call, before and after the update, as compose would; acting calls that name a
/// service the checkout's project lacks fail with compose's `no such service`.
fn evolving_fixture() -> Fixture {
    let mut files = PROJECT_FILES.to_vec();
    files.push(("compose.config.yml", CONFIG_V2));
    let t = Fixture::with_files(&files);
    t.compose_config_from_checkout("compose.config.yml", true);
    t.compose_config_raw(CONFIG_V2_RAW);
    t
}

#[test]
fn a_service_added_by_the_update_is_brought_up() {
    let t = evolving_fixture();
    t.run_mapped(&["run"]).code(0); // deployed := HEAD
    t.clear_compose_log();
    let compose = COMPOSE_FILE.replace(
        "  proxy:\n",
        "  api:\n    image: python:3.12-slim\n    volumes:\n      - ./api:/app\n  proxy:\n",
    );
    let config = CONFIG_V2.replace(
        "  proxy:\n",
        "  api:\n    image: python:3.12-slim\n    volumes:\n      - type: bind\n        source: {CO}/api\n        target: /app\n  proxy:\n",
    );
    let tip = t.push_files(&[
        ("docker-compose.yml", &compose),
        ("compose.config.yml", &config),
        ("api/main.py", "print('api')\n"),
    ]);
    let out = t.run_mapped(&["run"]);
    out.code(0);
    let calls = t.action_calls();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("up ") && c.split(' ').any(|w| w == "api")),
        "the compose file now defines `api`: an update must bring it up, got {calls:?}\n{}",
        out.stdout
    );
    assert_eq!(t.deployed(), Some(tip));
}

#[test]
fn a_service_removed_by_the_update_is_not_named_to_compose() {
    let t = evolving_fixture();
    t.run_mapped(&["run"]).code(0);
    t.clear_compose_log();
    let compose = COMPOSE_FILE.replace(
        "  proxy:\n    image: nginx:1.27\n    volumes:\n      - ./config/nginx.conf:/etc/nginx/nginx.conf:ro\n",
        "",
    );
    assert_ne!(compose, COMPOSE_FILE);
    let start = CONFIG_V2.find("  proxy:\n").unwrap();
    let end = CONFIG_V2.find("  web:\n").unwrap();
    let config = format!("{}{}", &CONFIG_V2[..start], &CONFIG_V2[end..]);
    t.dev_write("docker-compose.yml", &compose);
    t.dev_write("compose.config.yml", &config);
    t.dev_remove("config/nginx.conf");
    let tip = t.dev_commit("drop the proxy");
    t.push();
    let out = t.run_mapped(&["run"]);
    out.code(0);
    assert_eq!(
        t.action_calls(),
        vec!["up -d --no-deps web worker".to_string()],
        "`proxy` is gone from the compose file: compose would answer `no such service: proxy`"
    );
    assert_eq!(t.deployed(), Some(tip));
}

// ----- ignore and dependency_files with the compose project -----

#[test]
fn ignore_applies_to_the_compose_mapping_too() {
    let t = compose_fixture();
    t.push_files(&[("web/README.md", "how to run\n")]);
    let cfg = t.config_file("ignore: [\"*.md\"]\n");
    let out = t.run_mapped(&["run", "--config", path_str(&cfg)]);
    out.code(0);
    assert!(t.action_calls().is_empty(), "{:?}", t.action_calls());
    assert!(
        out.summary()
            .restarted
            .ends_with("(only ignored paths changed)"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_manifest_under_a_bind_mount_in_the_build_context_rebuilds_by_default() {
    let t = compose_fixture();
    t.push_files(&[("worker/src/package.json", "{}\n")]);
    t.run_mapped(&["run"]).code(0);
    assert_eq!(
        t.action_calls(),
        vec!["up -d --build --no-deps worker".to_string()]
    );
}

#[test]
fn dependency_files_in_the_config_replace_the_default_list() {
    let t = compose_fixture();
    t.push_files(&[
        ("worker/src/package.json", "{}\n"),
        ("web/vendor.lock", "x\n"),
    ]);
    let cfg = t.config_file("dependency_files: [\"*.lock\", \"Dockerfile\"]\n");
    let out = t.run_mapped(&["run", "--config", path_str(&cfg)]);
    out.code(0);
    // package.json is no longer a dependency file: worker's bind mount restarts it. web has no
    // build context, so its lock file is plain code.
    assert_eq!(t.action_calls(), vec!["restart web worker".to_string()]);
}

/// `--services` names WHICH services; the module doc of `src/select.rs` says that whatever
/// picked the services, what the compose project says raises the action. A dependency manifest
/// in a named service's build context must not be answered with a bare `restart` (the issue:
/// "the new code starts against old dependencies and crashes"), the crontab example in `--help`
/// uses `--services`, and `rebuild_policy: stop` must not be bypassed by it.
#[test]
fn the_services_flag_restarts_exactly_those_even_for_a_dependency_change() {
    // The contract's `--services`: "services to restart when anything changed". It names the
    // services and the action; the compose project is not read (so `rebuild_policy` does not
    // apply either). Leave `--services` out to have changes mapped to rebuilds.
    let t = compose_fixture();
    t.push_files(&[("worker/requirements.txt", "requests==2.32.0\n")]);
    t.run_mapped(&["run", "--services", "worker"]).code(0);
    assert_eq!(t.action_calls(), vec!["restart worker".to_string()]);
    t.push_files(&[("worker/requirements.txt", "requests==2.33.0\n")]);
    t.run_mapped(&["run", "--services", "worker", "--rebuild-policy", "stop"])
        .code(0);
    assert_eq!(
        t.action_calls(),
        vec!["restart worker".to_string(), "restart worker".to_string()]
    );
}

/// A `docker compose config` that hangs, with a child of its own that keeps the output pipe open
/// (a compose plugin, a credential helper): at the deadline the whole process group is killed,
/// so the run ends at once instead of waiting for the grandchild, and leaves nothing behind.
#[test]
fn a_hung_compose_config_is_killed_with_what_it_started() {
    use std::os::unix::fs::PermissionsExt;
    let t = Fixture::new();
    t.run(&["run"]).code(0);
    t.push_files(&[("app/main.py", "v2\n")]);
    let pid_file = t.root.join("grandchild.pid");
    let compose = t.root.join("hung-compose");
    fs::write(
        &compose,
        format!(
            "#!/bin/sh\nsleep 60 &\necho $! > '{}'\nsleep 60\n",
            pid_file.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&compose, fs::Permissions::from_mode(0o755)).unwrap();

    let out = t.run_mapped(&[
        "run",
        "--compose-command",
        path_str(&compose),
        "--timeout",
        "3s",
    ]);
    assert_ne!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.elapsed < std::time::Duration::from_secs(20),
        "the deadline must hold although a grandchild keeps the pipe open: took {:?}",
        out.elapsed
    );
    // Killed: gone, or a zombie waiting for init to reap it. A SIGKILL takes effect when the
    // process is next scheduled, which on a loaded machine can be a moment after pullstart's
    // exit: look again for up to two seconds before calling it alive.
    let pid = fs::read_to_string(&pid_file).unwrap();
    let state_of = || {
        fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
            .ok()
            .and_then(|stat| stat.rsplit(") ").next().map(|rest| rest[..1].to_string()))
    };
    let looked = std::time::Instant::now();
    let mut state = state_of();
    while !matches!(state.as_deref(), None | Some("Z"))
        && looked.elapsed() < std::time::Duration::from_secs(2)
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
        state = state_of();
    }
    assert!(
        matches!(state.as_deref(), None | Some("Z")),
        "the compose command's child {} is still running (state {state:?})",
        pid.trim()
    );
}
