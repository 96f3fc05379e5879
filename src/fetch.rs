//! Step 1 of a run: fetch the followed branch of the remote into its remote-tracking ref.
//!
//! Only `refs/heads/<branch>` is asked for (with protocol v2 the server lists only that ref),
//! the remote-tracking ref is force-updated (a remote that was force-pushed or rolled back is
//! the plan's business, not the fetch's), tags are not fetched, and the remote's configuration
//! is never written: the refspec is replaced in memory.
//!
//! Every failure to talk to the remote is a [`ExitCode::FetchFailed`]: transient, the next run
//! retries. Everything that ends up in an error, its context or its cause chain went through
//! [`redact`], so a URL with a token in it never shows; a token or password read from anywhere
//! else is registered with [`crate::redact::add_secret`] the moment it is read.
//!
//! Transports, and how a silent server is kept from hanging the run:
//! - `git://`: we open the TCP connection ourselves, with a connect timeout and read and write
//!   timeouts, because gix's own connector has a fixed 5 s connect timeout and no read timeout.
//!   The timeout bounds every wait for the server, not the whole fetch (a slow but steady
//!   transfer is fine). Name resolution cannot be bounded (`getaddrinfo` blocks).
//! - local paths and `file://`: gix spawns `git upload-pack`, so `git` must be on `PATH` (cron's
//!   `PATH` is short: `/usr/bin:/bin`). No timeout: the other side is a local process.
//! - `ssh://` and `user@host:path`: see [`ssh`]: the user's `core.sshCommand` / `GIT_SSH_COMMAND`
//!   / `GIT_SSH`, plus `BatchMode`, `ConnectTimeout` and `ServerAlive*` so that nothing prompts
//!   and a silent server is cut off, and ssh's stderr captured to name the cause.
//! - `http(s)://`: see [`http`]: reqwest with rustls, with the timeout, `http.sslCAInfo`,
//!   `http.sslVerify` and `http.proxy` applied; credentials from [`FetchOptions::token_file`],
//!   `PULLSTART_TOKEN`, `PULLSTART_TOKEN_FILE`, `pullstart.tokenFile`, or the checkout's git
//!   credential helpers, never from a prompt.

pub(crate) mod http;
/// The environment variable holding an https token; kept out of the compose and hook commands.
pub use http::take_token_from_environment;
pub(crate) mod ssh;

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use gix::bstr::ByteSlice;
use gix::protocol::transport::client::blocking_io::Transport;
use gix::remote::Direction;
use gix::url::Scheme;

use crate::exit::{ExitCode, Failure};
use crate::redact::redact;

/// What a fetch brought.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The remote branch's tip after the fetch; None when the remote has no such branch.
    pub tip: Option<gix::ObjectId>,
    /// The remote-tracking ref that was updated, e.g. refs/remotes/origin/main.
    pub tracking_ref: gix::refs::FullName,
    /// The remote's URL with credentials redacted, for messages.
    pub url: String,
}

/// The reflog message of the remote-tracking ref.
const REFLOG_MESSAGE: &str = "pullstart: fetch";

/// The remote-tracking ref for `branch` on `remote` (from the remote's fetch refspecs when they
/// map it, else refs/remotes/<remote>/<branch>).
///
/// A refspec that maps the branch outside `refs/remotes/` (a mirror's `refs/heads/*:refs/heads/*`,
/// say) is not used: a forced fetch into it could move a local branch under the checkout.
pub fn tracking_ref_name(
    repo: &gix::Repository,
    remote: &str,
    branch: &str,
) -> anyhow::Result<gix::refs::FullName> {
    let found = find_remote(repo, remote)?;
    let source = branch_ref(branch)?;
    tracking_ref_for(&found, remote, &source)
}

/// How a fetch may reach the remote.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Bounds every wait for the server (connecting, each read); not the whole transfer.
    pub timeout: Duration,
    /// ssh: use this private key (`-i KEY -o IdentitiesOnly=yes`), on top of the ssh command the
    /// checkout configures.
    pub ssh_key: Option<PathBuf>,
    /// http(s): read the token from this file (first line, surrounding whitespace removed). When
    /// unset: `PULLSTART_TOKEN`, then the file named by `PULLSTART_TOKEN_FILE`, then the file
    /// named by the git config `pullstart.tokenFile`; else the credential helpers configured for
    /// the checkout (`credential.helper`).
    pub token_file: Option<PathBuf>,
}

impl FetchOptions {
    /// Only a timeout: ssh and credentials as the checkout and the environment configure them.
    #[cfg(test)]
    pub fn new(timeout: Duration) -> Self {
        FetchOptions {
            timeout,
            ssh_key: None,
            token_file: None,
        }
    }
}

/// [`fetch_with`] with only a timeout.
#[cfg(test)]
pub fn fetch(
    repo: &gix::Repository,
    remote: &str,
    branch: &str,
    timeout: Duration,
) -> anyhow::Result<Fetched> {
    fetch_with(repo, remote, branch, &FetchOptions::new(timeout))
}

/// Fetch only refs/heads/<branch> of `remote` into its tracking ref (forced update, no tags),
/// within `options.timeout` where the transport allows.
///
/// A remote without that branch (or without any branch) is not an error: `tip` is `None` and
/// the tracking ref is left as it is.
pub fn fetch_with(
    repo: &gix::Repository,
    remote: &str,
    branch: &str,
    options: &FetchOptions,
) -> anyhow::Result<Fetched> {
    let found = find_remote(repo, remote)?;
    let source = branch_ref(branch)?;
    let tracking_ref = tracking_ref_for(&found, remote, &source)?;
    let want = Want::Branch {
        source: &source,
        tracking_ref: &tracking_ref,
    };
    let (tip, url) = fetch_wanted(repo, found, remote, branch, &want, options)?;
    Ok(Fetched {
        tip,
        tracking_ref,
        url,
    })
}

/// Fetch the one commit `commit` of `remote` (a submodule's recorded commit), writing no ref:
/// the caller points HEAD at it. Same transports, credentials and timeouts as [`fetch_with`];
/// the server must let a client ask for a commit by id (protocol v2 servers, and GitHub, GitLab,
/// Gitea and `git upload-pack` do for any commit they have). Returns the url, redacted.
pub fn fetch_commit(
    repo: &gix::Repository,
    remote: &str,
    commit: gix::ObjectId,
    options: &FetchOptions,
) -> anyhow::Result<String> {
    let found = find_remote(repo, remote)?;
    let what = commit.to_string();
    let (tip, url) = fetch_wanted(repo, found, remote, &what, &Want::Commit(commit), options)?;
    if tip.is_none() || !repo.has_object(commit) {
        return Err(failure(
            ExitCode::FetchFailed,
            format!("failed to fetch `{what}` from `{url}`: the remote does not have that commit; push it there (the next run retries)"),
        )
        .into());
    }
    Ok(url)
}

/// What a fetch asks the remote for.
enum Want<'a> {
    /// A branch, into its remote-tracking ref (forced).
    Branch {
        source: &'a gix::refs::FullName,
        tracking_ref: &'a gix::refs::FullName,
    },
    /// One commit by id, into no ref.
    Commit(gix::ObjectId),
}

impl Want<'_> {
    fn refspec(&self) -> String {
        match self {
            Want::Branch {
                source,
                tracking_ref,
            } => format!("+{}:{}", source.as_bstr(), tracking_ref.as_bstr()),
            Want::Commit(id) => id.to_string(),
        }
    }

    /// The remote's id for what is wanted, if the ref map has it.
    fn find(&self, mapping: &gix::remote::fetch::refmap::Mapping) -> Option<gix::ObjectId> {
        use gix::remote::fetch::refmap::Source;
        match (self, &mapping.remote) {
            (Want::Branch { source, .. }, Source::Ref(r)) if r.unpack().0 == source.as_bstr() => {
                mapping.remote.as_id().map(ToOwned::to_owned)
            }
            (Want::Commit(id), Source::ObjectId(remote)) if remote == id => Some(*id),
            _ => None,
        }
    }

    /// Whether there is nothing to receive and no ref to move.
    fn already_fetched(&self, repo: &gix::Repository, tip: gix::ObjectId) -> bool {
        match self {
            Want::Branch { tracking_ref, .. } => already_fetched(repo, tracking_ref, tip),
            Want::Commit(_) => repo.has_object(tip),
        }
    }
}

/// The transport part of a fetch: what is wanted (`branch`, for messages) of `found`, within
/// `options.timeout` where the transport allows. Returns the remote's id for it (`None`: no
/// such branch) and the url, redacted.
fn fetch_wanted(
    repo: &gix::Repository,
    mut found: gix::Remote<'_>,
    remote: &str,
    branch: &str,
    want: &Want<'_>,
    options: &FetchOptions,
) -> anyhow::Result<(Option<gix::ObjectId>, String)> {
    let timeout = options.timeout;
    let Some(url) = found.url(Direction::Fetch).cloned() else {
        return Err(failure(
            ExitCode::Usage,
            format!("remote `{remote}` has no url; set one with `git remote set-url {remote} URL`"),
        )
        .into());
    };
    let shown_url = redact(&url.to_bstring().to_str_lossy()).into_owned();
    let failed = |cause: &str, remedy: &str| {
        failure(
            ExitCode::FetchFailed,
            format!("failed to fetch `{branch}` from `{shown_url}`: {cause}; {remedy}"),
        )
    };
    const RETRY: &str = "the next run retries";
    let failed_because = |cause: Cause| match cause {
        Cause::Transient(cause) => failed(&cause, RETRY),
        Cause::NeedsFix { cause, remedy } => failed(&cause, &remedy),
    };

    let refspec = want.refspec();
    found
        .replace_refspecs(Some(refspec.as_str()), Direction::Fetch)
        .map_err(|err| redacted_chain(&err))
        .with_context(|| failure(ExitCode::Internal, format!("invalid refspec `{refspec}`")))?;
    let mut found = found.with_fetch_tags(gix::remote::fetch::Tags::None);

    if gix::interrupt::is_triggered() {
        return Err(failed("interrupted", RETRY).into());
    }
    let result = match url.scheme {
        Scheme::Git => connect_git(&found, timeout)
            .and_then(|transport| receive(found.to_connection_with_transport(transport), want)),
        Scheme::File => {
            // git resolves a relative path against the worktree (or the git dir of a bare
            // repository), gix against the process's current directory, which under cron is
            // `$HOME`. Resolve it as git does, in memory.
            let path = gix::path::from_bstr(url.path.as_bstr())
                .map_err(|err| redacted_chain(&err))
                .with_context(|| {
                    failed(
                        "the path is not valid on this system",
                        "fix the remote's url",
                    )
                })?;
            let resolved = repo.workdir().unwrap_or_else(|| repo.git_dir()).join(&path);
            if !resolved.exists() {
                return Err(anyhow::Error::msg(
                    redact(&format!("`{}` does not exist", resolved.display())).into_owned(),
                )
                .context(failed("no such directory", RETRY)));
            }
            if path.is_relative() {
                let mut absolute = url.clone();
                absolute.path = gix::path::into_bstr(resolved)
                    .map_err(|err| redacted_chain(&err))
                    .with_context(|| {
                        failure(ExitCode::Internal, format!("cannot resolve `{shown_url}`"))
                    })?
                    .into_owned();
                found = found
                    .with_url_without_url_rewrite(absolute)
                    .map_err(|err| redacted_chain(&err))
                    .with_context(|| {
                        failure(ExitCode::Internal, format!("cannot resolve `{shown_url}`"))
                    })?;
            }
            found
                .connect(Direction::Fetch)
                .and_then(|connection| receive(connection, want))
        }
        Scheme::Ssh => {
            let command = ssh::Command::prepare(repo, options.ssh_key.as_deref(), timeout)?;
            let result = command
                .connect(&found)
                .and_then(|transport| receive(found.to_connection_with_transport(transport), want));
            if let Err(err) = &result {
                let report = command.stderr_report();
                if !gix::interrupt::is_triggered() {
                    let cause = report
                        .as_ref()
                        .and_then(|report| report.cause(&url, timeout))
                        .unwrap_or_else(|| short_cause(err, &url.scheme, timeout));
                    let failure = failed_because(cause);
                    let mut chain = redacted_chain(err);
                    if let Some(report) = report {
                        chain = report.attach(chain);
                    }
                    return Err(chain.context(failure));
                }
            }
            result
        }
        Scheme::Http | Scheme::Https => {
            let credentials = http::Credentials::resolve(repo, options, &url)?;
            let source_of_credentials = credentials.describe();
            let result = http::transport_options(repo, &url, remote, timeout).and_then(|options| {
                let mut connection = found.connect(Direction::Fetch)?;
                connection.set_transport_options(options);
                connection.set_credentials(credentials.into_authenticate(repo));
                receive(connection, want)
            });
            if let Err(err) = &result {
                if !gix::interrupt::is_triggered() {
                    if let Some(cause) = http::cause(err, &source_of_credentials, timeout) {
                        return Err(redacted_chain(err).context(failed_because(cause)));
                    }
                }
            }
            result
        }
        Scheme::Ext | Scheme::Helper(_) | Scheme::HelperUrl(_) => {
            return Err(failure(
                ExitCode::Usage,
                format!(
                    "cannot fetch from `{shown_url}`: remote helpers are not supported; \
                     use an https://, ssh, git:// or local-path remote"
                ),
            )
            .into());
        }
    };
    let tip = match result {
        Ok(tip) => tip,
        Err(err) => {
            let failure = if gix::interrupt::is_triggered() {
                failed("interrupted", RETRY)
            } else {
                failed_because(short_cause(&err, &url.scheme, timeout))
            };
            return Err(redacted_chain(&err).context(failure));
        }
    };
    Ok((tip, shown_url))
}

/// Hand-shake, list the branch, and if the remote has it, receive the pack and update the ref.
fn receive<T: Transport>(
    connection: gix::remote::Connection<'_, '_, '_, T>,
    want: &Want<'_>,
) -> gix::Result<Option<gix::ObjectId>> {
    let repo = connection.remote().repo();
    let prepare = connection.prepare_fetch(gix::progress::Discard, Default::default())?;
    let tip = prepare
        .ref_map()
        .mappings
        .iter()
        .find_map(|mapping| want.find(mapping));
    let Some(tip) = tip else {
        // No such branch (or it is unborn): `receive` would fail with "none of the refspecs
        // matched". Dropping `prepare` ends the conversation politely.
        return Ok(None);
    };
    if want.already_fetched(repo, tip) {
        // The hot path of a cron run: nothing new. gix's `receive` would negotiate nothing and
        // write no ref, but it still resolves the committer for a reflog entry, which makes
        // jiff scan the whole time-zone database: half of a no-change run's instructions.
        return Ok(Some(tip));
    }
    let outcome = prepare
        .with_reflog_message(gix::remote::fetch::RefLogMessage::Override {
            message: REFLOG_MESSAGE.into(),
        })
        .receive(gix::progress::Discard, &gix::interrupt::IS_INTERRUPTED)?;
    let update_refs = match &outcome.status {
        gix::remote::fetch::Status::NoPackReceived { update_refs, .. }
        | gix::remote::fetch::Status::Change { update_refs, .. } => update_refs,
    };
    use gix::remote::fetch::refs::update::Mode;
    if let Some(rejected) = update_refs.updates.iter().find(|update| {
        !matches!(
            update.mode,
            Mode::NoChangeNeeded | Mode::FastForward | Mode::Forced | Mode::New
        )
    }) {
        return Err(gix::error::message!(
            "the remote-tracking ref was not updated: {}",
            rejected.mode
        )
        .into());
    }
    Ok(Some(tip))
}

/// Whether `tracking_ref` already points at `tip` and the object is here, so that there is
/// nothing to receive and no ref to move.
fn already_fetched(
    repo: &gix::Repository,
    tracking_ref: &gix::refs::FullName,
    tip: gix::ObjectId,
) -> bool {
    repo.try_find_reference(tracking_ref.as_ref())
        .ok()
        .flatten()
        .and_then(|mut reference| reference.peel_to_id().ok())
        .is_some_and(|id| id.detach() == tip && repo.has_object(tip))
}

/// Open a `git://` connection with timeouts on connecting, reading and writing.
fn connect_git(
    remote: &gix::Remote<'_>,
    timeout: Duration,
) -> gix::Result<gix::protocol::transport::client::git::blocking_io::Connection<TcpStream, TcpStream>>
{
    use gix::error::ResultExt as _;
    let (url, version) = remote.sanitized_url_and_version(Direction::Fetch)?;
    // A zero timeout would mean "no timeout" to some calls and be an error to others.
    let timeout = timeout.max(Duration::from_millis(1));
    let host = url
        .host()
        .ok_or_else(|| gix::error::message("the git:// url has no host"))?;
    let port = url.port_or_default().unwrap_or(9418);
    let addresses: Vec<SocketAddr> = (host.trim_start_matches('[').trim_end_matches(']'), port)
        .to_socket_addrs()
        .or_raise(|| gix::error::message!("could not resolve host `{host}`"))?
        .collect();
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    let mut stream = None;
    for address in &addresses {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            last_error = Some(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection timed out",
            ));
            break;
        }
        match TcpStream::connect_timeout(address, left) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(err) => last_error = Some(err),
        }
    }
    let stream = match stream {
        Some(stream) => stream,
        None => {
            let err = last_error
                .unwrap_or_else(|| std::io::Error::other("the host name resolved to no address"));
            return Err(gix::error::Error::from_error(err))
                .or_raise(|| gix::error::message!("could not connect to `{host}:{port}`"));
        }
    };
    stream
        .set_read_timeout(Some(timeout))
        .or_raise(|| gix::error::message("could not set a read timeout"))?;
    stream
        .set_write_timeout(Some(timeout))
        .or_raise(|| gix::error::message("could not set a write timeout"))?;
    // The protocol is small request/response exchanges: without TCP_NODELAY, Nagle's algorithm
    // and the server's delayed ACK stall each exchange, and a no-change fetch over loopback
    // takes ~57 ms instead of ~13 ms (gix's own connector does not set it).
    stream.set_nodelay(true).ok();
    let write = stream
        .try_clone()
        .or_raise(|| gix::error::message("could not clone the connection"))?;
    Ok(
        gix::protocol::transport::client::git::blocking_io::Connection::new(
            stream,
            write,
            version,
            url.path.clone(),
            Some((host.to_owned(), url.port)),
            gix::protocol::transport::client::git::ConnectMode::Daemon,
            false,
        ),
    )
}

/// The configured remote called `name`, or a usage error.
fn find_remote<'repo>(
    repo: &'repo gix::Repository,
    name: &str,
) -> anyhow::Result<gix::Remote<'repo>> {
    let checkout = repo
        .workdir()
        .unwrap_or_else(|| repo.git_dir())
        .display()
        .to_string();
    match repo.try_find_remote(name) {
        Some(Ok(remote)) => Ok(remote),
        None => Err(failure(
            ExitCode::Usage,
            format!(
                "unknown remote `{name}` in `{checkout}`; see `git remote -v` or pass --remote"
            ),
        )
        .into()),
        Some(Err(err)) => Err(redacted_chain(&err).context(failure(
            ExitCode::Usage,
            format!(
                "invalid configuration of remote `{name}` in `{checkout}`: {}; see `git remote -v`",
                lowercase_first(err.to_string().lines().next().unwrap_or_default())
            ),
        ))),
    }
}

/// `refs/heads/<branch>`; a full `refs/heads/…` name is taken as it is.
fn branch_ref(branch: &str) -> anyhow::Result<gix::refs::FullName> {
    let full = if branch.starts_with("refs/heads/") {
        branch.to_owned()
    } else {
        format!("refs/heads/{branch}")
    };
    gix::refs::FullName::try_from(full.as_str())
        .map_err(|err| anyhow::Error::msg(redact(&err.to_string()).into_owned()))
        .with_context(|| {
            failure(
                ExitCode::Usage,
                format!("invalid branch name `{branch}`; pass --branch with a valid branch name"),
            )
        })
}

/// Where `source` (`refs/heads/<branch>`) of `remote` goes: its fetch refspecs' mapping when it is
/// a remote-tracking ref, else `refs/remotes/<remote>/<branch>`.
fn tracking_ref_for(
    remote: &gix::Remote<'_>,
    name: &str,
    source: &gix::refs::FullName,
) -> anyhow::Result<gix::refs::FullName> {
    let null = gix::ObjectId::null(remote.repo().object_hash());
    let group = gix::refspec::MatchGroup::from_fetch_specs(
        remote
            .refspecs(Direction::Fetch)
            .iter()
            .map(gix::refspec::RefSpec::to_ref),
    );
    let item = gix::refspec::match_group::Item {
        full_ref_name: source.as_bstr(),
        target: &null,
        object: None,
    };
    let mapped = group
        .match_lhs(std::iter::once(item))
        .mappings
        .into_iter()
        .find_map(|mapping| {
            let rhs = mapping.rhs.filter(|_| mapping.item_index.is_some())?;
            let full = gix::refs::FullName::try_from(rhs.into_owned()).ok()?;
            full.as_bstr().starts_with(b"refs/remotes/").then_some(full)
        });
    if let Some(full) = mapped {
        return Ok(full);
    }
    let short = source
        .as_bstr()
        .strip_prefix(b"refs/heads/")
        .unwrap_or(source.as_bstr());
    let fallback = format!("refs/remotes/{name}/{}", short.to_str_lossy());
    gix::refs::FullName::try_from(fallback.as_str())
        .map_err(|err| anyhow::Error::msg(redact(&err.to_string()).into_owned()))
        .with_context(|| {
            failure(
                ExitCode::Usage,
                format!(
                    "remote `{name}` and branch `{}` make no valid ref name `{fallback}`",
                    short.to_str_lossy()
                ),
            )
        })
}

/// A [`Failure`] whose message went through [`redact`] (remote names and branches are user input).
fn failure(code: ExitCode, message: String) -> Failure {
    Failure::new(code, redact(&message).into_owned())
}

/// The causes of a gix error, outermost first, each redacted and without repeats.
fn causes(err: &gix::Error) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for cause in err.iter_errors() {
        let text = redact(&cause.to_string()).into_owned();
        if !text.is_empty() && !out.contains(&text) {
            out.push(text);
        }
    }
    out
}

/// A gix error as an anyhow chain of redacted messages. The typed original is dropped on purpose:
/// its Display, Debug or any of its sources could print the URL in full.
fn redacted_chain(err: &gix::Error) -> anyhow::Error {
    let mut causes = causes(err).into_iter().rev();
    let innermost = causes.next().unwrap_or_else(|| "unknown error".to_owned());
    causes.fold(anyhow::Error::msg(innermost), |chain, outer| {
        chain.context(outer)
    })
}

/// What went wrong, in the few words after "failed to fetch … from …:".
pub(crate) enum Cause {
    /// The usual: the next run retries.
    Transient(String),
    /// Retrying will not help until someone fixes something.
    NeedsFix { cause: String, remedy: String },
}

fn short_cause(err: &gix::Error, scheme: &Scheme, timeout: Duration) -> Cause {
    use std::io::ErrorKind;
    for cause in err.iter_errors() {
        if let Some(gix::protocol::transport::client::Error::InvokeProgram { source, command }) =
            cause.downcast_ref()
        {
            if source.kind() == ErrorKind::NotFound {
                let program = if *scheme == Scheme::Ssh { "ssh" } else { "git" };
                return Cause::NeedsFix {
                    cause: format!(
                        "`{program}` was not found (running `{}`)",
                        command.to_string_lossy()
                    ),
                    remedy: format!(
                        "install {program} or add its directory to PATH (cron's PATH is short)"
                    ),
                };
            }
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                ErrorKind::TimedOut | ErrorKind::WouldBlock => {
                    return Cause::Transient(format!("no answer within {}", seconds(timeout)));
                }
                ErrorKind::ConnectionRefused => {
                    return Cause::Transient("connection refused".to_owned())
                }
                _ => {}
            }
        }
    }
    let probable = redact(&err.probable_cause().to_string()).into_owned();
    let top = redact(&err.to_string()).into_owned();
    let mut cause = if probable == top || probable.is_empty() {
        top
    } else {
        format!("{top}: {probable}")
    };
    // Keep it one short line: the whole chain is there for --verbose.
    if let Some(newline) = cause.find('\n') {
        cause.truncate(newline);
    }
    Cause::Transient(lowercase_first(&cause))
}

/// `Could not…` → `could not…`, as cargo's messages read; names and acronyms (`IO`) stay.
fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && !second.is_uppercase() => {
            let mut out = String::with_capacity(text.len());
            out.extend(first.to_lowercase());
            out.push(second);
            out.push_str(chars.as_str());
            out
        }
        _ => text.to_owned(),
    }
}

/// `2 s`, `1.5 s`, `250 ms`.
fn seconds(duration: Duration) -> String {
    let mut out = String::new();
    if duration < Duration::from_secs(1) {
        let _ = write!(out, "{} ms", duration.as_millis());
    } else {
        // One decimal, without a trailing `.0`: what is left of a deadline (2.98 s) reads `3 s`.
        let _ = write!(out, "{:.1}", duration.as_secs_f64());
        if out.ends_with(".0") {
            out.truncate(out.len() - 2);
        }
        out.push_str(" s");
    }
    out
}

#[cfg(test)]
mod tests {
    //! Real repositories made by the git CLI in a temporary directory, hermetic: no system or
    //! global config, no inherited `GIT_*` variables, a temporary `HOME`, and a gix repository
    //! opened isolated from the environment.

    use std::net::TcpListener;
    use std::os::unix::process::CommandExt;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};

    use super::*;

    /// The exit code of `err`: its outermost [`Failure`], whether root or `.context(..)`.
    ///
    /// Not `exit::code_of` (yet): that one walks `chain()`, and a `.context(Failure)` layer
    /// shows in `chain()` as anyhow's private context wrapper, which never downcasts to `Failure`.
    /// `anyhow::Error::downcast_ref` does see context layers.
    fn code_of(err: &anyhow::Error) -> ExitCode {
        err.downcast_ref::<Failure>()
            .map_or(ExitCode::Internal, |failure| failure.code)
    }

    const TIMEOUT: Duration = Duration::from_secs(10);

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        /// A bare `remote.git` with one commit on `main`, a `work` clone to push from and a
        /// `local` clone to fetch into.
        fn new() -> Self {
            let fixture = Self::empty();
            fixture.commit("a.txt", "one");
            fixture.git(&fixture.path("local"), &["fetch", "-q", "origin"]);
            fixture
        }

        /// The same, but nothing was ever pushed: the remote has no branch at all.
        fn empty() -> Self {
            let fixture = Fixture {
                dir: tempfile::tempdir().expect("tempdir"),
            };
            let root = fixture.dir.path().to_owned();
            fixture.git(&root, &["init", "-q", "--bare", "remote.git"]);
            fixture.git(&root, &["clone", "-q", "remote.git", "work"]);
            fixture.git(&root, &["clone", "-q", "remote.git", "local"]);
            fixture
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn git(&self, cwd: &Path, args: &[&str]) -> String {
            let mut cmd = Command::new("git");
            hermetic(&mut cmd, self.dir.path());
            let out = cmd.args(args).current_dir(cwd).output().expect("git runs");
            assert!(
                out.status.success(),
                "git {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout)
                .expect("utf-8")
                .trim()
                .to_owned()
        }

        /// Commit `content` to `file` in `work` and push it; the new tip.
        fn commit(&self, file: &str, content: &str) -> gix::ObjectId {
            let work = self.path("work");
            std::fs::write(work.join(file), content).expect("write");
            self.git(&work, &["add", file]);
            self.git(&work, &["commit", "-q", "-m", content]);
            self.git(&work, &["push", "-q", "-f", "origin", "HEAD:main"]);
            self.remote_tip()
        }

        fn remote_tip(&self) -> gix::ObjectId {
            let hex = self.git(&self.path("remote.git"), &["rev-parse", "main"]);
            gix::ObjectId::from_hex(hex.as_bytes()).expect("hex")
        }

        fn set_url(&self, url: &str) {
            self.git(&self.path("local"), &["remote", "set-url", "origin", url]);
        }

        fn repo(&self) -> gix::Repository {
            let mut repo =
                gix::open_opts(self.path("local"), gix::open::Options::isolated()).expect("open");
            repo.committer_or_set_fallback("pullstart", "pullstart@localhost")
                .expect("committer");
            repo
        }

        fn tracking(&self) -> String {
            self.git(
                &self.path("local"),
                &["rev-parse", "-q", "--verify", "refs/remotes/origin/main"],
            )
        }
    }

    fn hermetic(cmd: &mut Command, home: &Path) {
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("GIT_") || name == "SSH_AUTH_SOCK" {
                cmd.env_remove(name);
            }
        }
        cmd.env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("HOME", home)
            .env("GIT_AUTHOR_NAME", "A")
            .env("GIT_AUTHOR_EMAIL", "a@example.com")
            .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
            .env("GIT_COMMITTER_NAME", "A")
            .env("GIT_COMMITTER_EMAIL", "a@example.com")
            .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "init.defaultBranch")
            .env("GIT_CONFIG_VALUE_0", "main");
    }

    /// A `git daemon` serving the fixture's directory on a free loopback port, killed on drop.
    struct Daemon {
        child: Child,
        port: u16,
    }

    impl Daemon {
        fn start(fixture: &Fixture) -> Self {
            let port = free_port();
            let mut cmd = Command::new("git");
            hermetic(&mut cmd, fixture.dir.path());
            let child = cmd
                .arg("daemon")
                .arg("--export-all")
                .arg(format!("--base-path={}", fixture.dir.path().display()))
                .arg("--listen=127.0.0.1")
                .arg(format!("--port={port}"))
                .arg("--reuseaddr")
                // Its own process group: `git daemon` runs `git-daemon` as a child, which
                // killing `git` alone would leave behind.
                .process_group(0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("git daemon starts");
            let daemon = Daemon { child, port };
            let started = Instant::now();
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "git daemon did not listen"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            daemon
        }
    }

    impl Drop for Daemon {
        fn drop(&mut self) {
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = self.child.wait();
        }
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port()
    }

    fn message(err: &anyhow::Error) -> String {
        err.downcast_ref::<Failure>()
            .map_or_else(|| format!("{err:#}"), |failure| failure.message.clone())
    }

    #[track_caller]
    fn assert_fetched(fixture: &Fixture, fetched: &Fetched, tip: gix::ObjectId) {
        assert_eq!(fetched.tip, Some(tip));
        assert_eq!(fetched.tracking_ref.as_bstr(), "refs/remotes/origin/main");
        assert_eq!(
            fixture.tracking(),
            tip.to_string(),
            "the tracking ref equals the tip"
        );
    }

    #[test]
    fn local_path_fetches_new_commits_then_nothing() {
        let fixture = Fixture::new();
        let repo = fixture.repo();
        let tip = fixture.commit("b.txt", "two");
        let fetched = fetch(&repo, "origin", "main", TIMEOUT).expect("fetch");
        assert_fetched(&fixture, &fetched, tip);
        assert_eq!(
            fetched.url,
            fixture.path("remote.git").display().to_string()
        );
        let reflog = fixture.git(
            &fixture.path("local"),
            &["reflog", "-1", "--format=%gs", "refs/remotes/origin/main"],
        );
        assert_eq!(reflog, REFLOG_MESSAGE);

        let again = fetch(&repo, "origin", "main", TIMEOUT).expect("second fetch");
        assert_fetched(&fixture, &again, tip);
    }

    #[test]
    fn tracking_ref_is_forced_when_the_remote_rewinds() {
        let fixture = Fixture::new();
        let old = fixture.remote_tip();
        let repo = fixture.repo();
        fixture.commit("b.txt", "two");
        fetch(&repo, "origin", "main", TIMEOUT).expect("fetch");
        fixture.git(
            &fixture.path("remote.git"),
            &["update-ref", "refs/heads/main", &old.to_string()],
        );
        let fetched = fetch(&repo, "origin", "main", TIMEOUT).expect("fetch after rewind");
        assert_fetched(&fixture, &fetched, old);
    }

    #[test]
    fn only_the_branch_is_fetched_and_no_tags() {
        let fixture = Fixture::new();
        let work = fixture.path("work");
        fixture.git(&work, &["tag", "v1"]);
        fixture.git(
            &work,
            &["push", "-q", "origin", "v1", "HEAD:refs/heads/other"],
        );
        let tip = fixture.commit("b.txt", "two");
        let repo = fixture.repo();
        let fetched = fetch(&repo, "origin", "main", TIMEOUT).expect("fetch");
        assert_fetched(&fixture, &fetched, tip);
        let refs = fixture.git(
            &fixture.path("local"),
            &["for-each-ref", "--format=%(refname)"],
        );
        assert!(!refs.contains("refs/tags/v1"), "{refs}");
        assert!(!refs.contains("refs/remotes/origin/other"), "{refs}");
        // The configuration is untouched.
        let specs = fixture.git(
            &fixture.path("local"),
            &["config", "--get-all", "remote.origin.fetch"],
        );
        assert_eq!(specs, "+refs/heads/*:refs/remotes/origin/*");
    }

    #[test]
    fn file_url() {
        let fixture = Fixture::new();
        let url = format!("file://{}", fixture.path("remote.git").display());
        fixture.set_url(&url);
        let tip = fixture.commit("b.txt", "two");
        let fetched = fetch(&fixture.repo(), "origin", "main", TIMEOUT).expect("fetch");
        assert_fetched(&fixture, &fetched, tip);
        assert_eq!(fetched.url, url);
    }

    #[test]
    fn relative_path_is_relative_to_the_worktree() {
        // As git does it; gix alone would resolve it against the current directory.
        let fixture = Fixture::new();
        fixture.set_url("../remote.git");
        let tip = fixture.commit("b.txt", "two");
        let fetched = fetch(&fixture.repo(), "origin", "main", TIMEOUT).expect("fetch");
        assert_fetched(&fixture, &fetched, tip);
        assert_eq!(fetched.url, "../remote.git");
    }

    #[test]
    fn missing_local_remote_is_a_fetch_failure() {
        let fixture = Fixture::new();
        fixture.set_url("../gone.git");
        let err = fetch(&fixture.repo(), "origin", "main", TIMEOUT).expect_err("gone");
        assert_eq!(code_of(&err), ExitCode::FetchFailed, "{err:#}");
        assert_eq!(
            message(&err),
            "failed to fetch `main` from `../gone.git`: no such directory; the next run retries"
        );
        // A directory that is no repository.
        std::fs::create_dir(fixture.path("plain")).expect("mkdir");
        fixture.set_url(&fixture.path("plain").display().to_string());
        let err = fetch(&fixture.repo(), "origin", "main", TIMEOUT).expect_err("no repository");
        assert_eq!(code_of(&err), ExitCode::FetchFailed, "{err:#}");
    }

    #[test]
    fn git_daemon() {
        let fixture = Fixture::new();
        let daemon = Daemon::start(&fixture);
        let url = format!("git://127.0.0.1:{}/remote.git", daemon.port);
        fixture.set_url(&url);
        let tip = fixture.commit("b.txt", "two");
        let repo = fixture.repo();
        let fetched = fetch(&repo, "origin", "main", TIMEOUT).expect("fetch");
        assert_fetched(&fixture, &fetched, tip);
        assert_eq!(fetched.url, url);
        let again = fetch(&repo, "origin", "main", TIMEOUT).expect("second fetch");
        assert_fetched(&fixture, &again, tip);

        // A repository the daemon does not have.
        fixture.set_url(&format!("git://127.0.0.1:{}/nope.git", daemon.port));
        let err =
            fetch(&fixture.repo(), "origin", "main", TIMEOUT).expect_err("no such repository");
        assert_eq!(code_of(&err), ExitCode::FetchFailed, "{err:#}");
    }

    #[test]
    fn empty_remote_has_no_tip() {
        let fixture = Fixture::empty();
        let fetched = fetch(&fixture.repo(), "origin", "main", TIMEOUT).expect("fetch");
        assert_eq!(fetched.tip, None);
        assert_eq!(fetched.tracking_ref.as_bstr(), "refs/remotes/origin/main");

        let daemon = Daemon::start(&fixture);
        fixture.set_url(&format!("git://127.0.0.1:{}/remote.git", daemon.port));
        let fetched = fetch(&fixture.repo(), "origin", "main", TIMEOUT).expect("fetch over git://");
        assert_eq!(fetched.tip, None);
    }

    #[test]
    fn missing_branch_has_no_tip() {
        let fixture = Fixture::new();
        let before = fixture.tracking();
        let fetched = fetch(&fixture.repo(), "origin", "nope", TIMEOUT).expect("fetch");
        assert_eq!(fetched.tip, None);
        assert_eq!(fetched.tracking_ref.as_bstr(), "refs/remotes/origin/nope");
        assert_eq!(fixture.tracking(), before);
        // A branch whose name has the followed one as a prefix is not mistaken for it.
        let fetched = fetch(&fixture.repo(), "origin", "mai", TIMEOUT).expect("fetch");
        assert_eq!(fetched.tip, None);
    }

    #[test]
    fn unknown_remote_is_a_usage_error() {
        let fixture = Fixture::new();
        let err = fetch(&fixture.repo(), "upstream", "main", TIMEOUT).expect_err("unknown remote");
        assert_eq!(code_of(&err), ExitCode::Usage);
        let text = message(&err);
        assert!(text.starts_with("unknown remote `upstream` in `"), "{text}");
        assert!(
            text.ends_with("`; see `git remote -v` or pass --remote"),
            "{text}"
        );
        let err =
            tracking_ref_name(&fixture.repo(), "upstream", "main").expect_err("unknown remote");
        assert_eq!(code_of(&err), ExitCode::Usage);
        // A URL is not a remote name, and its token does not show.
        let err = fetch(
            &fixture.repo(),
            "https://TOKEN@example.com/x.git",
            "main",
            TIMEOUT,
        )
        .expect_err("url");
        assert_eq!(code_of(&err), ExitCode::Usage);
        assert!(!format!("{err:#} {err:?}").contains("TOKEN"), "{err:#}");
    }

    #[test]
    fn invalid_branch_is_a_usage_error() {
        let fixture = Fixture::new();
        for branch in ["a b", "x..y", "*", "a:b", ""] {
            let err = fetch(&fixture.repo(), "origin", branch, TIMEOUT).expect_err(branch);
            assert_eq!(code_of(&err), ExitCode::Usage, "{branch}: {err:#}");
        }
    }

    #[test]
    fn nothing_listening_fails_fast() {
        let fixture = Fixture::new();
        let port = free_port();
        fixture.set_url(&format!("git://127.0.0.1:{port}/remote.git"));
        let started = Instant::now();
        let err = fetch(&fixture.repo(), "origin", "main", TIMEOUT).expect_err("refused");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(code_of(&err), ExitCode::FetchFailed);
        assert_eq!(
            message(&err),
            format!(
                "failed to fetch `main` from `git://127.0.0.1:{port}/remote.git`: connection refused; \
                 the next run retries"
            )
        );
    }

    #[test]
    fn silent_server_times_out() {
        let fixture = Fixture::new();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        // Accept, then neither read nor answer; keep the socket open until the test ends.
        let holder = std::thread::spawn(move || listener.accept().map(|(socket, _)| socket));
        fixture.set_url(&format!("git://127.0.0.1:{port}/remote.git"));
        let started = Instant::now();
        let err =
            fetch(&fixture.repo(), "origin", "main", Duration::from_secs(2)).expect_err("timeout");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(4),
            "took {took:?}"
        );
        assert_eq!(code_of(&err), ExitCode::FetchFailed);
        assert_eq!(
            message(&err),
            format!("failed to fetch `main` from `git://127.0.0.1:{port}/remote.git`: no answer within 2 s; the next run retries")
        );
        drop(holder.join());
    }

    /// Whether `program` is on PATH; when not, a loud skip, or a failure under CI.
    fn have(test: &str, program: &str) -> bool {
        let found = std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|dir| dir.join(program).is_file())
        });
        if !found {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
            assert!(!ci, "{test}: `{program}` is missing and CI is set");
            eprintln!("SKIPPED {test}: `{program}` is missing (run contrib/servers-setup.sh)");
        }
        found
    }

    /// A loopback port that accepts connections and never answers, until the test ends.
    fn silent_listener() -> (u16, std::thread::JoinHandle<Vec<TcpStream>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let holder = std::thread::spawn(move || {
            // Hold up to two connections (ssh or http may open one, retry once).
            let mut held = Vec::new();
            listener.set_nonblocking(true).ok();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(8) && held.len() < 2 {
                if let Ok((socket, _)) = listener.accept() {
                    held.push(socket);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            held
        });
        (port, holder)
    }

    #[test]
    fn silent_http_https_and_ssh_servers_time_out() {
        let mut urls = vec!["http", "https"];
        if have("silent_http_https_and_ssh_servers_time_out", "ssh") {
            urls.push("ssh");
        }
        for scheme in urls {
            let fixture = Fixture::new();
            let (port, holder) = silent_listener();
            let user = if scheme == "ssh" { "git@" } else { "" };
            let url = format!("{scheme}://{user}127.0.0.1:{port}/remote.git");
            fixture.set_url(&url);
            if scheme == "ssh" {
                fixture.git(
                    &fixture.path("local"),
                    &["config", "core.sshCommand", "ssh -F /dev/null"],
                );
            }
            let started = Instant::now();
            let err = fetch(&fixture.repo(), "origin", "main", Duration::from_secs(2))
                .expect_err("timeout");
            let took = started.elapsed();
            assert!(
                took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
                "{scheme}: took {took:?}: {err:#}"
            );
            assert_eq!(code_of(&err), ExitCode::FetchFailed, "{err:#}");
            assert_eq!(
                message(&err),
                format!("failed to fetch `main` from `{url}`: no answer within 2 s; the next run retries"),
                "{err:#}"
            );
            drop(holder.join());
        }
    }

    #[test]
    fn ssh_command_is_non_interactive_bounded_and_uses_the_key() {
        // A stand-in `ssh` that records its arguments and fails like a refused connection.
        let fixture = Fixture::new();
        let bin = fixture.path("bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        let args = fixture.path("ssh-args");
        let fake = bin.join("ssh");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > '{}'\n\
                 echo 'ssh: connect to host 127.0.0.1 port 22: Connection refused' >&2\nexit 255\n",
                args.display()
            ),
        )
        .expect("write");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let key = fixture.path("deploy key");
        std::fs::write(&key, "not really a key").expect("key");
        fixture.set_url("ssh://git@127.0.0.1/srv/app.git");
        fixture.git(
            &fixture.path("local"),
            &[
                "config",
                "core.sshCommand",
                &format!("{} -o BatchMode=no -F /dev/null", fake.display()),
            ],
        );
        let options = FetchOptions {
            timeout: Duration::from_secs(7),
            ssh_key: Some(key.clone()),
            token_file: None,
        };
        let err = fetch_with(&fixture.repo(), "origin", "main", &options).expect_err("refused");
        assert_eq!(code_of(&err), ExitCode::FetchFailed, "{err:#}");
        assert_eq!(
            message(&err),
            "failed to fetch `main` from `ssh://git@127.0.0.1/srv/app.git`: connection refused; the next run retries"
        );
        // ssh's stderr went to the cause chain, not to ours, and its file is gone.
        assert!(
            format!("{err:#}").contains("ssh said: ssh: connect to host"),
            "{err:#}"
        );
        assert!(!fixture.path("local/.git").join(ssh::STDERR_FILE).exists());
        let recorded = std::fs::read_to_string(&args).expect("the stand-in ran");
        let recorded: Vec<&str> = recorded.lines().collect();
        let expected_start = [
            "-o",
            "BatchMode=no",
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=7",
            "-o",
            "ServerAliveInterval=3",
            "-o",
            "ServerAliveCountMax=3",
            "-i",
            key.to_str().expect("utf-8"),
            "-o",
            "IdentitiesOnly=yes",
        ];
        assert_eq!(
            &recorded[..expected_start.len()],
            &expected_start,
            "{recorded:?}"
        );
        assert!(
            recorded.ends_with(&["git@127.0.0.1", "git-upload-pack", "'/srv/app.git'"]),
            "{recorded:?}"
        );

        // A key that cannot be read is a usage error, before ssh runs.
        std::fs::remove_file(&args).expect("rm");
        let options = FetchOptions {
            ssh_key: Some(fixture.path("missing-key")),
            ..options
        };
        let err = fetch_with(&fixture.repo(), "origin", "main", &options).expect_err("no key");
        assert_eq!(code_of(&err), ExitCode::Usage, "{err:#}");
        assert!(
            message(&err).starts_with("cannot read the ssh key `"),
            "{err:#}"
        );
        assert!(!args.exists());

        // A key with a command that is not OpenSSH is refused, unless ssh.variant says it is.
        let wrapper = bin.join("my-wrapper");
        std::fs::copy(&fake, &wrapper).expect("copy");
        fixture.git(
            &fixture.path("local"),
            &["config", "core.sshCommand", &wrapper.display().to_string()],
        );
        let options = FetchOptions {
            ssh_key: Some(key.clone()),
            ..options
        };
        let err = fetch_with(&fixture.repo(), "origin", "main", &options).expect_err("not ssh");
        assert_eq!(code_of(&err), ExitCode::Usage, "{err:#}");
        fixture.git(&fixture.path("local"), &["config", "ssh.variant", "ssh"]);
        let err = fetch_with(&fixture.repo(), "origin", "main", &options).expect_err("refused");
        assert_eq!(code_of(&err), ExitCode::FetchFailed, "{err:#}");
        assert!(std::fs::read_to_string(&args)
            .expect("ran")
            .contains("IdentitiesOnly=yes"));
    }

    #[test]
    fn credentials_never_show() {
        let fixture = Fixture::new();
        let port = free_port();
        fixture.set_url(&format!("git://user:s3cret@127.0.0.1:{port}/remote.git"));
        let err = fetch(&fixture.repo(), "origin", "main", TIMEOUT).expect_err("refused");
        let all = format!(
            "{err:#} | {err:?} | {}",
            err.chain()
                .map(|c| format!("{c:?}"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        assert!(!all.contains("s3cret"), "{all}");

        // Nothing listens there: refused, and neither the token nor the password shows.
        // Over plain http a url's password is not even tried.
        for (url, cause) in [
            (
                format!("https://ghp_T0KEN@127.0.0.1:{port}/o/r.git"),
                "connection refused; the next run retries",
            ),
            (
                format!("http://u:T0KEN@127.0.0.1:{port}/o/r.git"),
                "credentials are never sent over plain http; use the https:// url of the repository",
            ),
        ] {
            fixture.set_url(&url);
            let err = fetch(&fixture.repo(), "origin", "main", TIMEOUT).expect_err("http");
            assert_eq!(code_of(&err), ExitCode::FetchFailed, "{err:#}");
            let shown = redact(&url).into_owned();
            assert!(shown.contains("***"), "{shown}");
            assert_eq!(
                message(&err),
                format!("failed to fetch `main` from `{shown}`: {cause}")
            );
            let all = format!(
                "{err:#} | {err:?} | {}",
                err.chain()
                    .map(|c| format!("{c:?}"))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
            assert!(!all.contains("T0KEN"), "{all}");
        }

        // A local path that is no repository: the error chain names it, redacted.
        fixture.set_url("/nonexistent/u:pw@x/repo.git");
        let err = fetch(&fixture.repo(), "origin", "main", TIMEOUT).expect_err("no repository");
        assert_eq!(code_of(&err), ExitCode::FetchFailed, "{err:#}");
    }

    #[test]
    fn tracking_ref_from_refspecs() {
        let fixture = Fixture::new();
        let local = fixture.path("local");
        let name = |remote: &str, branch: &str| {
            tracking_ref_name(&fixture.repo(), remote, branch)
                .expect("name")
                .as_bstr()
                .to_string()
        };
        assert_eq!(name("origin", "main"), "refs/remotes/origin/main");
        assert_eq!(
            name("origin", "refs/heads/main"),
            "refs/remotes/origin/main"
        );
        assert_eq!(name("origin", "feature/x"), "refs/remotes/origin/feature/x");

        fixture.git(
            &local,
            &[
                "config",
                "--replace-all",
                "remote.origin.fetch",
                "+refs/heads/*:refs/remotes/up/*",
            ],
        );
        assert_eq!(name("origin", "main"), "refs/remotes/up/main");
        // A mirror refspec would write local branches: not used.
        fixture.git(
            &local,
            &[
                "config",
                "--replace-all",
                "remote.origin.fetch",
                "+refs/heads/*:refs/heads/*",
            ],
        );
        assert_eq!(name("origin", "main"), "refs/remotes/origin/main");
        // A refspec that does not map the branch.
        fixture.git(
            &local,
            &[
                "config",
                "--replace-all",
                "remote.origin.fetch",
                "+refs/heads/dev:refs/remotes/origin/dev",
            ],
        );
        assert_eq!(name("origin", "main"), "refs/remotes/origin/main");
        // Negative refspecs exclude.
        fixture.git(
            &local,
            &[
                "config",
                "--replace-all",
                "remote.origin.fetch",
                "+refs/heads/*:refs/remotes/up/*",
            ],
        );
        fixture.git(
            &local,
            &["config", "--add", "remote.origin.fetch", "^refs/heads/main"],
        );
        assert_eq!(name("origin", "main"), "refs/remotes/origin/main");
        assert_eq!(name("origin", "dev"), "refs/remotes/up/dev");
        // No refspec at all.
        fixture.git(&local, &["config", "--unset-all", "remote.origin.fetch"]);
        assert_eq!(name("origin", "main"), "refs/remotes/origin/main");

        // The fetch writes where the name says.
        fixture.git(
            &local,
            &[
                "config",
                "--add",
                "remote.origin.fetch",
                "+refs/heads/*:refs/remotes/up/*",
            ],
        );
        let tip = fixture.commit("b.txt", "two");
        let fetched = fetch(&fixture.repo(), "origin", "main", TIMEOUT).expect("fetch");
        assert_eq!(fetched.tracking_ref.as_bstr(), "refs/remotes/up/main");
        assert_eq!(
            fixture.git(&local, &["rev-parse", "refs/remotes/up/main"]),
            tip.to_string()
        );
    }

    #[test]
    fn short_words() {
        assert_eq!(seconds(Duration::from_secs(2)), "2 s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(seconds(Duration::from_millis(2980)), "3 s");
        assert_eq!(seconds(Duration::from_millis(120_000)), "120 s");
        assert_eq!(seconds(Duration::from_millis(250)), "250 ms");
        assert_eq!(lowercase_first("Could not connect"), "could not connect");
        assert_eq!(lowercase_first("IO error"), "IO error");
        assert_eq!(lowercase_first(""), "");
    }
}
