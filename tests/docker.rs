//! End-to-end tests against a real Docker Engine: the `pullstart` binary fast-forwards a real git
//! checkout and restarts real containers through the real Compose CLI (v2 `docker compose` and
//! v1 `docker-compose`). No stand-ins: whether a container restarted is read from the engine
//! (`State.StartedAt`), and which code it started with from its logs (every service prints the
//! bind-mounted `/app/msg.txt` when it starts).
//!
//! The layout is the seed's: the checkout is the compose project directory, `docker-compose.yml`
//! is committed, and the bind mount of the checkout at `/app` comes from a host-local
//! `docker-compose.override.yml` that is listed in `.gitignore` and never committed (see
//! `contrib/docker-compose.override.example.yml`).
//!
//! Each test has its own compose project name (`ps-<test>-<pid>`) and its own temporary
//! directory, so the tests run in parallel; the project is removed (`down -t 0 -v`) when the
//! fixture is dropped, also when the test panics.
//!
//! Needs a running engine, the Compose v2 plugin, Compose v1 (for one test) and the image
//! `pullstart-test/busybox:1` (or `$PULLSTART_TEST_IMAGE`): `contrib/docker-setup.sh` sets all of
//! that up. Where they are missing, each test prints a loud `SKIPPED (no Docker engine)` line on
//! stderr and returns — unless the environment variable `CI` is set (to anything non-empty), in
//! which case the test fails.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

mod docker_support;
use docker_support::*;

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
    ($test:expr, v1) => {
        if !docker_ready($test, true) {
            return;
        }
    };
}

// =============================================================================================
// The fixture: a remote, a dev clone, the managed checkout and a running compose project
// =============================================================================================

/// The line `/app/msg.txt` holds at generation `gen` of project `project`; every service prints
/// it when it starts.
fn message(project: &str, gen: u32) -> String {
    format!("message of {project} generation {gen}")
}

/// One service definition, running the test image: it prints the shared message file at start,
/// then sleeps. `init: true` forwards SIGTERM, so a restart takes well under a second.
fn service_yaml(name: &str, with_mount: bool) -> String {
    let mut s = format!(
        "  {name}:\n    image: {img}\n    pull_policy: never\n    network_mode: none\n    init: true\n",
        img = image()
    );
    if with_mount {
        s.push_str("    volumes:\n      - .:/app\n");
    }
    s.push_str("    command: [\"sh\", \"-c\", \"cat /app/msg.txt; exec sleep 1000000\"]\n");
    s
}

/// The committed `docker-compose.yml`: the services, without any bind mount (that is host-local).
fn compose_yaml(services: &[&str]) -> String {
    let mut s = String::from("services:\n");
    for svc in services {
        s.push_str(&service_yaml(svc, false));
    }
    s
}

/// The host-local, ignored `docker-compose.override.yml`: bind-mounts the checkout at `/app` in
/// every service, like `contrib/docker-compose.override.example.yml`.
fn override_yaml(services: &[&str]) -> String {
    let mut s = String::from(
        "# host-local, not in git (see .gitignore): the checkout is the code the services run\n\
         services:\n",
    );
    for svc in services {
        let mode = if *svc == "worker" { ":ro" } else { "" };
        s.push_str(&format!(
            "  {svc}:\n    volumes:\n      - .:/app{mode}\n    init: true\n"
        ));
    }
    s
}

struct Setup {
    /// Short name for the compose project: `ps-<short>-<pid>`.
    short: &'static str,
    /// Use Compose v1 (`docker-compose`) instead of v2 (`docker compose`).
    v1: bool,
    services: Vec<&'static str>,
    /// Content of the ignored `docker-compose.override.yml` (default: [`override_yaml`]).
    override_file: Option<String>,
    /// More committed files (written after docker-compose.yml, so they may replace it).
    extra_files: Vec<(&'static str, String)>,
    /// The `-f` files the project is brought up (and taken down) with; empty: compose's default.
    compose_files: Vec<&'static str>,
}

impl Setup {
    fn new(short: &'static str) -> Self {
        Setup {
            short,
            v1: false,
            services: vec!["web", "worker", "bot"],
            override_file: None,
            extra_files: Vec::new(),
            compose_files: Vec::new(),
        }
    }
}

/// One container as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Container {
    id: String,
    running: bool,
    started_at: String,
    /// Everything it printed so far (over all its starts).
    logs: String,
}

type Snapshot = BTreeMap<String, Container>;

struct Fixture {
    test: String,
    project: String,
    compose: Vec<String>,
    compose_files: Vec<String>,
    services: Vec<String>,
    /// The current generation of `msg.txt` on the remote.
    gen: u32,
    /// Whether `up` was attempted, i.e. whether Drop has to take the project down.
    up: bool,
    root: PathBuf,
    home: PathBuf,
    dev: PathBuf,
    checkout: PathBuf,
    _tmp: TempDir,
}

impl Fixture {
    /// Builds the repositories (first commit: the compose file, `.gitignore`, `msg.txt` at
    /// generation 1), writes the ignored override into the checkout, brings the project up and
    /// waits until every service runs and has printed generation 1.
    fn new(test: &str, setup: Setup) -> Fixture {
        let tmp = tempfile::Builder::new()
            .prefix("pullstart-docker-")
            .tempdir()
            .unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let home = root.join("home");
        fs::create_dir_all(&home).unwrap();
        let compose: Vec<String> = if setup.v1 {
            vec!["docker-compose".into()]
        } else {
            vec!["docker".into(), "compose".into()]
        };
        let mut t = Fixture {
            test: test.to_string(),
            project: format!("ps-{}-{}", setup.short, std::process::id()),
            compose,
            compose_files: setup.compose_files.iter().map(|s| s.to_string()).collect(),
            services: setup.services.iter().map(|s| s.to_string()).collect(),
            gen: 1,
            up: false,
            dev: root.join("dev"),
            checkout: root.join("checkout"),
            home,
            root,
            _tmp: tmp,
        };

        // The remote and the developer's repository with the first commit.
        t.git(&t.root, &["init", "-q", "--bare", "remote.git"]);
        t.git(&t.root, &["init", "-q", "dev"]);
        t.write(&t.dev, "docker-compose.yml", &compose_yaml(&setup.services));
        t.write(
            &t.dev,
            ".gitignore",
            "# host-local compose settings\ndocker-compose.override.yml\n",
        );
        t.write(&t.dev, "msg.txt", &format!("{}\n", message(&t.project, 1)));
        for (path, content) in &setup.extra_files {
            t.write(&t.dev, path, content);
        }
        t.git(&t.dev, &["add", "-A"]);
        t.git(&t.dev, &["commit", "-q", "-m", "initial"]);
        t.git(&t.dev, &["remote", "add", "origin", "../remote.git"]);
        t.git(&t.dev, &["push", "-q", "-u", "origin", "main"]);

        // The checkout pullstart manages, with the host-local override.
        t.git(&t.root, &["clone", "-q", "remote.git", "checkout"]);
        let ov = setup
            .override_file
            .unwrap_or_else(|| override_yaml(&setup.services));
        t.write(&t.checkout, "docker-compose.override.yml", &ov);
        let status = t.git(
            &t.checkout,
            &["status", "--porcelain", "--untracked-files=all"],
        );
        assert_eq!(
            status, "",
            "the override must be ignored, the checkout clean"
        );

        // Leftovers of an earlier, killed run with the same pid would confuse the lookups.
        t.remove_project_containers();
        t.up = true;
        let mut up = t.compose_cmd(&["up", "-d"]);
        must(&mut up, Duration::from_secs(120));
        t.wait_started(&t.services.clone(), 1, None);
        t
    }

    // ----- commands -----

    fn git_cmd(&self, dir: &Path, args: &[&str]) -> Command {
        let mut cmd = git_cmd(&self.home, dir, args);
        fixed_dates(&mut cmd);
        cmd
    }

    fn git(&self, dir: &Path, args: &[&str]) -> String {
        git_output(&mut self.git_cmd(dir, args))
    }

    fn write(&self, dir: &Path, path: &str, content: &str) {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    /// The compose command with this fixture's `-f` files and `-p`, in the checkout.
    fn compose_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.compose[0]);
        strip_compose_env(&mut cmd);
        cmd.args(&self.compose[1..]);
        for f in &self.compose_files {
            cmd.args(["-f", f]);
        }
        cmd.args(["-p", &self.project])
            .args(args)
            .current_dir(&self.checkout);
        cmd
    }

    /// `pullstart ARGS` with the hermetic environment, started outside the checkout (so `-C` and
    /// relative `-f` paths matter).
    fn pullstart(&self, args: &[&str]) -> Ran {
        self.pullstart_env(args, &[])
    }

    fn pullstart_env(&self, args: &[&str], env: &[(&str, &str)]) -> Ran {
        let mut cmd = Command::new(bin());
        hermetic(&mut cmd, &self.home);
        fixed_dates(&mut cmd);
        cmd.current_dir(&self.root).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_limited(&mut cmd, RUN_LIMIT).unwrap_or_else(|e| panic!("{}: {e}", self.test))
    }

    // ----- git state -----

    fn checkout_str(&self) -> &str {
        self.checkout.to_str().unwrap()
    }

    fn head(&self) -> String {
        self.git(&self.checkout, &["rev-parse", "HEAD"])
    }

    fn deployed(&self) -> Option<String> {
        let ran = run_limited(
            &mut self.git_cmd(
                &self.checkout,
                &["rev-parse", "-q", "--verify", "refs/pullstart/deployed"],
            ),
            Duration::from_secs(30),
        )
        .unwrap();
        ran.ok().then(|| ran.stdout.trim().to_string())
    }

    /// Commits and pushes `msg.txt` at the next generation; returns the new tip.
    fn push_new_message(&mut self) -> String {
        self.gen += 1;
        let msg = format!("{}\n", message(&self.project, self.gen));
        self.write(&self.dev, "msg.txt", &msg);
        self.git(
            &self.dev,
            &[
                "commit",
                "-q",
                "-a",
                "-m",
                &format!("message generation {}", self.gen),
            ],
        );
        self.git(&self.dev, &["push", "-q", "origin", "main"]);
        self.git(&self.dev, &["rev-parse", "HEAD"])
    }

    fn checkout_message(&self) -> String {
        fs::read_to_string(self.checkout.join("msg.txt")).unwrap()
    }

    // ----- the engine's view -----

    /// The id of the one container of `service` in this project (by compose's labels, which v1
    /// and v2 both set; v1 names containers `p_svc_1`, v2 `p-svc-1`).
    fn container_id(&self, service: &str) -> Result<String, String> {
        let ran = run_limited(
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
        )?;
        if !ran.ok() {
            return Err(ran.show());
        }
        let ids: Vec<&str> = ran.stdout.split_whitespace().collect();
        match ids.as_slice() {
            [id] => Ok(id.to_string()),
            _ => Err(format!(
                "expected one container for service {service}, found {ids:?}"
            )),
        }
    }

    fn container(&self, service: &str) -> Result<Container, String> {
        let id = self.container_id(service)?;
        let ran = run_limited(
            &mut docker(&[
                "inspect",
                "-f",
                "{{.State.Running}} {{.State.StartedAt}}",
                &id,
            ]),
            Duration::from_secs(30),
        )?;
        if !ran.ok() {
            return Err(ran.show());
        }
        let mut words = ran.stdout.split_whitespace();
        let running = words.next() == Some("true");
        let started_at = words.next().unwrap_or("").to_string();
        let logs = self.logs(&id)?;
        Ok(Container {
            id,
            running,
            started_at,
            logs,
        })
    }

    fn snapshot(&self) -> Snapshot {
        self.services
            .iter()
            .map(|s| {
                (
                    s.clone(),
                    self.container(s)
                        .unwrap_or_else(|e| panic!("{}: {e}", self.test)),
                )
            })
            .collect()
    }

    /// Everything the container printed, over all its starts (`docker logs` keeps the log across
    /// restarts). Lines are cleaned of the `ESC[2K` some Compose versions add.
    fn logs(&self, id: &str) -> Result<String, String> {
        let ran = run_limited(&mut docker(&["logs", id]), Duration::from_secs(30))?;
        if !ran.ok() {
            return Err(ran.show());
        }
        Ok(format!("{}{}", ran.stdout, ran.stderr).replace("\x1b[2K", ""))
    }

    /// How many times a container with log `logs` printed generation `gen` of the message, i.e.
    /// how many times it started with that code.
    fn starts_with_gen(&self, logs: &str, gen: u32) -> usize {
        let want = message(&self.project, gen);
        logs.lines().filter(|l| l.trim() == want).count()
    }

    /// Waits until every service in `services` runs, has printed generation `gen`, and — when
    /// `before` is given — has a `StartedAt` different from the one in `before`.
    fn wait_started(&self, services: &[String], gen: u32, before: Option<&Snapshot>) {
        for svc in services {
            let start = Instant::now();
            let mut last;
            loop {
                last = (|| -> Result<(), String> {
                    let c = self.container(svc)?;
                    if !c.running {
                        return Err(format!("{svc} is not running: {c:?}"));
                    }
                    if let Some(b) = before.and_then(|b| b.get(svc)) {
                        if b.started_at == c.started_at {
                            return Err(format!(
                                "{svc} did not restart: StartedAt still {}",
                                c.started_at
                            ));
                        }
                    }
                    if self.starts_with_gen(&c.logs, gen) == 0 {
                        return Err(format!(
                            "{svc} has not printed generation {gen}; its log:\n{}",
                            c.logs
                        ));
                    }
                    Ok(())
                })();
                if last.is_ok() || start.elapsed() > WAIT_LIMIT {
                    break;
                }
                thread::sleep(Duration::from_millis(100));
            }
            if let Err(e) = last {
                panic!(
                    "{}: waited {WAIT_LIMIT:?} for service {svc}: {e}",
                    self.test
                );
            }
        }
    }

    // ----- assertions -----

    /// `services` restarted exactly once since `before` (same container, new `StartedAt`,
    /// running) and started with the current generation of the message.
    fn assert_restarted(&self, before: &Snapshot, services: &[&str]) {
        let services: Vec<String> = services.iter().map(|s| s.to_string()).collect();
        self.wait_started(&services, self.gen, Some(before));
        for svc in &services {
            let c = self.container(svc).unwrap();
            assert_eq!(
                c.id, before[svc].id,
                "{}: {svc} was recreated, not restarted (a new container)",
                self.test
            );
            let n = self.starts_with_gen(&c.logs, self.gen);
            assert_eq!(
                n, 1,
                "{}: {svc} started {n} times with generation {} (expected once); its log:\n{}",
                self.test, self.gen, c.logs
            );
        }
    }

    /// `services` did not restart since `before`: same container, same `StartedAt`, still
    /// running, nothing new in the log, and — unless it already did at `before` — the log does
    /// not show the current generation (it still runs older code).
    fn assert_not_restarted(&self, before: &Snapshot, services: &[&str]) {
        let new = message(&self.project, self.gen);
        for svc in services {
            let c = self.container(svc).unwrap();
            let b = &before[*svc];
            assert_eq!(c.id, b.id, "{}: {svc} was recreated", self.test);
            assert!(
                c.running,
                "{}: {svc} is not running any more: {c:?}",
                self.test
            );
            assert_eq!(
                c.started_at, b.started_at,
                "{}: {svc} restarted although it should not have; its log:\n{}",
                self.test, c.logs
            );
            if !b.logs.lines().any(|l| l.trim() == new) {
                assert!(
                    !c.logs.lines().any(|l| l.trim() == new),
                    "{}: {svc} shows the new code although it was not restarted; its log:\n{}",
                    self.test,
                    c.logs
                );
            }
            assert_eq!(c.logs, b.logs, "{}: {svc} printed something new", self.test);
        }
    }

    /// Nothing in the project restarted since `before`.
    fn assert_nothing_restarted(&self, before: &Snapshot) {
        let all: Vec<&str> = self.services.iter().map(String::as_str).collect();
        self.assert_not_restarted(before, &all);
        assert_eq!(
            &self.snapshot(),
            before,
            "{}: a container changed",
            self.test
        );
    }

    fn assert_exit(&self, ran: &Ran, code: i32) {
        assert_eq!(
            ran.code(),
            Some(code),
            "{}: wrong exit code\n{}",
            self.test,
            ran.show()
        );
    }

    /// A run that applied the update at `tip` and restarted: exit 0; HEAD, the worktree and
    /// `refs/pullstart/deployed` at the tip; exactly `restarted` restarted (once, on the new
    /// code) and `untouched` not; one summary line on stdout, naming the restarted services when
    /// `named` (with no --services the summary may say "all services" instead).
    fn assert_applied(
        &self,
        ran: &Ran,
        before: &Snapshot,
        tip: &str,
        restarted: &[&str],
        untouched: &[&str],
        named: bool,
    ) {
        self.assert_exit(ran, 0);
        self.assert_restarted(before, restarted);
        self.assert_not_restarted(before, untouched);
        assert_eq!(
            self.head(),
            tip,
            "{}: HEAD is not the remote tip\n{}",
            self.test,
            ran.show()
        );
        assert_eq!(
            self.checkout_message().trim(),
            message(&self.project, self.gen)
        );
        assert_eq!(
            self.deployed().as_deref(),
            Some(tip),
            "{}: refs/pullstart/deployed did not move to the tip\n{}",
            self.test,
            ran.show()
        );
        assert_eq!(
            ran.stderr,
            "",
            "{}: a successful run prints nothing on stderr (cron mails any output)\n{}",
            self.test,
            ran.show()
        );
        let lines: Vec<&str> = ran.stdout.lines().collect();
        assert!(
            lines.len() == 1 && !lines[0].trim().is_empty(),
            "{}: expected exactly one summary line on stdout\n{}",
            self.test,
            ran.show()
        );
        if named {
            for svc in restarted {
                assert!(
                    lines[0]
                        .split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_'))
                        .any(|w| w == *svc),
                    "{}: the summary line does not name {svc}\n{}",
                    self.test,
                    ran.show()
                );
            }
        }
    }

    /// Exit 0 and no output at all.
    fn assert_silent(&self, ran: &Ran) {
        self.assert_exit(ran, 0);
        assert!(
            ran.stdout.is_empty() && ran.stderr.is_empty(),
            "{}: a run with nothing to do must print nothing\n{}",
            self.test,
            ran.show()
        );
    }

    /// Exit 6 with one line on stderr.
    fn assert_restart_failed(&self, ran: &Ran) {
        self.assert_exit(ran, 6);
        assert_eq!(
            ran.stderr.lines().filter(|l| !l.trim().is_empty()).count(),
            1,
            "{}: a failed restart must print exactly one line on stderr\n{}",
            self.test,
            ran.show()
        );
    }

    // ----- cleanup -----

    fn remove_project_containers(&self) {
        let label = format!("label=com.docker.compose.project={}", self.project);
        if let Ok(ran) = run_limited(
            &mut docker(&["ps", "-aq", "--filter", &label]),
            Duration::from_secs(30),
        ) {
            let ids: Vec<&str> = ran.stdout.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids);
                let _ = run_limited(&mut docker(&args), Duration::from_secs(60));
            }
        }
        if let Ok(ran) = run_limited(
            &mut docker(&["network", "ls", "-q", "--filter", &label]),
            Duration::from_secs(30),
        ) {
            for id in ran.stdout.split_whitespace() {
                let _ = run_limited(&mut docker(&["network", "rm", id]), Duration::from_secs(30));
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
            match self.container(svc) {
                Ok(c) => eprintln!(
                    "-- {svc}: {} running={} started_at={}\n{}",
                    c.id, c.running, c.started_at, c.logs
                ),
                Err(e) => eprintln!("-- {svc}: {e}"),
            }
        }
        if let Some(d) = self.deployed() {
            eprintln!("deployed: {d}");
        }
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
        // Compose first (v1 needs the files, which the TempDir still holds), then anything the
        // labels still find.
        let mut down = self.compose_cmd(&["down", "-t", "0", "-v", "--remove-orphans"]);
        let _ = run_limited(&mut down, Duration::from_secs(120));
        self.remove_project_containers();
    }
}

// =============================================================================================
// The tests
// =============================================================================================

/// After a push, `--services web,worker` restarts exactly web and worker, which then run the new
/// code; bot keeps running the old code, untouched.
#[test]
fn named_services_restart_with_the_new_code_and_others_are_untouched() {
    const TEST: &str = "named_services_restart_with_the_new_code_and_others_are_untouched";
    require_docker!(TEST);
    let mut t = Fixture::new(TEST, Setup::new("named"));
    let co = t.checkout_str().to_string();
    let p = t.project.clone();
    let before = t.snapshot();
    let tip = t.push_new_message();

    let ran = t.pullstart(&["run", "-C", &co, "--services", "web,worker", "-p", &p]);
    t.assert_applied(&ran, &before, &tip, &["web", "worker"], &["bot"], true);
}

/// Without `--services`, every service of the project (all bind-mount the checkout) restarts;
/// `run` is also the default subcommand.
#[test]
fn without_services_flag_every_service_restarts() {
    const TEST: &str = "without_services_flag_every_service_restarts";
    require_docker!(TEST);
    let mut t = Fixture::new(TEST, Setup::new("all"));
    let co = t.checkout_str().to_string();
    let p = t.project.clone();
    let before = t.snapshot();
    let tip = t.push_new_message();

    let ran = t.pullstart(&["run", "-C", &co, "-p", &p]);
    t.assert_applied(&ran, &before, &tip, &["web", "worker", "bot"], &[], false);

    let before = t.snapshot();
    let tip = t.push_new_message();
    let ran = t.pullstart(&["-C", &co, "-p", &p]);
    t.assert_applied(&ran, &before, &tip, &["web", "worker", "bot"], &[], false);
}

/// Nothing changed: exit 0, no output, no container restarts — neither on the very first run
/// (which records the deployed commit) nor on the runs after an update was applied.
#[test]
fn no_change_is_silent_and_restarts_nothing() {
    const TEST: &str = "no_change_is_silent_and_restarts_nothing";
    require_docker!(TEST);
    let mut t = Fixture::new(TEST, Setup::new("nochange"));
    let co = t.checkout_str().to_string();
    let p = t.project.clone();
    let head = t.head();
    let before = t.snapshot();

    let ran = t.pullstart(&["run", "-C", &co, "--services", "web,worker", "-p", &p]);
    t.assert_silent(&ran);
    t.assert_nothing_restarted(&before);
    assert_eq!(t.head(), head);
    assert_eq!(
        t.deployed().as_deref(),
        Some(head.as_str()),
        "the first run records HEAD as deployed"
    );
    let ran = t.pullstart(&["run", "-C", &co, "-p", &p]);
    t.assert_silent(&ran);
    t.assert_nothing_restarted(&before);

    // After an update has been applied, the next runs have nothing to do again.
    let tip = t.push_new_message();
    let ran = t.pullstart(&["run", "-C", &co, "--services", "web", "-p", &p]);
    t.assert_applied(&ran, &before, &tip, &["web"], &["worker", "bot"], true);
    let after = t.snapshot();
    for args in [
        vec!["run", "-C", &co, "--services", "web", "-p", &p],
        vec!["run", "-C", &co, "-p", &p],
    ] {
        let ran = t.pullstart(&args);
        t.assert_silent(&ran);
        t.assert_nothing_restarted(&after);
    }
    assert_eq!(t.deployed().as_deref(), Some(tip.as_str()));
}

/// An unknown service name makes the restart fail: exit 6, the code is updated (HEAD at the tip)
/// but `refs/pullstart/deployed` stays at the old commit; the next run with the right services
/// restarts them (HEAD already at the tip) and exits 0; the run after that has nothing to do.
#[test]
fn unknown_service_fails_with_6_and_the_next_run_restarts() {
    const TEST: &str = "unknown_service_fails_with_6_and_the_next_run_restarts";
    require_docker!(TEST);
    let mut t = Fixture::new(TEST, Setup::new("unknown"));
    let co = t.checkout_str().to_string();
    let p = t.project.clone();
    let old = t.head();
    let before = t.snapshot();
    let tip = t.push_new_message();

    let ran = t.pullstart(&["run", "-C", &co, "--services", "nosuch", "-p", &p]);
    t.assert_restart_failed(&ran);
    t.assert_nothing_restarted(&before);
    assert_eq!(
        t.head(),
        tip,
        "the code is updated although the restart failed"
    );
    assert_eq!(t.checkout_message().trim(), message(&p, 2));
    assert_eq!(
        t.deployed().as_deref(),
        Some(old.as_str()),
        "deployed stays at the old commit"
    );

    let ran = t.pullstart(&["run", "-C", &co, "--services", "web,worker", "-p", &p]);
    t.assert_applied(&ran, &before, &tip, &["web", "worker"], &["bot"], true);

    let after = t.snapshot();
    let ran = t.pullstart(&["run", "-C", &co, "--services", "web,worker", "-p", &p]);
    t.assert_silent(&ran);
    t.assert_nothing_restarted(&after);
}

/// The engine cannot be reached (simulated for this one run with a DOCKER_HOST socket that does
/// not exist — the real dockerd is shared with other tests and stays up): exit 6, deployed
/// unchanged; the next run with the engine back restarts every service and exits 0.
#[test]
fn unreachable_engine_fails_with_6_and_the_next_run_restarts() {
    const TEST: &str = "unreachable_engine_fails_with_6_and_the_next_run_restarts";
    require_docker!(TEST);
    let mut t = Fixture::new(TEST, Setup::new("noengine"));
    let co = t.checkout_str().to_string();
    let p = t.project.clone();
    let old = t.head();
    let before = t.snapshot();
    let tip = t.push_new_message();

    let sock = t.root.join("no-such-docker.sock");
    assert!(!sock.exists());
    let host = format!("unix://{}", sock.display());
    let ran = t.pullstart_env(&["run", "-C", &co, "-p", &p], &[("DOCKER_HOST", &host)]);
    t.assert_restart_failed(&ran);
    t.assert_nothing_restarted(&before);
    assert_eq!(
        t.head(),
        tip,
        "the code is updated although the restart failed"
    );
    assert_eq!(
        t.deployed().as_deref(),
        Some(old.as_str()),
        "deployed stays at the old commit"
    );

    let ran = t.pullstart(&["run", "-C", &co, "-p", &p]);
    t.assert_applied(&ran, &before, &tip, &["web", "worker", "bot"], &[], false);

    let after = t.snapshot();
    let ran = t.pullstart(&["run", "-C", &co, "-p", &p]);
    t.assert_silent(&ran);
    t.assert_nothing_restarted(&after);
}

/// `--compose-command docker-compose`: Compose v1 (Debian's docker-compose 1.29) restarts the
/// named service the same way, and its failures are failed restarts too.
#[test]
fn compose_v1_restarts_the_named_service() {
    const TEST: &str = "compose_v1_restarts_the_named_service";
    require_docker!(TEST, v1);
    let mut setup = Setup::new("v1");
    setup.v1 = true;
    let mut t = Fixture::new(TEST, setup);
    let co = t.checkout_str().to_string();
    let p = t.project.clone();
    let v1 = |services: &'static str| {
        vec![
            "run",
            "-C",
            co.as_str(),
            "--compose-command",
            "docker-compose",
            "--services",
            services,
            "-p",
            p.as_str(),
        ]
    };
    let before = t.snapshot();
    let tip = t.push_new_message();

    let ran = t.pullstart(&v1("worker"));
    t.assert_applied(&ran, &before, &tip, &["worker"], &["web", "bot"], true);

    // A v1 failure (unknown service) is a failed restart as well, and the retry works.
    let before = t.snapshot();
    let tip2 = t.push_new_message();
    let ran = t.pullstart(&v1("nosuch"));
    t.assert_restart_failed(&ran);
    t.assert_nothing_restarted(&before);
    assert_eq!(t.head(), tip2);
    assert_eq!(
        t.deployed().as_deref(),
        Some(tip.as_str()),
        "deployed stays where it was"
    );
    let ran = t.pullstart(&v1("web,worker"));
    t.assert_applied(&ran, &before, &tip2, &["web", "worker"], &["bot"], true);
}

/// `-f docker-compose.yml -f extra.yml -p NAME` reach compose as given (relative to the
/// checkout): the service that only extra.yml defines restarts. Without those files compose would
/// not know the service (it would load the ignored override instead), without `-p` it would act
/// on another project.
#[test]
fn compose_files_and_project_name_reach_compose() {
    const TEST: &str = "compose_files_and_project_name_reach_compose";
    require_docker!(TEST);
    let mut setup = Setup::new("files");
    setup.services = vec!["web", "worker", "extra"];
    // docker-compose.yml defines web and worker; the committed extra.yml adds the bind mount to
    // both, and the service `extra`. The ignored override (loaded only when no -f is given) does
    // not know `extra`.
    let mut extra = String::from(
        "services:\n  web:\n    volumes:\n      - .:/app\n  worker:\n    volumes:\n      - .:/app\n",
    );
    extra.push_str(&service_yaml("extra", true));
    setup.extra_files = vec![
        ("docker-compose.yml", compose_yaml(&["web", "worker"])),
        ("extra.yml", extra),
    ];
    setup.override_file = Some(override_yaml(&["web", "worker"]));
    setup.compose_files = vec!["docker-compose.yml", "extra.yml"];
    let mut t = Fixture::new(TEST, setup);
    let co = t.checkout_str().to_string();
    let p = t.project.clone();
    let files = [
        "-f",
        "docker-compose.yml",
        "-f",
        "extra.yml",
        "-p",
        p.as_str(),
    ];
    let before = t.snapshot();
    let tip = t.push_new_message();

    let mut args = vec!["run", "-C", &co, "--services", "extra"];
    args.extend(files);
    let ran = t.pullstart(&args);
    t.assert_applied(&ran, &before, &tip, &["extra"], &["web", "worker"], true);

    // Without --services, pullstart learns the project through the same -f and -p: every service
    // of it bind-mounts the checkout, so all three restart, `extra` included.
    let before = t.snapshot();
    let tip = t.push_new_message();
    let mut args = vec!["run", "-C", &co];
    args.extend(files);
    let ran = t.pullstart(&args);
    t.assert_applied(&ran, &before, &tip, &["web", "worker", "extra"], &[], false);
}

/// The override example that ships in contrib/, used verbatim as the host's
/// docker-compose.override.yml, gives the seed's layout: a push restarts the services on the new
/// code.
#[test]
fn contrib_override_example_gives_a_working_layout() {
    const TEST: &str = "contrib_override_example_gives_a_working_layout";
    require_docker!(TEST);
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/docker-compose.override.example.yml");
    let example = fs::read_to_string(&example)
        .unwrap_or_else(|e| panic!("{TEST}: cannot read {}: {e}", example.display()));
    let mut setup = Setup::new("example");
    setup.services = vec!["web", "worker"];
    setup.override_file = Some(example);
    let mut t = Fixture::new(TEST, setup);
    let co = t.checkout_str().to_string();
    let p = t.project.clone();
    let before = t.snapshot();
    let tip = t.push_new_message();

    let ran = t.pullstart(&["run", "-C", &co, "--services", "web", "-p", &p]);
    t.assert_applied(&ran, &before, &tip, &["web"], &["worker"], true);

    let before = t.snapshot();
    let tip = t.push_new_message();
    let ran = t.pullstart(&["run", "-C", &co, "-p", &p]);
    t.assert_applied(&ran, &before, &tip, &["web", "worker"], &[], false);
}

/// Fixed author and committer dates: commit ids do not depend on the clock.
fn fixed_dates(cmd: &mut Command) {
    cmd.env("GIT_AUTHOR_DATE", "1700000000 +0000")
        .env("GIT_COMMITTER_DATE", "1700000000 +0000");
}
