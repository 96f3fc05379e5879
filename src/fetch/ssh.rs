//! The ssh transport: the user's ssh command, made non-interactive and bounded in time.
//!
//! The command is the one git would run: `core.sshCommand` or `GIT_SSH_COMMAND` (a shell
//! command), else `GIT_SSH` (a program), else `ssh`, with `ssh.variant` as git reads it. When it
//! is OpenSSH (its program is `ssh`, or `ssh.variant` says so) these options are appended, after
//! the user's own so that the user's win (for `-o`, OpenSSH takes the first value it sees):
//!
//! - `-o BatchMode=yes`: never a password, passphrase or host-key prompt; under cron a prompt
//!   would hang the run, and an unknown host key must fail, never be accepted;
//! - `-o ConnectTimeout=<timeout>`: bounds connecting and the banner exchange;
//! - `-o ServerAliveInterval=<timeout/3> -o ServerAliveCountMax=3`: a server that goes silent
//!   once the session is up is dropped after about the timeout;
//! - with an ssh key option: `-i KEY -o IdentitiesOnly=yes`.
//!
//! `StrictHostKeyChecking` is left alone: the user's `known_hosts` decides, and with
//! `BatchMode` an unknown host key fails the fetch.
//!
//! ssh's stderr (its own messages and the remote `git-upload-pack`'s) is redirected to a file in
//! the git directory (the run holds the lock, so the name is ours) instead of reaching the
//! terminal: the contract allows one error line, and gix would copy every line it does not
//! recognise to our stderr. On failure the file names the cause (unknown host key, refused key,
//! refused connection...), and its lines, redacted, join the cause chain for `--verbose`.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gix::protocol::transport::client::blocking_io::file::SpawnProcessOnDemand;
use gix::protocol::transport::client::blocking_io::ssh::{self as gix_ssh, ProgramKind};
use gix::remote::Direction;

use super::{failure, lowercase_first, seconds, Cause};
use crate::exit::ExitCode;
use crate::redact::redact;

/// The file ssh's stderr goes to, in the git directory.
pub(super) const STDERR_FILE: &str = "pullstart-ssh.stderr";

/// How many of ssh's last stderr lines are kept for the cause chain.
const KEPT_LINES: usize = 8;

/// The ssh command of one fetch. Dropping it removes the stderr file.
pub(crate) struct Command {
    options: gix_ssh::connect::Options,
    stderr: Option<PathBuf>,
}

impl Command {
    /// The command for `repo`'s configuration, with `key` and `timeout` applied.
    ///
    /// A usage error (exit 2) when the configuration cannot be read, the key cannot be read, or
    /// a key is given for an ssh command that is not OpenSSH.
    pub(crate) fn prepare(
        repo: &gix::Repository,
        key: Option<&Path>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let configured = repo.ssh_connect_options().map_err(|err| {
            failure(
                ExitCode::Usage,
                format!(
                    "invalid ssh configuration (core.sshCommand, GIT_SSH_COMMAND, GIT_SSH, ssh.variant): {}",
                    lowercase_first(&err.to_string())
                ),
            )
        })?;
        let key = match key {
            Some(key) => Some(readable_key(key)?),
            None => None,
        };
        let openssh = is_openssh(&configured);
        let mut command = match &configured.command {
            None => "ssh".to_owned(),
            Some(command) => {
                let text = command.to_str().ok_or_else(|| {
                    failure(
                        ExitCode::Usage,
                        "the configured ssh command is not valid UTF-8".to_owned(),
                    )
                })?;
                if configured.disallow_shell {
                    // GIT_SSH names a program, run without a shell: quote it for ours.
                    shell_words::quote(text).into_owned()
                } else {
                    text.to_owned()
                }
            }
        };
        if openssh {
            let secs = timeout.as_secs_f64().ceil().max(1.0) as u64;
            let interval = secs.div_ceil(3).max(1);
            command.push_str(&format!(
                " -o BatchMode=yes -o ConnectTimeout={secs} -o ServerAliveInterval={interval} -o ServerAliveCountMax=3"
            ));
            if let Some(key) = &key {
                let key = key.to_str().ok_or_else(|| {
                    failure(
                        ExitCode::Usage,
                        format!("the ssh key path `{}` is not valid UTF-8", key.display()),
                    )
                })?;
                command.push_str(&format!(
                    " -i {} -o IdentitiesOnly=yes",
                    shell_words::quote(key)
                ));
            }
        } else if key.is_some() {
            return Err(failure(
                ExitCode::Usage,
                format!(
                    "an ssh key was given, but the ssh command `{command}` is not OpenSSH's `ssh`; \
                     put the key into the ssh command, or set `git config ssh.variant ssh` if it takes OpenSSH's options"
                ),
            )
            .into());
        }
        let stderr = repo.git_dir().join(STDERR_FILE);
        let stderr = match (stderr.to_str(), fs::File::create(&stderr)) {
            (Some(path), Ok(_)) => {
                command.push_str(&format!(" 2>>{}", shell_words::quote(path)));
                Some(stderr)
            }
            // Not redirectable: gix shows ssh's lines as they come.
            _ => None,
        };
        Ok(Command {
            options: gix_ssh::connect::Options {
                command: Some(command.into()),
                disallow_shell: false,
                kind: if openssh {
                    Some(ProgramKind::Ssh)
                } else {
                    configured.kind
                },
            },
            stderr,
        })
    }

    /// The transport for `remote`'s fetch url.
    pub(crate) fn connect(&self, remote: &gix::Remote<'_>) -> gix::Result<SpawnProcessOnDemand> {
        let (url, version) = remote.sanitized_url_and_version(Direction::Fetch)?;
        gix_ssh::connect(url, version, self.options.clone(), false).map_err(gix::Error::from_error)
    }

    /// What ssh printed on stderr, if anything.
    pub(crate) fn stderr_report(&self) -> Option<Report> {
        let text = fs::read(self.stderr.as_ref()?).ok()?;
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !is_noise(line))
            .map(|line| redact(line).into_owned())
            .collect();
        (!lines.is_empty()).then_some(Report { lines })
    }
}

impl Drop for Command {
    fn drop(&mut self) {
        if let Some(path) = &self.stderr {
            let _ = fs::remove_file(path);
        }
    }
}

/// ssh's stderr lines, redacted.
pub(crate) struct Report {
    lines: Vec<String>,
}

impl Report {
    /// The cause these lines name, if they name one.
    pub(crate) fn cause(&self, url: &gix::Url, timeout: Duration) -> Option<Cause> {
        let text = self.lines.join("\n").to_lowercase();
        let has = |needle: &str| text.contains(needle);
        let host = url.host().unwrap_or("the server").to_owned();
        let port = url
            .port
            .map(|port| format!("-p {port} "))
            .unwrap_or_default();
        let known_hosts_name = match url.port {
            Some(port) => format!("[{host}]:{port}"),
            None => host.clone(),
        };
        if has("remote host identification has changed")
            || (has("host key for") && has("has changed"))
        {
            return Some(Cause::NeedsFix {
                cause: format!("the host key of `{host}` has CHANGED since it was added to known_hosts"),
                remedy: format!(
                    "if the change is expected, replace the old key (`ssh-keygen -R '{known_hosts_name}'`, then add the new one); \
                     otherwise someone may be intercepting the connection"
                ),
            });
        }
        if has("host key verification failed") || (has("host key is known") && has("no ")) {
            return Some(Cause::NeedsFix {
                cause: format!("the host key of `{host}` is not known"),
                remedy: format!(
                    "add it to known_hosts (check its fingerprint first: `ssh-keyscan {port}{host}` prints it)"
                ),
            });
        }
        if has("load key") || has("unprotected private key file") || has("bad permissions") {
            let detail = self
                .lines
                .iter()
                .find(|line| line.to_lowercase().contains("load key"))
                .cloned()
                .unwrap_or_else(|| "its permissions are too open".to_owned());
            return Some(Cause::NeedsFix {
                cause: format!("ssh cannot use the private key ({detail})"),
                remedy:
                    "check the key file: an OpenSSH private key without a passphrase, mode 0600"
                        .to_owned(),
            });
        }
        if has("permission denied") || has("too many authentication failures") {
            return Some(Cause::NeedsFix {
                cause: "authentication failed: the server refused the ssh key".to_owned(),
                remedy: "check the deploy key (--ssh-key, core.sshCommand, ~/.ssh/config) and that it may read the repository"
                    .to_owned(),
            });
        }
        if has("connection refused") {
            return Some(Cause::Transient("connection refused".to_owned()));
        }
        if has("timed out") || has("not responding") {
            return Some(Cause::Transient(format!(
                "no answer within {}",
                seconds(timeout)
            )));
        }
        if has("could not resolve hostname") {
            return Some(Cause::Transient(format!("cannot resolve host `{host}`")));
        }
        if has("does not appear to be a git repository")
            || has("not a git repository")
            || has("repository not found")
        {
            return Some(Cause::NeedsFix {
                cause: "the server has no such repository".to_owned(),
                remedy: "check the remote's url".to_owned(),
            });
        }
        let last = self.lines.last()?;
        Some(Cause::Transient(format!(
            "ssh: {}",
            lowercase_first(last.trim_start_matches("ssh: "))
        )))
    }

    /// `chain` with these lines as one more cause, for `--verbose`.
    pub(crate) fn attach(&self, chain: anyhow::Error) -> anyhow::Error {
        let start = self.lines.len().saturating_sub(KEPT_LINES);
        chain.context(format!("ssh said: {}", self.lines[start..].join(" | ")))
    }
}

/// Lines that name no cause.
fn is_noise(line: &str) -> bool {
    line.starts_with("Warning: Permanently added")
}

/// `key` as an absolute path, or a usage error when it cannot be read.
fn readable_key(key: &Path) -> anyhow::Result<PathBuf> {
    let absolute = std::path::absolute(key).unwrap_or_else(|_| key.to_owned());
    match fs::File::open(&absolute) {
        Ok(_) => Ok(absolute),
        Err(err) => Err(failure(
            ExitCode::Usage,
            format!(
                "cannot read the ssh key `{}`: {}; pass a readable private key",
                key.display(),
                lowercase_first(&io_message(&err))
            ),
        )
        .into()),
    }
}

/// An I/O error's message without the `(os error N)` suffix.
fn io_message(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// Whether the configured command is OpenSSH's `ssh` (so that its options can be added).
fn is_openssh(options: &gix_ssh::connect::Options) -> bool {
    if let Some(kind) = options.kind {
        return kind == ProgramKind::Ssh;
    }
    let Some(command) = &options.command else {
        return true;
    };
    if options.disallow_shell {
        return ProgramKind::from(command.as_os_str()) == ProgramKind::Ssh;
    }
    let Some(words) = command
        .to_str()
        .and_then(|text| shell_words::split(text).ok())
    else {
        return false;
    };
    words
        .iter()
        .find(|word| !is_assignment(word))
        .is_some_and(|program| ProgramKind::from(OsStr::new(program)) == ProgramKind::Ssh)
}

/// `NAME=value`, as a shell command may start with.
fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    fn options(
        command: Option<&str>,
        disallow_shell: bool,
        kind: Option<ProgramKind>,
    ) -> gix_ssh::connect::Options {
        gix_ssh::connect::Options {
            command: command.map(OsString::from),
            disallow_shell,
            kind,
        }
    }

    #[test]
    fn openssh_is_recognised() {
        assert!(is_openssh(&options(None, false, None)));
        assert!(is_openssh(&options(Some("ssh"), false, None)));
        assert!(is_openssh(&options(
            Some("/usr/bin/ssh -i '/k ey' -F /dev/null"),
            false,
            None
        )));
        assert!(is_openssh(&options(Some("LANG=C ssh -v"), false, None)));
        assert!(is_openssh(&options(Some("/usr/bin/ssh"), true, None)));
        assert!(is_openssh(&options(
            Some("my-wrapper"),
            false,
            Some(ProgramKind::Ssh)
        )));
        assert!(!is_openssh(&options(Some("plink -batch"), false, None)));
        assert!(!is_openssh(&options(Some("my-wrapper --x"), false, None)));
        assert!(!is_openssh(&options(
            Some("ssh"),
            false,
            Some(ProgramKind::Simple)
        )));
        assert!(!is_openssh(&options(Some("'unbalanced"), false, None)));
    }

    #[test]
    fn assignments() {
        assert!(is_assignment("A=b"));
        assert!(is_assignment("GIT_TRACE=1"));
        assert!(!is_assignment("=b"));
        assert!(!is_assignment("1A=b"));
        assert!(!is_assignment("-oA=b"));
        assert!(!is_assignment("ssh"));
    }

    fn cause_of(lines: &[&str], url: &str) -> String {
        let report = Report {
            lines: lines.iter().map(|line| line.to_string()).collect(),
        };
        let url = gix::url::parse(gix::bstr::BStr::new(url)).expect("url");
        match report.cause(&url, Duration::from_secs(5)).expect("a cause") {
            Cause::Transient(cause) => cause,
            Cause::NeedsFix { cause, remedy } => format!("{cause}; {remedy}"),
        }
    }

    #[test]
    fn causes_from_ssh_messages() {
        let url = "ssh://git@127.0.0.1:2222/srv/app.git";
        let unknown = cause_of(
            &[
                "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.",
                "Host key verification failed.",
            ],
            url,
        );
        assert!(
            unknown.starts_with("the host key of `127.0.0.1` is not known; add it to known_hosts"),
            "{unknown}"
        );
        assert!(
            unknown.contains("ssh-keyscan -p 2222 127.0.0.1"),
            "{unknown}"
        );
        let changed = cause_of(
            &[
                "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@",
                "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @",
                "Host key verification failed.",
            ],
            url,
        );
        assert!(
            changed.starts_with("the host key of `127.0.0.1` has CHANGED"),
            "{changed}"
        );
        assert!(
            changed.contains("ssh-keygen -R '[127.0.0.1]:2222'"),
            "{changed}"
        );
        assert!(
            cause_of(&["git@127.0.0.1: Permission denied (publickey)."], url)
                .starts_with("authentication failed")
        );
        assert_eq!(
            cause_of(
                &["ssh: connect to host 127.0.0.1 port 2222: Connection refused"],
                url
            ),
            "connection refused"
        );
        assert_eq!(
            cause_of(&["Connection timed out during banner exchange"], url),
            "no answer within 5 s"
        );
        assert_eq!(
            cause_of(
                &["ssh: Could not resolve hostname nope: Name or service not known"],
                "nope:x.git"
            ),
            "cannot resolve host `nope`"
        );
        assert!(cause_of(
            &["fatal: '/srv/x.git' does not appear to be a git repository"],
            url
        )
        .starts_with("the server has no such repository"));
        assert!(cause_of(
            &[
                "Load key \"/k\": bad permissions",
                "git@127.0.0.1: Permission denied (publickey)."
            ],
            url
        )
        .starts_with("ssh cannot use the private key (Load key \"/k\": bad permissions)"));
        assert_eq!(
            cause_of(&["Connection closed by 127.0.0.1 port 2222"], url),
            "ssh: connection closed by 127.0.0.1 port 2222"
        );
    }
}
