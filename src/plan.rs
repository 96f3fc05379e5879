//! The plan: a plain value saying what a run would do, computed from HEAD, the fetched tip, the
//! deployed commit and their trees. Nothing here touches the worktree, the index or a container;
//! `check` prints a plan, `run` carries it out.

use anyhow::Context;
use gix::bstr::{BStr, BString, ByteSlice};
use gix::objs::tree::EntryKind;
use gix::ObjectId;

use crate::exit::{ExitCode, Failure};
use crate::select::Services;

/// One side of a changed path: what git would have there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    pub id: ObjectId,
}

/// A path whose mode, content or type differs between two trees. Directories are not listed:
/// a file that becomes a directory is a deletion of the file plus additions below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: BString,
    pub old: Option<Entry>,
    pub new: Option<Entry>,
}

/// How HEAD relates to the fetched tip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// HEAD is the tip.
    Same,
    /// The tip descends from HEAD (or the branch is unborn): a fast-forward.
    Behind,
    /// HEAD has commits the tip lacks; the tip is an ancestor of HEAD.
    Ahead { remote_rolled_back: bool },
    /// Both have commits the other lacks.
    Diverged { remote_force_pushed: bool },
    /// No common history at all.
    Unrelated,
}

/// What a run will do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// HEAD before the run; `None` for an unborn branch.
    pub head: Option<ObjectId>,
    /// The fetched remote tip, which HEAD will point to after the run.
    pub tip: ObjectId,
    /// The commit the services last restarted with, before this run.
    pub deployed: Option<ObjectId>,
    /// What the worktree update writes: HEAD's tree against the tip's tree.
    pub changes: Vec<Change>,
    /// Every path whose code the services see change: the deployed tree against the tip's
    /// tree (the same as `changes` unless an earlier restart failed).
    pub changed_paths: Vec<BString>,
    pub services: Services,
}

impl Plan {
    /// Whether the branch moves.
    pub fn moves_head(&self) -> bool {
        self.head != Some(self.tip)
    }

    /// Whether the deployed ref has to move (after a successful restart, or without one when
    /// the code the services see did not change).
    pub fn moves_deployed(&self) -> bool {
        self.deployed != Some(self.tip)
    }

    /// Whether a run has anything at all to do.
    pub fn is_up_to_date(&self) -> bool {
        !self.moves_head() && !self.moves_deployed()
    }
}

/// Classify HEAD against the tip. `previous_tip` is the remote-tracking ref before this fetch:
/// when HEAD equalled it, a tip that is no longer a descendant means the remote was rewritten,
/// not that someone committed locally, and the message says so.
pub fn relation(
    repo: &gix::Repository,
    head: Option<ObjectId>,
    tip: ObjectId,
    previous_tip: Option<ObjectId>,
) -> anyhow::Result<Relation> {
    let Some(head) = head else {
        return Ok(Relation::Behind);
    };
    if head == tip {
        return Ok(Relation::Same);
    }
    let base = repo
        .merge_base(head, tip)
        .map(|id| id.map(|id| id.detach()))
        .with_context(|| format!("failed to find the merge base of {head} and {tip}"))?;
    let head_was_remote = previous_tip == Some(head);
    Ok(match base {
        Some(base) if base == head => Relation::Behind,
        Some(base) if base == tip => Relation::Ahead {
            remote_rolled_back: head_was_remote,
        },
        Some(_) => Relation::Diverged {
            remote_force_pushed: head_was_remote,
        },
        None => Relation::Unrelated,
    })
}

/// The refusal for a relation that is not a fast-forward, with the one-line message.
pub fn refusal(relation: Relation, branch: &str, remote_ref: &str) -> Option<Failure> {
    let why = match relation {
        Relation::Same | Relation::Behind => return None,
        Relation::Ahead {
            remote_rolled_back: true,
        } => {
            format!("`{remote_ref}` was rolled back to an older commit than `{branch}`")
        }
        Relation::Ahead {
            remote_rolled_back: false,
        } => {
            format!("`{branch}` has local commits that `{remote_ref}` lacks")
        }
        Relation::Diverged {
            remote_force_pushed: true,
        } => {
            format!("`{remote_ref}` was force-pushed and no longer contains `{branch}`")
        }
        Relation::Diverged {
            remote_force_pushed: false,
        } => {
            format!("`{branch}` and `{remote_ref}` have diverged")
        }
        Relation::Unrelated => format!("`{branch}` and `{remote_ref}` share no history"),
    };
    Some(Failure::new(
        ExitCode::RefusedNotFastForward,
        format!(
            "refused: not a fast-forward: {why}; nothing was touched; push or drop the local commits, or `git reset --keep {remote_ref}` to follow the remote"
        ),
    ))
}

/// The non-directory entries that differ between two trees, sorted by path (git's order).
pub fn changes(
    repo: &gix::Repository,
    old_tree: ObjectId,
    new_tree: ObjectId,
) -> anyhow::Result<Vec<Change>> {
    if old_tree == new_tree {
        return Ok(Vec::new());
    }
    let old = repo
        .find_tree(old_tree)
        .with_context(|| format!("failed to read tree {old_tree}"))?;
    let new = repo
        .find_tree(new_tree)
        .with_context(|| format!("failed to read tree {new_tree}"))?;
    // The plain tree diff with full paths and no rename tracking (a rename is a deletion and
    // an addition, which is what the worktree update needs anyway). Not
    // `Repository::diff_tree_to_tree`: that one also loads the index and an attribute stack for
    // blob diffs we never make, which doubled the memory and the time of an update in a large
    // repository (see contrib/bench).
    let mut recorder = CheckedRecorder::default();
    gix::diff::tree(
        gix::objs::TreeRefIter::from_bytes(&old.data, repo.object_hash()),
        gix::objs::TreeRefIter::from_bytes(&new.data, repo.object_hash()),
        gix::diff::tree::State::default(),
        &repo.objects,
        &mut recorder,
    )
    .with_context(|| format!("failed to diff trees {old_tree} and {new_tree}"))?;
    if !recorder.unsafe_names.is_empty() {
        return Err(unsafe_names_refusal(new_tree, &recorder.unsafe_names).into());
    }
    let mut changes: Vec<Change> = recorder
        .inner
        .records
        .into_iter()
        .filter_map(to_change)
        .collect();
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(changes)
}

fn unsafe_names_refusal(new_tree: ObjectId, names: &[String]) -> Failure {
    const SHOWN: usize = 5;
    let mut list: Vec<&str> = names.iter().take(SHOWN).map(String::as_str).collect();
    let more = format!("and {} more", names.len().saturating_sub(SHOWN));
    if names.len() > SHOWN {
        list.push(&more);
    }
    Failure::usage(format!(
        "refused: the remote tree {new_tree} has entries that git would never check out: {}; nothing was touched; fix the remote branch",
        list.join(", ")
    ))
}

/// gix's tree-diff recorder, which also checks every entry name on the new side as git's
/// `verify_path` does. The recorder only sees names joined into paths, where a name holding a
/// `/` (which a hand-made tree object can have) looks like two components: such an entry would
/// give the index two entries for one path. So the names are followed here one by one, in
/// step with the recorder's own path.
#[derive(Default)]
struct CheckedRecorder {
    inner: gix::diff::tree::Recorder,
    /// The entry names leading to the current entry.
    names: Vec<BString>,
    /// The names of the trees still to be visited, as the recorder queues their paths.
    queued: std::collections::VecDeque<Vec<BString>>,
    /// The refused entries, described for the user.
    unsafe_names: Vec<String>,
}

impl gix::diff::tree::Visit for CheckedRecorder {
    fn pop_front_tracked_path_and_set_current(&mut self) {
        self.names = self.queued.pop_front().unwrap_or_default();
        self.inner.pop_front_tracked_path_and_set_current();
    }

    fn push_back_tracked_path_component(&mut self, component: &BStr) {
        self.names.push(component.to_owned());
        self.queued.push_back(self.names.clone());
        self.inner.push_back_tracked_path_component(component);
    }

    fn push_path_component(&mut self, component: &BStr) {
        self.names.push(component.to_owned());
        self.inner.push_path_component(component);
    }

    fn pop_path_component(&mut self) {
        self.names.pop();
        self.inner.pop_path_component();
    }

    fn visit(&mut self, change: gix::diff::tree::visit::Change) -> gix::diff::tree::visit::Action {
        use gix::diff::tree::visit::Change as C;
        // Only what the update writes is checked: a push that deletes such an entry is a fix.
        let new_kind = match &change {
            C::Addition { entry_mode, .. } | C::Modification { entry_mode, .. } => {
                Some(entry_mode.kind())
            }
            C::Deletion { .. } => None,
        };
        if let (Some(kind), Some((name, parents))) = (new_kind, self.names.split_last()) {
            if let Some(why) = unsafe_name(name.as_bstr(), kind) {
                let within = if parents.is_empty() {
                    "the root tree".to_string()
                } else {
                    format!("`{}`", parents.join(&b'/').as_bstr())
                };
                self.unsafe_names
                    .push(format!("{:?} in {within} ({why})", name.as_bstr()));
            }
        }
        self.inner.visit(change)
    }
}

fn to_change(change: gix::diff::tree::recorder::Change) -> Option<Change> {
    use gix::diff::tree::recorder::Change as C;
    let side = |mode: gix::objs::tree::EntryMode, id: ObjectId| {
        let kind = mode.kind();
        (kind != EntryKind::Tree).then_some(Entry { kind, id })
    };
    let (path, old, new) = match change {
        C::Addition {
            path,
            entry_mode,
            oid,
            ..
        } => (path, None, side(entry_mode, oid)),
        C::Deletion {
            path,
            entry_mode,
            oid,
            ..
        } => (path, side(entry_mode, oid), None),
        C::Modification {
            path,
            previous_entry_mode,
            previous_oid,
            entry_mode,
            oid,
        } => (
            path,
            side(previous_entry_mode, previous_oid),
            side(entry_mode, oid),
        ),
    };
    (old.is_some() || new.is_some()).then_some(Change { path, old, new })
}

/// Paths of `changes`, for output and service selection.
pub fn paths(changes: &[Change]) -> Vec<BString> {
    changes.iter().map(|c| c.path.clone()).collect()
}

/// A tree path that must never be written: `.git` in any case, `.`, `..`, empty components, or
/// names that NTFS would treat as `.git`. These are git's own defaults on Linux
/// (`core.protectNTFS` on, `core.protectHFS` off); file names that are merely invalid on Windows
/// are fine here, as git checks them out too.
pub fn unsafe_path(path: &BStr, kind: EntryKind) -> Option<String> {
    let parts: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let kind = if last { kind } else { EntryKind::Tree };
        if let Some(why) = unsafe_name(part.as_bstr(), kind) {
            return Some(format!("`{}` ({why})", path));
        }
    }
    if path.starts_with(b"/") {
        return Some(format!("`{path}` (absolute path)"));
    }
    None
}

/// Why git's `verify_path` would refuse one tree entry name of this kind, if it would: empty,
/// `.` or `..`, holding a `/` or a NUL, `.git` in any case or NTFS spelling, or a symlink named
/// `.gitmodules`.
pub fn unsafe_name(name: &BStr, kind: EntryKind) -> Option<String> {
    use gix::validate::path::component;
    let options = component::Options {
        protect_windows: false,
        protect_hfs: false,
        protect_ntfs: true,
    };
    if name.contains(&0) {
        return Some("a name with a NUL byte".into());
    }
    let mode = (kind == EntryKind::Link).then_some(component::Mode::Symlink);
    component(name, mode, options)
        .err()
        .map(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::from_bytes_or_panic(&[n; 20])
    }

    #[test]
    fn only_non_fast_forward_relations_refuse() {
        assert!(refusal(Relation::Same, "main", "origin/main").is_none());
        assert!(refusal(Relation::Behind, "main", "origin/main").is_none());
        for relation in [
            Relation::Ahead {
                remote_rolled_back: false,
            },
            Relation::Ahead {
                remote_rolled_back: true,
            },
            Relation::Diverged {
                remote_force_pushed: false,
            },
            Relation::Diverged {
                remote_force_pushed: true,
            },
            Relation::Unrelated,
        ] {
            let failure = refusal(relation, "main", "origin/main").expect("refuses");
            assert_eq!(failure.code, ExitCode::RefusedNotFastForward);
            assert!(
                failure.message.starts_with("refused: not a fast-forward"),
                "{}",
                failure.message
            );
        }
        let rolled = refusal(
            Relation::Ahead {
                remote_rolled_back: true,
            },
            "main",
            "origin/main",
        )
        .unwrap();
        assert!(rolled.message.contains("rolled back"));
        let forced = refusal(
            Relation::Diverged {
                remote_force_pushed: true,
            },
            "main",
            "origin/main",
        )
        .unwrap();
        assert!(forced.message.contains("force-pushed"));
        let local = refusal(
            Relation::Ahead {
                remote_rolled_back: false,
            },
            "main",
            "origin/main",
        )
        .unwrap();
        assert!(local.message.contains("local commits"));
    }

    #[test]
    fn plan_knows_when_it_is_up_to_date() {
        let plan = Plan {
            head: Some(id(1)),
            tip: id(1),
            deployed: Some(id(1)),
            changes: vec![],
            changed_paths: vec![],
            services: Services::nothing("no file changed"),
        };
        assert!(plan.is_up_to_date());
        let retry = Plan {
            deployed: Some(id(2)),
            ..plan.clone()
        };
        assert!(!retry.is_up_to_date() && !retry.moves_head() && retry.moves_deployed());
        let unborn = Plan {
            head: None,
            deployed: None,
            ..plan
        };
        assert!(unborn.moves_head());
    }

    #[test]
    fn dangerous_tree_paths_are_named() {
        for bad in [
            ".git/config",
            "a/.GIT/x",
            "a/../b",
            "./a",
            "a//b",
            ".git",
            "x/git~1/y",
            "a/.git./b",
        ] {
            assert!(unsafe_path(bad.into(), EntryKind::Blob).is_some(), "{bad}");
        }
        for good in [
            "a/b.txt",
            ".github/workflows/ci.yml",
            "a/.gitignore",
            "dir with space/f",
        ] {
            assert_eq!(unsafe_path(good.into(), EntryKind::Blob), None, "{good}");
        }
        assert!(unsafe_path(".gitmodules".into(), EntryKind::Link).is_some());
    }

    #[test]
    fn entry_names_are_checked_as_git_verify_path_does() {
        for bad in [
            "a/b", "/", "", ".", "..", ".git", ".GIT", ".gIt", "git~1", ".git.", "a\0b",
        ] {
            assert!(
                unsafe_name(bad.as_bytes().as_bstr(), EntryKind::Blob).is_some(),
                "{bad:?}"
            );
        }
        for good in ["a", ".github", ".gitignore", "a b", "..a", "a.."] {
            assert_eq!(unsafe_name(good.into(), EntryKind::Blob), None, "{good:?}");
        }
        assert!(unsafe_name(".gitmodules".into(), EntryKind::Link).is_some());
        assert_eq!(unsafe_name(".gitmodules".into(), EntryKind::Blob), None);
    }
}
