//! `pullstart entrypoint --url URL --dir DIR [--branch B] -- CMD`: the code is delivered at the
//! container's start, then CMD replaces pullstart in the same process.
//!
//! CMD is `sh -c` writing its own `$$` and the code it sees into files: `$$` equal to the pid
//! of the process the test spawned proves that CMD was exec'd (not spawned as a child), and the
//! file's content proves which code it started on.
//!
//! The first clone over https goes to the real lighttpd + `git http-backend` of
//! support/servers.rs, with the test's CA trusted through `GIT_SSL_CAINFO` or a global git config
//! (`GIT_CONFIG_GLOBAL`): there is no repository config yet to put `http.sslCAInfo` in. The
//! first clone over ssh goes to the real `sshd`, with the host trusted through `GIT_SSH_COMMAND`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::support::servers::{self, SshServer, WebServer, TOKEN};
use crate::support::{free_port, path_str, Fixture, Outcome};

/// What CMD saw when it ran.
struct Started {
    outcome: Outcome,
    /// The pid pullstart was started with.
    pid: u32,
    /// `$$` inside CMD; `None` when CMD never ran.
    cmd_pid: Option<u32>,
    /// `app/main.py` as CMD read it (relative to its working directory, DIR).
    code: Option<String>,
}

/// Runs `pullstart entrypoint ARGS -- sh -c ...` from inside `dir`'s parent with `dir` as CMD's
/// working directory (CMD `cd`s there), and collects what CMD saw.
fn entrypoint(t: &Fixture, args: &[&str], dir: &Path) -> Started {
    entrypoint_env(t, args, &[], dir)
}

/// [`entrypoint`] with `env` added to the hermetic environment.
fn entrypoint_env(t: &Fixture, args: &[&str], env: &[(&str, &str)], dir: &Path) -> Started {
    let out = t.root.join("cmd.out");
    let pid_file = t.root.join("cmd.pid");
    let _ = fs::remove_file(&out);
    let _ = fs::remove_file(&pid_file);
    let script = format!(
        "echo $$ > '{}'; cd '{}' && cat app/main.py > '{}'",
        pid_file.display(),
        dir.display(),
        out.display()
    );
    let mut full: Vec<String> = vec!["entrypoint".into()];
    full.extend(args.iter().map(|a| a.to_string()));
    full.extend(["--".into(), "sh".into(), "-c".into(), script]);
    let mut cmd = t.pullstart();
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd.args(&full)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn pullstart");
    let pid = child.id();
    let output = child.wait_with_output().expect("wait for pullstart");
    Started {
        outcome: Outcome::from_output(output, full, Default::default()),
        pid,
        cmd_pid: fs::read_to_string(&pid_file)
            .ok()
            .map(|s| s.trim().parse().expect("a pid")),
        code: fs::read_to_string(&out).ok(),
    }
}

fn url(t: &Fixture) -> String {
    format!("file://{}", t.remote.display())
}

fn app_dir(t: &Fixture) -> PathBuf {
    t.root.join("app")
}

#[test]
fn clones_into_a_missing_dir_then_execs_the_command() {
    let t = Fixture::new();
    let dir = app_dir(&t);
    let url = url(&t);
    let s = entrypoint(&t, &["--url", &url, "--dir", path_str(&dir)], &dir);
    s.outcome.code(0).stderr_empty().stdout_contains("cloned ");
    assert_eq!(s.code.as_deref(), Some("print('hello')\n"));
    assert_eq!(s.cmd_pid, Some(s.pid), "CMD must replace pullstart (exec)");
    // A real checkout that git agrees with, on the remote's HEAD branch, with its upstream set
    // and the deployed commit recorded.
    assert_eq!(t.git(&dir, &["status", "--porcelain"]).trim(), "");
    assert_eq!(t.rev_parse(&dir, "HEAD"), t.remote_tip());
    assert_eq!(
        t.git(&dir, &["rev-parse", "--abbrev-ref", "HEAD@{upstream}"])
            .trim(),
        "origin/main"
    );
    assert_eq!(t.rev_parse(&dir, "refs/pullstart/deployed"), t.remote_tip());
}

#[test]
fn clones_into_an_empty_dir_on_the_given_branch() {
    let t = Fixture::new();
    t.git(&t.dev, &["switch", "-q", "-c", "prod"]);
    t.dev_write("app/main.py", "print('prod')\n");
    t.dev_commit("prod");
    t.git(&t.dev, &["push", "-q", "origin", "prod"]);
    let dir = app_dir(&t);
    fs::create_dir(&dir).unwrap();
    let url = url(&t);
    let s = entrypoint(
        &t,
        &["--url", &url, "--dir", path_str(&dir), "--branch", "prod"],
        &dir,
    );
    s.outcome.code(0).stderr_empty();
    assert_eq!(s.code.as_deref(), Some("print('prod')\n"));
    assert_eq!(s.cmd_pid, Some(s.pid));
    assert_eq!(t.git(&dir, &["branch", "--show-current"]).trim(), "prod");
}

#[test]
fn fast_forwards_an_existing_checkout_then_execs_without_compose() {
    let t = Fixture::new();
    let old = t.head();
    let new = t.push_files(&[("app/main.py", "print('v2')\n")]);
    // The checkout is the fixture's clone; the compose stub's log proves compose is never run
    // (not even `config`, to learn the project).
    let stub = t.stub.display().to_string();
    let s = entrypoint(
        &t,
        &[
            "--url",
            "unused://",
            "--dir",
            path_str(&t.checkout),
            "--compose-command",
            &stub,
        ],
        &t.checkout,
    );
    s.outcome.code(0).stderr_empty().stdout_contains(&format!(
        "updated main {}..{}",
        &old[..7],
        &new[..7]
    ));
    assert_eq!(s.code.as_deref(), Some("print('v2')\n"));
    assert_eq!(s.cmd_pid, Some(s.pid));
    assert_eq!(t.head(), new);
    assert_eq!(t.deployed().as_deref(), Some(new.as_str()));
    assert!(t.compose_calls().is_empty(), "{:?}", t.compose_calls());
    assert_eq!(t.git(&t.checkout, &["status", "--porcelain"]).trim(), "");
}

#[test]
fn unreachable_remote_with_a_checkout_warns_and_starts_on_it() {
    let t = Fixture::new();
    let head = t.head();
    t.git(
        &t.checkout,
        &["remote", "set-url", "origin", "/nonexistent/remote.git"],
    );
    let s = entrypoint(
        &t,
        &[
            "--url",
            "/nonexistent/remote.git",
            "--dir",
            path_str(&t.checkout),
        ],
        &t.checkout,
    );
    s.outcome.code(0).stdout_empty();
    let lines: Vec<&str> = s.outcome.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one warning line: {lines:?}");
    assert!(
        lines[0].starts_with("pullstart: warning: ") && lines[0].contains("starting the app"),
        "{lines:?}"
    );
    assert_eq!(s.code.as_deref(), Some("print('hello')\n"));
    assert_eq!(s.cmd_pid, Some(s.pid));
    assert_eq!(t.head(), head);
}

#[test]
fn local_changes_in_the_checkout_warn_and_start_on_what_is_there() {
    let t = Fixture::new();
    t.push_files(&[("app/main.py", "print('v2')\n")]);
    t.co_write("app/main.py", "print('local')\n");
    let s = entrypoint(
        &t,
        &["--url", "unused://", "--dir", path_str(&t.checkout)],
        &t.checkout,
    );
    s.outcome
        .code(0)
        .stderr_contains("pullstart: warning: refused");
    assert_eq!(s.code.as_deref(), Some("print('local')\n"));
    assert_eq!(s.cmd_pid, Some(s.pid));
}

#[test]
fn empty_dir_and_unreachable_remote_exit_3_and_start_nothing() {
    let t = Fixture::new();
    let dir = app_dir(&t);
    fs::create_dir(&dir).unwrap();
    let s = entrypoint(
        &t,
        &["--url", "/nonexistent/remote.git", "--dir", path_str(&dir)],
        &dir,
    );
    s.outcome.code(3).stdout_empty();
    assert_eq!(s.outcome.stderr.lines().count(), 1, "{}", s.outcome.stderr);
    assert!(s
        .outcome
        .stderr
        .starts_with("pullstart: clone of /nonexistent/remote.git"));
    assert_eq!(s.cmd_pid, None, "CMD must not start");
    // Nothing is left behind, so that the next start clones again.
    assert!(!dir.exists() || fs::read_dir(&dir).unwrap().next().is_none());
}

#[test]
fn a_dir_that_is_neither_empty_nor_a_checkout_is_a_usage_error() {
    let t = Fixture::new();
    let dir = app_dir(&t);
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("stray.txt"), "x").unwrap();
    let url = url(&t);
    let s = entrypoint(&t, &["--url", &url, "--dir", path_str(&dir)], &dir);
    s.outcome
        .code(2)
        .stderr_contains("neither empty nor a git checkout");
    assert_eq!(s.cmd_pid, None);
    assert_eq!(fs::read_to_string(dir.join("stray.txt")).unwrap(), "x");
}

#[test]
fn a_missing_command_is_a_usage_error() {
    let t = Fixture::new();
    let dir = app_dir(&t);
    let url = url(&t);
    for args in [
        &["entrypoint", "--url", &url, "--dir", path_str(&dir)][..],
        &["entrypoint", "--url", &url, "--dir", path_str(&dir), "--"],
        &["entrypoint", "--url", &url, "--", "true"],
    ] {
        t.run_exact(args)
            .code(2)
            .stdout_empty()
            .stderr_contains("Usage: pullstart entrypoint");
    }
    t.run_exact(&[
        "entrypoint",
        "--url",
        "",
        "--dir",
        path_str(&dir),
        "--",
        "true",
    ])
    .code(2)
    .stdout_empty()
    .stderr_contains("--url <URL>");
    // The URL may come from PULLSTART_URL instead (one image, several repositories), but from
    // one of the two.
    t.run_exact(&["entrypoint", "--dir", path_str(&dir), "--", "true"])
        .code(2)
        .stderr_contains("the repository URL is missing; give it with --url or in the environment variable PULLSTART_URL");
    // An empty program name gets past clap, and is refused before anything is cloned.
    t.run_exact(&[
        "entrypoint",
        "--url",
        &url,
        "--dir",
        path_str(&dir),
        "--",
        "",
    ])
    .code(2)
    .stderr_contains("the command to start is missing");
    assert!(!dir.exists());
}

#[test]
fn the_url_can_come_from_the_environment() {
    let t = Fixture::new();
    let dir = app_dir(&t);
    let mut cmd = t.pullstart();
    cmd.env("PULLSTART_URL", url(&t))
        .args([
            "entrypoint",
            "--dir",
            path_str(&dir),
            "--",
            "cat",
            "app/app/main.py",
        ])
        .current_dir(&t.root);
    // `cat` runs in the fixture root; app/ is the fresh clone.
    let out = Outcome::of(&mut cmd, vec!["entrypoint (PULLSTART_URL)".into()]);
    out.code(0).stdout_contains("print('hello')");
}

#[test]
fn a_command_that_cannot_be_started_exits_2() {
    let t = Fixture::new();
    let dir = app_dir(&t);
    let url = url(&t);
    t.run_exact(&[
        "entrypoint",
        "--url",
        &url,
        "--dir",
        path_str(&dir),
        "--",
        "/no/such/program",
    ])
    .code(2)
    .stderr_contains("cannot start `/no/such/program`");
}

// ----- the first clone over https -----

/// A global git config (for `GIT_CONFIG_GLOBAL`) that trusts the web server's CA, plus `extra`
/// lines.
fn global_config(t: &Fixture, web: &WebServer, extra: &str) -> PathBuf {
    let path = t.root.join("global.gitconfig");
    fs::write(
        &path,
        format!("[http]\n\tsslCAInfo = {}\n{extra}", web.ca().display()),
    )
    .unwrap();
    path
}

/// A fresh clone at the remote's tip, started on, and no secret anywhere in it or in the output.
#[track_caller]
fn cloned_and_started(t: &Fixture, s: &Started, dir: &Path, secret: &str) {
    s.outcome
        .code(0)
        .stderr_empty()
        .stdout_contains("cloned ")
        .never_prints(secret);
    assert_eq!(s.code.as_deref(), Some("print('hello')\n"));
    assert_eq!(s.cmd_pid, Some(s.pid), "CMD must replace pullstart (exec)");
    assert_eq!(t.rev_parse(dir, "HEAD"), t.remote_tip());
    assert_eq!(t.rev_parse(dir, "refs/pullstart/deployed"), t.remote_tip());
    assert_eq!(t.git(dir, &["status", "--porcelain"]).trim(), "");
    let config = fs::read_to_string(dir.join(".git/config")).unwrap();
    assert!(!config.contains(secret), "the token was written: {config}");
}

/// Nothing was cloned, nothing started: DIR is empty (or gone) and CMD never ran.
#[track_caller]
fn nothing_started(s: &Started, dir: &Path) {
    assert_eq!(s.cmd_pid, None, "CMD must not start\n{}", s.outcome.stderr);
    assert!(
        !dir.exists() || fs::read_dir(dir).unwrap().next().is_none(),
        "DIR must be left empty"
    );
}

#[test]
fn https_clone_with_the_token_file_option() {
    if !servers::available("https_clone_with_the_token_file_option", WebServer::NEEDS) {
        return;
    }
    let t = Fixture::new();
    let web = WebServer::start(&t);
    let global = global_config(&t, &web, "");
    let token = t.root.join("token");
    fs::write(&token, format!("  {TOKEN}\n")).unwrap();
    let dir = app_dir(&t);
    let url = web.url(true, true, "remote.git");
    let s = entrypoint_env(
        &t,
        &[
            "--url",
            &url,
            "--dir",
            path_str(&dir),
            "--token-file",
            path_str(&token),
        ],
        &[("GIT_CONFIG_GLOBAL", path_str(&global))],
        &dir,
    );
    cloned_and_started(&t, &s, &dir, TOKEN);
    assert_eq!(
        t.git(&dir, &["rev-parse", "--abbrev-ref", "HEAD@{upstream}"])
            .trim(),
        "origin/main"
    );
}

#[test]
fn https_clone_with_a_token_from_the_environment() {
    if !servers::available(
        "https_clone_with_a_token_from_the_environment",
        WebServer::NEEDS,
    ) {
        return;
    }
    let t = Fixture::new();
    let web = WebServer::start(&t);
    let url = web.url(true, true, "remote.git");
    let ca = web.ca();
    // PULLSTART_TOKEN, with the CA from GIT_SSL_CAINFO.
    let dir = app_dir(&t);
    let s = entrypoint_env(
        &t,
        &["--url", &url, "--dir", path_str(&dir)],
        &[
            ("PULLSTART_TOKEN", TOKEN),
            ("GIT_SSL_CAINFO", path_str(&ca)),
        ],
        &dir,
    );
    cloned_and_started(&t, &s, &dir, TOKEN);
    // PULLSTART_TOKEN_FILE, into another empty directory.
    let token = t.root.join("token");
    fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let dir = t.root.join("app2");
    let s = entrypoint_env(
        &t,
        &["--url", &url, "--dir", path_str(&dir)],
        &[
            ("PULLSTART_TOKEN_FILE", path_str(&token)),
            ("GIT_SSL_CAINFO", path_str(&ca)),
        ],
        &dir,
    );
    cloned_and_started(&t, &s, &dir, TOKEN);
}

#[test]
fn https_clone_with_a_git_credential_helper() {
    if !servers::available("https_clone_with_a_git_credential_helper", WebServer::NEEDS) {
        return;
    }
    let t = Fixture::new();
    let web = WebServer::start(&t);
    let store = t.root.join("credentials");
    fs::write(
        &store,
        format!(
            "https://{}:{TOKEN}@127.0.0.1:{}\n",
            servers::TOKEN_USER,
            web.https_port
        ),
    )
    .unwrap();
    let global = global_config(
        &t,
        &web,
        &format!(
            "[credential]\n\thelper = store --file {}\n",
            store.display()
        ),
    );
    let dir = app_dir(&t);
    let url = web.url(true, true, "remote.git");
    let s = entrypoint_env(
        &t,
        &["--url", &url, "--dir", path_str(&dir)],
        &[("GIT_CONFIG_GLOBAL", path_str(&global))],
        &dir,
    );
    cloned_and_started(&t, &s, &dir, TOKEN);
}

#[test]
fn https_clone_with_a_wrong_token_exits_3_and_starts_nothing() {
    if !servers::available(
        "https_clone_with_a_wrong_token_exits_3_and_starts_nothing",
        WebServer::NEEDS,
    ) {
        return;
    }
    let t = Fixture::new();
    let web = WebServer::start(&t);
    let global = global_config(&t, &web, "");
    let url = web.url(true, true, "remote.git");
    let dir = app_dir(&t);
    fs::create_dir(&dir).unwrap();
    let wrong = "wrong-Jq58-token-value";
    let env = [
        ("GIT_CONFIG_GLOBAL", path_str(&global)),
        ("PULLSTART_TOKEN", wrong),
    ];
    let s = entrypoint_env(&t, &["--url", &url, "--dir", path_str(&dir)], &env, &dir);
    s.outcome.code(3).stdout_empty().never_prints(wrong);
    let line = s.outcome.error_line();
    assert!(
        line.starts_with(&format!(
            "pullstart: clone of {url} into `{}` failed: ",
            dir.display()
        )) && line.contains(
            "authentication failed: the server rejected the token from `PULLSTART_TOKEN`"
        ) && line.ends_with("; nothing was started"),
        "{line}"
    );
    nothing_started(&s, &dir);

    // --verbose and --output json say the same and show no secret either.
    for extra in [&["--verbose"][..], &["--output", "json"]] {
        let mut args = vec!["--url", url.as_str(), "--dir", path_str(&dir)];
        args.extend_from_slice(extra);
        let s = entrypoint_env(&t, &args, &env, &dir);
        s.outcome.code(3).never_prints(wrong);
        if extra[0] == "--output" {
            let value = s.outcome.json();
            assert_eq!(value["result"], "fetch_failed", "{value}");
            let error = value["error"].as_str().expect("error is a string");
            assert!(error.contains("authentication failed"), "{error}");
        } else {
            s.outcome.stderr_contains("authentication failed");
        }
        nothing_started(&s, &dir);
    }
}

#[test]
fn https_clone_failures_say_which() {
    if !servers::available("https_clone_failures_say_which", WebServer::NEEDS) {
        return;
    }
    let t = Fixture::new();
    let web = WebServer::start(&t);
    let url = web.url(true, true, "remote.git");
    let dir = app_dir(&t);

    // The CA is not trusted.
    let s = entrypoint_env(
        &t,
        &["--url", &url, "--dir", path_str(&dir)],
        &[("PULLSTART_TOKEN", TOKEN)],
        &dir,
    );
    s.outcome.code(3).stdout_empty().never_prints(TOKEN);
    let line = s.outcome.error_line();
    assert!(
        line.contains("failed: the server's TLS certificate is not trusted")
            && line.contains("set http.sslCAInfo"),
        "{line}"
    );
    nothing_started(&s, &dir);

    // No credentials at all: none are prompted for.
    let ca = web.ca();
    let s = entrypoint_env(
        &t,
        &["--url", &url, "--dir", path_str(&dir)],
        &[("GIT_SSL_CAINFO", path_str(&ca))],
        &dir,
    );
    s.outcome.code(3).stdout_empty();
    let line = s.outcome.error_line();
    assert!(
        line.contains("failed: authentication required, but no credentials are configured"),
        "{line}"
    );
    nothing_started(&s, &dir);

    // Nothing listens there.
    let refused = format!("https://127.0.0.1:{}/auth/remote.git", free_port());
    let s = entrypoint_env(
        &t,
        &["--url", &refused, "--dir", path_str(&dir)],
        &[("PULLSTART_TOKEN", TOKEN)],
        &dir,
    );
    s.outcome.code(3).stdout_empty().never_prints(TOKEN);
    assert_eq!(
        s.outcome.error_line(),
        format!(
            "pullstart: clone of {refused} into `{}` failed: connection refused; nothing was started",
            dir.display()
        )
    );
    nothing_started(&s, &dir);

    // A token file that cannot be read is a usage error, as for `run`.
    let missing = t.root.join("no-such-token");
    let s = entrypoint_env(
        &t,
        &[
            "--url",
            &url,
            "--dir",
            path_str(&dir),
            "--token-file",
            path_str(&missing),
        ],
        &[("GIT_SSL_CAINFO", path_str(&ca))],
        &dir,
    );
    s.outcome.code(2).stdout_empty();
    assert!(
        s.outcome.error_line().contains(&format!(
            "cannot read the token file `{}`",
            missing.display()
        )),
        "{}",
        s.outcome.stderr
    );
    nothing_started(&s, &dir);
}

// ----- the first clone over ssh -----

#[test]
fn ssh_clone_adds_the_ssh_key_option_to_the_users_ssh_command() {
    if !servers::available(
        "ssh_clone_adds_the_ssh_key_option_to_the_users_ssh_command",
        SshServer::NEEDS,
    ) {
        return;
    }
    let t = Fixture::new();
    let sshd = SshServer::start(&t);
    let url = sshd.url(&t.remote);
    // GIT_SSH_COMMAND trusts the host and offers no key; --ssh-key gives the one the server takes.
    let command = sshd.ssh_command(&sshd.known_hosts(), None);
    let key = sshd.key();
    let dir = app_dir(&t);
    let s = entrypoint_env(
        &t,
        &[
            "--url",
            &url,
            "--dir",
            path_str(&dir),
            "--ssh-key",
            path_str(&key),
        ],
        &[("GIT_SSH_COMMAND", &command)],
        &dir,
    );
    s.outcome.code(0).stderr_empty().stdout_contains("cloned ");
    assert_eq!(s.code.as_deref(), Some("print('hello')\n"));
    assert_eq!(s.cmd_pid, Some(s.pid));
    assert_eq!(t.rev_parse(&dir, "HEAD"), t.remote_tip());
    // ssh's stderr file does not stay behind in the new checkout.
    assert!(!dir.join(".git/pullstart-ssh.stderr").exists());
}

#[test]
fn ssh_clone_failures_say_which_in_one_line() {
    if !servers::available("ssh_clone_failures_say_which_in_one_line", SshServer::NEEDS) {
        return;
    }
    let t = Fixture::new();
    let sshd = SshServer::start(&t);
    let url = sshd.url(&t.remote);
    let dir = app_dir(&t);
    for (command, expected) in [
        (
            sshd.ssh_command(&sshd.empty_known_hosts(), Some(&sshd.key())),
            format!(
                "failed: the host key of `127.0.0.1` is not known; add it to known_hosts \
                 (check its fingerprint first: `ssh-keyscan -p {} 127.0.0.1` prints it); \
                 nothing was started",
                sshd.port
            ),
        ),
        (
            sshd.ssh_command(&sshd.known_hosts(), Some(&sshd.other_key())),
            "failed: authentication failed: the server refused the ssh key; ".to_owned(),
        ),
    ] {
        let s = entrypoint_env(
            &t,
            &["--url", &url, "--dir", path_str(&dir)],
            &[("GIT_SSH_COMMAND", &command)],
            &dir,
        );
        // ssh's own lines do not reach stderr: the one line is pullstart's.
        s.outcome.code(3).stdout_empty();
        let line = s.outcome.error_line();
        assert!(line.contains(&expected), "{line}");
        nothing_started(&s, &dir);
    }
    // Never accepted behind the user's back.
    assert_eq!(fs::read_to_string(sshd.empty_known_hosts()).unwrap(), "");
}

#[test]
fn json_output_is_one_object_for_a_clone_and_for_an_update_that_failed() {
    let t = Fixture::new();
    let dir = app_dir(&t);
    let url = url(&t);
    let s = entrypoint(
        &t,
        &["--url", &url, "--dir", path_str(&dir), "--output", "json"],
        &dir,
    );
    s.outcome.code(0).stderr_empty();
    let v = s.outcome.json();
    assert_eq!(v["result"], "updated", "{v}");
    assert_eq!(v["to"], t.remote_tip().as_str(), "{v}");
    assert_eq!(v["deployed"], t.remote_tip().as_str(), "{v}");
    assert_eq!(s.cmd_pid, Some(s.pid));

    // The checkout is there now; the remote is not: the object carries the error, the app starts.
    t.git(
        &dir,
        &["remote", "set-url", "origin", "/nonexistent/remote.git"],
    );
    let s = entrypoint(
        &t,
        &["--url", &url, "--dir", path_str(&dir), "--output", "json"],
        &dir,
    );
    s.outcome.code(0).stderr_empty();
    let v = s.outcome.json();
    assert_eq!(v["result"], "fetch_failed", "{v}");
    assert!(v["error"].is_string(), "{v}");
    assert_eq!(s.code.as_deref(), Some("print('hello')\n"));
    assert_eq!(s.cmd_pid, Some(s.pid));
}

#[test]
fn the_app_does_not_inherit_the_token() {
    let t = Fixture::new();
    let dir = app_dir(&t);
    let seen = t.root.join("token-seen");
    let out = t
        .pullstart()
        .env("PULLSTART_TOKEN", "s3cr3t-Zq81")
        .args([
            "entrypoint",
            "--url",
            &url(&t),
            "--dir",
            path_str(&dir),
            "--",
            "sh",
            "-c",
            &format!("echo \"${{PULLSTART_TOKEN-unset}}\" > '{}'", seen.display()),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(fs::read_to_string(&seen).unwrap(), "unset\n");
}
