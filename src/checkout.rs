//! Open the checkout and find out what to follow: the checked-out branch, its HEAD commit, and
//! the remote branch it tracks. Nothing here writes anything.

use std::path::{Path, PathBuf};

use anyhow::Context;
use gix::bstr::{BStr, BString, ByteSlice};
use gix::refs::FullName;
use gix::remote::Direction;
use gix::ObjectId;

use crate::beneath::Worktree;
use crate::exit::Failure;
use crate::settings::{Deadline, Settings};

/// An open checkout and the branch pullstart fast-forwards in it.
pub struct Checkout {
    pub repo: gix::Repository,
    pub workdir: PathBuf,
    /// The checked-out local branch, e.g. `refs/heads/main`.
    pub branch: FullName,
    /// The commit HEAD points to; `None` while the branch is unborn (cloned from an empty remote).
    pub head: Option<ObjectId>,
    /// The remote to fetch from, e.g. `origin`.
    pub remote: String,
    /// The branch's name on that remote, e.g. `main`.
    pub remote_branch: String,
    /// When this run must be over (`--timeout`, counted from opening the checkout): every step
    /// that waits waits at most what is left.
    pub deadline: Deadline,
    /// Where writes to the worktree start from (see [`Checkout::worktree`]).
    pub anchor: Anchor,
}

/// Where a checkout's worktree is reached for writing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anchor {
    /// At `workdir`, the operator's path.
    Workdir,
    /// A submodule's: `path` (`/`-separated) below the top checkout's worktree `root`, walked
    /// without following a symlink, since a process that can write the checkout could swap a
    /// directory on the way for a symlink to anywhere.
    Beneath { root: PathBuf, path: BString },
}

impl Anchor {
    /// The anchor of a submodule at `path` in the checkout anchored at `self` with `workdir`.
    pub fn submodule(&self, workdir: &Path, path: &BStr) -> Anchor {
        match self {
            Anchor::Workdir => Anchor::Beneath {
                root: workdir.to_path_buf(),
                path: path.to_owned(),
            },
            Anchor::Beneath { root, path: above } => {
                let mut joined = above.clone();
                joined.push(b'/');
                joined.extend_from_slice(path);
                Anchor::Beneath {
                    root: root.clone(),
                    path: joined,
                }
            }
        }
    }
}

impl Checkout {
    /// The local branch's short name, e.g. `main`.
    pub fn branch_name(&self) -> String {
        self.branch.shorten().to_str_lossy().into_owned()
    }

    /// Where the git directory is (`.git`, or a linked worktree's own directory).
    pub fn git_dir(&self) -> &Path {
        self.repo.git_dir()
    }
}

/// Open `settings.repo` and resolve the remote and branch to follow.
pub fn open(settings: &Settings) -> anyhow::Result<Checkout> {
    let dir = &settings.repo;
    let mut repo = open_repository(dir)?;
    // A fetch that moves a ref writes a reflog and so needs a committer; a server's cron
    // environment often has no git identity at all (gix-notes §2). The fallback is installed
    // without resolving the identity now: that resolution looks up the local time zone, which
    // was more than half of a no-change run's instructions. `user.*`, `committer.*` and the
    // environment still win over it.
    install_fallback_committer(&mut repo)?;
    let workdir = repo.workdir().map(Path::to_path_buf).ok_or_else(|| {
        Failure::usage(format!(
            "`{}` is a bare repository; pullstart needs a checkout with a working tree",
            dir.display()
        ))
    })?;
    refuse_unsupported_layouts(&repo, dir)?;

    let branch = current_branch(&repo, dir)?;
    let head = repo
        .find_reference(branch.as_ref())
        .ok()
        .map(|mut r| r.peel_to_id().map(|id| id.detach()))
        .transpose()
        .with_context(|| format!("failed to read `{}`", branch.as_bstr()))?;
    let remote = match &settings.remote {
        Some(remote) => remote.clone(),
        None => upstream_remote(&repo, &branch).unwrap_or_else(|| "origin".into()),
    };
    let remote_branch = match &settings.branch {
        Some(b) => b.clone(),
        None => upstream_branch(&repo, &branch)?
            .unwrap_or_else(|| branch.shorten().to_str_lossy().into_owned()),
    };
    Ok(Checkout {
        repo,
        workdir,
        branch,
        head,
        remote,
        remote_branch,
        deadline: Deadline::after(settings.timeout),
        anchor: Anchor::Workdir,
    })
}

impl Checkout {
    /// The worktree, opened for the writes of an update (see `beneath`). `None` when a
    /// submodule's directory is not reached from the top worktree through real directories.
    pub fn worktree(&self) -> std::io::Result<Option<Worktree>> {
        match &self.anchor {
            Anchor::Workdir => Worktree::open(&self.workdir).map(Some),
            Anchor::Beneath { root, path } => Worktree::open_beneath(root, path.as_bstr()),
        }
    }

    /// Open the repository again, dropping the old handle and with it its object store's
    /// memory maps. The fetch (completing a thin pack) and the plan (diffing trees) read objects
    /// all over the old packs, and each read maps the 64 KiB around it: in the benchmark's
    /// 100,000-file repository, the whole 20 MB pack and its 3 MB index stayed resident. Done
    /// before the index is read, the run's peak, this took that peak from 50 to ~30 MiB.
    pub fn reopen(&mut self) -> anyhow::Result<()> {
        let mut repo = open_repository(&self.workdir)?;
        install_fallback_committer(&mut repo)?;
        self.repo = repo;
        // What the old handle freed is still resident in malloc's free lists; hand it back to the
        // kernel so that the next phase's peak starts from what is in use.
        // SAFETY: malloc_trim only releases free memory; it has no preconditions.
        unsafe {
            libc::malloc_trim(0);
        }
        Ok(())
    }
}

pub(crate) fn install_fallback_committer(repo: &mut gix::Repository) -> anyhow::Result<()> {
    use gix::config::tree::gitoxide::Committer;
    let mut fallback = gix::config::File::new(gix::config::file::Metadata::api());
    fallback
        .set_raw_value(Committer::NAME_FALLBACK, "pullstart")
        .and_then(|_| fallback.set_raw_value(Committer::EMAIL_FALLBACK, "pullstart@localhost"))
        .context("failed to set a fallback committer identity")?;
    let mut config = repo.config_snapshot_mut();
    config
        .append(fallback)
        .context("failed to set a fallback committer identity")?;
    config
        .commit()
        .context("failed to set a fallback committer identity")?;
    Ok(())
}

fn open_repository(dir: &Path) -> anyhow::Result<gix::Repository> {
    if !dir.is_dir() {
        return Err(Failure::usage(format!(
            "`{}` is not a directory; pass -C/--repo with the checkout's directory",
            dir.display()
        ))
        .into());
    }
    gix::open(dir).map_err(|err| {
        anyhow::Error::new(err).context(Failure::usage(format!(
            "`{}` is not a git checkout; pass -C/--repo with the directory of a `git clone`",
            dir.display()
        )))
    })
}

/// Layouts in which "write the changed paths" would not be what git does; refusing is safer
/// than a half-right update.
fn refuse_unsupported_layouts(repo: &gix::Repository, dir: &Path) -> anyhow::Result<()> {
    let config = repo.config_snapshot();
    if config.boolean("core.sparseCheckout").unwrap_or(false) {
        return Err(Failure::usage(format!(
            "`{}` uses a sparse checkout, which pullstart does not support; run `git sparse-checkout disable` or update it with git",
            dir.display()
        ))
        .into());
    }
    Ok(())
}

fn current_branch(repo: &gix::Repository, dir: &Path) -> anyhow::Result<FullName> {
    let head = repo.head().context("failed to read HEAD")?;
    match head.kind {
        gix::head::Kind::Symbolic(reference) => Ok(reference.name),
        gix::head::Kind::Unborn(name) => Ok(name),
        gix::head::Kind::Detached { .. } => Err(Failure::usage(format!(
            "HEAD in `{}` is detached; check out the branch to follow (`git switch main`)",
            dir.display()
        ))
        .into()),
    }
}

fn upstream_remote(repo: &gix::Repository, branch: &FullName) -> Option<String> {
    repo.branch_remote_name(branch.shorten(), Direction::Fetch)
        .map(|name| name.as_bstr().to_str_lossy().into_owned())
}

/// The short name of `branch.<b>.merge`, e.g. `main` for `refs/heads/main`.
fn upstream_branch(repo: &gix::Repository, branch: &FullName) -> anyhow::Result<Option<String>> {
    let Some(merge) = repo.branch_remote_ref_name(branch.as_ref(), Direction::Fetch) else {
        return Ok(None);
    };
    let merge = merge.map_err(|err| {
        anyhow::Error::new(err).context(Failure::usage(format!(
            "`branch.{}.merge` is not a valid branch name; fix it with `git branch --set-upstream-to` or pass --branch",
            branch.shorten()
        )))
    })?;
    let short = merge
        .as_bstr()
        .strip_prefix(b"refs/heads/")
        .unwrap_or(merge.as_bstr().as_bytes());
    Ok(Some(short.to_str_lossy().into_owned()))
}

/// The tree of `commit`, or the empty tree for an unborn branch.
pub fn tree_of(repo: &gix::Repository, commit: Option<ObjectId>) -> anyhow::Result<ObjectId> {
    match commit {
        None => Ok(repo.empty_tree().id),
        Some(id) => {
            let commit = repo
                .find_commit(id)
                .with_context(|| format!("failed to read commit {id}"))?;
            Ok(commit
                .tree_id()
                .with_context(|| format!("failed to read the tree of {id}"))?
                .detach())
        }
    }
}
