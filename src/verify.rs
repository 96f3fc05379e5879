//! Deploy only signed commits: before anything is written, the commits an update brings must
//! carry a signature by a key the host trusts (`verify_signatures`).
//!
//! Which commits: in mode `all` (the default) every commit from HEAD to the new tip on the
//! first-parent line, each by its own signature (a merge vouches for the side it merges); in mode
//! `tip` only the tip, as Flux and Argo CD's `head` mode check. Without a HEAD (the entrypoint's
//! first clone, an unborn branch) there is nothing to count from, and only the tip is checked.
//!
//! How: gix's `SignedData::verify`, which runs the programs git runs and reads their output as
//! git does. SSH signatures: `ssh-keygen -Y find-principals` and `-Y verify -n git` against the
//! allowed-signers file. OpenPGP signatures: `gpg --verify` in a temporary GnuPG home that holds
//! only the keys of `gpg_keyring`, never the user's keyring or trust database: a key in that
//! file is trusted, any other is not. Keys are judged at the time of the run, not at the
//! committer date that git uses: that date is written by whoever signs, so the holder of a key
//! past its `valid-before` could otherwise backdate a new commit into the key's window.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context;
use gix::bstr::BStr;
use gix::commit::verify::{Format, Outcome, Status, TrustLevel};
use gix::objs::signature::verify::Options;
use gix::ObjectId;

use crate::exit::{ExitCode, Failure};
use crate::settings::{VerifyMode, VerifySignatures};

/// The keys resolved for one verification: where SSH and OpenPGP signatures are checked.
pub struct Trust {
    allowed_signers: Option<PathBuf>,
    gpg: Option<GpgHome>,
    mode: VerifyMode,
}

/// A temporary GnuPG home holding only the keys of the configured keyring.
struct GpgHome {
    keyring: PathBuf,
    home: tempfile::TempDir,
}

impl Trust {
    /// Resolves `config` for `repo`: the allowed-signers file (the checkout's
    /// `gpg.ssh.allowedSignersFile` when the config names none) and the GnuPG home with the
    /// keyring imported. A file that cannot be used is a usage error (exit 2).
    pub fn resolve(repo: &gix::Repository, config: &VerifySignatures) -> anyhow::Result<Trust> {
        let allowed_signers = allowed_signers(repo, config)?;
        let gpg = config
            .gpg_keyring
            .as_deref()
            .map(GpgHome::import)
            .transpose()?;
        Ok(Trust {
            allowed_signers,
            gpg,
            mode: config.mode,
        })
    }

    /// Verifies the commits an update from `head` to `tip` brings (see the module docs); the
    /// number checked, or a [`Failure`] with [`ExitCode::UntrustedCommit`] naming the first
    /// commit that is not trusted (from the tip down).
    pub fn verify_update(
        &self,
        repo: &gix::Repository,
        head: Option<ObjectId>,
        tip: ObjectId,
    ) -> anyhow::Result<usize> {
        let commits = match (self.mode, head) {
            (VerifyMode::All, Some(head)) => first_parent_line(repo, head, tip)?,
            _ => vec![tip],
        };
        for &id in &commits {
            self.verify_commit(repo, id)?;
        }
        Ok(commits.len())
    }

    /// Verifies one commit's own signature.
    pub fn verify_commit(&self, repo: &gix::Repository, id: ObjectId) -> anyhow::Result<()> {
        let commit = repo
            .find_commit(id)
            .with_context(|| format!("failed to read commit {id}"))?;
        let signed = commit
            .signature()
            .with_context(|| format!("failed to read the signature of commit {id}"))?;
        let Some((signature, data)) = signed else {
            return Err(self.untrusted(id, "is unsigned".into()));
        };
        match Format::from_signature(&signature) {
            Some(Format::Ssh) => self.verify_ssh(id, &signature, &data),
            Some(Format::OpenPgp) => self.verify_gpg(id, &signature, &data),
            _ => Err(self.untrusted(
                id,
                "carries a signature of a kind pullstart does not verify (X.509 or unknown)".into(),
            )),
        }
    }

    fn verify_ssh(
        &self,
        id: ObjectId,
        signature: &BStr,
        data: &gix::objs::signature::SignedData<'_>,
    ) -> anyhow::Result<()> {
        let Some(allowed_signers) = &self.allowed_signers else {
            return Err(self.untrusted(
                id,
                "is signed with an SSH key, but no allowed_signers file is set".into(),
            ));
        };
        let options = Options::Ssh {
            program: "ssh-keygen".into(),
            program_arguments: Vec::new(),
            environment: Vec::new(),
            allowed_signers: allowed_signers.clone(),
            revocation_file: None,
            verify_time: gix::date::Time::now_local_or_utc(),
            minimum_trust: TrustLevel::Fully,
        };
        let outcome = run_verifier(data, signature, options, "ssh-keygen")?;
        if outcome.is_valid() {
            return Ok(());
        }
        let key = outcome
            .fingerprint
            .as_ref()
            .map_or_else(|| "an SSH key".to_string(), |f| format!("SSH key {f}"));
        Err(self.untrusted(
            id,
            format!(
                "is signed by {key}, which `{}` does not list as a signer valid now",
                allowed_signers.display()
            ),
        ))
    }

    fn verify_gpg(
        &self,
        id: ObjectId,
        signature: &BStr,
        data: &gix::objs::signature::SignedData<'_>,
    ) -> anyhow::Result<()> {
        let Some(gpg) = &self.gpg else {
            return Err(self.untrusted(
                id,
                "is signed with an OpenPGP key, but no gpg_keyring is set".into(),
            ));
        };
        let options = Options::OpenPgp {
            program: "gpg".into(),
            program_arguments: gpg.arguments(),
            environment: vec![("LC_ALL".into(), "C".into())],
            minimum_trust: TrustLevel::Undefined,
        };
        let outcome = run_verifier(data, signature, options, "gpg")?;
        if outcome.is_valid() {
            return Ok(());
        }
        Err(self.untrusted(id, gpg_problem(&outcome, &gpg.keyring)))
    }

    fn untrusted(&self, id: ObjectId, problem: String) -> anyhow::Error {
        let files: Vec<String> = self
            .allowed_signers
            .iter()
            .chain(self.gpg.as_ref().map(|gpg| &gpg.keyring))
            .map(|path| format!("`{}`", path.display()))
            .collect();
        Failure::new(
            ExitCode::UntrustedCommit,
            format!(
                "untrusted commit {id}: it {problem}; nothing was changed; push a commit signed \
                 by a key in {}",
                files.join(" or ")
            ),
        )
        .into()
    }
}

/// Checks that the key files `config` names (or the checkout's `gpg.ssh.allowedSignersFile`)
/// can be read, so that a broken setting is an error on every run, not only once a push comes.
pub fn check_keys(repo: &gix::Repository, config: &VerifySignatures) -> anyhow::Result<()> {
    allowed_signers(repo, config)?;
    if let Some(keyring) = &config.gpg_keyring {
        require_readable(keyring, "gpg_keyring")?;
    }
    Ok(())
}

/// The allowed-signers file to use, checked to be readable; `None` with only a `gpg_keyring`.
fn allowed_signers(
    repo: &gix::Repository,
    config: &VerifySignatures,
) -> anyhow::Result<Option<PathBuf>> {
    let path = match &config.allowed_signers {
        Some(path) => Some(path.clone()),
        None => checkout_allowed_signers(repo)?,
    };
    match &path {
        Some(path) => require_readable(path, "allowed_signers")?,
        None if config.gpg_keyring.is_none() => {
            return Err(Failure::usage(
                "verify_signatures is on but names no keys: set `allowed_signers` (or the \
                 checkout's gpg.ssh.allowedSignersFile) or `gpg_keyring`",
            )
            .into())
        }
        None => {}
    }
    Ok(path)
}

/// The words for an OpenPGP signature that did not pass.
fn gpg_problem(outcome: &Outcome, keyring: &Path) -> String {
    let key = outcome.key.as_ref().map_or_else(
        || "an OpenPGP key".to_string(),
        |k| format!("OpenPGP key {k}"),
    );
    let signer = outcome
        .signer
        .as_ref()
        .map_or_else(String::new, |s| format!(" ({s})"));
    match outcome.status {
        Status::ExpiredKey => format!("is signed by {key}{signer}, which has expired"),
        Status::RevokedKey => format!("is signed by {key}{signer}, which is revoked"),
        Status::Expired => format!("is signed by {key}{signer} with a signature that has expired"),
        Status::Bad => format!("has a bad signature by {key}{signer} (the commit was altered)"),
        _ => format!(
            "is signed by {key}, which `{}` does not hold",
            keyring.display()
        ),
    }
}

fn run_verifier(
    data: &gix::objs::signature::SignedData<'_>,
    signature: &BStr,
    options: Options,
    program: &str,
) -> anyhow::Result<Outcome> {
    data.verify(signature, options).map_err(|err| {
        anyhow::Error::msg(err.to_string()).context(Failure::usage(format!(
            "cannot verify commit signatures: `{program}` failed to run ({err}); install it \
             (openssh-client, gnupg) or turn verify_signatures off"
        )))
    })
}

impl GpgHome {
    /// A fresh GnuPG home (mode 0700) with the keys of `keyring` imported.
    fn import(keyring: &Path) -> anyhow::Result<GpgHome> {
        require_readable(keyring, "gpg_keyring")?;
        let home = tempfile::Builder::new()
            .prefix("pullstart-gnupg-")
            .tempdir()
            .context("failed to create a temporary GnuPG home")?;
        // An existing (empty) common.conf keeps GnuPG 2.4 from writing `use-keyboxd` into a new
        // home, which would need a keyboxd daemon that --no-autostart does not start.
        std::fs::write(home.path().join("common.conf"), "")
            .context("failed to prepare the temporary GnuPG home")?;
        let gpg = GpgHome {
            keyring: keyring.to_path_buf(),
            home,
        };
        let mut args = gpg.arguments();
        args.extend(["--batch".into(), "--quiet".into(), "--import".into()]);
        args.push(keyring.into());
        let output = crate::child::cmd("gpg", &args)
            .env("LC_ALL", "C")
            .stdin_null()
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run();
        let usable = match &output {
            Ok(output) => output.status.success(),
            Err(_) => false,
        };
        if !usable {
            let why = match output {
                Ok(output) => String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .rfind(|l| !l.trim().is_empty())
                    .unwrap_or("no keys")
                    .trim()
                    .to_string(),
                Err(err) => format!("cannot run `gpg`: {err}; install gnupg"),
            };
            return Err(Failure::usage(format!(
                "gpg_keyring `{}`: gpg cannot import its keys ({why}); give a keyring or \
                 armored public keys (`gpg --export --armor KEYID`)",
                keyring.display()
            ))
            .into());
        }
        Ok(gpg)
    }

    /// The arguments that point gpg at this home and keep it from starting daemons.
    fn arguments(&self) -> Vec<OsString> {
        vec![
            "--homedir".into(),
            self.home.path().into(),
            "--no-autostart".into(),
            "--no-permission-warning".into(),
        ]
    }
}

/// The checkout's own `gpg.ssh.allowedSignersFile`, relative to the worktree as git reads it.
fn checkout_allowed_signers(repo: &gix::Repository) -> anyhow::Result<Option<PathBuf>> {
    let config = repo.config_snapshot();
    let found = config
        .trusted_path("gpg.ssh.allowedSignersFile")
        .map_err(|err| Failure::usage(format!("gpg.ssh.allowedSignersFile: {err}")))?;
    let Some(path) = found else {
        return Ok(None);
    };
    Ok(Some(if path.is_absolute() {
        path
    } else {
        repo.workdir().unwrap_or_else(|| repo.git_dir()).join(path)
    }))
}

fn require_readable(path: &Path, key: &str) -> anyhow::Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(Failure::usage(format!(
            "{key} `{}` is not a regular file; point it at the file of trusted keys",
            path.display()
        ))
        .into()),
        Err(err) => Err(Failure::usage(format!(
            "{key} `{}` cannot be read ({err}); point it at the file of trusted keys",
            path.display()
        ))
        .into()),
    }
}

/// The commits from `tip` back along first parents, newest first, that `head` does not have.
fn first_parent_line(
    repo: &gix::Repository,
    head: ObjectId,
    tip: ObjectId,
) -> anyhow::Result<Vec<ObjectId>> {
    let walk = repo
        .rev_walk([tip])
        .first_parent_only()
        .with_hidden([head])
        .all()
        .context("failed to walk the commits of the update")?;
    let mut commits = Vec::new();
    for info in walk {
        commits.push(info.context("failed to walk the commits of the update")?.id);
    }
    Ok(commits)
}
