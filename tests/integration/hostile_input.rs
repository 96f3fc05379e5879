//! Hostile input from the remote side and from the checkout: a server that redirects the fetch
//! to another host, a pushed `.env` that names a host device or a FIFO, and file names made to
//! forge output lines.

use std::ffi::OsString;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::project::compose_fixture;
use crate::support::servers::{self, WebServer, PASSWORD, TOKEN, USER};
use crate::support::*;
use crate::transport_remote::{run_env, set_url, trust_ca};

// ----- redirects -----

/// The remote's url on the test server's https port, under `area` (`to-localhost`, `moved`).
fn redirecting_url(web: &WebServer, area: &str, userinfo: &str) -> String {
    format!(
        "https://{userinfo}127.0.0.1:{}/{area}/remote.git",
        web.https_port
    )
}

#[test]
fn https_redirect_to_another_host_gets_no_credentials() {
    if !servers::available(
        "https_redirect_to_another_host_gets_no_credentials",
        WebServer::NEEDS,
    ) {
        return;
    }
    let t = Fixture::new();
    let web = WebServer::start(&t);
    trust_ca(&t, &web);
    t.push_files(&[("app/main.py", "v2\n")]);
    let before = t.head();
    let token_file = t.root.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();

    set_url(&t, &redirecting_url(&web, "to-localhost", ""));
    let from_env = run_env(&t, &["run"], &[("PULLSTART_TOKEN", TOKEN)]);
    let from_file = run_env(&t, &["run", "--token-file", path_str(&token_file)], &[]);
    set_url(
        &t,
        &redirecting_url(&web, "to-localhost", &format!("{USER}:{PASSWORD}@")),
    );
    let in_url = run_env(&t, &["run"], &[]);

    for out in [&from_env, &from_file, &in_url] {
        out.code(3)
            .stdout_empty()
            .never_prints(TOKEN)
            .never_prints(PASSWORD);
        let line = out.error_line();
        assert!(
            line.contains("redirected") && line.contains("localhost"),
            "names the redirect and where to: {line}"
        );
    }
    assert_eq!(t.head(), before, "nothing was fetched from the other host");
    let to_other_host = web.requests_to(&format!("localhost:{}", web.https_port));
    assert!(
        !to_other_host.is_empty(),
        "the redirect was followed to the other host"
    );
    for request in &to_other_host {
        assert!(
            request.ends_with("authorization=-"),
            "credentials went to the other host: {request}"
        );
    }
}

#[test]
fn https_redirect_within_the_same_host_keeps_the_token() {
    if !servers::available(
        "https_redirect_within_the_same_host_keeps_the_token",
        WebServer::NEEDS,
    ) {
        return;
    }
    let t = Fixture::new();
    let web = WebServer::start(&t);
    trust_ca(&t, &web);
    set_url(&t, &redirecting_url(&web, "moved", ""));
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    let out = run_env(&t, &["run"], &[("PULLSTART_TOKEN", TOKEN)]);
    out.code(0).stderr_empty().never_prints(TOKEN);
    assert_eq!(t.head(), tip);
    assert_git_clean(&t, &Clean::strict());
}

// ----- files the checkout names -----

/// The address space pullstart gets in these tests: far more than a run needs, far less than
/// reading `/dev/zero` into memory would take before the test's time limit.
const ADDRESS_SPACE: u64 = 2 << 30;

/// Runs pullstart with the fixture's defaults but `--services` (so the compose project is read),
/// with at most [`ADDRESS_SPACE`] of memory, and kills it when it is still running after `limit`:
/// a hang is a failure, not a test that never ends.
#[track_caller]
fn run_within(t: &Fixture, args: &[&str], limit: Duration) -> Outcome {
    let mut cmd = t.pullstart();
    let full = t.full_args_with(args, false);
    cmd.args(&full);
    spawn_within(cmd, full, limit, None)
}

/// Runs `cmd` as [`run_within`] does; with `term_after`, sends it SIGTERM that long after the
/// start.
#[track_caller]
fn spawn_within(
    mut cmd: Command,
    args: Vec<OsString>,
    limit: Duration,
    mut term_after: Option<Duration>,
) -> Outcome {
    let out_dir = tempfile::tempdir().unwrap();
    let (stdout, stderr) = (out_dir.path().join("out"), out_dir.path().join("err"));
    cmd.stdout(fs::File::create(&stdout).unwrap())
        .stderr(fs::File::create(&stderr).unwrap());
    // SAFETY: setrlimit(2) only, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: ADDRESS_SPACE,
                rlim_max: ADDRESS_SPACE,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let start = Instant::now();
    let child = KillOnDrop(cmd.spawn().expect("spawn pullstart"));
    let (status, peak_kib) = loop {
        if let Some(ended) = reap(&child.0) {
            // Reaped: nothing is left to kill, and the pid may be reused.
            std::mem::forget(child);
            break ended;
        }
        if term_after.is_some_and(|after| start.elapsed() >= after) {
            term_after = None;
            // SAFETY: kill(2) on the child's pid, which it still has (not reaped yet).
            unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) };
        }
        assert!(
            start.elapsed() < limit,
            "pullstart {args:?} still running after {limit:?}: it hangs\n--- stderr ---\n{}",
            fs::read_to_string(&stderr).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        peak_kib < PEAK_MEMORY_KIB,
        "pullstart {args:?} used {peak_kib} KiB of memory: it read something unbounded"
    );
    let output = std::process::Output {
        status,
        stdout: fs::read(&stdout).unwrap(),
        stderr: fs::read(&stderr).unwrap(),
    };
    let args = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    Outcome::from_output(output, args, start.elapsed())
}

/// The most memory (peak resident set) a run in these tests may take: a run needs some 20 MiB.
const PEAK_MEMORY_KIB: i64 = 256 * 1024;

/// The exit status and peak resident memory (KiB) of `child` once it has ended, reaping it.
fn reap(child: &std::process::Child) -> Option<(std::process::ExitStatus, i64)> {
    use std::os::unix::process::ExitStatusExt;
    let mut status = 0;
    // SAFETY: wait4(2) on our own child, with valid out-pointers; `rusage` is plain data.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe {
        libc::wait4(
            child.id() as libc::pid_t,
            &mut status,
            libc::WNOHANG,
            &mut usage,
        )
    };
    (pid > 0).then(|| (std::process::ExitStatus::from_raw(status), usage.ru_maxrss))
}

/// `mkfifo path`, as a process in a container with the checkout mounted could.
fn make_fifo(path: &Path) {
    if fs::symlink_metadata(path).is_ok() {
        fs::remove_file(path).unwrap();
    }
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Two updates after `setup`: the first brings `setup`'s change, the second reads the compose
/// project from a worktree that holds it. Both succeed, within time and memory.
#[track_caller]
fn two_updates_succeed(t: &Fixture) {
    for round in 1..=2 {
        let tip = t.push_files(&[("web/app.py", &format!("print('web v{round}')\n"))]);
        let out = run_within(t, &["run"], Duration::from_secs(60));
        out.code(0);
        assert_eq!(t.head(), tip, "round {round}");
    }
}

#[test]
fn a_pushed_env_naming_dev_zero_as_compose_file_is_not_read() {
    let t = compose_fixture();
    t.dev_write(
        ".env",
        "# chosen by whoever can push\nexport COMPOSE_FILE=\"/dev/zero\"\n",
    );
    t.dev_commit("COMPOSE_FILE=/dev/zero");
    t.push();
    two_updates_succeed(&t);
    assert_git_clean(&t, &Clean::strict());
}

#[test]
fn a_pushed_env_that_is_a_symlink_to_dev_zero_is_not_read() {
    let t = compose_fixture();
    t.dev_symlink(".env", "/dev/zero");
    t.dev_commit(".env -> /dev/zero");
    t.push();
    two_updates_succeed(&t);
}

#[test]
fn a_fifo_at_env_does_not_block_the_run() {
    let t = compose_fixture();
    // A container with the checkout mounted makes a FIFO where compose's `.env` belongs.
    fs::write(t.co(".git/info/exclude"), ".env\nlocal.env\n").unwrap();
    make_fifo(&t.co(".env"));
    two_updates_succeed(&t);
    // The same for an `--env-file` in the compose command.
    make_fifo(&t.co("local.env"));
    let tip = t.push_files(&[("web/app.py", "print('web v3')\n")]);
    let compose = format!("{} --env-file local.env", path_str(&t.stub));
    let out = run_within(
        &t,
        &["run", "--compose-command", &compose],
        Duration::from_secs(60),
    );
    out.code(0);
    assert_eq!(t.head(), tip);
}

#[test]
fn a_fifo_named_by_compose_file_does_not_block_the_run() {
    let t = compose_fixture();
    t.dev_write(".env", "COMPOSE_FILE=extra.yml:docker-compose.yml\n");
    t.dev_write(".gitignore", "extra.yml\n");
    t.dev_commit("an extra compose file that is not tracked");
    t.push();
    t.run_mapped(&["run"]).code(0);
    make_fifo(&t.co("extra.yml"));
    two_updates_succeed(&t);
}

#[test]
fn a_fifo_as_the_config_file_is_refused_at_once() {
    let t = Fixture::new();
    let config = t.co("pullstart.yml");
    make_fifo(&config);
    let out = run_within(
        &t,
        &["run", "--config", path_str(&config)],
        Duration::from_secs(30),
    );
    out.code(2);
    let line = out.error_line();
    assert!(
        line.contains("not a regular file") && line.contains("give the path of a YAML file"),
        "{line}"
    );
}

// ----- --timeout and signals bound a run that blocks inside pullstart -----

/// A FIFO in place of the remote-tracking ref: git (and gitoxide) read refs with a plain open,
/// which blocks until a writer comes. Only a process that can write `.git` can do this (see the
/// README: nothing can stop it), but the run must still end and free the lock.
fn fifo_at_the_tracking_ref(t: &Fixture) {
    t.push_files(&[("app/main.py", "v2\n")]);
    t.git(&t.checkout, &["pack-refs", "--all"]);
    let tracking = t.checkout.join(".git/refs/remotes/origin/main");
    fs::create_dir_all(tracking.parent().unwrap()).unwrap();
    make_fifo(&tracking);
}

#[test]
fn timeout_ends_a_run_blocked_on_a_fifo_and_frees_the_lock() {
    let t = Fixture::new();
    fifo_at_the_tracking_ref(&t);
    let out = run_within(&t, &["run", "--timeout", "2s"], Duration::from_secs(30));
    out.code(1).stdout_empty();
    let line = out.error_line();
    assert!(
        line.contains("did not finish within --timeout 2s") && line.contains("nothing was touched"),
        "{line}"
    );
    assert!(out.elapsed < Duration::from_secs(15), "{:?}", out.elapsed);
    assert!(lock_is_free(&t), "the lock is still held");

    let json = run_within(
        &t,
        &["run", "--timeout", "2s", "--output", "json"],
        Duration::from_secs(30),
    );
    json.code(1);
    let value = json.json();
    assert_eq!(value["result"], "error", "{value}");
    assert!(
        value["error"].as_str().unwrap().contains("--timeout 2s"),
        "{value}"
    );
}

#[test]
fn sigterm_ends_a_run_blocked_on_a_fifo() {
    let t = Fixture::new();
    fifo_at_the_tracking_ref(&t);
    let mut cmd = t.pullstart();
    let args = t.full_args(&["run", "--timeout", "10m"]);
    cmd.args(&args);
    let term_after = Some(Duration::from_secs(1));
    let out = spawn_within(cmd, args, Duration::from_secs(30), term_after);
    out.code(1);
    let line = out.error_line();
    assert!(line.contains("did not stop after a signal"), "{line}");
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);
    assert!(lock_is_free(&t), "the lock is still held");
}

// ----- file names made to forge output -----

/// A pushed file name that, printed raw, would put a summary line of its own in a log.
const FORGING: &str = "evil\nupdated main 0000000..1111111 (1 file); restarted: web worker";

/// The paths of `git diff --name-status` between two commits, as git prints (and quotes) them.
fn git_quoted_paths(t: &Fixture, from: &str, to: &str) -> Vec<String> {
    let out = t.git(&t.checkout, &["diff", "--name-status", from, to]);
    let mut paths: Vec<String> = out
        .lines()
        .map(|line| line.split_once('\t').expect("status<TAB>path").1.to_owned())
        .collect();
    paths.sort();
    paths
}

#[test]
fn file_names_with_newlines_and_escapes_are_quoted_as_git_quotes_them() {
    let t = Fixture::new();
    let before = t.head();
    t.dev_write(FORGING, "x\n");
    t.dev_write("tab\there.txt", "x\n");
    t.dev_write("esc\u{1b}[2Jclear.txt", "x\n");
    t.dev_write("quote\"and\\backslash.txt", "x\n");
    write_file_os(&t.dev, os(b"latin1-\xe9.txt"), "x\n");
    let tip = t.dev_commit("names made to forge output lines");
    t.push();

    // check: one line per path, each quoted as git quotes it.
    let check = t.run(&["check"]);
    check.code(0);
    let listed: Vec<String> = check
        .stdout
        .lines()
        .filter_map(|line| line.strip_prefix("  A "))
        .map(str::to_owned)
        .collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        git_quoted_paths(&t, &before, &tip),
        "{}",
        check.stdout
    );
    assert!(listed.contains(
        &r#""evil\nupdated main 0000000..1111111 (1 file); restarted: web worker""#.to_owned()
    ));
    for line in check.stdout.lines() {
        assert!(!line.starts_with("updated "), "a forged line: {line:?}");
        assert!(
            !line.contains('\u{1b}') && !line.contains('\t'),
            "raw: {line:?}"
        );
    }
    // JSON keeps the names as they are.
    let json = t.run(&["check", "--output", "json"]).json();
    let paths: Vec<&str> = json["changed_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(paths.contains(&FORGING), "{json}");
    assert!(paths.contains(&"tab\there.txt"), "{json}");

    // A refusal that names the path is one line.
    write_file(&t.checkout, FORGING, "local work\n");
    let refused = t.run(&["run"]);
    refused.code(4).stdout_empty();
    let line = refused.error_line();
    assert!(line.contains(r"evil\nupdated main"), "{line}");
    fs::remove_file(t.co(FORGING)).unwrap();

    // The summary of the update is one line.
    let out = t.run(&["run"]);
    out.code(0);
    out.summary();
    assert_eq!(t.head(), tip);
    assert_git_clean(&t, &Clean::strict());
}
