//! Apply: the only code that writes the worktree, the index and the branch ref.
//!
//! gix 0.90 has no "update an existing worktree", so this is hand-written (gix-notes §6-8):
//! remove what the update deletes, write what it adds or changes beside its final path and
//! rename it into place, then write the index for the new tree with fresh stat data, then move
//! the branch. Only the planned paths are touched; every other file keeps content, mtime and
//! inode. The guard has already proven that nothing written here overwrites local work.

use std::ffi::{OsStr, OsString};
use std::io::{BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use anyhow::{bail, Context};
use gix::bstr::{BStr, BString, ByteSlice};
use gix::index::entry::{Flags, Mode, Stage, Stat};
use gix::objs::tree::EntryKind;
use gix::refs::transaction::{Change as RefChange, LogChange, PreviousValue, RefEdit, RefLog};
use gix::refs::Target;

use crate::beneath::{self, Place, Worktree};
use crate::checkout::Checkout;
use crate::exit::{ExitCode, Failure};
use crate::failpoint;
use crate::plan::{Change, Plan};
use crate::{guard, journal};

/// The reflog message of a branch move, as the contract promises.
pub const FAST_FORWARD: &str = "pullstart: fast-forward";
/// The reflog message when `--rollback` moves the branch back to the deployed commit.
pub const ROLLBACK: &str = "pullstart: rollback";

/// Carry out `plan` on the worktree, then the index (under the lock the caller holds), then the
/// branch ref, whose reflog gets `message`. `index` is the index as the guard checked it.
///
/// First every new file is written beside its path ([`stage`]): a failure there (a filter, a
/// full disk) removes those files and the journal again, and nothing was touched. A failure
/// after that (a file that cannot be replaced or removed) leaves the checkout mid-update, with
/// the journal saying so: it is exit 11, which says just that, and the next run finishes the
/// update (or replaces it with a newer remote commit, see `recover`).
pub fn apply(
    checkout: &Checkout,
    plan: &Plan,
    index: gix::index::File,
    index_lock: gix::lock::File,
    message: &str,
) -> anyhow::Result<()> {
    forward(checkout, plan, index, index_lock, message, Start::Untouched)
}

/// [`apply`] for an update that an earlier run left half done: any failure leaves it mid-update.
pub fn finish(
    checkout: &Checkout,
    plan: &Plan,
    index: gix::index::File,
    index_lock: gix::lock::File,
) -> anyhow::Result<()> {
    forward(
        checkout,
        plan,
        index,
        index_lock,
        FAST_FORWARD,
        Start::MidUpdate,
    )
}

fn forward(
    checkout: &Checkout,
    plan: &Plan,
    index: gix::index::File,
    index_lock: gix::lock::File,
    message: &str,
    start: Start,
) -> anyhow::Result<()> {
    // The caller wrote the journal (phase applying): from here until it is removed below, a
    // killed run leaves it for the next run, which finishes this update (see `recover`).
    failpoint::hit("after-journal");
    // What the index already holds (git's "keep index" cases) is left alone, entry and file.
    let changes: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| !guard::already_staged(&index, c))
        .collect();
    let to_branch = || {
        move_branch(checkout, plan, message)?;
        failpoint::hit("after-branch");
        Ok(())
    };
    let update = Update {
        checkout,
        tip: plan.tip,
        rewrite: Rewrite::Always,
        start,
    };
    update.carry_out(&changes, index, index_lock, to_branch)
}

/// Put back the old version of every path an interrupted update to `new` changed (`changes`
/// are the new tree against the old one), leaving the branch where it is, and remove the
/// journal. A path whose worktree already holds its old version is not written again: the
/// file that stopped the update is usually one of them.
pub fn revert(
    checkout: &Checkout,
    changes: &[Change],
    new: gix::ObjectId,
    index: gix::index::File,
    index_lock: gix::lock::File,
) -> anyhow::Result<()> {
    let changes: Vec<&Change> = changes.iter().collect();
    let update = Update {
        checkout,
        tip: new,
        rewrite: Rewrite::WhereDifferent,
        start: Start::MidUpdate,
    };
    update.carry_out(&changes, index, index_lock, || Ok(()))
}

/// Whether a path whose worktree already holds the target version is written again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rewrite {
    Always,
    WhereDifferent,
}

/// The state of the checkout before this update writes anything.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    /// As the guard checked it: a failure before the first removal or rename touched nothing.
    Untouched,
    /// Already mid-update (an earlier run stopped part-way): any failure leaves it so.
    MidUpdate,
}

struct Update<'a> {
    checkout: &'a Checkout,
    /// The commit the update is for, named in its errors.
    tip: gix::ObjectId,
    rewrite: Rewrite,
    start: Start,
}

impl Update<'_> {
    /// Stage the new files, then remove what the changes delete, put the new files in place,
    /// write the index, run `then` (moving the branch) and remove the journal.
    fn carry_out(
        &self,
        changes: &[&Change],
        mut index: gix::index::File,
        index_lock: gix::lock::File,
        then: impl FnOnce() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let repo = &self.checkout.repo;
        edit_index(&mut index, changes);
        let opened = self
            .checkout
            .worktree()
            .map_err(anyhow::Error::new)
            .and_then(|tree| {
                tree.ok_or_else(|| {
                    anyhow::anyhow!("a directory on the way is not a real directory")
                })
            });
        let mut tree = match opened {
            Ok(tree) => tree,
            Err(err) => {
                let err = err.context(format!(
                    "failed to open the worktree `{}`",
                    self.checkout.workdir.display()
                ));
                return Err(match self.start {
                    Start::Untouched => self.nothing_touched(err),
                    Start::MidUpdate => stopped_part_way(err, self.tip),
                });
            }
        };
        let staged = worktree_filters(repo, &index).and_then(|mut filters| {
            let staged = stage(repo, &mut filters, &mut tree, changes, self.rewrite)?;
            Ok((filters, staged))
        });
        let (mut filters, staged) = match staged {
            Ok(staged) => staged,
            Err(err) if self.start == Start::Untouched => return Err(self.nothing_touched(err)),
            Err(err) => return Err(stopped_part_way(err, self.tip)),
        };
        let mut staged: Vec<(&Change, Option<Prepared>)> = changes
            .iter()
            .filter(|c| c.new.is_some())
            .copied()
            .zip(staged.into_iter().map(Some))
            .collect();
        // How many of `staged` were put in place: on a failure, the temporary files of the rest
        // are removed (the one that failed may have left its own).
        let mut written = 0;
        let result = (|| {
            for change in changes.iter().filter(|c| c.old.is_some()) {
                remove_old(&mut tree, change)?;
                failpoint::hit("remove-file");
            }
            for (change, prepared) in staged.iter_mut() {
                let prepared = prepared.take().expect("each is written once");
                let stat = write_new(repo, &mut filters, &mut tree, change, prepared)?;
                set_stat(&mut index, change.path.as_bstr(), stat);
                written += 1;
                failpoint::hit("write-file");
            }
            write_index(index, index_lock)?;
            failpoint::hit("after-index");
            then()?;
            journal::remove(self.checkout.git_dir())
        })();
        if result.is_err() {
            for (change, _) in &staged[written..] {
                remove_temporary(&mut tree, change.path.as_bstr());
            }
        }
        result.map_err(|err| stopped_part_way(err, self.tip))
    }

    /// Nothing was removed or renamed: the journal goes too, and the error says so.
    fn nothing_touched(&self, err: anyhow::Error) -> anyhow::Error {
        let _ = journal::remove(self.checkout.git_dir());
        if crate::exit::failure_of(&err).is_some() {
            return err;
        }
        let message = format!(
            "failed to prepare the update to {}: {err:#}; nothing was touched",
            self.tip.to_hex_with_len(7)
        );
        err.context(Failure::new(ExitCode::Internal, message))
    }
}

fn stopped_part_way(err: anyhow::Error, tip: gix::ObjectId) -> anyhow::Error {
    let message = format!(
        "the update to {} stopped part-way: {err:#}; the checkout is mid-update and nothing was restarted; once the cause is fixed the next run finishes the update, or a newer remote commit replaces it",
        tip.to_hex_with_len(7)
    );
    err.context(Failure::new(ExitCode::UpdateIncomplete, message))
}

/// Turn the old index into the new tree's index by editing only the changed paths, so that
/// entries of untouched paths keep their stat data (and nothing needs re-hashing afterwards).
fn edit_index(index: &mut gix::index::State, changes: &[&Change]) {
    // The cached trees describe the old tree; git rebuilds the cache when it needs it.
    index.remove_tree();
    index.remove_resolve_undo();
    let removed: std::collections::HashSet<&BStr> = changes
        .iter()
        .filter(|c| c.new.is_none())
        .map(|c| c.path.as_bstr())
        .collect();
    index.remove_entries(|_, path, _| removed.contains(path));
    // Lookups search only the sorted entries that were there before this loop pushed any:
    // a pushed entry would break the binary search, and an earlier version of this loop missed
    // existing entries that way and left duplicates in the index.
    let sorted = index.entries().len();
    let mut added = false;
    for change in changes {
        let Some(new) = change.new else { continue };
        let mode = index_mode(new.kind);
        match index.entry_index_by_path_and_stage_bounded(
            change.path.as_bstr(),
            Stage::Unconflicted,
            sorted,
        ) {
            Some(i) => {
                let entry = &mut index.entries_mut()[i];
                entry.id = new.id;
                entry.mode = mode;
                entry.stat = Stat::default();
                entry.flags = Flags::empty();
            }
            None => {
                index.dangerously_push_entry(
                    Stat::default(),
                    new.id,
                    Flags::empty(),
                    mode,
                    change.path.as_bstr(),
                );
                added = true;
            }
        }
    }
    if added {
        index.sort_entries();
    }
}

fn index_mode(kind: EntryKind) -> Mode {
    match kind {
        EntryKind::Blob => Mode::FILE,
        EntryKind::BlobExecutable => Mode::FILE_EXECUTABLE,
        EntryKind::Link => Mode::SYMLINK,
        EntryKind::Commit => Mode::COMMIT,
        EntryKind::Tree => Mode::DIR,
    }
}

fn set_stat(index: &mut gix::index::State, path: &BStr, stat: Stat) {
    if let Some(i) = index.entry_index_by_path_and_stage(path, Stage::Unconflicted) {
        index.entries_mut()[i].stat = stat;
    }
}

/// Remove the old entry at a path the update deletes or replaces with another type. A file that
/// the new tree replaces with a file or symlink is left for the rename in `write_new`, so the
/// path is never missing.
fn remove_old(tree: &mut Worktree, change: &Change) -> anyhow::Result<()> {
    let old = change
        .old
        .expect("only called for changes with an old side");
    let replaced_in_place = change.new.is_some_and(|new| new.kind != EntryKind::Commit)
        && old.kind != EntryKind::Commit;
    if replaced_in_place {
        return Ok(());
    }
    let path = change.path.as_bstr();
    // `None`: a leading directory is already gone (or is a file that replaced it, written by an
    // interrupted run of this same update): nothing of the old tree lies below it.
    let Some(place) = tree
        .place(path, None)
        .with_context(|| inspect_failed(path))?
    else {
        return Ok(());
    };
    match place.stat() {
        Ok(None) => return Ok(()),
        Err(err) => return Err(err).with_context(|| inspect_failed(path)),
        Ok(Some(stat)) if beneath::is_directory(&stat) => {
            // A submodule's directory: removed only when empty, as git does.
            if let Err(err) = place.remove_dir() {
                if err.kind() != std::io::ErrorKind::DirectoryNotEmpty {
                    return Err(err)
                        .with_context(|| format!("failed to remove `{}`", place.path().display()));
                }
            }
        }
        Ok(Some(_)) => place
            .remove_file()
            .with_context(|| format!("failed to remove `{}`", place.path().display()))?,
    }
    tree.remove_empty_parents(path).with_context(|| {
        format!(
            "failed to remove the empty directories above `{}`",
            place.path().display()
        )
    })
}

fn inspect_failed(path: &BStr) -> String {
    format!("failed to inspect `{path}`")
}

/// The smudge side of git's filters (eol, ident, filter drivers), with `.gitattributes` read
/// from the new index so that an update that changes them applies them, as a checkout would.
fn worktree_filters<'repo>(
    repo: &'repo gix::Repository,
    index: &gix::index::State,
) -> anyhow::Result<gix::filter::Pipeline<'repo>> {
    let attributes = repo
        .attributes_only(
            index,
            gix::worktree::stack::state::attributes::Source::IdMapping,
        )
        .context("failed to read .gitattributes of the new tree")?;
    gix::filter::Pipeline::new(repo, attributes.detach()).context("failed to set up git filters")
}

/// Write the new side of `change` beside its path and rename it into place; return the stat
/// data of what is now at the path, for the index. `staged` is what [`stage`] prepared for it.
fn write_new(
    repo: &gix::Repository,
    filters: &mut gix::filter::Pipeline<'_>,
    tree: &mut Worktree,
    change: &Change,
    staged: Prepared,
) -> anyhow::Result<Stat> {
    let new = change.new.expect("only called for changes with a new side");
    let path = change.path.as_bstr();
    // Leading directories are created one component at a time; any that exists as something
    // other than a real directory is refused.
    let place = tree
        .place(path, Some(&mut Vec::new()))
        .with_context(|| format!("failed to create the directories of `{path}`"))?
        .ok_or_else(|| {
            anyhow::anyhow!("refusing to write `{path}`: a leading component is not a directory")
        })?;
    match staged {
        Prepared::AlreadyThere => return stat_of(&place),
        Prepared::Staged(tmp) => move_into_place(&place, tmp)?,
        Prepared::Later if new.kind == EntryKind::Commit => {
            return create_submodule_directory(&place)
        }
        Prepared::Later => {
            let content = new_content(repo, filters, change)?;
            let tmp = write_temporary(&place, &content)?;
            move_into_place(&place, tmp)?;
        }
    }
    stat_of(&place)
}

fn stat_of(place: &Place) -> anyhow::Result<Stat> {
    let inspect = || {
        format!(
            "failed to inspect `{}` after writing it",
            place.path().display()
        )
    };
    let stat = place.stat().with_context(inspect)?;
    let stat = stat
        .ok_or_else(|| anyhow::anyhow!("it is gone"))
        .with_context(inspect)?;
    Ok(beneath::index_stat(&stat))
}

/// What [`stage`] did for one new file before anything was removed or renamed.
enum Prepared {
    /// Written beside its path, at this temporary name, waiting to be renamed into place.
    Staged(OsString),
    /// Its path already holds it (only when reverting): nothing to write.
    AlreadyThere,
    /// Written when its turn comes: a submodule, or a path whose directory does not exist yet
    /// (or is a file or symlink the update removes first).
    Later,
}

/// Before the first removal or rename: run the smudge filters for every new file and write the
/// result beside its path, wherever its directory already exists. So what the pushed content
/// and the filters can fail on (a `required` filter that fails, a blob that cannot be read, a
/// disk too full for the new files) fails here, with nothing touched; the temporary files
/// written so far are removed again. Returns what was done for each change with a new side.
fn stage(
    repo: &gix::Repository,
    filters: &mut gix::filter::Pipeline<'_>,
    tree: &mut Worktree,
    changes: &[&Change],
    rewrite: Rewrite,
) -> anyhow::Result<Vec<Prepared>> {
    let mut prepared = Vec::new();
    let mut created_dirs = Vec::new();
    let with_new = || changes.iter().filter(|c| c.new.is_some());
    let result = (|| {
        for change in with_new() {
            prepared.push(prepare(
                repo,
                filters,
                tree,
                change,
                rewrite,
                &mut created_dirs,
            )?);
        }
        Ok(())
    })();
    if let Err(err) = result {
        for (change, done) in with_new().zip(prepared) {
            if let Prepared::Staged(_) = done {
                remove_temporary(tree, change.path.as_bstr());
            }
        }
        for dir in created_dirs.iter().rev() {
            let _ = tree.remove_directory(dir.as_bstr());
        }
        return Err(err);
    }
    Ok(prepared)
}

/// Remove this run's temporary file beside `path`, if it is there: the clean-up after a failure.
fn remove_temporary(tree: &mut Worktree, path: &BStr) {
    if let Ok(Some(place)) = tree.place(path, None) {
        let _ = place
            .sibling(temporary_name(place.name(), own_pid()))
            .remove_file();
    }
}

fn prepare(
    repo: &gix::Repository,
    filters: &mut gix::filter::Pipeline<'_>,
    tree: &mut Worktree,
    change: &Change,
    rewrite: Rewrite,
    created_dirs: &mut Vec<BString>,
) -> anyhow::Result<Prepared> {
    let new = change.new.expect("only called for changes with a new side");
    if new.kind == EntryKind::Commit {
        return Ok(Prepared::Later);
    }
    let path = change.path.as_bstr();
    // `None`: a leading component is a file or symlink that this update removes first, so the
    // file is written later.
    let place = tree
        .place(path, Some(created_dirs))
        .with_context(|| format!("failed to create the directories of `{path}`"))?;
    let Some(place) = place else {
        return Ok(Prepared::Later);
    };
    if rewrite == Rewrite::WhereDifferent && already_there(repo, filters, &place, change)? {
        return Ok(Prepared::AlreadyThere);
    }
    let content = new_content(repo, filters, change).map_err(|err| {
        let Some(FilterFailed(path)) = err.downcast_ref::<FilterFailed>() else {
            return err;
        };
        // The filter driver is the local git config's, the content the remote's: either can be
        // the fix, and until one is, every run would fail the same way.
        let cause: Vec<String> = err.chain().skip(1).map(|c| c.to_string()).collect();
        let message = format!(
            "refused: the filters for `{path}` failed: {}; nothing was touched; fix the filter driver in the git config, or the file on the remote branch",
            cause.join(": ")
        );
        err.context(Failure::usage(message))
    })?;
    Ok(Prepared::Staged(write_temporary(&place, &content)?))
}

/// Context on an error of the smudge filters for this path.
#[derive(Debug)]
struct FilterFailed(gix::bstr::BString);

impl std::fmt::Display for FilterFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the filters for `{}` failed", self.0)
    }
}

/// The new side of a change as it goes on disk.
enum Content {
    Link(PathBuf),
    File { bytes: Vec<u8>, mode: u32 },
}

fn new_content(
    repo: &gix::Repository,
    filters: &mut gix::filter::Pipeline<'_>,
    change: &Change,
) -> anyhow::Result<Content> {
    let new = change.new.expect("only called for changes with a new side");
    let path = change.path.as_bstr();
    let blob = repo
        .find_blob(new.id)
        .with_context(|| format!("failed to read blob {} for `{path}`", new.id))?;
    Ok(match new.kind {
        EntryKind::Link => Content::Link(PathBuf::from(OsStr::from_bytes(&blob.data))),
        EntryKind::Blob | EntryKind::BlobExecutable => Content::File {
            bytes: smudge(filters, path, &blob.data)
                .map_err(|err| err.context(FilterFailed(path.to_owned())))?,
            // Masked by the umask, as git's checkout is.
            mode: if new.kind == EntryKind::BlobExecutable {
                0o777
            } else {
                0o666
            },
        },
        EntryKind::Tree | EntryKind::Commit => unreachable!("only blobs and symlinks have content"),
    })
}

/// Create `content` at a temporary name beside `place`; returns that name.
fn write_temporary(place: &Place, content: &Content) -> anyhow::Result<OsString> {
    let tmp = place.sibling(temporary_name(place.name(), own_pid()));
    let written = match content {
        Content::Link(target) => tmp.create_symlink(target),
        Content::File { bytes, mode } => tmp
            .create_new_file(*mode)
            .and_then(|mut file| file.write_all(bytes)),
    };
    if let Err(err) = written {
        let _ = tmp.remove_file();
        return Err(err).with_context(|| format!("failed to write `{}`", tmp.path().display()));
    }
    Ok(tmp.name().to_owned())
}

/// This process's id, asked of the kernel once rather than for every file.
fn own_pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// Rename the temporary file over `place`, so that readers see the old file or the new one,
/// never a half-written one. An empty directory in the way is removed first, as git removes it;
/// it is looked for only when the rename meets a directory (EISDIR), so that the usual case is
/// one system call.
fn move_into_place(place: &Place, tmp: OsString) -> anyhow::Result<()> {
    let failed = || {
        format!(
            "failed to rename `{}` to `{}`",
            place.sibling(tmp.clone()).path().display(),
            place.path().display()
        )
    };
    let moved = match place.rename_from(&tmp) {
        Err(err) if err.kind() == std::io::ErrorKind::IsADirectory => remove_empty_directory(place)
            .and_then(|()| place.rename_from(&tmp).with_context(failed)),
        renamed => renamed.with_context(failed),
    };
    if moved.is_err() {
        let _ = place.sibling(tmp).remove_file();
    }
    moved
}

/// Whether `place` already is the new side of `change` (type, executable bit and content, after
/// the smudge filters).
fn already_there(
    repo: &gix::Repository,
    filters: &mut gix::filter::Pipeline<'_>,
    place: &Place,
    change: &Change,
) -> anyhow::Result<bool> {
    let new = change.new.expect("only called for changes with a new side");
    let Ok(Some(stat)) = place.stat() else {
        return Ok(false);
    };
    let blob = repo
        .find_blob(new.id)
        .with_context(|| format!("failed to read blob {} for `{}`", new.id, change.path))?;
    let same = match new.kind {
        EntryKind::Link => {
            beneath::is_symlink(&stat) && place.read_link().is_ok_and(|t| t == blob.data)
        }
        EntryKind::Blob | EntryKind::BlobExecutable => {
            let executable = stat.st_mode & 0o100 != 0;
            beneath::is_regular_file(&stat)
                && executable == (new.kind == EntryKind::BlobExecutable)
                && read_regular_file(place)?.is_some_and(|bytes| {
                    smudge(filters, change.path.as_bstr(), &blob.data).is_ok_and(|c| c == bytes)
                })
        }
        EntryKind::Tree | EntryKind::Commit => false,
    };
    Ok(same)
}

/// The content of the file at `place` if it is a regular file.
fn read_regular_file(place: &Place) -> anyhow::Result<Option<Vec<u8>>> {
    let read_failed = || format!("failed to read `{}`", place.path().display());
    let Some(mut file) = place.open_regular_file().with_context(read_failed)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).with_context(read_failed)?;
    Ok(Some(bytes))
}

/// A submodule: git creates its (empty) directory and leaves the content alone.
fn create_submodule_directory(place: &Place) -> anyhow::Result<Stat> {
    match place.create_dir() {
        Err(err) if err.kind() != std::io::ErrorKind::AlreadyExists => Err(err)
            .with_context(|| format!("failed to create directory `{}`", place.path().display())),
        _ => Ok(Stat::default()),
    }
}

/// An empty directory where a file goes (an untracked empty one, one that a local deletion
/// left empty, empty directories inside a directory the update replaces) is removed, as git
/// removes it. The guard has proven that nothing but directories is inside; anything else found
/// here is left and fails the write.
fn remove_empty_directory(place: &Place) -> anyhow::Result<()> {
    place.remove_empty_tree().with_context(|| {
        format!(
            "failed to remove the empty directory `{}`",
            place.path().display()
        )
    })
}

fn smudge(
    filters: &mut gix::filter::Pipeline<'_>,
    path: &BStr,
    data: &[u8],
) -> anyhow::Result<Vec<u8>> {
    use gix::filter::plumbing::driver::apply::{Delay, MaybeDelayed};
    use gix::filter::plumbing::pipeline::convert::{to_worktree, ToWorktreeOutcome};
    let options = to_worktree::Options {
        can_delay: Delay::Forbid,
        ..Default::default()
    };
    Ok(
        match filters
            .convert_to_worktree(data, path, options)
            .with_context(|| format!("failed to filter `{path}`"))?
        {
            ToWorktreeOutcome::Unchanged(bytes) => bytes.to_vec(),
            ToWorktreeOutcome::Buffer(bytes) => bytes.to_vec(),
            ToWorktreeOutcome::Process(MaybeDelayed::Immediate(mut reader)) => {
                let mut out = Vec::new();
                reader
                    .read_to_end(&mut out)
                    .with_context(|| format!("filter for `{path}` failed"))?;
                out
            }
            ToWorktreeOutcome::Process(MaybeDelayed::Delayed(_)) => {
                bail!("filter for `{path}` delayed its output, which pullstart forbids")
            }
        },
    )
}

/// `.name.pullstart-<pid>.tmp`, the name beside `name` where its new content is written:
/// recognisable, so a run killed mid-write leaves a name that says whose it is (`recover`
/// removes it). The name's bytes are kept as they are.
pub fn temporary_name(name: &OsStr, pid: u32) -> OsString {
    let mut temporary = OsString::from(".");
    temporary.push(name);
    temporary.push(format!(".pullstart-{pid}.tmp"));
    temporary
}

/// The name whose temporary file `temporary` is (see [`temporary_name`]), whichever run's.
pub fn temporary_owner(temporary: &[u8]) -> Option<&[u8]> {
    let rest = temporary.strip_prefix(b".")?.strip_suffix(b".tmp")?;
    let marker = rest.windows(11).rposition(|w| w == b".pullstart-")?;
    let pid = &rest[marker + 11..];
    let digits = !pid.is_empty() && pid.iter().all(u8::is_ascii_digit);
    (digits && marker > 0).then_some(&rest[..marker])
}

/// Write the index through the lock taken before the guard ran, then rename it into place.
///
/// The bytes are made in one buffer by [`crate::index_write`] and written in one call. The
/// trailing checksum is computed here rather than by gix, whose SHA-1 is the collision-detecting
/// one: it only guards against a torn or corrupted file (git itself uses a fast SHA-1 for it),
/// so the SHA-1 of aws-lc, already linked for TLS and using the CPU's SHA instructions, hashes
/// the finished bytes.
fn write_index(index: gix::index::File, mut lock: gix::lock::File) -> anyhow::Result<()> {
    let failed = "failed to write the new index";
    if index.object_hash() != gix::hash::Kind::Sha1 {
        let mut out = BufWriter::new(&mut lock);
        index
            .write_to(&mut out, gix::index::write::Options::default())
            .context(failed)?;
        out.flush().context(failed)?;
    } else {
        let mut bytes = crate::index_write::serialize(&index).context(failed)?;
        let checksum =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &bytes);
        bytes.extend_from_slice(checksum.as_ref());
        lock.write_all(&bytes).context(failed)?;
    }
    lock.commit()
        .map_err(|err| err.error)
        .context("failed to move the new index into place")?;
    Ok(())
}

/// Move the checked-out branch (and HEAD's reflog) to the tip, expecting it where it was.
fn move_branch(checkout: &Checkout, plan: &Plan, message: &str) -> anyhow::Result<()> {
    let expected = match plan.head {
        Some(head) => PreviousValue::MustExistAndMatch(Target::Object(head)),
        None => PreviousValue::MustNotExist,
    };
    let edit = RefEdit {
        change: RefChange::Update {
            log: LogChange {
                mode: RefLog::AndReference,
                force_create_reflog: false,
                message: message.into(),
            },
            expected,
            new: Target::Object(plan.tip),
        },
        name: "HEAD".try_into().expect("valid name"),
        deref: true,
    };
    checkout.repo.edit_reference(edit).with_context(|| {
        format!(
            "failed to move `{}` to {}",
            checkout.branch.as_bstr(),
            plan.tip
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// An index of `count` entries, with stat data, sorted as git sorts them.
    fn index_with_entries(path: &Path, count: usize) -> gix::index::File {
        let mut state = gix::index::State::new(gix::hash::Kind::Sha1);
        for i in 0..count {
            let stat = Stat {
                mtime: gix::index::entry::stat::Time {
                    secs: 1_700_000_000 + i as u32,
                    nsecs: 7,
                },
                size: i as u32,
                ino: i as u32,
                ..Default::default()
            };
            let id = gix::ObjectId::from_hex(format!("{:040x}", i + 1).as_bytes()).unwrap();
            let name = format!("dir{}/file-{i}.txt", i % 7);
            state.dangerously_push_entry(
                stat,
                id,
                Flags::empty(),
                Mode::FILE,
                name.as_str().into(),
            );
        }
        state.sort_entries();
        gix::index::File::from_state(state, path)
    }

    /// The temporary name keeps the file name's bytes, so that recovery (which builds it from
    /// the journal's paths) finds the same file for a name that is not UTF-8.
    #[test]
    fn the_temporary_name_keeps_the_name_bytes() {
        let temporary = temporary_name(OsStr::from_bytes(b"f\xfe"), 42);
        assert_eq!(temporary.as_bytes(), b".f\xfe.pullstart-42.tmp");
        assert_eq!(temporary_owner(temporary.as_bytes()), Some(&b"f\xfe"[..]));
        assert_eq!(
            temporary_owner(b".a.pullstart-1.tmp.pullstart-77.tmp"),
            Some(&b"a.pullstart-1.tmp"[..])
        );
        assert_eq!(temporary_owner(b".a.pullstart-.tmp"), None);
        assert_eq!(temporary_owner(b".a.pullstart-1x.tmp"), None);
        assert_eq!(temporary_owner(b"a.pullstart-1.tmp"), None);
        assert_eq!(temporary_owner(b"..pullstart-1.tmp"), None);
    }

    #[test]
    fn the_written_index_is_byte_for_byte_what_gix_writes_and_its_checksum_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let index = index_with_entries(&path, 20_000);
        let mut expected = Vec::new();
        index
            .write_to(&mut expected, gix::index::write::Options::default())
            .unwrap();

        let lock = gix::lock::File::acquire_to_update_resource(
            &path,
            gix::lock::acquire::Fail::Immediately,
            None,
            0,
        )
        .unwrap();
        write_index(index, lock).unwrap();

        assert_eq!(std::fs::read(&path).unwrap(), expected);
        let skip_hash = false; // the checksum is verified
        let read =
            gix::index::File::at(&path, gix::hash::Kind::Sha1, skip_hash, Default::default())
                .expect("the checksum verifies");
        assert_eq!(read.entries().len(), 20_000);
    }
}
