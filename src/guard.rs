//! The guard: would the planned update overwrite local work? It looks only at the paths the
//! update touches (and, for added paths, at their leading directories and at what lies inside a
//! directory that becomes a file), so its cost follows the size of the update, not the tree.
//!
//! The rules are `git merge --ff-only`'s, stricter in one place: an ignored file in the way
//! blocks the update too, since git would overwrite it silently.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use gix::bstr::{BStr, BString, ByteSlice};
use gix::index::entry::{Mode, Stage};
use gix::objs::tree::EntryKind;

use crate::exit::{ExitCode, Failure};
use crate::plan::{Change, Entry};

/// Why a path blocks the update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A tracked file whose worktree content, type or mode differs from the index.
    Modified,
    /// The index differs from HEAD at this path (or holds an unmerged entry).
    Staged,
    /// An untracked or ignored file or directory at a path the update adds.
    Untracked,
    /// An untracked file or symlink where the update needs a directory.
    UntrackedWhereDirectoryNeeded,
    /// Untracked content inside a directory that the update turns into a file.
    UntrackedInsideDirectory,
    /// An unmerged entry (a conflict a merge left): git refuses any merge until it is resolved.
    Unmerged,
}

impl Reason {
    fn label(self) -> &'static str {
        match self {
            Reason::Modified => "modified",
            Reason::Staged => "staged",
            Reason::Untracked => "untracked",
            Reason::UntrackedWhereDirectoryNeeded => "untracked, the update needs a directory here",
            Reason::UntrackedInsideDirectory => "untracked, inside a directory the update replaces",
            Reason::Unmerged => "unmerged",
        }
    }
}

/// A path that blocks the update, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub path: BString,
    pub reason: Reason,
}

/// Refuse (exit 4) when the update would overwrite local work, or when the index holds
/// unmerged entries (as git does for any merge); the error lists the paths.
pub fn check(
    repo: &gix::Repository,
    index: &gix::index::State,
    changes: &[Change],
) -> anyhow::Result<()> {
    refuse_unwritable_tree(repo, changes)?;
    let unmerged = unmerged_paths(index);
    if !unmerged.is_empty() {
        return Err(unmerged_refusal(&unmerged).into());
    }
    let blocked = blocked_paths(repo, index, changes)?;
    if blocked.is_empty() {
        return Ok(());
    }
    Err(refusal(&blocked).into())
}

/// What the pushed tree alone would make the apply fail on half-way is refused before anything is
/// written (exit 2, fix the remote): a symlink whose target the system cannot store (longer than
/// `PATH_MAX`, empty, or holding a NUL), and a path that the new tree holds twice, or as a file
/// with more below it (possible only in a hand-made tree; git's fsck calls it `duplicateEntries`):
/// writing through such a symlink could leave the worktree.
fn refuse_unwritable_tree(repo: &gix::Repository, changes: &[Change]) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let new_files: HashSet<&BStr> = changes
        .iter()
        .filter(|c| c.new.is_some())
        .map(|c| c.path.as_bstr())
        .collect();
    let mut seen = HashSet::new();
    for change in changes {
        let Some(new) = change.new else { continue };
        let path = change.path.as_bstr();
        if !seen.insert(path) {
            problems.push(format!("`{path}` (listed twice)"));
        }
        if let Some(file) = leading_file(path, &new_files) {
            problems.push(format!(
                "`{path}` (below `{file}`, which is not a directory)"
            ));
        }
        if new.kind == EntryKind::Link {
            if let Some(why) = unwritable_symlink(repo, new.id)? {
                problems.push(format!("`{path}` ({why})"));
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = problems.iter().take(5).cloned().collect();
    Err(Failure::usage(format!(
        "refused: the remote tree cannot be checked out: {}{}; nothing was touched; fix the remote branch",
        shown.join(", "),
        if problems.len() > 5 { format!(" and {} more", problems.len() - 5) } else { String::new() }
    ))
    .into())
}

/// The first leading directory of `path` that the new tree also holds as a file or symlink.
fn leading_file<'p>(path: &'p BStr, new_files: &HashSet<&BStr>) -> Option<&'p BStr> {
    path.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'/')
        .map(|(i, _)| path[..i].as_bstr())
        .find(|prefix| new_files.contains(prefix))
}

/// Why a symlink with this blob as its target cannot be created, if it cannot.
fn unwritable_symlink(repo: &gix::Repository, id: gix::ObjectId) -> anyhow::Result<Option<String>> {
    // PATH_MAX counts the terminating NUL.
    let limit = libc::PATH_MAX as u64 - 1;
    let size = repo
        .find_header(id)
        .with_context(|| format!("failed to read object {id}"))?
        .size();
    if size > limit {
        return Ok(Some(format!(
            "a symlink target of {size} bytes, over the system's limit of {limit}"
        )));
    }
    let blob = repo
        .find_blob(id)
        .with_context(|| format!("failed to read blob {id}"))?;
    Ok(if blob.data.is_empty() {
        Some("an empty symlink target".into())
    } else if blob.data.contains(&0) {
        Some("a symlink target with a NUL byte".into())
    } else {
        None
    })
}

/// Every path with an unmerged entry (stages 1 to 3), once, in index order.
fn unmerged_paths(index: &gix::index::State) -> Vec<BString> {
    let mut paths: Vec<BString> = index
        .entries()
        .iter()
        .filter(|e| e.stage() != Stage::Unconflicted)
        .map(|e| e.path(index).to_owned())
        .collect();
    paths.dedup();
    paths
}

/// git refuses to merge while a conflict is unresolved, wherever it is ("you have unmerged
/// files"): updating around it would leave a half-resolved merge on top of new code.
fn unmerged_refusal(paths: &[BString]) -> Failure {
    const SHOWN: usize = 5;
    let mut list: Vec<String> = paths.iter().take(SHOWN).map(|p| p.to_string()).collect();
    if paths.len() > SHOWN {
        list.push(format!("and {} more", paths.len() - SHOWN));
    }
    Failure::new(
        ExitCode::RefusedLocalChanges,
        format!(
            "refused: the index has unmerged paths {} (a merge left conflicts); resolve them with `git add` or `git rm` and commit, or `git merge --abort` (nothing was touched)",
            list.join(", ")
        ),
    )
}

/// Whether the index already holds what the update puts at this path: git's "keep index"
/// cases (a staged change or addition equal to the new version, a staged deletion of a path
/// the update deletes). git leaves such a path alone, index entry and worktree alike, and so
/// does the apply.
pub fn already_staged(index: &gix::index::State, change: &Change) -> bool {
    IndexAt::lookup(index, change.path.as_bstr()).holds(change.new)
}

/// The index's entries at one path, found with one binary search (the guard asks several
/// questions of each changed path, and with 100,000 entries each search costs).
#[derive(Clone, Copy)]
struct IndexAt<'i> {
    /// The unconflicted entry (stage 0), if any.
    entry: Option<&'i gix::index::Entry>,
    /// Whether an unmerged entry (stages 1 to 3) is there.
    unmerged: bool,
}

impl<'i> IndexAt<'i> {
    fn lookup(index: &'i gix::index::State, path: &BStr) -> Self {
        let entries = index
            .entry_range(path)
            .map_or(&[][..], |range| &index.entries()[range]);
        IndexAt {
            entry: entries.iter().find(|e| e.stage() == Stage::Unconflicted),
            unmerged: entries.iter().any(|e| e.stage() != Stage::Unconflicted),
        }
    }

    /// Whether the index holds exactly `side` here (kind and id; `None`: no entry), unconflicted.
    fn holds(&self, side: Option<Entry>) -> bool {
        let in_index = self
            .entry
            .map(|e| (e.mode.to_tree_entry_mode().map(|m| m.kind()), e.id));
        !self.unmerged && in_index == side.map(|e| (Some(e.kind), e.id))
    }
}

/// The one-line refusal naming the first few blocking paths.
pub fn refusal(blocked: &[Blocked]) -> Failure {
    const SHOWN: usize = 5;
    let mut list: Vec<String> = blocked
        .iter()
        .take(SHOWN)
        .map(|b| format!("{} ({})", b.path, b.reason.label()))
        .collect();
    if blocked.len() > SHOWN {
        list.push(format!("and {} more", blocked.len() - SHOWN));
    }
    Failure::new(
        ExitCode::RefusedLocalChanges,
        format!(
            "refused: local changes to {} would be overwritten; commit, stash or remove them (nothing was touched)",
            list.join(", ")
        ),
    )
}

/// Every path that blocks the update, in the order of `changes`.
pub fn blocked_paths(
    repo: &gix::Repository,
    index: &gix::index::State,
    changes: &[Change],
) -> anyhow::Result<Vec<Blocked>> {
    let mut guard = Guard::new(repo, index, changes)?;
    let mut blocked: Vec<Blocked> = unmerged_paths(index)
        .into_iter()
        .map(|path| Blocked {
            path,
            reason: Reason::Unmerged,
        })
        .collect();
    for change in changes {
        guard.check_change(change, &mut blocked)?;
    }
    dedup_keep_order(&mut blocked);
    Ok(blocked)
}

/// After a killed update: the changed paths whose worktree content is neither the old nor the
/// new version (nor missing) hold local work that finishing the update would overwrite. A
/// directory is pullstart's when a changed path lies below it.
pub fn foreign_content(
    repo: &gix::Repository,
    index: &gix::index::State,
    changes: &[Change],
) -> anyhow::Result<Vec<Blocked>> {
    let mut guard = Guard::new(repo, index, changes)?;
    let paths: HashSet<&BStr> = changes.iter().map(|c| c.path.as_bstr()).collect();
    let mut blocked = Vec::new();
    for change in changes {
        let path = change.path.as_bstr();
        if let Some(component) = guard.first_non_directory_ancestor(path) {
            if !paths.contains(component.as_bstr()) {
                blocked.push(Blocked {
                    path: component,
                    reason: Reason::Modified,
                });
            }
            continue; // the component is a changed path of its own, checked there
        }
        let abs = guard.abs(path);
        let Ok(metadata) = std::fs::symlink_metadata(&abs) else {
            continue;
        };
        if metadata.is_dir() {
            let mut prefix = path.to_owned();
            prefix.push(b'/');
            let ours = paths.iter().any(|p| p.starts_with(&prefix));
            let submodule = [change.old, change.new]
                .iter()
                .flatten()
                .any(|e| e.kind == EntryKind::Commit);
            if !ours && !submodule {
                blocked.push(Blocked {
                    path: path.to_owned(),
                    reason: Reason::Untracked,
                });
            }
            continue;
        }
        let id = guard.hash_worktree_file(path, &abs, metadata.is_symlink())?;
        let known = [change.old, change.new]
            .iter()
            .flatten()
            .any(|e| e.id == id);
        if !known {
            blocked.push(Blocked {
                path: path.to_owned(),
                reason: Reason::Modified,
            });
        }
    }
    dedup_keep_order(&mut blocked);
    Ok(blocked)
}

/// `abs` opened for reading if it is a regular file, else `None`: opened without following a
/// symlink and without blocking (`O_NONBLOCK`, which a FIFO would otherwise need a writer for),
/// and checked on the open file, so that a swap after a `stat` changes nothing.
pub fn open_regular_file(abs: &Path) -> anyhow::Result<Option<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(abs)
    {
        Ok(file) => file,
        Err(err) if changed_meanwhile(&err) => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("failed to read `{}`", abs.display())),
    };
    let metadata = file
        .metadata()
        .with_context(|| format!("failed to inspect `{}`", abs.display()))?;
    Ok(metadata.is_file().then_some(file))
}

/// Whether opening or reading what the caller saw failed because it changed since: gone
/// (ENOENT), a leading directory now a file (ENOTDIR), a symlink swapped in (ELOOP) or out
/// (EINVAL from readlink). Whatever it is now, it is not what the index has: a local change,
/// not an error.
fn changed_meanwhile(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::EINVAL)
    )
}

fn dedup_keep_order(blocked: &mut Vec<Blocked>) {
    let mut seen = HashSet::new();
    blocked.retain(|b| seen.insert(b.path.clone()));
}

struct Guard<'a> {
    repo: &'a gix::Repository,
    workdir: &'a Path,
    index: &'a gix::index::State,
    /// Paths the update removes (tracked in HEAD, absent in the tip): an existing file there is
    /// pullstart's to remove once the guard has checked it is unmodified.
    removed: HashSet<&'a BStr>,
    stat_options: gix::index::entry::stat::Options,
    file_mode: bool,
    symlinks: bool,
    /// Built on first use: most runs never need to hash a file.
    filters: Option<gix::filter::Pipeline<'a>>,
    /// What each leading directory looked at so far is: the changed paths of an update share
    /// their folders, and the guard, which changes nothing, needs to look at each only once.
    leading: RefCell<HashMap<BString, Leading>>,
}

/// What a leading component of a changed path is in the worktree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leading {
    Directory,
    /// A file, a symlink (even one to a directory) or anything else that is not a directory.
    NotDirectory,
    Missing,
}

impl<'a> Guard<'a> {
    fn new(
        repo: &'a gix::Repository,
        index: &'a gix::index::State,
        changes: &'a [Change],
    ) -> anyhow::Result<Self> {
        let config = repo.config_snapshot();
        Ok(Guard {
            repo,
            workdir: repo
                .workdir()
                .context("the repository has no working tree")?,
            index,
            removed: changes
                .iter()
                .filter(|c| c.old.is_some() && c.new.is_none())
                .map(|c| c.path.as_bstr())
                .collect(),
            stat_options: repo
                .stat_options()
                .context("failed to read the stat options from the git config")?,
            file_mode: config.boolean("core.fileMode").unwrap_or(true),
            symlinks: config.boolean("core.symlinks").unwrap_or(true),
            filters: None,
            leading: RefCell::default(),
        })
    }

    fn check_change(
        &mut self,
        change: &'a Change,
        blocked: &mut Vec<Blocked>,
    ) -> anyhow::Result<()> {
        let path = change.path.as_bstr();
        let at = IndexAt::lookup(self.index, path);
        if at.holds(change.new) {
            if change.new.is_none() {
                self.staged_deletion_in_the_way(path, blocked)?;
            }
            return Ok(());
        }
        if let Some(reason) = self.staged(path, at, change.old) {
            blocked.push(Blocked {
                path: path.to_owned(),
                reason,
            });
            return Ok(());
        }
        match change.old {
            Some(old)
                if old.kind == EntryKind::Commit
                    && change.new.is_some_and(|new| new.kind != EntryKind::Commit) =>
            {
                // A submodule the update replaces with a file: its directory is removed only
                // when empty, so whatever its checkout holds is in the way.
                self.submodule_content_in_the_way(path, blocked)?;
            }
            Some(_) => {
                if let Some(b) = self.tracked_path_modified(path, at)? {
                    blocked.push(b);
                }
            }
            None => self.untracked_in_the_way(path, blocked)?,
        }
        if change.old.is_none() || change.new.is_some() {
            // Something will be written at `path`: its leading directories must be real
            // directories, or missing, or files this update removes.
            if let Some(b) = self.leading_component_in_the_way(path) {
                blocked.push(b);
            }
        }
        Ok(())
    }

    /// A staged deletion (`git rm`) of a path the update deletes too: the path is no longer
    /// tracked, so whatever is there now (`git rm --cached` leaves the file) is untracked work
    /// that the update must not remove. git refuses the same way ("untracked working tree files
    /// would be removed"); an empty directory there is left alone.
    fn staged_deletion_in_the_way(
        &self,
        path: &BStr,
        blocked: &mut Vec<Blocked>,
    ) -> anyhow::Result<()> {
        if self.first_non_directory_ancestor(path).is_some() {
            return Ok(()); // nothing can be at `path`: a leading component is not a directory
        }
        let abs = self.abs(path);
        match std::fs::symlink_metadata(&abs) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err).with_context(|| format!("failed to inspect `{}`", abs.display())),
            Ok(m) if m.is_dir() => self.untracked_inside(path, &abs, blocked),
            Ok(_) => {
                blocked.push(Blocked {
                    path: path.to_owned(),
                    reason: Reason::Untracked,
                });
                Ok(())
            }
        }
    }

    fn submodule_content_in_the_way(
        &self,
        path: &BStr,
        blocked: &mut Vec<Blocked>,
    ) -> anyhow::Result<()> {
        let abs = self.abs(path);
        match std::fs::symlink_metadata(&abs) {
            Ok(m) if m.is_dir() && self.first_non_directory_ancestor(path).is_none() => {
                self.untracked_inside(path, &abs, blocked)
            }
            _ => Ok(()),
        }
    }

    /// The index must hold exactly HEAD's entry at `path`, unmerged entries count as staged.
    /// Below an added path nothing may be staged either.
    fn staged(&self, path: &BStr, at: IndexAt<'_>, head: Option<Entry>) -> Option<Reason> {
        if !at.holds(head) {
            return Some(Reason::Staged);
        }
        if head.is_none() && self.has_index_entries_below(path) {
            return Some(Reason::Staged);
        }
        None
    }

    /// Whether the index has entries under `path/` that this update does not remove.
    fn has_index_entries_below(&self, path: &BStr) -> bool {
        let mut prefix = path.to_owned();
        prefix.push(b'/');
        let Some(range) = self.index.prefixed_entries_range(prefix.as_bstr()) else {
            return false;
        };
        self.index.entries()[range]
            .iter()
            .any(|e| !self.removed.contains(e.path(self.index)))
    }

    /// A tracked path (in HEAD and, as `staged` checked, in the index): does its worktree
    /// state differ from the index? A missing file is no local work (it is recreated, as git does).
    fn tracked_path_modified(
        &mut self,
        path: &'a BStr,
        at: IndexAt<'_>,
    ) -> anyhow::Result<Option<Blocked>> {
        let Some(entry) = at.entry else {
            return Ok(None);
        };
        if let Some(component) = self.first_non_directory_ancestor(path) {
            let reason = if self.removed.contains(component.as_bstr()) {
                None
            } else {
                Some(Reason::Modified)
            };
            // A leading directory replaced by a file or symlink is a local change to the tree.
            return Ok(reason.map(|reason| Blocked {
                path: component,
                reason,
            }));
        }
        let abs = self.abs(path);
        let metadata = match gix::index::fs::Metadata::from_path_no_follow(&abs) {
            Ok(m) => m,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => {
                return Err(err).with_context(|| format!("failed to inspect `{}`", abs.display()))
            }
        };
        if entry.mode == Mode::COMMIT {
            // A submodule: its own checkout is not ours to judge; the update only moves the gitlink.
            return Ok(None);
        }
        match entry
            .mode
            .change_to_match_fs(&metadata, self.symlinks, self.file_mode)
        {
            None => {}
            Some(_) => {
                return Ok(Some(Blocked {
                    path: path.to_owned(),
                    reason: Reason::Modified,
                }))
            }
        }
        let stat = gix::index::entry::Stat::from_fs(&metadata)
            .with_context(|| format!("failed to read the times of `{}`", abs.display()))?;
        let racy = entry
            .stat
            .is_racy(self.index.timestamp(), self.stat_options);
        if entry.stat.matches(&stat, self.stat_options) && !racy {
            return Ok(None);
        }
        let id = self.hash_worktree_file(path, &abs, metadata.is_symlink())?;
        Ok((id != entry.id).then(|| Blocked {
            path: path.to_owned(),
            reason: Reason::Modified,
        }))
    }

    /// Hash the worktree file as `git add` would (through the clean filters). Anything that is
    /// neither a regular file nor a symlink (a FIFO, a socket, a device) hashes to the null id,
    /// which no version has: it is never opened (opening a FIFO blocks until someone writes),
    /// and counts as a local change, as git counts it a type change.
    fn hash_worktree_file(
        &mut self,
        path: &BStr,
        abs: &Path,
        is_symlink: bool,
    ) -> anyhow::Result<gix::ObjectId> {
        let data = if is_symlink {
            match std::fs::read_link(abs) {
                Ok(target) => target.into_os_string().into_vec(),
                Err(err) if changed_meanwhile(&err) => {
                    return Ok(gix::ObjectId::null(self.repo.object_hash()))
                }
                Err(err) => {
                    return Err(err)
                        .with_context(|| format!("failed to read link `{}`", abs.display()))
                }
            }
        } else {
            match open_regular_file(abs)? {
                Some(file) => self.clean(path, file)?,
                None => return Ok(gix::ObjectId::null(self.repo.object_hash())),
            }
        };
        gix::objs::compute_hash(self.repo.object_hash(), gix::objs::Kind::Blob, &data)
            .with_context(|| format!("failed to hash `{}`", abs.display()))
    }

    fn clean(&mut self, path: &BStr, file: std::fs::File) -> anyhow::Result<Vec<u8>> {
        if self.filters.is_none() {
            // The attributes of the index (HEAD's, or what is staged), never the worktree's
            // `.gitattributes` files: gix opens those without O_NONBLOCK, and a FIFO put there
            // (from a container sharing the checkout) would hang the run holding the lock. A
            // local, unstaged edit of `.gitattributes` thus does not change how files compare.
            let attributes = self
                .repo
                .attributes_only(
                    self.index,
                    gix::worktree::stack::state::attributes::Source::IdMapping,
                )
                .context("failed to read .gitattributes")?;
            self.filters = Some(
                gix::filter::Pipeline::new(self.repo, attributes.detach())
                    .context("failed to set up git filters")?,
            );
        }
        let filters = self.filters.as_mut().expect("just set");
        let rela = Path::new(OsStr::from_bytes(path));
        let mut out = Vec::new();
        use gix::filter::plumbing::pipeline::convert::ToGitOutcome;
        match filters
            .convert_to_git(file, rela, self.index)
            .with_context(|| format!("failed to filter `{path}`"))?
        {
            ToGitOutcome::Unchanged(mut file) => {
                file.read_to_end(&mut out)?;
            }
            ToGitOutcome::Process(mut stream) => {
                stream.read_to_end(&mut out)?;
            }
            ToGitOutcome::Buffer(buf) => out.extend_from_slice(buf),
        }
        Ok(out)
    }

    /// An added path: anything already there is local (untracked or ignored) unless the update
    /// removes it. A directory there must hold nothing but files the update removes.
    fn untracked_in_the_way(&self, path: &BStr, blocked: &mut Vec<Blocked>) -> anyhow::Result<()> {
        if self.first_non_directory_ancestor(path).is_some() {
            return Ok(()); // reported by `leading_component_in_the_way`
        }
        let abs = self.abs(path);
        let metadata = match std::fs::symlink_metadata(&abs) {
            Ok(m) => m,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => {
                return Err(err).with_context(|| format!("failed to inspect `{}`", abs.display()))
            }
        };
        if metadata.is_dir() {
            self.untracked_inside(path, &abs, blocked)
        } else {
            blocked.push(Blocked {
                path: path.to_owned(),
                reason: Reason::Untracked,
            });
            Ok(())
        }
    }

    fn untracked_inside(
        &self,
        dir: &BStr,
        abs_dir: &Path,
        blocked: &mut Vec<Blocked>,
    ) -> anyhow::Result<()> {
        let entries = std::fs::read_dir(abs_dir)
            .with_context(|| format!("failed to list `{}`", abs_dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("failed to list `{}`", abs_dir.display()))?;
            let mut rela = dir.to_owned();
            rela.push(b'/');
            rela.extend_from_slice(entry.file_name().as_bytes());
            let file_type = entry.file_type()?;
            if self.removed.contains(rela.as_bstr()) {
                continue;
            }
            if file_type.is_dir() {
                self.untracked_inside(rela.as_bstr(), &entry.path(), blocked)?;
            } else {
                blocked.push(Blocked {
                    path: rela,
                    reason: Reason::UntrackedInsideDirectory,
                });
            }
        }
        Ok(())
    }

    /// A leading component of `path` that exists but is not a real directory, and that the
    /// update does not remove, is in the way of what the update writes.
    fn leading_component_in_the_way(&self, path: &BStr) -> Option<Blocked> {
        let component = self.first_non_directory_ancestor(path)?;
        if self.removed.contains(component.as_bstr()) {
            return None;
        }
        let tracked = self
            .index
            .entry_by_path_and_stage(component.as_bstr(), Stage::Unconflicted)
            .is_some();
        let reason = if tracked {
            Reason::Modified
        } else {
            Reason::UntrackedWhereDirectoryNeeded
        };
        Some(Blocked {
            path: component,
            reason,
        })
    }

    /// The first leading component of `path` that exists and is not a real directory (a file,
    /// or a symlink, even one to a directory: writing through it could leave the worktree).
    fn first_non_directory_ancestor(&self, path: &BStr) -> Option<BString> {
        for (i, byte) in path.iter().enumerate() {
            if *byte != b'/' {
                continue;
            }
            let prefix = path[..i].as_bstr();
            match self.leading(prefix) {
                Leading::Directory => continue,
                Leading::NotDirectory => return Some(prefix.into()),
                Leading::Missing => return None, // nothing below it exists either
            }
        }
        None
    }

    /// What `prefix` is, looked at (without following a symlink) the first time it is asked.
    fn leading(&self, prefix: &BStr) -> Leading {
        if let Some(known) = self.leading.borrow().get(prefix) {
            return *known;
        }
        let found = match std::fs::symlink_metadata(self.abs(prefix)) {
            Ok(m) if m.is_dir() => Leading::Directory,
            Ok(_) => Leading::NotDirectory,
            Err(_) => Leading::Missing,
        };
        self.leading.borrow_mut().insert(prefix.to_owned(), found);
        found
    }

    fn abs(&self, path: &BStr) -> PathBuf {
        self.workdir.join(OsStr::from_bytes(path))
    }
}

#[cfg(test)]
mod tests {
    /// A file that vanished, or whose directory became a file, between the guard's look and its
    /// read is a local change (the caller hashes it as no version), not exit 1.
    #[test]
    fn a_file_changed_since_the_guard_looked_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(super::open_regular_file(&dir.path().join("gone"))
            .unwrap()
            .is_none());
        std::fs::write(dir.path().join("file"), "x").unwrap();
        assert!(super::open_regular_file(&dir.path().join("file/below"))
            .unwrap()
            .is_none());
        std::os::unix::fs::symlink("file", dir.path().join("link")).unwrap();
        assert!(super::open_regular_file(&dir.path().join("link"))
            .unwrap()
            .is_none());
    }
}
