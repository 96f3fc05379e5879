//! What `tests/docker.rs`, `tests/docker_actions.rs` and `tests/contrib.rs` share: the binary under
//! test, commands with a time limit, the engine probe that skips loudly (or fails under `CI`), and
//! the hermetic environment every command runs in.

#![allow(dead_code)] // each test binary uses its own part

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// The binary under test; `PULLSTART_TEST_BIN` can point the tests at another one (to check
/// that the tests themselves catch a wrong implementation).
pub fn bin() -> PathBuf {
    std::env::var_os("PULLSTART_TEST_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_pullstart")))
}

/// How long a `pullstart` run may take before the test gives up on it.
pub const RUN_LIMIT: Duration = Duration::from_secs(120);

/// How long containers may take to reach a state a test waits for.
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

pub fn image() -> String {
    std::env::var("PULLSTART_TEST_IMAGE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "pullstart-test/busybox:1".to_string())
}

pub fn ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// What a finished command left behind.
#[derive(Debug)]
pub struct Ran {
    pub desc: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn ok(&self) -> bool {
        self.status.success()
    }

    /// Everything about the command, for failure messages.
    pub fn show(&self) -> String {
        format!(
            "command: {}\nexit: {:?}\n--- stdout ---\n{}--- stderr ---\n{}--------------",
            self.desc,
            self.code(),
            self.stdout,
            self.stderr
        )
    }

    /// The non-empty lines of stderr.
    pub fn err_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

/// Runs `cmd` (stdin from /dev/null, output captured) and waits at most `limit`. `Err` when it
/// could not be started or did not finish in time (it is killed then).
pub fn run_limited(cmd: &mut Command, limit: Duration) -> Result<Ran, String> {
    let desc = describe(cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `{desc}`: {e}"))?;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                // The reader threads are left alone: a grandchild may still hold the pipes.
                return Err(format!("`{desc}` did not finish within {limit:?}; killed"));
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for `{desc}`: {e}")),
        }
    };
    let stdout = String::from_utf8_lossy(&out_t.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&err_t.join().unwrap()).into_owned();
    Ok(Ran {
        desc,
        status,
        stdout,
        stderr,
    })
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    if let Some(dir) = cmd.get_current_dir() {
        s.push_str(&format!("  (in {})", dir.display()));
    }
    s
}

/// Runs `cmd` and panics with everything it printed unless it succeeded.
pub fn must(cmd: &mut Command, limit: Duration) -> Ran {
    let ran = run_limited(cmd, limit).unwrap_or_else(|e| panic!("{e}"));
    assert!(ran.ok(), "command failed:\n{}", ran.show());
    ran
}

/// A `docker` command with the caller's environment minus `COMPOSE_*` (a `COMPOSE_FILE` or
/// `COMPOSE_PROJECT_NAME` of the developer's shell must not leak into the tests).
pub fn docker(args: &[&str]) -> Command {
    let mut cmd = Command::new("docker");
    strip_compose_env(&mut cmd);
    cmd.args(args);
    cmd
}

pub fn strip_compose_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("COMPOSE_") {
            cmd.env_remove(&k);
        }
    }
}

pub fn probe(args: &[&str], limit: Duration) -> Result<(), String> {
    let (prog, rest) = args.split_first().unwrap();
    let mut cmd = Command::new(prog);
    strip_compose_env(&mut cmd);
    cmd.args(rest);
    let ran = run_limited(&mut cmd, limit)?;
    if ran.ok() {
        Ok(())
    } else {
        let why = ran
            .stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        Err(format!(
            "`{}` failed ({:?}): {why}",
            args.join(" "),
            ran.code()
        ))
    }
}

pub fn engine_status() -> &'static Result<(), String> {
    static STATUS: OnceLock<Result<(), String>> = OnceLock::new();
    STATUS.get_or_init(|| {
        probe(
            &["docker", "info", "--format", "{{.ServerVersion}}"],
            Duration::from_secs(10),
        )?;
        probe(&["docker", "compose", "version"], Duration::from_secs(10))?;
        let img = image();
        probe(
            &["docker", "image", "inspect", "--format", "{{.Id}}", &img],
            Duration::from_secs(10),
        )
        .map_err(|e| format!("test image {img} missing: {e}"))
    })
}

pub fn compose_v1_status() -> &'static Result<(), String> {
    static STATUS: OnceLock<Result<(), String>> = OnceLock::new();
    STATUS.get_or_init(|| probe(&["docker-compose", "version"], Duration::from_secs(20)))
}

/// The hermetic environment of every git and pullstart invocation: no inherited `GIT_*`,
/// `COMPOSE_*`, SSH agent or XDG config; no system or global git config; a temporary HOME; a
/// fixed identity. The Docker CLI keeps the caller's configuration directory (HOME moves, so
/// `DOCKER_CONFIG` is set to where it was).
pub fn hermetic(cmd: &mut Command, home: &Path) {
    for (k, _) in std::env::vars_os() {
        let name = k.to_string_lossy();
        if name.starts_with("GIT_")
            || name.starts_with("COMPOSE_")
            || name.starts_with("PULLSTART_")
            || name == "SSH_AUTH_SOCK"
            || name == "SSH_ASKPASS"
            || name == "XDG_CONFIG_HOME"
        {
            cmd.env_remove(&k);
        }
    }
    if std::env::var_os("DOCKER_CONFIG").is_none() {
        if let Some(real_home) = std::env::var_os("HOME") {
            let dc = Path::new(&real_home).join(".docker");
            if dc.is_dir() {
                cmd.env("DOCKER_CONFIG", dc);
            }
        }
    }
    cmd.env("HOME", home)
        .env("LC_ALL", "C")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Dev Eloper")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_NAME", "Dev Eloper")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com");
}

/// Whether the test can run. Without an engine: in CI a failure, elsewhere a loud skip line
/// (written around libtest's output capture, so it shows in a plain `cargo test`).
pub fn docker_ready(test: &str, need_v1: bool) -> bool {
    let mut status = engine_status().clone();
    if need_v1 && status.is_ok() {
        status = compose_v1_status()
            .clone()
            .map_err(|e| format!("Compose v1 missing: {e}"));
    }
    match status {
        Ok(()) => true,
        Err(why) => {
            if ci() {
                panic!(
                    "{test}: no usable Docker engine: {why}\n\
                     CI is set, so the Docker tests may not be skipped: run \
                     `contrib/docker-setup.sh` (as root) before the tests"
                );
            }
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED (no Docker engine): {test} — {why} — run contrib/docker-setup.sh (as root) ***\n"
            );
            false
        }
    }
}

/// `git ARGS` in `dir` with the [`hermetic`] environment and `main` as the default branch.
pub fn git_cmd(home: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    hermetic(&mut cmd, home);
    cmd.current_dir(dir)
        .args(["-c", "init.defaultBranch=main"])
        .args(args);
    cmd
}

/// Runs [`git_cmd`], which must succeed within a minute; its stdout without the final newline.
pub fn git_output(cmd: &mut Command) -> String {
    let ran = must(cmd, Duration::from_secs(60));
    ran.stdout.trim_end().to_string()
}
