//! End-to-end tests of the actions pullstart chooses per service (issue 4), against a real Docker
//! Engine through the real Compose v2 CLI. No stand-ins: every claim is read back from the engine
//! (`docker inspect`: container id, `State.StartedAt`, exit code, health, image id, `Config.Env`;
//! `docker logs`: what a container printed when it started) and from git.
//!
//! - restart: same container id, new `StartedAt`, the new content in its log;
//! - recreate: a new container id and the new definition (`Config.Env`);
//! - rebuild: a new image id under a new container;
//! - health failure: a container that exits on start (or turns unhealthy) fails the run with 6;
//! - rollback: the checkout and the container are back on the deployed commit;
//! - hooks: run from a host-side config with the run's facts, refused from inside the checkout.
//!
//! Unlike `tests/docker.rs` (the seed's layout: the whole checkout mounted at `/app` by an
//! ignored override), here the committed `docker-compose.yml` itself declares per-service bind
//! mounts, env files and build contexts, so that pullstart can derive the mapping from
//! `docker compose config`.
//!
//! Each test has its own compose project (`psa-<short>-<pid>`) and temporary directory, so the
//! tests run in parallel; the project, its volumes and every image it built are removed when the
//! fixture is dropped, also when the test panics. The engine is shared with other users: nothing
//! here touches anything outside the test's own project.
//!
//! Needs a running engine, the Compose v2 plugin and the image `pullstart-test/busybox:1` (or
//! `$PULLSTART_TEST_IMAGE`): `contrib/docker-setup.sh` sets that up. Builds run offline
//! (`FROM` the local image, `build.network: none`). Where the engine is missing, each test prints
//! a loud `SKIPPED (no Docker engine)` line on stderr and returns — unless `CI` is set (to
//! anything non-empty), in which case the test fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

mod docker_support;
use docker_support::*;

/// The health flags every run gets, to keep the failing cases quick.
const HEALTH: [&str; 4] = ["--health-timeout", "20s", "--health-settle", "1s"];

// =============================================================================================
// Running commands with a time limit
// =============================================================================================

// =============================================================================================
// Is there an engine? The skipping policy
// =============================================================================================

macro_rules! require_docker {
    ($test:expr) => {
        if !docker_ready($test, false) {
            return;
        }
    };
}

// =============================================================================================
// Compose project pieces
// =============================================================================================

/// A service running the test image; `body` holds its further keys, indented by four spaces.
fn svc(name: &str, body: &str) -> String {
    format!(
        "  {name}:\n    image: {img}\n    pull_policy: never\n    network_mode: none\n    init: true\n{body}",
        img = image()
    )
}

/// A service built from `context` (a Dockerfile `FROM` the test image); the image is named by
/// compose (`<project>-<service>`). `build.network: none`: a `RUN` step needs no bridge.
fn built_svc(name: &str, context: &str, body: &str) -> String {
    format!(
        "  {name}:\n    build:\n      context: {context}\n      network: none\n    pull_policy: never\n    network_mode: none\n    init: true\n{body}"
    )
}

/// A `command:` line: `sh -c SCRIPT` (compose interpolates `$`, so shell variables are `$$`).
fn sh(script: &str) -> String {
    format!("    command: [\"sh\", \"-c\", \"{script}; exec sleep 1000000\"]\n")
}

/// Which services an applied run's summary line names for `past` ("restarted", "recreated",
/// "rebuilt"): `updated main a..b (2 files); rebuilt: worker; restarted: web bot`.
fn acted(summary: &str, past: &str) -> Vec<String> {
    let prefix = format!("{past}: ");
    summary
        .split("; ")
        .filter_map(|part| part.strip_prefix(&prefix))
        .flat_map(|names| names.split_whitespace().map(str::to_string))
        .collect()
}

// =============================================================================================
// The engine's view of one container
// =============================================================================================

/// One container as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Container {
    id: String,
    status: String,
    running: bool,
    exit_code: i64,
    started_at: String,
    /// `State.Health.Status`, empty without a healthcheck.
    health: String,
    /// The image id the container runs (`sha256:...`).
    image: String,
    env: Vec<String>,
    /// Everything it printed so far (over all its starts).
    logs: String,
}

impl Container {
    /// How many log lines are exactly `line`, i.e. how many times it started printing it.
    fn count(&self, line: &str) -> usize {
        self.logs.lines().filter(|l| l.trim() == line).count()
    }

    fn last_line(&self) -> &str {
        self.logs
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
    }
}

// =============================================================================================
// The fixture: a remote, a dev clone, the managed checkout and a running compose project
// =============================================================================================

struct Fixture {
    test: String,
    project: String,
    services: Vec<String>,
    /// Whether `up` was attempted, i.e. whether Drop has to take the project down.
    up: bool,
    root: PathBuf,
    home: PathBuf,
    dev: PathBuf,
    checkout: PathBuf,
    _tmp: TempDir,
}

impl Fixture {
    /// Commits `files` (a `docker-compose.yml` among them) in a dev repository, pushes them to a
    /// bare remote, clones the checkout pullstart manages, brings the project up (building what
    /// needs building) and waits until each `(service, line)` of `ready` runs, is healthy where
    /// it has a healthcheck, and has printed `line`.
    fn new(test: &str, short: &str, files: &[(&str, String)], ready: &[(&str, &str)]) -> Fixture {
        let tmp = tempfile::Builder::new()
            .prefix("pullstart-actions-")
            .tempdir()
            .unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let home = root.join("home");
        fs::create_dir_all(&home).unwrap();
        let mut t = Fixture {
            test: test.to_string(),
            project: format!("psa-{short}-{}", std::process::id()),
            services: ready.iter().map(|(s, _)| s.to_string()).collect(),
            up: false,
            dev: root.join("dev"),
            checkout: root.join("checkout"),
            home,
            root,
            _tmp: tmp,
        };
        t.git(&t.root, &["init", "-q", "--bare", "remote.git"]);
        t.git(&t.root, &["init", "-q", "dev"]);
        for (path, content) in files {
            t.write(path, content);
        }
        t.git(&t.dev, &["add", "-A"]);
        t.git(&t.dev, &["commit", "-q", "-m", "initial"]);
        t.git(&t.dev, &["remote", "add", "origin", "../remote.git"]);
        t.git(&t.dev, &["push", "-q", "-u", "origin", "main"]);
        t.git(&t.root, &["clone", "-q", "remote.git", "checkout"]);

        // Leftovers of an earlier, killed run with the same pid would confuse the lookups.
        t.remove_project_leftovers();
        t.up = true;
        must(&mut t.compose_cmd(&["up", "-d"]), Duration::from_secs(180));
        for (service, line) in ready {
            t.wait_for(service, &format!("printed `{line}`"), |c| {
                c.running && (c.health.is_empty() || c.health == "healthy") && c.count(line) > 0
            });
        }
        t
    }

    // ----- commands -----

    fn git_cmd(&self, dir: &Path, args: &[&str]) -> Command {
        git_cmd(&self.home, dir, args)
    }

    fn git(&self, dir: &Path, args: &[&str]) -> String {
        git_output(&mut self.git_cmd(dir, args))
    }

    /// Writes `path` in the dev repository.
    fn write(&self, path: &str, content: &str) {
        let p = self.dev.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    /// Writes `files` in the dev repository, commits and pushes; returns the new tip.
    fn push(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, content) in files {
            self.write(path, content);
        }
        self.git(&self.dev, &["add", "-A"]);
        self.git(&self.dev, &["commit", "-q", "-m", message]);
        self.git(&self.dev, &["push", "-q", "origin", "main"]);
        self.git(&self.dev, &["rev-parse", "HEAD"])
    }

    /// `docker compose -p PROJECT ARGS` in the checkout.
    fn compose_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = docker(&["compose", "-p", &self.project]);
        cmd.args(args).current_dir(&self.checkout);
        cmd
    }

    /// A PATH of one directory that links to every program on the current PATH except the
    /// `docker*` ones, as on a host where `docker` lives where cron does not look.
    fn path_without_docker(&self) -> String {
        let bin = self.root.join("bin-without-docker");
        fs::create_dir_all(&bin).unwrap();
        let path = std::env::var_os("PATH").unwrap_or_default();
        for dir in std::env::split_paths(&path) {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let link = bin.join(&name);
                if name.to_string_lossy().starts_with("docker") || link.exists() {
                    continue;
                }
                std::os::unix::fs::symlink(entry.path(), link).unwrap();
            }
        }
        bin.to_str().unwrap().to_string()
    }

    /// `pullstart SUBCOMMAND -C CHECKOUT -p PROJECT --health-timeout 20s --health-settle 1s
    /// ARGS`, hermetic, started outside the checkout.
    fn pullstart(&self, subcommand: &str, args: &[&str]) -> Ran {
        self.run_pullstart(self.pullstart_cmd(subcommand, args))
    }

    /// [`Fixture::pullstart`] with `path` as PATH.
    fn pullstart_with_path(&self, path: &str, subcommand: &str, args: &[&str]) -> Ran {
        let mut cmd = self.pullstart_cmd(subcommand, args);
        cmd.env("PATH", path);
        self.run_pullstart(cmd)
    }

    fn pullstart_cmd(&self, subcommand: &str, args: &[&str]) -> Command {
        let co = self.checkout_str().to_string();
        let mut all = vec![subcommand, "-C", &co, "-p", &self.project];
        all.extend(HEALTH);
        all.extend(args);
        let mut cmd = Command::new(bin());
        hermetic(&mut cmd, &self.home);
        cmd.current_dir(&self.root).args(&all);
        cmd
    }

    fn run_pullstart(&self, mut cmd: Command) -> Ran {
        run_limited(&mut cmd, RUN_LIMIT).unwrap_or_else(|e| panic!("{}: {e}", self.test))
    }

    // ----- git state -----

    fn checkout_str(&self) -> &str {
        self.checkout.to_str().unwrap()
    }

    fn head(&self) -> String {
        self.git(&self.checkout, &["rev-parse", "HEAD"])
    }

    fn state_ref(&self, name: &str) -> Option<String> {
        let ran = run_limited(
            &mut self.git_cmd(&self.checkout, &["rev-parse", "-q", "--verify", name]),
            Duration::from_secs(30),
        )
        .unwrap();
        ran.ok().then(|| ran.stdout.trim().to_string())
    }

    fn deployed(&self) -> Option<String> {
        self.state_ref("refs/pullstart/deployed")
    }

    fn rejected(&self) -> Option<String> {
        self.state_ref("refs/pullstart/rejected")
    }

    /// `git status --porcelain` of the checkout (untracked files included).
    fn status(&self) -> String {
        self.git(
            &self.checkout,
            &["status", "--porcelain", "--untracked-files=all"],
        )
    }

    fn read_checkout(&self, path: &str) -> String {
        fs::read_to_string(self.checkout.join(path)).unwrap()
    }

    // ----- the engine's view -----

    /// The ids of the containers of `service` in this project (by compose's labels).
    fn container_ids(&self, service: &str) -> Vec<String> {
        let ran = must(
            &mut docker(&[
                "ps",
                "-aq",
                "--no-trunc",
                "--filter",
                &format!("label=com.docker.compose.project={}", self.project),
                "--filter",
                &format!("label=com.docker.compose.service={service}"),
            ]),
            Duration::from_secs(30),
        );
        ran.stdout.split_whitespace().map(str::to_string).collect()
    }

    fn try_container(&self, service: &str) -> Result<Container, String> {
        let ids = self.container_ids(service);
        let [id] = ids.as_slice() else {
            return Err(format!(
                "expected one container for service {service}, found {ids:?}"
            ));
        };
        let ran = run_limited(&mut docker(&["inspect", id]), Duration::from_secs(30))?;
        if !ran.ok() {
            return Err(ran.show());
        }
        let v: Value = serde_json::from_str(&ran.stdout).map_err(|e| e.to_string())?;
        let c = &v[0];
        let s = |v: &Value| v.as_str().unwrap_or("").to_string();
        let logs = run_limited(&mut docker(&["logs", id]), Duration::from_secs(30))?;
        if !logs.ok() {
            return Err(logs.show());
        }
        Ok(Container {
            id: id.clone(),
            status: s(&c["State"]["Status"]),
            running: c["State"]["Running"].as_bool().unwrap_or(false),
            exit_code: c["State"]["ExitCode"].as_i64().unwrap_or(-1),
            started_at: s(&c["State"]["StartedAt"]),
            health: s(&c["State"]["Health"]["Status"]),
            image: s(&c["Image"]),
            env: c["Config"]["Env"]
                .as_array()
                .map(|a| a.iter().map(s).collect())
                .unwrap_or_default(),
            logs: format!("{}{}", logs.stdout, logs.stderr).replace("\x1b[2K", ""),
        })
    }

    fn container(&self, service: &str) -> Container {
        self.try_container(service)
            .unwrap_or_else(|e| panic!("{}: {e}", self.test))
    }

    /// Waits until `service`'s one container satisfies `ok`; returns it.
    fn wait_for(&self, service: &str, what: &str, ok: impl Fn(&Container) -> bool) -> Container {
        let start = Instant::now();
        loop {
            let last = self.try_container(service);
            if let Ok(c) = &last {
                if ok(c) {
                    return c.clone();
                }
            }
            if start.elapsed() > WAIT_LIMIT {
                panic!(
                    "{}: waited {WAIT_LIMIT:?} for service {service} to have {what}; last seen: {last:#?}",
                    self.test
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The id of the image `docker compose` built for `service` (`<project>-<service>`).
    fn built_image(&self, service: &str) -> String {
        let name = format!("{}-{service}", self.project);
        let ran = must(
            &mut docker(&["image", "inspect", "--format", "{{.Id}}", &name]),
            Duration::from_secs(30),
        );
        ran.stdout.trim().to_string()
    }

    /// Every image (dangling ones too) that compose built for this project.
    fn project_images(&self) -> Vec<String> {
        let label = format!("label=com.docker.compose.project={}", self.project);
        let ran = must(
            &mut docker(&["images", "-aq", "--no-trunc", "--filter", &label]),
            Duration::from_secs(30),
        );
        let mut ids: Vec<String> = ran.stdout.split_whitespace().map(str::to_string).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    // ----- assertions -----

    fn assert_exit(&self, ran: &Ran, code: i32) {
        assert_eq!(
            ran.code(),
            Some(code),
            "{}: wrong exit code\n{}",
            self.test,
            ran.show()
        );
    }

    /// Exit 0, nothing on stderr, one summary line on stdout; returns it.
    fn assert_updated(&self, ran: &Ran, tip: &str) -> String {
        self.assert_exit(ran, 0);
        assert_eq!(
            ran.stderr,
            "",
            "{}: a successful run prints nothing on stderr\n{}",
            self.test,
            ran.show()
        );
        let lines: Vec<&str> = ran.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "{}: expected one summary line\n{}",
            self.test,
            ran.show()
        );
        assert_eq!(self.head(), tip, "{}: HEAD is not the tip", self.test);
        assert_eq!(
            self.deployed().as_deref(),
            Some(tip),
            "{}: refs/pullstart/deployed is not the tip\n{}",
            self.test,
            ran.show()
        );
        assert_eq!(
            self.status(),
            "",
            "{}: the checkout is not clean",
            self.test
        );
        lines[0].to_string()
    }

    /// Exit `code` with exactly one line on stderr; returns it.
    fn assert_failed(&self, ran: &Ran, code: i32) -> String {
        self.assert_exit(ran, code);
        let lines = ran.err_lines();
        assert_eq!(
            lines.len(),
            1,
            "{}: a failure prints exactly one line on stderr\n{}",
            self.test,
            ran.show()
        );
        lines[0].to_string()
    }

    /// `service` restarted since `before`: the same container, running, a new `StartedAt`, and
    /// it printed `line` once more than before (it started once, reading the new content).
    fn assert_restarted(&self, before: &Container, service: &str, line: &str) -> Container {
        let want = before.count(line) + 1;
        let c = self.wait_for(service, &format!("restarted and printed `{line}`"), |c| {
            c.running && c.started_at != before.started_at && c.count(line) >= want
        });
        assert_eq!(
            c.id, before.id,
            "{}: {service} was recreated, not restarted",
            self.test
        );
        assert_eq!(
            c.count(line),
            want,
            "{}: {service} printed `{line}` more than once more; its log:\n{}",
            self.test,
            c.logs
        );
        c
    }

    /// `service` was recreated since `before`: a new container, running, which printed `line`.
    fn assert_recreated(&self, before: &Container, service: &str, line: &str) -> Container {
        let c = self.wait_for(
            service,
            &format!("a running container printing `{line}`"),
            |c| c.running && c.count(line) > 0,
        );
        assert_ne!(
            c.id, before.id,
            "{}: {service} still runs its old container: it was not recreated",
            self.test
        );
        assert_eq!(
            self.container_ids(service),
            vec![c.id.clone()],
            "{}: {service} has more than one container",
            self.test
        );
        c
    }

    /// `service` was not touched since `before`: the same container, still running, the same
    /// `StartedAt`, the same image, nothing new in its log.
    fn assert_untouched(&self, before: &Container, service: &str) {
        let c = self.container(service);
        assert_eq!(c.id, before.id, "{}: {service} was recreated", self.test);
        assert!(c.running, "{}: {service} is not running: {c:?}", self.test);
        assert_eq!(
            c.started_at, before.started_at,
            "{}: {service} restarted although nothing concerning it changed; its log:\n{}",
            self.test, c.logs
        );
        assert_eq!(
            c.image, before.image,
            "{}: {service} has a new image",
            self.test
        );
        assert_eq!(
            c.logs, before.logs,
            "{}: {service} printed something new",
            self.test
        );
    }

    // ----- cleanup -----

    /// Removes whatever carries this project's label: containers, networks, images.
    fn remove_project_leftovers(&self) {
        let label = format!("label=com.docker.compose.project={}", self.project);
        let limit = Duration::from_secs(60);
        if let Ok(ran) = run_limited(&mut docker(&["ps", "-aq", "--filter", &label]), limit) {
            let ids: Vec<&str> = ran.stdout.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids);
                let _ = run_limited(&mut docker(&args), limit);
            }
        }
        if let Ok(ran) = run_limited(
            &mut docker(&["network", "ls", "-q", "--filter", &label]),
            limit,
        ) {
            for id in ran.stdout.split_whitespace() {
                let _ = run_limited(&mut docker(&["network", "rm", id]), limit);
            }
        }
        if let Ok(ran) = run_limited(
            &mut docker(&["images", "-aq", "--no-trunc", "--filter", &label]),
            limit,
        ) {
            let mut ids: Vec<&str> = ran.stdout.split_whitespace().collect();
            ids.sort();
            ids.dedup();
            if !ids.is_empty() {
                let mut args = vec!["rmi", "-f"];
                args.extend(ids);
                let _ = run_limited(&mut docker(&args), limit);
            }
        }
    }

    /// On a failing test: what the project looks like, printed into the test's captured output.
    fn dump(&self) {
        eprintln!(
            "==== {}: state of compose project {} ====",
            self.test, self.project
        );
        for svc in &self.services {
            match self.try_container(svc) {
                Ok(c) => eprintln!(
                    "-- {svc}: {} status={} exit={} health={} started_at={}\n{}",
                    c.id, c.status, c.exit_code, c.health, c.started_at, c.logs
                ),
                Err(e) => eprintln!("-- {svc}: {e}"),
            }
        }
        eprintln!(
            "HEAD {:?} deployed {:?} rejected {:?}",
            self.state_ref("HEAD"),
            self.deployed(),
            self.rejected()
        );
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if !self.up {
            return;
        }
        if thread::panicking() {
            self.dump();
        }
        let mut down = self.compose_cmd(&[
            "down",
            "-t",
            "0",
            "-v",
            "--rmi",
            "local",
            "--remove-orphans",
        ]);
        let _ = run_limited(&mut down, Duration::from_secs(120));
        // Containers compose no longer knows, and the images older builds left dangling.
        self.remove_project_leftovers();
    }
}

// =============================================================================================
// The tests
// =============================================================================================

/// Two services bind-mounting different directories and one mounting nothing of the checkout.
fn web_bot_idle() -> Vec<(&'static str, String)> {
    let compose = format!(
        "services:\n{}{}{}",
        svc(
            "web",
            &format!(
                "    volumes:\n      - ./web:/app\n{}",
                sh("cat /app/msg.txt")
            )
        ),
        svc(
            "bot",
            &format!(
                "    volumes:\n      - ./bot:/app\n{}",
                sh("cat /app/msg.txt")
            )
        ),
        svc("idle", &sh("echo idle started")),
    );
    vec![
        ("docker-compose.yml", compose),
        ("web/msg.txt", "web v1\n".into()),
        ("bot/msg.txt", "bot v1\n".into()),
        ("README.md", "docs v1\n".into()),
    ]
}

/// Without `--services` or rules, the compose project's bind mounts decide: a push changing only
/// `web/` restarts web (same container, new StartedAt, new content) and nothing else; one
/// changing `bot/` restarts bot only; one changing a path no service mounts restarts nothing. The
/// service that mounts nothing of the checkout is never restarted.
#[test]
fn compose_bind_mounts_decide_which_service_restarts() {
    const TEST: &str = "compose_bind_mounts_decide_which_service_restarts";
    require_docker!(TEST);
    let t = Fixture::new(
        TEST,
        "map",
        &web_bot_idle(),
        &[
            ("web", "web v1"),
            ("bot", "bot v1"),
            ("idle", "idle started"),
        ],
    );
    let (web0, bot0, idle0) = (t.container("web"), t.container("bot"), t.container("idle"));

    // web/ only.
    let tip = t.push(&[("web/msg.txt", "web v2\n")], "web v2");
    let ran = t.pullstart("run", &[]);
    let summary = t.assert_updated(&ran, &tip);
    assert_eq!(acted(&summary, "restarted"), ["web"], "{summary}");
    let web1 = t.assert_restarted(&web0, "web", "web v2");
    t.assert_untouched(&bot0, "bot");
    t.assert_untouched(&idle0, "idle");

    // bot/ only, reported as JSON.
    let tip = t.push(&[("bot/msg.txt", "bot v2\n")], "bot v2");
    let ran = t.pullstart("run", &["--output", "json"]);
    t.assert_exit(&ran, 0);
    let json: Value = serde_json::from_str(ran.stdout.trim())
        .unwrap_or_else(|e| panic!("{TEST}: not one JSON object: {e}\n{}", ran.show()));
    assert_eq!(json["result"], "updated", "{}", ran.show());
    assert_eq!(
        json["services"],
        serde_json::json!(["bot"]),
        "{}",
        ran.show()
    );
    assert_eq!(json["deployed"], tip.as_str(), "{}", ran.show());
    let bot1 = t.assert_restarted(&bot0, "bot", "bot v2");
    t.assert_untouched(&web1, "web");
    t.assert_untouched(&idle0, "idle");

    // A path nobody mounts: the update is applied, nothing restarts, and the summary says so.
    let tip = t.push(&[("README.md", "docs v2\n")], "docs");
    let ran = t.pullstart("run", &[]);
    let summary = t.assert_updated(&ran, &tip);
    assert!(
        summary.contains("restarted: nothing"),
        "{TEST}: the summary must say that nothing restarted\n{}",
        ran.show()
    );
    assert_eq!(t.read_checkout("README.md"), "docs v2\n");
    t.assert_untouched(&web1, "web");
    t.assert_untouched(&bot1, "bot");
    t.assert_untouched(&idle0, "idle");
}

/// A push that changes docker-compose.yml (a new environment variable for web) recreates web:
/// a new container with the variable in `Config.Env`; the summary says `recreated:`. bot, whose
/// definition did not change, keeps its container.
#[test]
fn compose_file_change_recreates_with_the_new_definition() {
    const TEST: &str = "compose_file_change_recreates_with_the_new_definition";
    require_docker!(TEST);
    let web = |env: &str| {
        svc(
            "web",
            &format!(
                "{env}    volumes:\n      - ./web:/app\n{}",
                sh("echo greeting=$${GREETING:-none}; cat /app/msg.txt")
            ),
        )
    };
    let bot = svc(
        "bot",
        &format!(
            "    volumes:\n      - ./bot:/app\n{}",
            sh("cat /app/msg.txt")
        ),
    );
    let mut files = web_bot_idle();
    files[0].1 = format!("services:\n{}{bot}", web(""));
    let t = Fixture::new(
        TEST,
        "recreate",
        &files,
        &[("web", "greeting=none"), ("bot", "bot v1")],
    );
    let (web0, bot0) = (t.container("web"), t.container("bot"));
    assert!(!web0.env.iter().any(|e| e.starts_with("GREETING=")));

    let compose = format!(
        "services:\n{}{bot}",
        web("    environment:\n      GREETING: hello-v2\n")
    );
    let tip = t.push(&[("docker-compose.yml", &compose)], "greet");
    let ran = t.pullstart("run", &[]);
    let summary = t.assert_updated(&ran, &tip);
    assert!(
        acted(&summary, "recreated").contains(&"web".to_string()),
        "{TEST}: the summary must say web was recreated\n{}",
        ran.show()
    );
    assert!(acted(&summary, "restarted").is_empty(), "{summary}");
    let web1 = t.assert_recreated(&web0, "web", "greeting=hello-v2");
    assert!(
        web1.env.iter().any(|e| e == "GREETING=hello-v2"),
        "{TEST}: the new container lacks GREETING=hello-v2: {:?}",
        web1.env
    );
    assert!(
        docker(&["inspect", &web0.id])
            .output()
            .is_ok_and(|o| !o.status.success()),
        "{TEST}: the old web container still exists"
    );
    // Compose recreates only what changed: bot's definition is the same, so is its container.
    t.assert_untouched(&bot0, "bot");
}

/// A service with `env_file: web.env`: a push changing web.env recreates it (a new container
/// with the new value); bot, which does not use the file, is untouched.
#[test]
fn env_file_change_recreates_its_service() {
    const TEST: &str = "env_file_change_recreates_its_service";
    require_docker!(TEST);
    let mut files = web_bot_idle();
    files[0].1 = format!(
        "services:\n{}{}",
        svc(
            "web",
            &format!(
                "    env_file: web.env\n    volumes:\n      - ./web:/app\n{}",
                sh("echo greeting=$${GREETING:-none}")
            )
        ),
        svc(
            "bot",
            &format!(
                "    volumes:\n      - ./bot:/app\n{}",
                sh("cat /app/msg.txt")
            )
        ),
    );
    files.push(("web.env", "GREETING=env-v1\n".into()));
    let t = Fixture::new(
        TEST,
        "envfile",
        &files,
        &[("web", "greeting=env-v1"), ("bot", "bot v1")],
    );
    let (web0, bot0) = (t.container("web"), t.container("bot"));

    let tip = t.push(&[("web.env", "GREETING=env-v2\n")], "env v2");
    let ran = t.pullstart("run", &[]);
    let summary = t.assert_updated(&ran, &tip);
    assert_eq!(acted(&summary, "recreated"), ["web"], "{}", ran.show());
    assert!(acted(&summary, "restarted").is_empty(), "{summary}");
    let web1 = t.assert_recreated(&web0, "web", "greeting=env-v2");
    assert!(
        web1.env.iter().any(|e| e == "GREETING=env-v2"),
        "{TEST}: the new container lacks GREETING=env-v2: {:?}",
        web1.env
    );
    assert_eq!(web1.count("greeting=env-v1"), 0);
    t.assert_untouched(&bot0, "bot");
}

/// A built service (`build: ./worker`, a Dockerfile that COPYs requirements.txt) that
/// bind-mounts ./worker/src. A change of worker/requirements.txt with `--rebuild-policy stop`:
/// exit 8, nothing touched, the message names the file and `--allow-rebuild`; then with
/// `--allow-rebuild`: a new image and a new container printing the new requirements. A change in
/// the mounted src/ only restarts; a Dockerfile change rebuilds under the default policy.
#[test]
fn dependency_change_rebuilds_and_the_stop_policy_waits_for_permission() {
    const TEST: &str = "dependency_change_rebuilds_and_the_stop_policy_waits_for_permission";
    require_docker!(TEST);
    let dockerfile = |step: &str| {
        format!(
            "FROM {}\nCOPY requirements.txt /req.txt\nRUN echo {step} > /built.txt\n",
            image()
        )
    };
    let compose = format!(
        "services:\n{}{}",
        built_svc(
            "worker",
            "./worker",
            &format!(
                "    volumes:\n      - ./worker/src:/app/src\n{}",
                sh("cat /req.txt /built.txt /app/src/msg.txt")
            )
        ),
        svc(
            "web",
            &format!(
                "    volumes:\n      - ./web:/app\n{}",
                sh("cat /app/msg.txt")
            )
        ),
    );
    let files = vec![
        ("docker-compose.yml", compose),
        ("worker/Dockerfile", dockerfile("step-v1")),
        ("worker/requirements.txt", "dep==1\n".into()),
        ("worker/src/msg.txt", "worker v1\n".into()),
        ("web/msg.txt", "web v1\n".into()),
    ];
    let t = Fixture::new(
        TEST,
        "rebuild",
        &files,
        &[("worker", "worker v1"), ("web", "web v1")],
    );
    let (worker0, web0) = (t.container("worker"), t.container("web"));
    assert_eq!(worker0.count("dep==1"), 1, "{}", worker0.logs);
    let image0 = t.built_image("worker");
    assert_eq!(worker0.image, image0);
    let images0 = t.project_images();
    let old = t.head();

    // The stop policy: exit 8 (check too), nothing touched.
    let tip = t.push(&[("worker/requirements.txt", "dep==2\n")], "dep 2");
    let ran = t.pullstart("check", &["--rebuild-policy", "stop"]);
    t.assert_exit(&ran, 8);
    let ran = t.pullstart("run", &["--rebuild-policy", "stop"]);
    let line = t.assert_failed(&ran, 8);
    for word in ["worker/requirements.txt", "--allow-rebuild", "worker"] {
        assert!(
            line.contains(word),
            "{TEST}: the message lacks `{word}`: {line}"
        );
    }
    assert_eq!(t.head(), old, "{TEST}: HEAD moved although the run stopped");
    assert_eq!(t.deployed().as_deref(), Some(old.as_str()));
    assert_eq!(t.read_checkout("worker/requirements.txt"), "dep==1\n");
    assert_eq!(t.status(), "");
    assert_eq!(
        t.built_image("worker"),
        image0,
        "{TEST}: an image was built"
    );
    assert_eq!(t.project_images(), images0, "{TEST}: an image was built");
    t.assert_untouched(&worker0, "worker");
    t.assert_untouched(&web0, "web");

    // The operator's permission: rebuilt and recreated.
    let ran = t.pullstart("run", &["--rebuild-policy", "stop", "--allow-rebuild"]);
    let summary = t.assert_updated(&ran, &tip);
    assert_eq!(acted(&summary, "rebuilt"), ["worker"], "{}", ran.show());
    assert!(acted(&summary, "restarted").is_empty(), "{summary}");
    let worker1 = t.assert_recreated(&worker0, "worker", "dep==2");
    let image1 = t.built_image("worker");
    assert_ne!(image1, image0, "{TEST}: no new image was built");
    assert_eq!(
        worker1.image, image1,
        "{TEST}: the container does not run the new image"
    );
    assert_eq!(worker1.count("worker v1"), 1, "{}", worker1.logs);
    t.assert_untouched(&web0, "web");

    // Code in the mounted src/ only: a restart, same container and image.
    let tip = t.push(&[("worker/src/msg.txt", "worker v2\n")], "worker v2");
    let ran = t.pullstart("run", &["--rebuild-policy", "stop"]);
    let summary = t.assert_updated(&ran, &tip);
    assert_eq!(acted(&summary, "restarted"), ["worker"], "{}", ran.show());
    let worker2 = t.assert_restarted(&worker1, "worker", "worker v2");
    assert_eq!(worker2.image, image1);
    assert_eq!(
        t.built_image("worker"),
        image1,
        "{TEST}: a code change rebuilt"
    );
    t.assert_untouched(&web0, "web");

    // A Dockerfile change under the default policy: check names the rebuild without acting,
    // then the run rebuilds.
    let tip = t.push(&[("worker/Dockerfile", &dockerfile("step-v2"))], "step v2");
    let ran = t.pullstart("check", &[]);
    t.assert_exit(&ran, 0);
    assert!(
        ran.stdout
            .lines()
            .any(|l| l.starts_with("would rebuild worker") && l.contains("worker/Dockerfile")),
        "{TEST}: check must print the rebuild of worker\n{}",
        ran.show()
    );
    assert_eq!(
        t.built_image("worker"),
        image1,
        "{TEST}: check built an image"
    );
    t.assert_untouched(&worker2, "worker");
    let ran = t.pullstart("run", &[]);
    let summary = t.assert_updated(&ran, &tip);
    assert_eq!(acted(&summary, "rebuilt"), ["worker"], "{}", ran.show());
    let worker3 = t.assert_recreated(&worker2, "worker", "step-v2");
    assert_ne!(
        worker3.image, image1,
        "{TEST}: no new image after the Dockerfile change"
    );
    assert_eq!(worker3.image, t.built_image("worker"));
    t.assert_untouched(&web0, "web");
}

/// `./config/app.ini:/etc/app.ini`: git (and pullstart) replace a file by rename, so the container
/// keeps the old inode until it restarts. A push changing config/app.ini restarts the service and
/// its log shows the new content, with path rules that do not name the file as well as with the
/// mapping derived from compose.
#[test]
fn single_file_bind_mount_restarts_even_without_a_rule() {
    const TEST: &str = "single_file_bind_mount_restarts_even_without_a_rule";
    require_docker!(TEST);
    let mut files = web_bot_idle();
    files[0].1 = format!(
        "services:\n{}{}",
        svc(
            "web",
            &format!(
                "    volumes:\n      - ./web:/app\n      - ./config/app.ini:/etc/app.ini\n{}",
                sh("cat /etc/app.ini")
            )
        ),
        svc(
            "bot",
            &format!(
                "    volumes:\n      - ./bot:/app\n{}",
                sh("cat /app/msg.txt")
            )
        ),
    );
    files.push(("config/app.ini", "ini v1\n".into()));
    let t = Fixture::new(
        TEST,
        "single",
        &files,
        &[("web", "ini v1"), ("bot", "bot v1")],
    );
    let (web0, bot0) = (t.container("web"), t.container("bot"));
    let rules = t.root.join("rules.yml");
    fs::write(
        &rules,
        "services:\n  web:\n    paths: [\"web/**\"]\n  bot:\n    paths: [\"bot/**\"]\n",
    )
    .unwrap();
    let rules = rules.to_str().unwrap();

    // With path rules that do not name config/app.ini.
    let tip = t.push(&[("config/app.ini", "ini v2\n")], "ini v2");
    let ran = t.pullstart("run", &["--config", rules]);
    let summary = t.assert_updated(&ran, &tip);
    assert_eq!(acted(&summary, "restarted"), ["web"], "{}", ran.show());
    let web1 = t.assert_restarted(&web0, "web", "ini v2");
    t.assert_untouched(&bot0, "bot");

    // The reason is said: check names the file as a single-file bind mount.
    let tip = t.push(&[("config/app.ini", "ini v3\n")], "ini v3");
    let ran = t.pullstart("check", &["--config", rules]);
    t.assert_exit(&ran, 0);
    assert!(
        ran.stdout
            .lines()
            .any(|l| l.starts_with("would restart web")
                && l.contains("config/app.ini")
                && l.contains("single file")),
        "{TEST}: check must say why web restarts\n{}",
        ran.show()
    );
    t.assert_untouched(&web1, "web");

    // Without rules: the mapping derived from compose says the same.
    let ran = t.pullstart("run", &[]);
    let summary = t.assert_updated(&ran, &tip);
    assert_eq!(acted(&summary, "restarted"), ["web"], "{}", ran.show());
    t.assert_restarted(&web1, "web", "ini v3");
    t.assert_untouched(&bot0, "bot");
}

/// web reads /app/mode at start and exits 3 unless it says `ok`.
fn mode_project() -> Vec<(&'static str, String)> {
    let mut files = web_bot_idle();
    files[0].1 = format!(
        "services:\n{}{}",
        svc(
            "web",
            &format!(
                "    volumes:\n      - ./web:/app\n{}",
                sh("m=$$(cat /app/mode); echo mode is $$m; test $$m = ok || exit 3")
            )
        ),
        svc(
            "bot",
            &format!(
                "    volumes:\n      - ./bot:/app\n{}",
                sh("cat /app/msg.txt")
            )
        ),
    );
    files.push(("web/mode", "ok\n".into()));
    files
}

/// A push that makes web exit 3 on start: exit 6 naming the service, `exited with code 3` and
/// its last log line; the code is updated but refs/pullstart/deployed stays; the on_failure hook
/// is told. The next run retries (and fails again); a fixing push gets exit 0.
#[test]
fn container_exiting_on_start_fails_the_run_until_a_fix_arrives() {
    const TEST: &str = "container_exiting_on_start_fails_the_run_until_a_fix_arrives";
    require_docker!(TEST);
    let t = Fixture::new(
        TEST,
        "exit3",
        &mode_project(),
        &[("web", "mode is ok"), ("bot", "bot v1")],
    );
    let (web0, bot0) = (t.container("web"), t.container("bot"));
    let old = t.head();
    let log = t.root.join("failure.log");
    let config = t.root.join("hooks.yml");
    fs::write(
        &config,
        format!(
            "hooks:\n  on_failure: \"env | grep ^PULLSTART_ >> {}\"\n",
            log.display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();

    let bad = t.push(&[("web/mode", "bad\n")], "bad mode");
    let ran = t.pullstart("run", &["--config", config]);
    let line = t.assert_failed(&ran, 6);
    for word in ["web", "exited with code 3", "mode is bad"] {
        assert!(
            line.contains(word),
            "{TEST}: the error lacks `{word}`: {line}"
        );
    }
    assert!(!line.contains("bot"), "{TEST}: bot is not at fault: {line}");
    let web1 = t.wait_for("web", "exited with code 3", |c| {
        c.status == "exited" && c.exit_code == 3
    });
    assert_eq!(web1.id, web0.id);
    assert_ne!(
        web1.started_at, web0.started_at,
        "{TEST}: web did not restart"
    );
    assert_eq!(web1.last_line(), "mode is bad");
    assert_eq!(
        t.head(),
        bad,
        "{TEST}: the code is updated although the restart failed"
    );
    assert_eq!(
        t.deployed().as_deref(),
        Some(old.as_str()),
        "{TEST}: deployed moved although the health check failed"
    );
    assert_eq!(
        t.rejected(),
        None,
        "{TEST}: nothing is rejected without --rollback"
    );
    t.assert_untouched(&bot0, "bot");
    let facts = fs::read_to_string(&log)
        .unwrap_or_else(|e| panic!("{TEST}: the on_failure hook did not run: {e}"));
    for want in [
        "PULLSTART_EXIT_CODE=6".to_string(),
        "PULLSTART_RESULT=restart_failed".to_string(),
        format!("PULLSTART_FROM={old}"),
        format!("PULLSTART_TO={bad}"),
        "PULLSTART_SERVICES=web".to_string(),
    ] {
        assert!(
            facts.lines().any(|l| l == want),
            "{TEST}: the on_failure hook was not told {want}:\n{facts}"
        );
    }
    assert!(
        facts
            .lines()
            .any(|l| l.starts_with("PULLSTART_ERROR=") && l.contains("exited with code 3")),
        "{TEST}: PULLSTART_ERROR lacks the cause:\n{facts}"
    );

    // The next run retries the restart of the same code, and fails the same way.
    let ran = t.pullstart("run", &[]);
    let line = t.assert_failed(&ran, 6);
    assert!(line.contains("exited with code 3"), "{line}");
    let web2 = t.wait_for("web", "exited again", |c| {
        c.status == "exited" && c.started_at != web1.started_at
    });
    assert_eq!(web2.count("mode is bad"), 2, "{}", web2.logs);
    assert_eq!(t.deployed().as_deref(), Some(old.as_str()));

    // A fix: exit 0, web runs again on the fixed code.
    let fix = t.push(&[("web/mode", "ok\n")], "fix mode");
    let ran = t.pullstart("run", &[]);
    let summary = t.assert_updated(&ran, &fix);
    assert_eq!(acted(&summary, "restarted"), ["web"], "{}", ran.show());
    let web3 = t.container("web");
    assert!(
        web3.running,
        "{TEST}: web does not run after the fix: {web3:?}"
    );
    assert_eq!(web3.count("mode is ok"), 2, "{}", web3.logs);
    assert_eq!(web3.last_line(), "mode is ok");
    t.assert_untouched(&bot0, "bot");
}

/// A service whose healthcheck passes only while web/health says `ok`: a push that turns it
/// unhealthy fails with 6 ("unhealthy"); deployed stays. A successful run returns only once the
/// container is healthy again.
#[test]
fn unhealthy_container_fails_the_run() {
    const TEST: &str = "unhealthy_container_fails_the_run";
    require_docker!(TEST);
    let mut files = web_bot_idle();
    files[0].1 = format!(
        "services:\n{}{}",
        svc(
            "web",
            &format!(
                "    volumes:\n      - ./web:/app\n{}    healthcheck:\n      test: [\"CMD\", \"sh\", \"-c\", \"test $$(cat /app/health) = ok\"]\n      interval: 1s\n      timeout: 2s\n      retries: 2\n",
                sh("cat /app/msg.txt")
            )
        ),
        svc(
            "bot",
            &format!("    volumes:\n      - ./bot:/app\n{}", sh("cat /app/msg.txt"))
        ),
    );
    files.push(("web/health", "ok\n".into()));
    let t = Fixture::new(
        TEST,
        "unhealthy",
        &files,
        &[("web", "web v1"), ("bot", "bot v1")],
    );
    let (web0, bot0) = (t.container("web"), t.container("bot"));
    assert_eq!(web0.health, "healthy");
    let old = t.head();

    let bad = t.push(
        &[("web/health", "sick\n"), ("web/msg.txt", "web v2\n")],
        "sick",
    );
    let ran = t.pullstart("run", &[]);
    let line = t.assert_failed(&ran, 6);
    for word in ["web", "unhealthy"] {
        assert!(
            line.contains(word),
            "{TEST}: the error lacks `{word}`: {line}"
        );
    }
    let web1 = t.container("web");
    assert_eq!(web1.id, web0.id);
    assert_ne!(
        web1.started_at, web0.started_at,
        "{TEST}: web did not restart"
    );
    assert_eq!(web1.health, "unhealthy", "{TEST}: {web1:?}");
    assert_eq!(t.head(), bad);
    assert_eq!(t.deployed().as_deref(), Some(old.as_str()));
    t.assert_untouched(&bot0, "bot");

    // The fix: the run waits until the healthcheck passes (right after it the engine says
    // healthy, not starting).
    let fix = t.push(
        &[("web/health", "ok\n"), ("web/msg.txt", "web v3\n")],
        "fix",
    );
    let ran = t.pullstart("run", &[]);
    let summary = t.assert_updated(&ran, &fix);
    assert_eq!(acted(&summary, "restarted"), ["web"], "{}", ran.show());
    let web2 = t.container("web");
    assert_ne!(web2.started_at, web1.started_at);
    assert_eq!(
        web2.health, "healthy",
        "{TEST}: pullstart returned before web was healthy: {web2:?}"
    );
    assert_eq!(web2.count("web v3"), 1);
    t.assert_untouched(&bot0, "bot");
}

/// `--rollback`: the bad push fails its health check, the checkout goes back to the deployed
/// commit (HEAD, bytes, clean status), web runs the old code again, the bad tip is recorded in
/// refs/pullstart/rejected; the next run skips it (exit 6, "skipped") without touching anything;
/// a fixing push deploys.
#[test]
fn rollback_restores_the_deployed_commit_and_skips_the_bad_tip() {
    const TEST: &str = "rollback_restores_the_deployed_commit_and_skips_the_bad_tip";
    require_docker!(TEST);
    let t = Fixture::new(
        TEST,
        "rollback",
        &mode_project(),
        &[("web", "mode is ok"), ("bot", "bot v1")],
    );
    let (web0, bot0) = (t.container("web"), t.container("bot"));
    let old = t.head();

    let bad = t.push(
        &[("web/mode", "bad\n"), ("web/new-file.txt", "new\n")],
        "bad mode",
    );
    let ran = t.pullstart("run", &["--rollback"]);
    let line = t.assert_failed(&ran, 6);
    for word in ["web", "exited with code 3", "rolled back"] {
        assert!(
            line.contains(word),
            "{TEST}: the error lacks `{word}`: {line}"
        );
    }
    assert_eq!(
        t.head(),
        old,
        "{TEST}: HEAD is not back at the deployed commit"
    );
    assert_eq!(t.deployed().as_deref(), Some(old.as_str()));
    assert_eq!(t.rejected().as_deref(), Some(bad.as_str()));
    assert_eq!(
        t.status(),
        "",
        "{TEST}: the checkout is not clean after the rollback"
    );
    assert_eq!(t.git(&t.checkout, &["diff", "--stat", &old]), "");
    assert_eq!(t.read_checkout("web/mode"), "ok\n");
    assert!(
        !t.checkout.join("web/new-file.txt").exists(),
        "{TEST}: a file the bad commit added is still there"
    );
    // web started on the bad code (exited 3), then again on the old code, and runs.
    let web1 = t.wait_for("web", "the old code running again", |c| {
        c.running && c.count("mode is ok") == 2
    });
    assert_eq!(web1.id, web0.id);
    assert_eq!(web1.count("mode is bad"), 1, "{}", web1.logs);
    assert_eq!(web1.last_line(), "mode is ok");
    t.assert_untouched(&bot0, "bot");

    // The remote still points at the bad tip: skipped, nothing touched.
    let ran = t.pullstart("run", &["--rollback"]);
    let line = t.assert_failed(&ran, 6);
    assert!(line.contains("skipped"), "{TEST}: {line}");
    assert_eq!(t.head(), old);
    assert_eq!(t.deployed().as_deref(), Some(old.as_str()));
    t.assert_untouched(&web1, "web");
    t.assert_untouched(&bot0, "bot");

    // The remote moves on with a fix: deployed.
    let fix = t.push(
        &[("web/mode", "ok\n"), ("web/msg.txt", "fixed\n")],
        "fix mode",
    );
    let ran = t.pullstart("run", &["--rollback"]);
    let summary = t.assert_updated(&ran, &fix);
    assert_eq!(acted(&summary, "restarted"), ["web"], "{}", ran.show());
    let web2 = t.assert_restarted(&web1, "web", "mode is ok");
    assert!(web2.running);
    assert_eq!(t.read_checkout("web/new-file.txt"), "new\n");
    t.assert_untouched(&bot0, "bot");
}

/// Hooks from a config file outside the checkout run with the run's facts: `before` before the
/// restart (it sees web's old StartedAt), `after_success` after it. The same hooks from a config
/// file inside the checkout (directly, or through a symlink outside) are refused with exit 2 and
/// nothing is touched.
#[test]
fn hooks_run_from_a_host_config_and_are_refused_from_the_checkout() {
    const TEST: &str = "hooks_run_from_a_host_config_and_are_refused_from_the_checkout";
    require_docker!(TEST);
    let mut files = web_bot_idle();
    files.truncate(3); // no idle
    files[0].1 = format!(
        "services:\n{}{}",
        svc(
            "web",
            &format!(
                "    volumes:\n      - ./web:/app\n{}",
                sh("cat /app/msg.txt")
            )
        ),
        svc(
            "bot",
            &format!(
                "    volumes:\n      - ./bot:/app\n{}",
                sh("cat /app/msg.txt")
            )
        ),
    );
    let t = Fixture::new(
        TEST,
        "hooks",
        &files,
        &[("web", "web v1"), ("bot", "bot v1")],
    );
    let (web0, bot0) = (t.container("web"), t.container("bot"));
    let hooks = |log: &Path| {
        format!(
            "hooks:\n  before: \"docker inspect -f 'before {{{{.State.StartedAt}}}}' {id} >> {log}\"\n  after_success: \"env | grep ^PULLSTART_ >> {log}\"\n",
            id = web0.id,
            log = log.display()
        )
    };

    // Outside the checkout: both hooks run.
    let log = t.root.join("hooks.log");
    let config = t.root.join("pullstart.yml");
    fs::write(&config, hooks(&log)).unwrap();
    let old = t.head();
    let tip = t.push(&[("web/msg.txt", "web v2\n")], "web v2");
    let ran = t.pullstart("run", &["--config", config.to_str().unwrap()]);
    let summary = t.assert_updated(&ran, &tip);
    assert_eq!(acted(&summary, "restarted"), ["web"], "{}", ran.show());
    let web1 = t.assert_restarted(&web0, "web", "web v2");
    t.assert_untouched(&bot0, "bot");
    let text = fs::read_to_string(&log)
        .unwrap_or_else(|e| panic!("{TEST}: no hook wrote {}: {e}", log.display()));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(format!("before {}", web0.started_at).as_str()),
        "{TEST}: the before hook must run first, before web restarts:\n{text}"
    );
    for want in [
        format!("PULLSTART_FROM={old}"),
        format!("PULLSTART_TO={tip}"),
        format!("PULLSTART_DEPLOYED={tip}"),
        "PULLSTART_SERVICES=web".to_string(),
        "PULLSTART_RESULT=updated".to_string(),
        "PULLSTART_BRANCH=main".to_string(),
        "PULLSTART_EXIT_CODE=0".to_string(),
    ] {
        assert!(
            lines.iter().any(|l| *l == want),
            "{TEST}: the after_success hook was not told {want}:\n{text}"
        );
    }
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("before ")).count(),
        1,
        "{TEST}: before ran more than once:\n{text}"
    );

    // Inside the checkout: a committed config with hooks. Refused, nothing touched.
    let inside_log = t.root.join("inside.log");
    let pushed = t.push(&[("ops/pullstart.yml", &hooks(&inside_log))], "ops config");
    // Bring the config into the checkout first (a normal run; the file is new, nothing else).
    let ran = t.pullstart("run", &[]);
    t.assert_updated(&ran, &pushed);
    // The new file is under no mount: web did not restart.
    t.assert_untouched(&web1, "web");
    let deployed = t.deployed();
    let head = t.head();
    t.push(&[("web/msg.txt", "web v3\n")], "web v3");
    let inside = t.checkout.join("ops/pullstart.yml");
    let link = t.root.join("link.yml");
    std::os::unix::fs::symlink(&inside, &link).unwrap();
    for config in [inside.to_str().unwrap(), link.to_str().unwrap()] {
        let ran = t.pullstart("run", &["--config", config]);
        let line = t.assert_failed(&ran, 2);
        assert!(
            line.contains("inside the checkout") && line.contains("hooks"),
            "{TEST}: the refusal must say why: {line}"
        );
        assert_eq!(t.head(), head, "{TEST}: HEAD moved ({config})");
        assert_eq!(t.deployed(), deployed, "{TEST}: deployed moved ({config})");
        assert_eq!(t.read_checkout("web/msg.txt"), "web v2\n");
        assert!(!inside_log.exists(), "{TEST}: a hook ran from {config}");
        t.assert_untouched(&web1, "web");
        t.assert_untouched(&bot0, "bot");
    }
}

/// Services that share a bind mount, as a project whose operator never started one of them
/// (an admin or one-off service, here removed with `compose rm`) and stopped another. A push
/// restarts the running one and the stopped one (as `docker compose restart` does), leaves the
/// one without a container alone, and succeeds; the next run is quiet.
#[test]
fn a_service_without_a_container_is_left_alone_and_a_stopped_one_restarts() {
    const TEST: &str = "a_service_without_a_container_is_left_alone_and_a_stopped_one_restarts";
    require_docker!(TEST);
    let mounted = |name: &str| {
        svc(
            name,
            &format!(
                "    volumes:\n      - ./app:/app\n{}",
                sh("cat /app/msg.txt")
            ),
        )
    };
    let files = vec![
        (
            "docker-compose.yml",
            format!(
                "services:\n{}{}{}",
                mounted("web"),
                mounted("worker"),
                mounted("tools")
            ),
        ),
        ("app/msg.txt", "v1\n".to_string()),
    ];
    let t = Fixture::new(
        TEST,
        "noctr",
        &files,
        &[("web", "v1"), ("worker", "v1"), ("tools", "v1")],
    );
    must(
        &mut t.compose_cmd(&["rm", "-s", "-f", "tools"]),
        Duration::from_secs(60),
    );
    must(
        &mut t.compose_cmd(&["stop", "-t", "0", "worker"]),
        Duration::from_secs(60),
    );
    let (web0, worker0) = (t.container("web"), t.container("worker"));
    assert!(!worker0.running, "{TEST}: worker should be stopped");

    let tip = t.push(&[("app/msg.txt", "v2\n")], "v2");
    let ran = t.pullstart("run", &[]);
    let summary = t.assert_updated(&ran, &tip);
    assert_eq!(acted(&summary, "restarted"), ["web", "worker"], "{summary}");
    assert!(
        summary.ends_with("; tools: no container, left alone"),
        "{TEST}: {summary}"
    );
    t.assert_restarted(&web0, "web", "v2");
    t.assert_restarted(&worker0, "worker", "v2");
    assert!(
        t.container_ids("tools").is_empty(),
        "{TEST}: tools must not get a container"
    );

    let ran = t.pullstart("run", &[]);
    t.assert_exit(&ran, 0);
    assert_eq!(
        ran.stdout,
        "",
        "{TEST}: the next run is quiet\n{}",
        ran.show()
    );
}

/// Cron's PATH often lacks the directory `docker` lives in, and the operator names the compose
/// command by its full path (podman compose users have no `docker` at all). The health wait then
/// reads compose's own view (`ps --format json`): a container that exits on start still fails
/// the run with 6, naming its state and last log line; a fix passes, with no warning.
#[test]
fn the_health_wait_reads_compose_when_docker_is_not_on_path() {
    const TEST: &str = "the_health_wait_reads_compose_when_docker_is_not_on_path";
    require_docker!(TEST);
    let docker = which_docker();
    let t = Fixture::new(
        TEST,
        "nopath",
        &mode_project(),
        &[("web", "mode is ok"), ("bot", "bot v1")],
    );
    let path_without_docker = t.path_without_docker();
    let path_without_docker = path_without_docker.as_str();
    let compose = format!("{} compose", docker.display());
    let (web0, bot0) = (t.container("web"), t.container("bot"));

    t.push(&[("web/mode", "bad\n")], "bad mode");
    let ran = t.pullstart_with_path(path_without_docker, "run", &["--compose-command", &compose]);
    let line = t.assert_failed(&ran, 6);
    for word in ["service web", "exited with code 3", "mode is bad"] {
        assert!(
            line.contains(word),
            "{TEST}: the error lacks `{word}`: {line}"
        );
    }
    let web1 = t.wait_for("web", "exited with code 3", |c| {
        c.status == "exited" && c.exit_code == 3
    });
    assert_eq!(web1.id, web0.id);

    let fix = t.push(&[("web/mode", "ok\n")], "fix mode");
    let ran = t.pullstart_with_path(path_without_docker, "run", &["--compose-command", &compose]);
    let summary = t.assert_updated(&ran, &fix);
    // assert_updated also holds that stderr is empty: compose's view needs no warning.
    assert_eq!(acted(&summary, "restarted"), ["web"], "{}", ran.show());
    assert!(t.container("web").running, "{TEST}: web does not run");
    t.assert_untouched(&bot0, "bot");
}

/// The `docker` the tests use, by its full path.
fn which_docker() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("docker"))
        .find(|candidate| candidate.is_file());
    found.expect("docker is on PATH when the engine is ready")
}

/// `--allowed-signers`: a push signed by a listed SSH key restarts web; an attacker's unsigned
/// push on top exits 9 and leaves every container as it was (same id, same StartedAt) and the
/// checkout on the signed commit.
#[test]
fn an_unsigned_push_touches_no_container_when_signatures_are_verified() {
    const TEST: &str = "an_unsigned_push_touches_no_container_when_signatures_are_verified";
    require_docker!(TEST);
    let t = Fixture::new(
        TEST,
        "signed",
        &web_bot_idle(),
        &[("web", "web v1"), ("bot", "bot v1")],
    );
    let key = t.root.join("signing-key");
    must(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "dev", "-f"])
            .arg(&key),
        Duration::from_secs(30),
    );
    let public = fs::read_to_string(key.with_extension("pub")).unwrap();
    let signers = t.root.join("allowed_signers");
    fs::write(&signers, format!("dev@example.com {public}")).unwrap();
    let signers = signers.to_str().unwrap();
    for (name, value) in [
        ("gpg.format", "ssh"),
        ("user.signingKey", key.to_str().unwrap()),
        ("commit.gpgSign", "true"),
    ] {
        t.git(&t.dev, &["config", name, value]);
    }
    let (web0, bot0) = (t.container("web"), t.container("bot"));

    let signed = t.push(&[("web/msg.txt", "web v2\n")], "signed");
    let ran = t.pullstart("run", &["--allowed-signers", signers]);
    t.assert_updated(&ran, &signed);
    let web1 = t.assert_restarted(&web0, "web", "web v2");

    t.git(&t.dev, &["config", "commit.gpgSign", "false"]);
    let unsigned = t.push(
        &[("web/msg.txt", "web v3\n"), ("bot/msg.txt", "bot v3\n")],
        "unsigned",
    );
    let ran = t.pullstart("run", &["--allowed-signers", signers]);
    let line = t.assert_failed(&ran, 9);
    assert!(
        line.contains(&format!("untrusted commit {unsigned}")) && line.contains("is unsigned"),
        "{TEST}: {line}"
    );
    t.assert_untouched(&web1, "web");
    t.assert_untouched(&bot0, "bot");
    assert_eq!(t.head(), signed, "{TEST}: HEAD moved");
    assert_eq!(t.read_checkout("web/msg.txt"), "web v2\n");
    assert_eq!(t.status(), "", "{TEST}: the checkout is not clean");
}
