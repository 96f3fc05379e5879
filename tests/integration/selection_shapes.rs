//! The right action for the shapes real compose projects take, read by the real Compose v2 CLI
//! (`docker compose config` only reads, so no engine is needed): `develop.watch` entries on code
//! that lives only in the image, `.dockerignore` and the Dockerfile's `COPY` sources, one
//! Dockerfile per service in a shared context, the older `x-develop` spelling and anonymous
//! volumes holding dependencies. Each test commits a small project of that shape, pushes one
//! change at a time and reads `check --output json`; between checks the checkout is moved to the
//! tip with git itself, so that each check sees only the next change.

use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// Whether the Compose v2 CLI is here; without it, a loud skip (a failure under `CI`).
fn compose_ready(test: &str) -> bool {
    let ok = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: `docker compose` is missing; CI must have it"
        );
        eprintln!("\n*** SKIPPED (no `docker compose`): {test} ***\n");
    }
    ok
}

/// `check --output json` with the real compose CLI.
fn check(t: &Fixture) -> Value {
    let out = t.run_mapped(&[
        "check",
        "--output",
        "json",
        "--compose-command",
        "docker compose",
    ]);
    out.code(0);
    let v = out.json();
    assert!(v["error"].is_null(), "{v}");
    assert!(
        !out.stdout.contains("syncrestart") && !out.stdout.contains("syncexec"),
        "compose's spelling of watch actions: {}",
        out.stdout
    );
    v
}

/// Pushes `files`, checks, then fast-forwards the checkout with git so the next check starts
/// from this tip.
fn check_change(t: &Fixture, files: &[(&str, &str)]) -> Value {
    t.push_files(files);
    let v = check(t);
    t.git(&t.checkout, &["pull", "-q", "--ff-only"]);
    v
}

/// `[(service, action)]` of a check's JSON.
fn acts(v: &Value) -> Vec<(String, String)> {
    v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["service"].as_str().unwrap().to_string(),
                a["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(s, a)| (s.to_string(), a.to_string()))
        .collect()
}

fn reason(v: &Value, service: &str) -> String {
    v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["service"] == service)
        .unwrap_or_else(|| panic!("no action for {service}: {v}"))["reason"]
        .as_str()
        .unwrap()
        .to_string()
}

// ----- develop.watch `sync` on code that only the image holds -----

const NODE_WATCH: &str = "\
services:
  web:
    build: ./web
    develop:
      watch:
        - path: ./web/src
          action: sync
          target: /app/src
        - path: ./web/package.json
          action: rebuild
  api:
    build: ./api
    volumes:
      - ./api/src:/app/src
    develop:
      watch:
        - path: ./api/src
          action: sync+restart
          target: /app/src
  docs:
    image: nginx:1.27
    develop:
      watch:
        - path: ./site
          action: sync
          target: /usr/share/nginx/html
";

const NODE_DOCKERFILE: &str =
    "FROM node:20-slim\nWORKDIR /app\nCOPY package.json .\nRUN npm install\nCOPY src ./src\n";

#[test]
fn a_sync_watch_on_code_only_the_image_holds_rebuilds() {
    if !compose_ready("a_sync_watch_on_code_only_the_image_holds_rebuilds") {
        return;
    }
    let t = Fixture::with_files(&[
        ("compose.yaml", NODE_WATCH),
        ("web/Dockerfile", NODE_DOCKERFILE),
        ("web/package.json", "{}\n"),
        ("web/src/index.js", "v1\n"),
        ("api/Dockerfile", NODE_DOCKERFILE),
        ("api/package.json", "{}\n"),
        ("api/src/index.js", "v1\n"),
        ("site/index.html", "v1\n"),
    ]);
    // No bind mount brings web/src in: the old code would keep running after a restart.
    let v = check_change(&t, &[("web/src/index.js", "v2\n")]);
    assert_eq!(acts(&v), pairs(&[("web", "rebuild")]), "{v}");
    let why = reason(&v, "web");
    assert!(
        why.contains("develop.watch `web/src` (sync)") && why.contains("the image holds it"),
        "{why}"
    );

    // A bind mount covers api/src: a restart brings the new code in; compose's spelling.
    let v = check_change(&t, &[("api/src/index.js", "v2\n")]);
    assert_eq!(acts(&v), pairs(&[("api", "restart")]), "{v}");
    let why = reason(&v, "api");
    assert!(
        why.contains("develop.watch `api/src` (sync+restart)") && why.contains("bind mount"),
        "{why}"
    );

    // Neither a bind mount nor a build: a restart is all there is, and the reason says so.
    let v = check_change(&t, &[("site/index.html", "v2\n")]);
    assert_eq!(acts(&v), pairs(&[("docs", "restart")]), "{v}");
    assert!(reason(&v, "docs").contains("no bind mount or build"), "{v}");
}

// ----- .dockerignore and the Dockerfile's COPY sources -----

#[test]
fn files_the_build_never_sees_do_not_rebuild() {
    if !compose_ready("files_the_build_never_sees_do_not_rebuild") {
        return;
    }
    let t = Fixture::with_files(&[
        ("compose.yaml", "services:\n  app:\n    build: .\n"),
        (
            "Dockerfile",
            "FROM python:3.12-slim\nCOPY requirements.txt .\nRUN pip install -r requirements.txt\nCOPY app/ /app/\n",
        ),
        (".dockerignore", "**/*.md\napp/tests\n"),
        ("requirements.txt", "flask==3.0.0\n"),
        ("notes.txt", "v1\n"),
        ("app/main.py", "v1\n"),
        ("app/NOTES.md", "v1\n"),
        ("app/tests/test_main.py", "v1\n"),
    ]);
    // Not a COPY source; excluded by .dockerignore though under a COPY'd directory.
    for (path, why) in [
        ("notes.txt", "the Dockerfile never copies it"),
        ("app/tests/test_main.py", ".dockerignore excludes it"),
        ("app/NOTES.md", ".dockerignore excludes it (`**/*.md`)"),
    ] {
        let v = check_change(&t, &[(path, "v2\n")]);
        assert_eq!(acts(&v), pairs(&[]), "{path}: {why}: {v}");
    }
    // What the image copies rebuilds, and so does a change to what the build is sent.
    let v = check_change(&t, &[("app/main.py", "v2\n")]);
    assert_eq!(acts(&v), pairs(&[("app", "rebuild")]), "{v}");
    assert!(reason(&v, "app").contains("COPY"), "{v}");
    let v = check_change(&t, &[("requirements.txt", "flask==3.0.1\n")]);
    assert_eq!(acts(&v), pairs(&[("app", "rebuild")]), "{v}");
    let v = check_change(&t, &[(".dockerignore", "**/*.md\n")]);
    assert_eq!(acts(&v), pairs(&[("app", "rebuild")]), "{v}");
    assert!(reason(&v, "app").contains("ignore file"), "{v}");
    // The Dockerfile's sources cannot be read (a build argument): every file not ignored counts.
    let v = check_change(
        &t,
        &[(
            "Dockerfile",
            "FROM python:3.12-slim\nARG SRC=app\nCOPY ${SRC} /app/\n",
        )],
    );
    assert_eq!(acts(&v), pairs(&[("app", "rebuild")]), "{v}");
    let v = check_change(&t, &[("notes.txt", "v3\n")]);
    assert_eq!(acts(&v), pairs(&[("app", "rebuild")]), "{v}");
    assert!(reason(&v, "app").contains("could not be read"), "{v}");
}

// ----- one Dockerfile per service in a shared context -----

const SHARED_CONTEXT: &str = "\
services:
  php:
    build:
      context: .
      dockerfile: docker/php/Dockerfile
  backend:
    build:
      context: .
      dockerfile: backend.Dockerfile
  web:
    build: .
  web-prod:
    build:
      context: .
      dockerfile: Dockerfile.prod
";

#[test]
fn in_a_shared_context_each_dockerfile_rebuilds_only_its_services() {
    if !compose_ready("in_a_shared_context_each_dockerfile_rebuilds_only_its_services") {
        return;
    }
    let files: &[(&str, &str)] = &[
        ("compose.yaml", SHARED_CONTEXT),
        (
            "docker/php/Dockerfile",
            "FROM php:8.3-fpm\nCOPY composer.json composer.lock /app/\nCOPY src /app/src\n",
        ),
        ("backend.Dockerfile", "FROM python:3.12\nCOPY backend/ /srv/\n"),
        ("Dockerfile", "FROM nginx:1.27\nCOPY frontend/ /usr/share/nginx/html/\n"),
        (
            "Dockerfile.prod",
            "FROM nginx:1.27\nCOPY frontend/ /usr/share/nginx/html/\nCOPY nginx.prod.conf /etc/nginx/nginx.conf\n",
        ),
        (".dockerignore", "docs\n**/*.md\n"),
        ("composer.json", "{}\n"),
        ("composer.lock", "{}\n"),
        ("src/Kernel.php", "<?php\n"),
        ("backend/app.py", "v1\n"),
        ("backend/requirements.txt", "flask\n"),
        ("frontend/index.html", "v1\n"),
        ("nginx.prod.conf", "v1\n"),
        ("docs/guide.txt", "v1\n"),
    ];
    let t = Fixture::with_files(files);
    for (path, expected) in [
        ("backend.Dockerfile", vec![("backend", "rebuild")]),
        ("Dockerfile.prod", vec![("web-prod", "rebuild")]),
        ("Dockerfile", vec![("web", "rebuild")]),
        ("docker/php/Dockerfile", vec![("php", "rebuild")]),
        ("composer.json", vec![("php", "rebuild")]),
        ("backend/requirements.txt", vec![("backend", "rebuild")]),
        ("backend/app.py", vec![("backend", "rebuild")]),
        ("nginx.prod.conf", vec![("web-prod", "rebuild")]),
        (
            "frontend/index.html",
            vec![("web", "rebuild"), ("web-prod", "rebuild")],
        ),
        ("docs/guide.txt", vec![]),
        ("docs/README.md", vec![]),
    ] {
        // The same content and one more comment line, so every Dockerfile keeps its sources.
        let old = files
            .iter()
            .find(|(p, _)| *p == path)
            .map_or("", |(_, c)| c);
        let v = check_change(&t, &[(path, &format!("{old}# changed\n"))]);
        let mut got = acts(&v);
        got.sort();
        assert_eq!(got, pairs(&expected), "{path}: {v}");
        if path == "backend.Dockerfile" {
            assert!(
                reason(&v, "backend").starts_with("Dockerfile `backend.Dockerfile`"),
                "{v}"
            );
        }
    }
}

// ----- x-develop -----

#[test]
fn the_older_x_develop_spelling_is_read() {
    if !compose_ready("the_older_x_develop_spelling_is_read") {
        return;
    }
    let compose = "\
services:
  bot:
    build: ./bot
    volumes:
      - ./bot:/app
    x-develop:
      watch:
        - path: ./bot
          action: sync+restart
          target: /app
          ignore:
            - '*.log'
        - path: ./bot/requirements.txt
          action: rebuild
";
    let t = Fixture::with_files(&[
        ("compose.yaml", compose),
        (
            "bot/Dockerfile",
            "FROM python:3.12\nCOPY requirements.txt .\nRUN pip install -r requirements.txt\n",
        ),
        ("bot/requirements.txt", "aiogram\n"),
        ("bot/main.py", "v1\n"),
        ("bot/run.log", "v1\n"),
    ]);
    // The watch entry's `ignore` decides, not the bind mount alone.
    let v = check_change(&t, &[("bot/run.log", "v2\n")]);
    assert_eq!(acts(&v), pairs(&[]), "{v}");
    let v = check_change(&t, &[("bot/main.py", "v2\n")]);
    assert_eq!(acts(&v), pairs(&[("bot", "restart")]), "{v}");
    assert!(
        reason(&v, "bot").starts_with("x-develop.watch `bot` (sync+restart)"),
        "{v}"
    );
    let v = check_change(&t, &[("bot/requirements.txt", "aiogram==3\n")]);
    assert_eq!(acts(&v), pairs(&[("bot", "rebuild")]), "{v}");

    // `status` shows the entries with pullstart's action next to compose's.
    let out = t.run_mapped(&["status", "--compose-command", "docker compose"]);
    out.code(0);
    out.stdout_contains("x-develop.watch bot (restart; compose: sync+restart)");
    out.stdout_contains("x-develop.watch bot/requirements.txt (rebuild; compose: rebuild)");
}

// ----- anonymous volumes holding dependencies -----

const NODE_ANON: &str = "\
services:
  web:
    build: .
    volumes:
      - .:/app
      - /app/node_modules
  worker:
    build:
      context: .
      dockerfile: worker.Dockerfile
";

#[test]
fn a_dependency_rebuild_renews_anonymous_volumes_and_a_code_change_does_not() {
    if !compose_ready("a_dependency_rebuild_renews_anonymous_volumes_and_a_code_change_does_not") {
        return;
    }
    let t = Fixture::with_files(&[
        ("compose.yaml", NODE_ANON),
        (
            "Dockerfile",
            "FROM node:20-slim\nWORKDIR /app\nCOPY package.json .\nRUN npm install\nCOPY . .\n",
        ),
        (
            "worker.Dockerfile",
            "FROM node:20-slim\nWORKDIR /app\nCOPY package.json .\nRUN npm install\nCOPY . .\n",
        ),
        ("package.json", "{\"dependencies\": {}}\n"),
        ("index.js", "v1\n"),
    ]);
    let v = check_change(
        &t,
        &[("package.json", "{\"dependencies\": {\"a\": \"1\"}}\n")],
    );
    assert_eq!(
        acts(&v),
        pairs(&[("web", "rebuild"), ("worker", "rebuild")]),
        "{v}"
    );
    assert!(
        reason(&v, "web").contains("renews the anonymous volumes /app/node_modules"),
        "{v}"
    );
    assert!(
        !reason(&v, "worker").contains("renew"),
        "no anonymous volume: {v}"
    );
    // Code under the bind mount: web restarts (its volume is kept); worker's image copies it.
    let v = check_change(&t, &[("index.js", "v2\n")]);
    assert_eq!(
        acts(&v),
        pairs(&[("web", "restart"), ("worker", "rebuild")]),
        "{v}"
    );
    assert!(!reason(&v, "worker").contains("renew"), "{v}");

    // A run passes `--renew-anon-volumes` to the rebuild of web alone (a stand-in compose
    // replays what the real one printed for the project, and records the calls).
    let config = Command::new("docker")
        .args(["compose", "config"])
        .current_dir(&t.checkout)
        .env_remove("COMPOSE_FILE")
        .env_remove("COMPOSE_PROJECT_NAME")
        .output()
        .unwrap();
    assert!(config.status.success());
    t.compose_config(
        &String::from_utf8(config.stdout)
            .unwrap()
            .replace(path_str(&t.checkout), "{CO}"),
    );
    t.push_files(&[("package.json", "{\"dependencies\": {\"b\": \"1\"}}\n")]);
    // Under `rebuild_policy: stop`, the message names the commands the allowed run will make.
    let stopped = t.run_mapped(&["run", "--rebuild-policy", "stop"]);
    stopped.code(8);
    let line = stopped.error_line();
    assert!(
        line.contains("up -d --build --no-deps --renew-anon-volumes web; ")
            && line.contains("up -d --build --no-deps worker"),
        "{line}"
    );
    assert!(t.action_calls().is_empty(), "{:?}", t.action_calls());
    t.run_mapped(&["run"]).code(0);
    assert_eq!(
        t.action_calls(),
        vec![
            "up -d --build --no-deps --renew-anon-volumes web".to_string(),
            "up -d --build --no-deps worker".to_string(),
        ]
    );
}

// ----- a project compose cannot read -----

/// A missing `env_file`: the real `compose config` fails, and JSON says what text says (all
/// services, and why) rather than an empty "nothing to do".
#[test]
fn a_project_compose_cannot_read_says_all_services_in_json_as_in_text() {
    if !compose_ready("a_project_compose_cannot_read_says_all_services_in_json_as_in_text") {
        return;
    }
    let t = Fixture::with_files(&[
        (
            "compose.yaml",
            "services:\n  web:\n    image: nginx:1.27\n    env_file: missing.env\n    volumes:\n      - ./web:/app\n",
        ),
        ("web/index.html", "v1\n"),
    ]);
    t.push_files(&[("web/index.html", "v2\n")]);
    let args = ["check", "--compose-command", "docker compose"];
    let text = t.run_mapped(&args);
    text.code(0);
    text.stdout_contains("would restart all services: the compose project could not be read");
    let out = t.run_mapped(&[&args[..], &["--output", "json"]].concat());
    out.code(0);
    let v = out.json();
    assert_eq!(v["all_services"], true, "{v}");
    assert_eq!(v["actions"][0]["service"], "*", "{v}");
    assert_eq!(v["actions"][0]["action"], "restart", "{v}");
    let why = v["actions"][0]["reason"].as_str().unwrap();
    assert!(
        why.contains("could not be read") && why.contains("missing.env"),
        "{v}"
    );
}
