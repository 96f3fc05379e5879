//! The test fixture: real repositories built with the git CLI, a compose stub that records
//! its calls, and a runner for the compiled `pullstart` binary.
//!
//! ```ignore
//! let t = Fixture::new();
//! t.dev_write("a.txt", "x");
//! t.dev_commit("add a");
//! t.push();
//! t.run(&["run"]).code(0);
//! ```
#![allow(dead_code)]

pub mod daemon;
pub mod oracle;
pub mod project;
pub mod servers;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::prelude::*;
use tempfile::TempDir;

pub use oracle::{assert_git_clean, Clean, RepoState, Snapshot};

/// The services passed with `--services` unless a test passes its own.
pub const SERVICES: &str = "web,worker";
/// What the stub sees for the default services.
pub const RESTART_DEFAULT: &str = "restart web worker";

/// The files of the first commit of `Fixture::new()`.
pub const INITIAL_FILES: &[(&str, &str)] = &[
    ("README.md", "# demo app\n"),
    ("app/main.py", "print('hello')\n"),
    ("app/settings.py", "DEBUG = False\n"),
    ("docs/guide.md", "guide\n"),
];

/// Applies the hermetic environment every git and pullstart invocation gets: nothing inherited
/// but PATH (so no GIT_*, SSH_AUTH_SOCK, XDG_CONFIG_HOME leak in), no system or global git
/// config, a temporary HOME, and a fixed identity and date.
pub fn hermetic(cmd: &mut Command, home: &Path) {
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    // Keep coverage tooling working if the suite runs under it.
    if let Some(p) = std::env::var_os("LLVM_PROFILE_FILE") {
        cmd.env("LLVM_PROFILE_FILE", p);
    }
    cmd.env("HOME", home)
        .env("LC_ALL", "C")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Dev Eloper")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_AUTHOR_DATE", "1700000000 +0000")
        .env("GIT_COMMITTER_NAME", "Dev Eloper")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_DATE", "1700000000 +0000");
}

/// A git command with the hermetic environment, run in `dir`.
pub fn git_cmd(home: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    hermetic(&mut cmd, home);
    cmd.current_dir(dir)
        .arg("-c")
        .arg("init.defaultBranch=main")
        .args(args)
        .stdin(Stdio::null());
    cmd
}

pub fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

/// One call of the compose stub: its working directory and its arguments joined by spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub cwd: PathBuf,
    pub args: String,
}

impl Call {
    pub fn is_restart(&self) -> bool {
        self.args.split(' ').any(|w| w == "restart")
    }

    /// A call that acts on containers: `restart` or `up` (not `config` or `ps`).
    pub fn is_action(&self) -> bool {
        self.args
            .split(' ')
            .find(|w| ["restart", "up", "config", "ps"].contains(w))
            .is_some_and(|w| w == "restart" || w == "up")
    }
}

pub struct Fixture {
    tmp: TempDir,
    pub root: PathBuf,
    pub home: PathBuf,
    pub remote: PathBuf,
    pub checkout: PathBuf,
    pub dev: PathBuf,
    pub stub: PathBuf,
    pub log: PathBuf,
    stub_dir: PathBuf,
}

impl Fixture {
    /// A remote with one commit holding `INITIAL_FILES`, the checkout and the dev clone.
    pub fn new() -> Self {
        Self::with_files(INITIAL_FILES)
    }

    /// A remote whose first commit holds `files`, then the checkout and the dev clone.
    pub fn with_files(files: &[(&str, &str)]) -> Self {
        let t = Self::bare();
        t.git(&t.root, &["clone", "-q", path_str(&t.remote), "dev"]);
        for (path, content) in files {
            t.dev_write(path, content);
        }
        t.dev_commit("initial");
        t.push();
        t.git(&t.root, &["clone", "-q", path_str(&t.remote), "checkout"]);
        t
    }

    /// A checkout cloned from an EMPTY remote: its branch `main` is unborn.
    pub fn empty_remote() -> Self {
        let t = Self::bare();
        t.git(&t.root, &["clone", "-q", path_str(&t.remote), "dev"]);
        t.git(&t.root, &["clone", "-q", path_str(&t.remote), "checkout"]);
        t
    }

    fn bare() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("pullstart-test-")
            .tempdir()
            .unwrap();
        // Canonical, so that comparisons with `pwd -P` and git's output hold.
        let root = tmp.path().canonicalize().unwrap();
        let home = root.join("home");
        let stub_dir = root.join("stub");
        fs::create_dir_all(&home).unwrap();
        fs::create_dir_all(&stub_dir).unwrap();
        let t = Fixture {
            remote: root.join("remote.git"),
            checkout: root.join("checkout"),
            dev: root.join("dev"),
            stub: stub_dir.join("compose"),
            log: root.join("compose.log"),
            stub_dir,
            home,
            root,
            tmp,
        };
        t.git(&t.root, &["init", "-q", "--bare", "remote.git"]);
        t.write_stub();
        t
    }

    fn write_stub(&self) {
        // One line per call: "<cwd>\t<args>". Behaviour is driven by files beside the stub, so a
        // test can change it between runs:
        // - acting calls (`restart`, `up`): `sleep`, `stderr` and `exit` inject a delay, output
        //   and an exit code (default 0);
        // - `config`: `config.stdout` (and `config-raw.stdout` for `config --no-interpolate`)
        //   is printed with exit 0 when present; with `config.from`, the file it names in the
        //   checkout (tracked, so it changes with the update, as compose's view of the project
        //   does) is printed instead, `{CO}` replaced by the checkout's path, and with `validate`
        //   an acting call naming a service that file lacks fails like compose does;
        // - `restart` naming a service listed in `absent` fails with `no such service`;
        // - `config --services`: `config-services.stdout` when present;
        // - `ps`: `ps.stdout` is printed with exit 0 when present;
        // - anything else (and the above without their file) prints `other.stdout` and exits
        //   with `other.exit`, default 1: "the compose project cannot be read".
        // The subcommand is the first word among restart/up/config/ps.
        let d = self.stub_dir.display();
        let log = self.log.display();
        let script = format!(
            r#"#!/bin/sh
printf '%s\t%s\n' "$(pwd -P)" "$*" >> '{log}'
sub=
raw=0
for a in "$@"; do
  case "$a" in
    --no-interpolate) raw=1 ;;
  esac
  if [ -z "$sub" ]; then
    case "$a" in restart|up|config|ps) sub=$a ;; esac
  fi
done
case "$sub" in
  restart|up)
    if [ -f '{d}/config.from' ] && [ -f '{d}/validate' ]; then
      after=0
      for a in "$@"; do
        if [ "$after" = 1 ]; then
          case "$a" in
            -*) ;;
            *) grep -q "^  $a:\$" "$(pwd -P)/$(cat '{d}/config.from')" || {{ echo "no such service: $a" >&2; exit 1; }} ;;
          esac
        fi
        [ "$a" = "$sub" ] && after=1
      done
    fi
    if [ "$sub" = restart ] && [ -f '{d}/absent' ]; then
      for a in "$@"; do
        grep -qx -- "$a" '{d}/absent' && {{ echo "no such service: $a" >&2; exit 1; }}
      done
    fi
    [ -f '{d}/sleep' ] && sleep "$(cat '{d}/sleep')"
    [ -f '{d}/stderr' ] && cat '{d}/stderr' >&2
    [ -f '{d}/exit' ] && exit "$(cat '{d}/exit')"
    exit 0
    ;;
  config)
    case " $* " in *" --services "*)
      if [ -f '{d}/config-services.stdout' ]; then cat '{d}/config-services.stdout'; exit 0; fi ;;
    esac
    if [ "$raw" = 1 ] && [ -f '{d}/config-raw.stdout' ]; then cat '{d}/config-raw.stdout'; exit 0; fi
    if [ -f '{d}/config.from' ]; then
      sed "s|{{CO}}|$(pwd -P)|g" "$(pwd -P)/$(cat '{d}/config.from')"
      exit 0
    fi
    if [ -f '{d}/config.stdout' ]; then cat '{d}/config.stdout'; exit 0; fi
    ;;
  ps)
    if [ -f '{d}/ps.stdout' ]; then cat '{d}/ps.stdout'; exit 0; fi
    ;;
esac
[ -f '{d}/other.stdout' ] && cat '{d}/other.stdout'
[ -f '{d}/other.exit' ] && exit "$(cat '{d}/other.exit')"
exit 1
"#
        );
        fs::write(&self.stub, script).unwrap();
        fs::set_permissions(&self.stub, fs::Permissions::from_mode(0o755)).unwrap();
    }

    // ----- the compose stub -----

    /// Makes the stub's acting calls (`restart`, `up`) exit with `code`, printing `stderr` on
    /// stderr.
    pub fn fail_restart(&self, code: i32, stderr: &str) {
        fs::write(self.stub_dir.join("exit"), code.to_string()).unwrap();
        fs::write(self.stub_dir.join("stderr"), stderr).unwrap();
    }

    /// Makes the stub's acting calls succeed again.
    pub fn heal_restart(&self) {
        let _ = fs::remove_file(self.stub_dir.join("exit"));
        let _ = fs::remove_file(self.stub_dir.join("stderr"));
    }

    /// Makes the stub's acting calls (`restart`, `up`) sleep `secs` seconds before exiting.
    pub fn slow_restart(&self, secs: f64) {
        fs::write(self.stub_dir.join("sleep"), secs.to_string()).unwrap();
    }

    /// Makes the stub answer `config` with `yaml` (a `docker compose config` output), where
    /// `{CO}` stands for the checkout's absolute path.
    pub fn compose_config(&self, yaml: &str) {
        let text = yaml.replace("{CO}", path_str(&self.checkout));
        fs::write(self.stub_dir.join("config.stdout"), text).unwrap();
    }

    /// Makes the stub answer `config` with the file `path` of the checkout as it is when the
    /// stub runs (`{CO}` as above): the project follows the update like compose's would. With
    /// `validate`, an acting call naming a service that file lacks exits 1 with compose's
    /// `no such service: NAME`.
    pub fn compose_config_from_checkout(&self, path: &str, validate: bool) {
        fs::write(self.stub_dir.join("config.from"), path).unwrap();
        if validate {
            fs::write(self.stub_dir.join("validate"), "").unwrap();
        }
    }

    /// Makes the stub answer `config --no-interpolate` with `yaml` (`{CO}` as above).
    pub fn compose_config_raw(&self, yaml: &str) {
        let text = yaml.replace("{CO}", path_str(&self.checkout));
        fs::write(self.stub_dir.join("config-raw.stdout"), text).unwrap();
    }

    /// Makes the stub answer `config --services` with these names, one a line.
    pub fn compose_declared(&self, services: &[&str]) {
        let lines: String = services.iter().map(|s| format!("{s}\n")).collect();
        fs::write(self.stub_dir.join("config-services.stdout"), lines).unwrap();
    }

    /// Makes the stub's `restart` fail as compose's does (`no such service: NAME`, exit 1) when
    /// it names one of `services`: services that have no container.
    pub fn compose_absent(&self, services: &[&str]) {
        let lines: String = services.iter().map(|s| format!("{s}\n")).collect();
        fs::write(self.stub_dir.join("absent"), lines).unwrap();
    }

    /// Makes the stub answer `ps` (e.g. `ps -a -q`) with `text` and exit 0.
    pub fn compose_ps(&self, text: &str) {
        fs::write(self.stub_dir.join("ps.stdout"), text).unwrap();
    }

    /// The argument strings of the stub's acting calls (`restart` and `up`), in order.
    pub fn action_calls(&self) -> Vec<String> {
        self.compose_calls()
            .into_iter()
            .filter(Call::is_action)
            .map(|c| c.args)
            .collect()
    }

    /// The raw lines of the stub's log (hooks may append their own lines to it).
    pub fn log_lines(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Writes a config file OUTSIDE the checkout (in the fixture root) and returns its path.
    pub fn config_file(&self, text: &str) -> PathBuf {
        let p = self.root.join("pullstart.yml");
        fs::write(&p, text).unwrap();
        p
    }

    /// Every call the stub recorded, in order.
    pub fn compose_calls(&self) -> Vec<Call> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|line| {
                let (cwd, args) = line.split_once('\t').expect("stub log line");
                Call {
                    cwd: PathBuf::from(cwd),
                    args: args.to_string(),
                }
            })
            .collect()
    }

    /// The argument strings of the stub's `restart` calls, in order.
    pub fn restart_calls(&self) -> Vec<String> {
        self.compose_calls()
            .into_iter()
            .filter(Call::is_restart)
            .map(|c| c.args)
            .collect()
    }

    pub fn clear_compose_log(&self) {
        let _ = fs::remove_file(&self.log);
    }

    // ----- git -----

    /// Runs git in `dir`, asserts success, returns stdout (trailing newline trimmed).
    pub fn git(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.git_output(dir, args);
        assert!(
            out.status.success(),
            "git {:?} in {} failed: {}\n{}",
            args,
            dir.display(),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim_end_matches('\n')
            .to_string()
    }

    /// Runs git in `dir` and returns its raw output, whatever the status.
    pub fn git_output(&self, dir: &Path, args: &[&str]) -> Output {
        git_cmd(&self.home, dir, args).output().expect("spawn git")
    }

    /// Runs git in `dir`, asserts success, returns raw stdout bytes.
    pub fn git_bytes(&self, dir: &Path, args: &[&str]) -> Vec<u8> {
        let out = self.git_output(dir, args);
        assert!(
            out.status.success(),
            "git {:?} failed: {}",
            args,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    pub fn rev_parse(&self, dir: &Path, rev: &str) -> String {
        self.git(dir, &["rev-parse", "--verify", "-q", rev])
    }

    /// `git rev-parse` that may fail: None when the rev does not resolve.
    pub fn try_rev_parse(&self, dir: &Path, rev: &str) -> Option<String> {
        let out = self.git_output(dir, &["rev-parse", "--verify", "-q", rev]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The checkout's HEAD commit.
    pub fn head(&self) -> String {
        self.rev_parse(&self.checkout, "HEAD")
    }

    /// The remote's `main`.
    pub fn remote_tip(&self) -> String {
        self.rev_parse(&self.remote, "refs/heads/main")
    }

    /// `refs/pullstart/deployed` in the checkout, if it exists.
    pub fn deployed(&self) -> Option<String> {
        self.try_rev_parse(&self.checkout, "refs/pullstart/deployed")
    }

    pub fn git_dir(&self) -> PathBuf {
        self.checkout.join(".git")
    }

    pub fn lock_path(&self) -> PathBuf {
        self.git_dir().join("pullstart.lock")
    }

    // ----- the dev clone: commits that get pushed -----

    pub fn dev_write(&self, path: &str, content: impl AsRef<[u8]>) {
        write_file(&self.dev, path, content);
    }

    pub fn dev_remove(&self, path: &str) {
        remove_path(&self.dev, path);
    }

    pub fn dev_symlink(&self, path: &str, target: &str) {
        make_symlink(&self.dev, path, target);
    }

    pub fn dev_set_exec(&self, path: &str, exec: bool) {
        set_exec(&self.dev, path, exec);
    }

    /// `git add -A` and commit in the dev clone; returns the new commit id.
    pub fn dev_commit(&self, msg: &str) -> String {
        self.git(&self.dev, &["add", "-A"]);
        self.git(&self.dev, &["commit", "-q", "--allow-empty", "-m", msg]);
        self.rev_parse(&self.dev, "HEAD")
    }

    pub fn push(&self) {
        self.git(&self.dev, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
    }

    pub fn force_push(&self) {
        self.git(
            &self.dev,
            &["push", "-q", "--force", "origin", "HEAD:refs/heads/main"],
        );
    }

    /// Writes the files, commits and pushes; returns the new tip.
    pub fn push_files(&self, files: &[(&str, &str)]) -> String {
        for (path, content) in files {
            self.dev_write(path, content);
        }
        let id = self.dev_commit("change");
        self.push();
        id
    }

    // ----- the checkout -----

    pub fn co(&self, path: &str) -> PathBuf {
        self.checkout.join(path)
    }

    pub fn co_write(&self, path: &str, content: impl AsRef<[u8]>) {
        write_file(&self.checkout, path, content);
    }

    pub fn co_read(&self, path: &str) -> String {
        fs::read_to_string(self.co(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
    }

    pub fn co_remove(&self, path: &str) {
        remove_path(&self.checkout, path);
    }

    /// Installs an executable hook in the checkout that creates `<root>/hook-ran-<name>`.
    pub fn install_hook(&self, name: &str) -> PathBuf {
        let marker = self.root.join(format!("hook-ran-{name}"));
        let hooks = self.git_dir().join("hooks");
        fs::create_dir_all(&hooks).unwrap();
        let hook = hooks.join(name);
        fs::write(&hook, format!("#!/bin/sh\ntouch '{}'\n", marker.display())).unwrap();
        fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
        marker
    }

    // ----- running pullstart -----

    /// A pullstart command with the hermetic environment, run from the fixture root (not from
    /// the checkout: tests that rely on the default `-C` set the directory themselves).
    pub fn pullstart(&self) -> Command {
        let mut cmd = Command::cargo_bin("pullstart").expect("the pullstart binary");
        hermetic(&mut cmd, &self.home);
        cmd.current_dir(&self.root).stdin(Stdio::null());
        cmd
    }

    /// The arguments `run` appends: `-C <checkout>`, `--compose-command <stub>` and
    /// `--services web,worker`, each unless `args` already has it.
    pub fn full_args(&self, args: &[&str]) -> Vec<OsString> {
        self.full_args_with(args, true)
    }

    /// `full_args`, with the default `--services` only when `default_services`.
    pub fn full_args_with(&self, args: &[&str], default_services: bool) -> Vec<OsString> {
        let mut v: Vec<OsString> = args.iter().map(OsString::from).collect();
        let has = |names: &[&str]| {
            args.iter().any(|a| {
                names
                    .iter()
                    .any(|n| a == n || a.starts_with(&format!("{n}=")))
            })
        };
        if !has(&["-C", "--repo"]) {
            v.push("-C".into());
            v.push(self.checkout.clone().into());
        }
        if !has(&["--compose-command"]) {
            v.push("--compose-command".into());
            v.push(self.stub.clone().into());
        }
        if default_services && !has(&["--services"]) {
            v.push("--services".into());
            v.push(SERVICES.into());
        }
        // The stub runs no containers, so there is nothing to wait for; the health wait is
        // proven against the real engine in tests/docker.rs.
        if !has(&["--health-timeout"]) {
            v.push("--health-timeout".into());
            v.push("0".into());
        }
        v
    }

    /// Runs pullstart with `args` plus the defaults of `full_args`.
    pub fn run(&self, args: &[&str]) -> Outcome {
        let full = self.full_args(args);
        self.run_exact(&full)
    }

    /// Runs pullstart with `args` plus the defaults of `full_args` except `--services`: the
    /// services come from the config's path rules or the compose project.
    pub fn run_mapped(&self, args: &[&str]) -> Outcome {
        let full = self.full_args_with(args, false);
        self.run_exact(&full)
    }

    /// Runs pullstart with exactly these arguments.
    pub fn run_exact<S: AsRef<OsStr>>(&self, args: &[S]) -> Outcome {
        let mut cmd = self.pullstart();
        cmd.args(args);
        Outcome::of(
            &mut cmd,
            args.iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned())
                .collect(),
        )
    }

    /// Starts pullstart with `args` plus the defaults, without waiting for it.
    pub fn spawn(&self, args: &[&str]) -> Child {
        let mut cmd = self.pullstart();
        cmd.args(self.full_args(args))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().expect("spawn pullstart")
    }

    /// Waits until the stub has recorded a `restart` call (a run is inside its restart and so
    /// holds the lock), at most `timeout`.
    pub fn wait_for_restart_call(&self, timeout: Duration) {
        let start = Instant::now();
        while self.restart_calls().is_empty() {
            assert!(
                start.elapsed() < timeout,
                "no restart call within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

pub fn write_file(dir: &Path, path: &str, content: impl AsRef<[u8]>) {
    write_file_os(dir, OsStr::new(path), content);
}

pub fn write_file_os(dir: &Path, path: &OsStr, content: impl AsRef<[u8]>) {
    let full = dir.join(path);
    if let Some(parent) = full.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    // Replace a symlink or a directory in the way rather than writing through it.
    if let Ok(meta) = fs::symlink_metadata(&full) {
        if meta.is_dir() {
            fs::remove_dir_all(&full).unwrap();
        } else if meta.file_type().is_symlink() {
            fs::remove_file(&full).unwrap();
        }
    }
    fs::write(&full, content).unwrap();
}

pub fn remove_path(dir: &Path, path: &str) {
    let full = dir.join(path);
    let meta = fs::symlink_metadata(&full).unwrap_or_else(|e| panic!("remove {path}: {e}"));
    if meta.is_dir() {
        fs::remove_dir_all(&full).unwrap();
    } else {
        fs::remove_file(&full).unwrap();
    }
}

pub fn make_symlink(dir: &Path, path: &str, target: &str) {
    let full = dir.join(path);
    if let Some(parent) = full.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    if let Ok(meta) = fs::symlink_metadata(&full) {
        if meta.is_dir() {
            fs::remove_dir_all(&full).unwrap();
        } else {
            fs::remove_file(&full).unwrap();
        }
    }
    std::os::unix::fs::symlink(target, &full).unwrap();
}

pub fn set_exec(dir: &Path, path: &str, exec: bool) {
    let full = dir.join(path);
    let mode = fs::metadata(&full).unwrap().permissions().mode();
    let mode = if exec { mode | 0o111 } else { mode & !0o111 };
    fs::set_permissions(&full, fs::Permissions::from_mode(mode)).unwrap();
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

// ----- the outcome of one pullstart invocation -----

pub struct Outcome {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn of(cmd: &mut Command, args: Vec<String>) -> Outcome {
        let start = Instant::now();
        let out = cmd.output().expect("run pullstart");
        Outcome::from_output(out, args, start.elapsed())
    }

    pub fn from_output(out: Output, args: Vec<String>, elapsed: Duration) -> Outcome {
        Outcome {
            args,
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed,
        }
    }

    fn describe(&self) -> String {
        format!(
            "pullstart {:?}\nexit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n---",
            self.args, self.code, self.stdout, self.stderr
        )
    }

    /// Asserts the exit code.
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(expected),
            "unexpected exit code\n{}",
            self.describe()
        );
        self
    }

    /// Asserts the exit code is one of `codes`.
    #[track_caller]
    pub fn code_in(&self, codes: &[i32]) -> &Self {
        assert!(
            self.code.is_some_and(|c| codes.contains(&c)),
            "exit code not in {codes:?}\n{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    pub fn stdout_empty(&self) -> &Self {
        assert_eq!(
            self.stdout,
            "",
            "expected empty stdout\n{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    pub fn stderr_empty(&self) -> &Self {
        assert_eq!(
            self.stderr,
            "",
            "expected empty stderr\n{}",
            self.describe()
        );
        self
    }

    /// Asserts nothing at all was printed.
    #[track_caller]
    pub fn silent(&self) -> &Self {
        self.stdout_empty().stderr_empty()
    }

    #[track_caller]
    pub fn stdout_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    pub fn stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{}",
            self.describe()
        );
        self
    }

    /// Asserts neither stream contains `needle`.
    #[track_caller]
    pub fn never_prints(&self, needle: &str) -> &Self {
        assert!(
            !self.stdout.contains(needle) && !self.stderr.contains(needle),
            "output contains {needle:?}\n{}",
            self.describe()
        );
        self
    }

    /// Asserts stderr is exactly one line (the contract's error line) and returns it.
    #[track_caller]
    pub fn error_line(&self) -> String {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one error line on stderr\n{}",
            self.describe()
        );
        assert!(
            !lines[0].trim().is_empty(),
            "empty error line\n{}",
            self.describe()
        );
        lines[0].to_string()
    }

    /// Asserts stdout is exactly one JSON object and returns it.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        let mut stream =
            serde_json::Deserializer::from_str(&self.stdout).into_iter::<serde_json::Value>();
        let first = match stream.next() {
            Some(Ok(v)) => v,
            other => panic!(
                "stdout is not a JSON value ({other:?})\n{}",
                self.describe()
            ),
        };
        assert!(
            stream.next().is_none(),
            "more than one JSON value on stdout\n{}",
            self.describe()
        );
        assert!(
            first.is_object(),
            "stdout JSON is not an object\n{}",
            self.describe()
        );
        first
    }

    /// Asserts stdout is the one summary line of an applied update and parses it.
    #[track_caller]
    pub fn summary(&self) -> Summary {
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one summary line on stdout\n{}",
            self.describe()
        );
        Summary::parse(lines[0])
            .unwrap_or_else(|why| panic!("summary line: {why}\n{}", self.describe()))
    }
}

/// `updated <branch> <from>..<to> (<N> files); restarted: <rest>`
#[derive(Debug)]
pub struct Summary {
    pub line: String,
    pub branch: String,
    pub from: String,
    pub to: String,
    pub files: usize,
    pub restarted: String,
}

impl Summary {
    pub fn parse(line: &str) -> Result<Summary, String> {
        let rest = line
            .strip_prefix("updated ")
            .ok_or("does not start with `updated `")?;
        let (branch, rest) = rest.split_once(' ').ok_or("no branch")?;
        let (range, rest) = rest.split_once(' ').ok_or("no range")?;
        let (from, to) = range.split_once("..").ok_or("range has no `..`")?;
        let is_short_hex =
            |s: &str| s.len() >= 7 && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_hexdigit());
        // From an unborn branch there is no old commit: allow any non-empty placeholder there.
        if !(is_short_hex(from) || (!from.is_empty() && !from.contains(' '))) {
            return Err(format!("bad from {from:?}"));
        }
        if !is_short_hex(to) {
            return Err(format!("`to` is not an abbreviated commit id: {to:?}"));
        }
        let rest = rest.strip_prefix('(').ok_or("no `(N files)`")?;
        let (n, rest) = rest.split_once(' ').ok_or("no file count")?;
        let files: usize = n
            .parse()
            .map_err(|_| format!("file count {n:?} is not a number"))?;
        let rest = rest
            .strip_prefix("files)")
            .or_else(|| rest.strip_prefix("file)"))
            .ok_or("no `files)`")?;
        let restarted = rest
            .strip_prefix("; restarted:")
            .ok_or("no `; restarted:`")?;
        Ok(Summary {
            line: line.to_string(),
            branch: branch.to_string(),
            from: from.to_string(),
            to: to.to_string(),
            files,
            restarted: restarted.trim().to_string(),
        })
    }

    /// Asserts the abbreviated ids are prefixes of these full ids.
    #[track_caller]
    pub fn assert_range(&self, from: &str, to: &str) {
        assert!(
            from.starts_with(&self.from),
            "summary from {:?} is not a prefix of {from}: {}",
            self.from,
            self.line
        );
        assert!(
            to.starts_with(&self.to),
            "summary to {:?} is not a prefix of {to}: {}",
            self.to,
            self.line
        );
    }
}

/// Kills a child process (and reaps it) when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Kills a child started in its own process group, with the whole group, when dropped.
pub struct KillGroupOnDrop(pub Child);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg("--")
            .arg(format!("-{}", self.0.id()))
            .stderr(Stdio::null())
            .status();
        let _ = self.0.wait();
    }
}

/// Whether `<git-dir>/pullstart.lock` is free: a non-blocking `flock` gets it at once.
pub fn lock_is_free(t: &Fixture) -> bool {
    let mut probe = Command::new("flock");
    hermetic(&mut probe, &t.home);
    probe
        .arg("-n")
        .arg(t.lock_path())
        .arg("true")
        .status()
        .unwrap()
        .success()
}

/// Holds `<git-dir>/pullstart.lock` with util-linux `flock FILE sleep N` until dropped.
pub fn hold_lock_with_flock(t: &Fixture, secs: u32) -> KillGroupOnDrop {
    let mut cmd = Command::new("flock");
    hermetic(&mut cmd, &t.home);
    // -o: the lock stays with flock itself, not with `sleep`, so killing flock frees it.
    let child = cmd
        .arg("-o")
        .arg(t.lock_path())
        .arg("sleep")
        .arg(secs.to_string())
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn flock (util-linux)");
    let guard = KillGroupOnDrop(child);
    // Wait until the lock is really held: a non-blocking flock attempt then fails.
    let start = Instant::now();
    loop {
        if !lock_is_free(t) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "flock did not take the lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    guard
}

/// Collects the paths that differ between two commits, as git sees them without rename
/// detection (a rename is its old and its new path).
pub fn changed_paths(t: &Fixture, from: &str, to: &str) -> Vec<String> {
    let out = t.git_bytes(
        &t.remote,
        &["diff", "--name-only", "--no-renames", "-z", from, to],
    );
    let mut v: Vec<String> = out
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    v.sort();
    v
}
