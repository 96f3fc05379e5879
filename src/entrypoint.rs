//! `pullstart entrypoint --url URL --dir DIR [--branch B] -- CMD [ARGS...]`: deliver the code at
//! a container's start, for an image that holds none.
//!
//! - DIR missing or empty: clone URL (branch B, else the remote's HEAD) into it with gix's clone,
//!   whose connection gets what `pullstart run`'s fetch gives its own ([`configure`]): over
//!   http(s) the token (`--token-file`, `PULLSTART_TOKEN`, `PULLSTART_TOKEN_FILE`,
//!   `pullstart.tokenFile`) or the credential helpers without prompting, git's `http.*` settings
//!   and the timeout; over ssh the user's ssh command made non-interactive and bounded, with
//!   `--ssh-key` added. A failure is named in the same words as a run's (wrong credentials,
//!   untrusted certificate, unknown host key, refused connection...). A failed clone leaves DIR
//!   empty again and exits 3 (a clone cut short leaves its [`cloning_marker`], and the next start
//!   empties DIR and clones again) (2 when a token file or ssh key cannot be used, as for a run); CMD
//!   does not start (there is nothing to start it on).
//! - DIR holds a checkout: the same run as `pullstart run` ([`run::execute`]), with
//!   `Settings::entrypoint` set: fetch, guard, fast-forward, record the deployed commit, but no
//!   compose project is read and no service is touched (the app is not started yet). Whatever
//!   goes wrong there (the remote cannot be reached, local changes, a diverged branch, ...) is
//!   one warning line on stderr, and the app starts on the code that is there: the app must
//!   start.
//! - DIR not empty and not a checkout: exit 2.
//!
//! Then CMD is exec'd: it replaces pullstart in the same process (PID 1 in a container stays
//! PID 1 and passes to the app, which receives the container's signals itself).

use std::cell::RefCell;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use gix::protocol::transport::client::blocking_io::Transport;
use gix::remote::Direction;
use gix::url::Scheme;

use crate::exit::{self, ExitCode, Failure};
use crate::fetch::{http, ssh, Cause, FetchOptions};
use crate::redact::redact;
use crate::report::{self, Outcome, Style, Success};
use crate::settings::{Command, OutputFormat, Settings};
use crate::{metrics, record, run};

/// How long a clone that ignores the interrupt flag may go on after the deadline before the
/// process gives up on it.
const CLONE_GRACE: Duration = Duration::from_secs(5);

/// What is at `--dir`.
enum Dir {
    /// Missing, or a directory with no entries.
    Empty,
    /// Holds what a clone cut short left: the [`cloning_marker`] is still there.
    InterruptedClone,
    /// Holds `.git`.
    Checkout,
    /// Something else.
    Other,
}

/// Runs the entrypoint; returns only when CMD could not be started (or must not be): the exit
/// code.
pub fn entrypoint(settings: &Settings, style: Style) -> i32 {
    let entry = settings
        .entrypoint
        .as_ref()
        .expect("called for `entrypoint` only");
    let dir = &settings.repo;
    match inspect(dir) {
        Err(err) => return error(&err, style),
        Ok(Dir::Other) => {
            return error(
                &Failure::usage(format!(
                    "`{}` is neither empty nor a git checkout; empty it, or point --dir at a new directory",
                    dir.display()
                ))
                .into(),
                style,
            )
        }
        Ok(Dir::InterruptedClone) => {
            eprintln!(
                "pullstart: warning: the last clone into `{}` did not finish; cloning again",
                dir.display()
            );
            clear(dir);
            if let Err(code) = first_clone(settings, &entry.url, dir, style) {
                return code;
            }
        }
        Ok(Dir::Empty) => {
            if let Err(code) = first_clone(settings, &entry.url, dir, style) {
                return code;
            }
        }
        Ok(Dir::Checkout) => {
            let mut outcome = Outcome::new(Command::Run);
            let result = run::execute(settings, &mut outcome);
            let code = match &result {
                Ok(()) => report::finish(&outcome, &result, style),
                Err(err) => {
                    if gix::interrupt::is_triggered() {
                        // A signal came: the container is being stopped, not started.
                        return error(err, style);
                    }
                    if style.output == OutputFormat::Json {
                        // The one object of this invocation, with the error; the app starts.
                        report::finish(&outcome, &result, style)
                    } else {
                        eprintln!(
                            "pullstart: warning: {}; starting the app on the checkout as it is{}",
                            redact(&headline(err)),
                            head_of(dir).map_or_else(String::new, |id| format!(" ({id})"))
                        );
                        exit::code_of(err).code()
                    }
                }
            };
            if let Some(path) = &settings.metrics_file {
                metrics::record(path, settings, &outcome, code);
            }
        }
    }
    if let Err(err) = verify_head(settings, dir) {
        // Whatever the update did, the app must not start on a tree no trusted key signed.
        return error(&err, style);
    }
    exec(&entry.cmd)
}

/// With `verify_signatures`: HEAD of the checkout at `dir`, the tree the app starts on, is
/// signed by a trusted key (exit 9 otherwise).
fn verify_head(settings: &Settings, dir: &Path) -> anyhow::Result<()> {
    if settings.verify_signatures.is_none() {
        return Ok(());
    }
    let repo = gix::open(dir).with_context(|| format!("failed to open `{}`", dir.display()))?;
    verify_fetched(settings, &repo)
}

/// Clones into the empty `dir` and reports it; on failure, empties `dir` again and returns the
/// exit code (CMD must not start: there is nothing to start it on).
fn first_clone(settings: &Settings, url: &str, dir: &Path, style: Style) -> Result<(), i32> {
    match clone(settings, url, dir) {
        Ok(cloned) => {
            report_clone(&cloned, style);
            Ok(())
        }
        Err(err) => {
            clear(dir);
            Err(error(&err, style))
        }
    }
}

/// Replaces this process with `cmd`; returns the exit code when that failed.
fn exec(cmd: &[OsString]) -> i32 {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // The app does not inherit pullstart's token: `main` took it out of the environment.
    let err = std::process::Command::new(&cmd[0]).args(&cmd[1..]).exec();
    eprintln!(
        "pullstart: cannot start `{}`: {err}; check the command after `--`",
        redact(&cmd[0].to_string_lossy())
    );
    ExitCode::Usage.code()
}

fn inspect(dir: &Path) -> anyhow::Result<Dir> {
    let mut entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Dir::Empty),
        Err(err) => {
            return Err(anyhow::Error::new(err).context(Failure::usage(format!(
                "cannot read --dir `{}`; it must be a directory pullstart can read",
                dir.display()
            ))))
        }
    };
    if entries.next().is_none() {
        Ok(Dir::Empty)
    } else if cloning_marker(dir).exists() {
        Ok(Dir::InterruptedClone)
    } else if dir.join(".git").exists() {
        Ok(Dir::Checkout)
    } else {
        Ok(Dir::Other)
    }
}

/// The connection gix's clone opens: its transport is boxed.
type CloneConnection<'a, 'b, 'c> = gix::remote::Connection<'a, 'b, 'c, Box<dyn Transport + Send>>;

/// What the clone's connection was given, kept for the error message.
#[derive(Default)]
struct Setup {
    /// http(s): where the credentials come from ([`http::Credentials::describe`]).
    credentials: Option<String>,
    /// ssh: the command, whose stderr names the cause (dropping it removes that file), and the
    /// url it connected to.
    ssh: Option<(ssh::Command, gix::Url)>,
    /// Why the connection could not be set up (a token file or ssh key that cannot be read, a
    /// key for an ssh command that is not OpenSSH): a usage error, as for a run.
    error: Option<anyhow::Error>,
}

impl Setup {
    /// What went wrong, in the words of `pullstart run`'s fetch, where they know better than
    /// the clone's own error.
    fn cause(&self, err: &gix::Error, timeout: Duration) -> Option<String> {
        let cause = match (&self.credentials, &self.ssh) {
            (Some(credentials), _) => http::cause(err, credentials, timeout),
            (None, Some((command, url))) => command.stderr_report()?.cause(url, timeout),
            (None, None) => None,
        }?;
        Some(match cause {
            Cause::Transient(cause) => cause,
            Cause::NeedsFix { cause, remedy } => format!("{cause}; {remedy}"),
        })
    }

    /// `chain` with ssh's stderr as one more cause, for `--verbose`.
    fn attach(&self, chain: anyhow::Error) -> anyhow::Error {
        match self
            .ssh
            .as_ref()
            .and_then(|(command, _)| command.stderr_report())
        {
            Some(report) => report.attach(chain),
            None => chain,
        }
    }
}

/// Gives the clone's connection what [`crate::fetch::fetch_with`] gives its own, from the
/// clone's repository (whose configuration is the global one: there is no repository config
/// yet): over http(s) the transport options and credentials of [`http`], over ssh the
/// non-interactive, bounded command of [`ssh`] (the user's `core.sshCommand` /
/// `GIT_SSH_COMMAND` with `--ssh-key` added). Other transports are left as gix made them.
fn configure(
    connection: &mut CloneConnection<'_, '_, '_>,
    options: &FetchOptions,
    setup: &RefCell<Setup>,
) -> gix::Result<()> {
    let remote = connection.remote();
    let repo = remote.repo();
    let Some(url) = remote.url(Direction::Fetch).cloned() else {
        return Ok(());
    };
    let unusable = |err: anyhow::Error| {
        setup.borrow_mut().error = Some(err);
        gix::error::message("the connection could not be set up")
    };
    match url.scheme {
        Scheme::Http | Scheme::Https => {
            let name = remote
                .name()
                .map_or_else(|| "origin".to_owned(), |name| name.as_bstr().to_string());
            let credentials = http::Credentials::resolve(repo, options, &url).map_err(unusable)?;
            setup.borrow_mut().credentials = Some(credentials.describe());
            let transport = http::transport_options(repo, &url, &name, options.timeout)?;
            let authenticate = credentials.into_authenticate(repo);
            connection.set_transport_options(transport);
            connection.set_credentials(authenticate);
        }
        Scheme::Ssh => {
            let command = ssh::Command::prepare(repo, options.ssh_key.as_deref(), options.timeout)
                .map_err(unusable)?;
            let transport = command.connect(remote)?;
            setup.borrow_mut().ssh = Some((command, url));
            *connection.transport_mut() = Box::new(transport);
        }
        _ => {}
    }
    Ok(())
}

/// What the first clone produced.
struct Cloned {
    /// The url as shown (credentials masked).
    url: String,
    dir: std::path::PathBuf,
    branch: String,
    head: Option<gix::ObjectId>,
}

/// The clone's report: a summary line, or with `--output json` the invocation's one object.
fn report_clone(cloned: &Cloned, style: Style) {
    if style.output == OutputFormat::Json {
        let mut outcome = Outcome::new(Command::Run);
        outcome.branch = Some(cloned.branch.clone());
        outcome.to = cloned.head;
        outcome.deployed = cloned.head;
        outcome.success = Success::Updated;
        report::finish(&outcome, &Ok(()), style);
    } else if !style.quiet {
        let line = format!(
            "cloned {} {} at {} into {}",
            cloned.url,
            cloned.branch,
            cloned
                .head
                .map_or_else(|| "(no commits)".into(), crate::run::short),
            cloned.dir.display()
        );
        println!("{}", redact(&line));
    }
}

/// Clones `url` into the empty or missing `dir` and records the deployed commit. Every failure is exit 3, but a token file or ssh key that cannot be used (exit
/// 2, as for a run).
fn clone(settings: &Settings, url: &str, dir: &Path) -> anyhow::Result<Cloned> {
    let failed = |what: String| Failure::new(ExitCode::FetchFailed, what);
    let shown = redact(url).into_owned();
    std::fs::create_dir_all(dir).map_err(|err| {
        anyhow::Error::new(err).context(failed(format!(
            "cannot create --dir `{}`; nothing was started",
            dir.display()
        )))
    })?;
    // The clone checks this flag between steps: set by the first signal and at the deadline.
    let interrupt = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    watchdog(
        settings.timeout,
        Arc::clone(&interrupt),
        Arc::clone(&done),
        dir.to_path_buf(),
        shown.clone(),
    );
    let options = FetchOptions {
        timeout: settings.timeout,
        ssh_key: settings.ssh_key.clone(),
        token_file: settings.token_file.clone(),
    };
    let setup = Rc::new(RefCell::new(Setup::default()));
    // Kept until a failure is explained: dropping it after a failed fetch removes what the clone
    // made in DIR, ssh's stderr file (in DIR/.git) included.
    let mut fetching = None;
    // Set when the fetched tip fails `verify_signatures`: no file is written then.
    let mut untrusted = None;
    let result = (|| -> gix::Result<gix::Repository> {
        let configured = Rc::clone(&setup);
        let mut prepare = gix::prepare_clone(url, dir)?
            .configure_connection(move |connection| configure(connection, &options, &configured));
        let marker = cloning_marker(dir);
        std::fs::write(&marker, "")
            .map_err(|err| gix::error::message!("cannot write `{}`: {err}", marker.display()))?;
        if let Some(branch) = &settings.branch {
            prepare = prepare.with_ref_name(Some(branch.as_str()))?;
        }
        let prepare = fetching.insert(prepare);
        let (mut checkout, _) = prepare.fetch_then_checkout(gix::progress::Discard, &interrupt)?;
        if let Err(err) = verify_fetched(settings, checkout.repo()) {
            untrusted = Some(err);
            return Err(gix::error::message("the fetched commit is not trusted").into());
        }
        let (repo, _) = checkout.main_worktree(gix::progress::Discard, &interrupt)?;
        crate::failpoint::hit("clone-checked-out");
        if interrupt.load(Ordering::SeqCst) {
            return Err(gix::error::message("interrupted (a signal, or --timeout passed)").into());
        }
        Ok(repo)
    })();
    done.store(true, Ordering::SeqCst);
    let mut setup = setup.take();
    if let Some(err) = setup.error.take().or(untrusted) {
        return Err(err);
    }
    let repo = result.map_err(|err| {
        let cause = (!interrupt.load(Ordering::SeqCst))
            .then(|| setup.cause(&err, settings.timeout))
            .flatten();
        let err = anyhow::Error::from(err);
        let chain = setup.attach(anyhow::Error::msg(redact(&format!("{err:#}")).into_owned()));
        chain.context(failed(format!(
            "clone of {shown} into `{}` failed: {}; nothing was started",
            dir.display(),
            redact(&cause.unwrap_or_else(|| first_line(&err)))
        )))
    })?;
    let head = repo.head_id().map(|id| id.detach()).ok();
    let branch = repo
        .head_name()
        .ok()
        .flatten()
        .map(|name| name.shorten().to_string())
        .unwrap_or_else(|| "(unborn)".into());
    if let Some(head) = head {
        record::set_deployed(&repo, None, head, "pullstart: cloned")
            .context("failed to record the deployed commit")
            .map_err(|err| {
                err.context(failed(format!(
                    "cloned into `{}`, but could not write refs/pullstart/deployed",
                    dir.display()
                )))
            })?;
    }
    std::fs::remove_file(cloning_marker(dir)).map_err(|err| {
        anyhow::Error::new(err).context(failed(format!(
            "cloned into `{}`, but could not remove `{}`",
            dir.display(),
            cloning_marker(dir).display()
        )))
    })?;
    Ok(Cloned {
        url: shown,
        dir: dir.to_path_buf(),
        branch,
        head,
    })
}

/// With `verify_signatures`: HEAD of `repo` (the commit the first clone is about to check out,
/// or the one the app starts on) is signed by a trusted key.
fn verify_fetched(settings: &Settings, repo: &gix::Repository) -> anyhow::Result<()> {
    let Some(config) = &settings.verify_signatures else {
        return Ok(());
    };
    let Ok(head) = repo.head_id() else {
        return Ok(()); // An empty remote: nothing to check out.
    };
    crate::verify::Trust::resolve(repo, config)?.verify_commit(repo, head.detach())
}

/// `DIR/.git/pullstart-cloning`: there from just after the clone creates the repository until
/// the deployed commit is recorded. A clone cut short (SIGKILL, the OOM killer, a power cut, or
/// the watchdog) leaves it, and the next start clones again instead of starting the app on
/// half the files.
fn cloning_marker(dir: &Path) -> std::path::PathBuf {
    dir.join(".git").join("pullstart-cloning")
}

/// Sets `interrupt` at the deadline or on a signal; gives the clone [`CLONE_GRACE`] to notice,
/// then ends the process with exit 3. It does not empty `dir`: the clone may still be writing
/// there, and a file it wrote after the clear would make `dir` look like no checkout at all.
/// The [`cloning_marker`] left in it makes the next start clear it and clone again.
fn watchdog(
    timeout: Duration,
    interrupt: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    dir: std::path::PathBuf,
    url: String,
) {
    let deadline = Instant::now() + timeout;
    std::thread::spawn(move || {
        let mut stop_at = None;
        loop {
            if done.load(Ordering::SeqCst) {
                return;
            }
            let now = Instant::now();
            if stop_at.is_none() && (now >= deadline || gix::interrupt::is_triggered()) {
                interrupt.store(true, Ordering::SeqCst);
                stop_at = Some(now + CLONE_GRACE);
            }
            if stop_at.is_some_and(|at| now >= at) {
                eprintln!(
                    "pullstart: clone of {url} into `{}` failed: timed out or interrupted; nothing was started",
                    dir.display()
                );
                std::process::exit(ExitCode::FetchFailed.code());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}

/// Empties `dir` (which was empty before the clone started); best effort.
fn clear(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let _ = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
    }
}

/// The first line of an error with its causes, short enough for one line.
fn first_line(err: &anyhow::Error) -> String {
    let text = format!("{err:#}");
    text.lines().next().unwrap_or_default().to_string()
}

/// The one line an error shows: its outermost [`Failure`]'s message, else the top of the chain.
fn headline(err: &anyhow::Error) -> String {
    exit::failure_of(err).map_or_else(|| format!("{err}"), |f| f.message.clone())
}

fn head_of(dir: &Path) -> Option<String> {
    let repo = gix::open(dir).ok()?;
    let id = repo.head_id().ok()?;
    Some(crate::run::short(id.detach()))
}

/// Prints an error as a run would (one line, or the JSON object) and returns its exit code.
fn error(err: &anyhow::Error, style: Style) -> i32 {
    let outcome = Outcome::new(Command::Run);
    let result = Err(anyhow::Error::msg(format!("{err:#}"))
        .context(Failure::new(exit::code_of(err), headline(err))));
    report::finish(&outcome, &result, style)
}
