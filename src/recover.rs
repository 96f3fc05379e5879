//! Recover: finish an update that a killed run left half done, before anything else happens.
//!
//! The journal says which update was in progress. Files whose content is the old or the new
//! version (or missing) are pullstart's own and are moved to the new version; a file that is
//! neither is local work and is never overwritten (exit 4, naming it). Lock files the killed run
//! left behind are removed; a lock that a live git may hold is not.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use gix::bstr::{BString, ByteSlice};
use gix::ObjectId;

use crate::beneath;
use crate::checkout::{self, Checkout};
use crate::exit::{self, fail, ExitCode, Failure};
use crate::journal::{self, Journal, Phase};
use crate::plan::{self, Plan};
use crate::select::Services;
use crate::{apply, guard, run};

/// What [`recover`] found.
pub enum Recovered {
    /// No journal: no update was interrupted.
    Nothing,
    /// The interrupted update is finished (or turned out to be done); HEAD is where it went.
    Finished(Journal),
    /// The interrupted update cannot be finished now (exit 11: a file that cannot be written, a
    /// full disk). A newer remote commit may replace it: see [`supersede`].
    Unfinished(Unfinished),
}

/// An interrupted update that stopped part-way again, and why.
pub struct Unfinished {
    journal: Journal,
    error: anyhow::Error,
}

/// Finish the journaled update, if any; on return HEAD is where the journal said it would go
/// (and `checkout.head` says so), or there was nothing to recover, or the update could not be
/// finished and the checkout is still mid-update.
pub fn recover(checkout: &mut Checkout) -> anyhow::Result<Recovered> {
    let git_dir = checkout.git_dir().to_path_buf();
    let Some(journal) = journal::read(&git_dir)? else {
        return Ok(Recovered::Nothing);
    };
    if journal::writer_alive(&journal) {
        return fail(
            ExitCode::Locked,
            format!(
                "skipped: pullstart process {} is still updating this checkout",
                journal.pid
            ),
        );
    }
    remove_own_index_lock(checkout, &journal)?;
    if journal.phase == Phase::Guarding {
        // Killed while checking for local changes: nothing was touched; the run starts over.
        journal::remove(&git_dir)?;
        return Ok(Recovered::Nothing);
    }
    let branch_now = branch_tip(checkout)?;
    if branch_now == Some(journal.new) || branch_now != journal.old {
        // Done but for the journal, or the branch was moved by hand since: either way the
        // journal no longer describes work to finish.
        journal::remove(&git_dir)?;
        checkout.head = branch_now;
        return Ok(Recovered::Finished(journal));
    }
    match finish(checkout, &journal) {
        Ok(()) => {
            checkout.head = Some(journal.new);
            Ok(Recovered::Finished(journal))
        }
        Err(error) if exit::code_of(&error) == ExitCode::UpdateIncomplete => {
            Ok(Recovered::Unfinished(Unfinished { journal, error }))
        }
        Err(error) => Err(error),
    }
}

/// The remote tip `tip` was fetched while an interrupted update still cannot be finished. When
/// it is the same commit, that is the failure to report again. When the remote moved on (a
/// push that fixes or avoids what stopped the update) and `tip` is a fast-forward of where the
/// branch still is, the unfinished update is undone instead: every path it changed gets its
/// old version back (those already holding it are not written again, so the file that stopped
/// the update is left alone), the journal goes, and the run goes on to `tip` from the old
/// commit with the usual guard. Local work is never overwritten: a changed path that holds
/// neither version refuses, as when finishing.
pub fn supersede(checkout: &Checkout, unfinished: Unfinished, tip: ObjectId) -> anyhow::Result<()> {
    let Unfinished { journal, error } = unfinished;
    let repo = &checkout.repo;
    if tip == journal.new || plan::relation(repo, journal.old, tip, None)? != plan::Relation::Behind
    {
        return Err(error);
    }
    let back = plan::changes(
        repo,
        checkout::tree_of(repo, Some(journal.new))?,
        checkout::tree_of(repo, journal.old)?,
    )?;
    let index_lock = run::lock_index(repo)?;
    let journal = Journal {
        pid: std::process::id(),
        lock_identity: lock_identity(&index_lock_path(repo)),
        ..journal
    };
    journal::write(checkout.git_dir(), &journal)?;
    let index = run::read_index(repo)?;
    refuse_foreign_content(repo, &index, &back, journal.new)?;
    apply::revert(checkout, &back, journal.new, index, index_lock).with_context(|| {
        format!(
            "failed to undo the unfinished update to {} for the newer {}",
            journal.new, tip
        )
    })
}

/// The error of an update that could not be finished, when the fetch that might have brought a
/// newer tip to replace it failed too: the fetch's failure is a warning.
pub fn unfinished_despite_fetch(
    unfinished: Unfinished,
    fetch_error: &anyhow::Error,
) -> anyhow::Error {
    eprintln!(
        "pullstart: warning: the fetch failed too: {}",
        crate::report::escape_controls(&crate::redact::redact(&crate::report::headline(
            fetch_error
        )))
    );
    unfinished.error
}

fn finish(checkout: &Checkout, journal: &Journal) -> anyhow::Result<()> {
    let repo = &checkout.repo;
    let changes = plan::changes(
        repo,
        checkout::tree_of(repo, journal.old)?,
        checkout::tree_of(repo, Some(journal.new))?,
    )?;
    remove_temporary_files(checkout, &changes);
    // As in a run: the index is locked before it is read and checked, so that no git command
    // changes it between the check and the write.
    let index_lock = run::lock_index(repo)?;
    // This run now owns the update: a kill during recovery is recovered the same way.
    let journal = Journal {
        pid: std::process::id(),
        lock_identity: lock_identity(&index_lock_path(repo)),
        ..journal.clone()
    };
    journal::write(checkout.git_dir(), &journal)?;
    let index = run::read_index(repo)?;
    // Paths whose index entry already is the new version were left alone by the interrupted
    // run (git's "keep index" cases), or all were written once the index was: not ours to judge.
    let to_finish: Vec<plan::Change> = changes
        .iter()
        .filter(|c| !guard::already_staged(&index, c))
        .cloned()
        .collect();
    refuse_foreign_content(repo, &index, &to_finish, journal.new)?;
    let plan = Plan {
        head: journal.old,
        tip: journal.new,
        deployed: None,
        changed_paths: plan::paths(&changes),
        changes,
        services: Services::nothing("recovery only writes files"),
    };
    apply::finish(checkout, &plan, index, index_lock)
        .with_context(|| format!("failed to finish the interrupted update to {}", journal.new))
}

/// A changed path whose content is neither the old nor the new version is local work: exit 4.
fn refuse_foreign_content(
    repo: &gix::Repository,
    index: &gix::index::State,
    changes: &[plan::Change],
    new: ObjectId,
) -> anyhow::Result<()> {
    let foreign = guard::foreign_content(repo, index, changes)?;
    if foreign.is_empty() {
        return Ok(());
    }
    let refusal = guard::refusal(&foreign);
    Err(Failure::new(
        ExitCode::RefusedLocalChanges,
        format!(
            "{} (an interrupted update to {} is waiting for them)",
            refusal.message,
            run::short(new)
        ),
    )
    .into())
}

/// Remove the killed run's own `index.lock`: the inode the journal recorded. (Its ref locks are
/// cleared by [`clear_interrupted_run`], from the run marker.) A lock that may be a live git's is
/// left alone.
fn remove_own_index_lock(checkout: &Checkout, journal: &Journal) -> anyhow::Result<()> {
    let index_lock = index_lock_path(&checkout.repo);
    if journal.lock_identity.is_some() && lock_identity(&index_lock) == journal.lock_identity {
        remove(&index_lock)?;
    }
    Ok(())
}

/// Temporary files that killed or failed runs left beside the paths they were writing
/// (`.NAME.pullstart-PID.tmp`, see `apply`): those of the journal's run, and of any earlier run
/// that failed to remove its own (while a directory was swapped for a symlink, say).
fn remove_temporary_files(checkout: &Checkout, changes: &[plan::Change]) {
    // Through directory descriptors, as `apply` writes them: never through a swapped symlink.
    let Ok(Some(mut tree)) = checkout.worktree() else {
        return;
    };
    let mut by_directory: BTreeMap<&[u8], HashSet<&[u8]>> = BTreeMap::new();
    for change in changes {
        let path = change.path.as_slice();
        let (dir, name) = match path.iter().rposition(|b| *b == b'/') {
            Some(slash) => (&path[..slash], &path[slash + 1..]),
            None => (&b""[..], path),
        };
        by_directory.entry(dir).or_default().insert(name);
    }
    for (dir, names) in by_directory {
        let Some(&any) = names.iter().next() else {
            continue;
        };
        let path: BString = if dir.is_empty() {
            any.into()
        } else {
            [dir, any].join(&b'/').into()
        };
        let Ok(Some(place)) = tree.place(path.as_bstr(), None) else {
            continue;
        };
        for found in place.names_beside().unwrap_or_default() {
            let ours = apply::temporary_owner(found.as_bytes()).is_some_and(|n| names.contains(n));
            if !ours {
                continue;
            }
            let tmp = place.sibling(found);
            if tmp
                .stat()
                .is_ok_and(|stat| stat.is_some_and(|s| !beneath::is_directory(&s)))
            {
                let _ = tmp.remove_file();
            }
        }
    }
}

/// Where git's index lock is.
pub fn index_lock_path(repo: &gix::Repository) -> PathBuf {
    lock_path(&repo.index_path())
}

/// Who a lock file is: its inode and, where the file system records it, its birth time (an
/// inode alone is reused as soon as a file is removed), folded into one number. Without a
/// birth time it is the inode alone, so a git that took `index.lock` after the kill and got
/// the same inode would be taken for the killed run; ext4, xfs, btrfs and tmpfs record it.
pub fn lock_identity(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::symlink_metadata(path).ok()?;
    let birth = metadata
        .created()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    Some(metadata.ino() ^ birth.rotate_left(32))
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::symlink_metadata(path).ok()?.modified().ok()
}

fn remove(path: &Path) -> anyhow::Result<()> {
    std::fs::remove_file(path)
        .with_context(|| format!("failed to remove the stale lock `{}`", path.display()))
}

fn branch_tip(checkout: &Checkout) -> anyhow::Result<Option<ObjectId>> {
    run::read_ref(&checkout.repo, checkout.branch.as_bstr())
}

/// While a run holds pullstart's lock, `<git-dir>/pullstart-running` holds its pid. A run
/// killed while gix held a ref lock (moving the tracking ref, the branch, the deployed ref) leaves
/// that lock file behind, and every later run would fail on it. The marker goes when it is
/// dropped, however the run ends; only a killed run leaves it.
pub struct RunMarker(PathBuf);

impl Drop for RunMarker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn run_marker_path(checkout: &Checkout) -> PathBuf {
    checkout.git_dir().join("pullstart-running")
}

/// Write the marker once pullstart's lock is held.
pub fn run_marker(checkout: &Checkout) -> anyhow::Result<RunMarker> {
    let path = run_marker_path(checkout);
    std::fs::write(&path, format!("{}\n", std::process::id()))
        .with_context(|| format!("failed to write `{}`", path.display()))?;
    Ok(RunMarker(path))
}

/// If a marker is left over, its run was killed: remove the locks of the refs a run moves
/// (`packed-refs`, the tracking ref, HEAD, the branch, the deployed and rejected refs) that are
/// not older than the marker, i.e. that the killed run took. The caller holds pullstart's own
/// lock, so no other run is moving them; a lock older than the marker is someone else's and is
/// kept. (No minimum age: the run after a kill may start at once. The marker only exists after a
/// kill, as it is removed however a run ends.) `index.lock` is the journal's business (see `recover`).
pub fn clear_interrupted_run(
    checkout: &Checkout,
    tracking: &gix::refs::FullName,
) -> anyhow::Result<()> {
    let marker = run_marker_path(checkout);
    let Some(marker_time) = modified(&marker) else {
        return Ok(());
    };
    let common = checkout.repo.common_dir().to_path_buf();
    let reference = |name: &str| lock_path(&common.join(name));
    let locks = [
        common.join("packed-refs.lock"),
        checkout.git_dir().join("HEAD.lock"),
        reference(tracking.as_bstr().to_str_lossy().as_ref()),
        reference(checkout.branch.as_bstr().to_str_lossy().as_ref()),
        reference(crate::record::DEPLOYED_REF),
        reference(crate::record::REJECTED_REF),
    ];
    for lock in locks {
        if modified(&lock).is_some_and(|t| t >= marker_time) {
            remove(&lock)?;
        }
    }
    let _ = std::fs::remove_file(&marker);
    Ok(())
}
