//! The journal: written (atomically, inside the git directory) before an update touches the
//! worktree, removed once the index and the branch are on the new commit. A run that finds one
//! was killed mid-update, and finishes that update before anything else (see `recover`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use gix::ObjectId;

use crate::exit::Failure;

/// An update in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    /// HEAD before the update; `None` for an unborn branch.
    pub old: Option<ObjectId>,
    /// The commit the update moves to.
    pub new: ObjectId,
    /// The process that wrote it, to tell its own leftover locks from a live git's.
    pub pid: u32,
}

pub fn path(git_dir: &Path) -> PathBuf {
    git_dir.join("pullstart-journal")
}

/// Write the journal through a temporary file, synced, then renamed into place, so that a
/// reader sees a whole journal or none.
pub fn write(git_dir: &Path, journal: &Journal) -> anyhow::Result<()> {
    let final_path = path(git_dir);
    let tmp = git_dir.join(format!("pullstart-journal.{}.tmp", std::process::id()));
    let text = format!(
        "pullstart journal 1\nold {}\nnew {}\npid {}\n",
        journal.old.map_or_else(|| "none".to_string(), |id| id.to_string()),
        journal.new,
        journal.pid
    );
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &final_path)?;
        // The rename must be on disk before the first worktree write is.
        std::fs::File::open(git_dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("failed to write the journal `{}`", final_path.display()))
}

/// The journal, if a run left one. A journal that is not pullstart's format is an error with a
/// remedy: guessing could overwrite local work.
pub fn read(git_dir: &Path) -> anyhow::Result<Option<Journal>> {
    let path = path(git_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("failed to read the journal `{}`", path.display())),
    };
    parse(&text).map(Some).ok_or_else(|| {
        Failure::usage(format!(
            "the journal `{}` is damaged; check that `git status` shows what you expect, then remove that file",
            path.display()
        ))
        .into()
    })
}

fn parse(text: &str) -> Option<Journal> {
    let mut lines = text.lines();
    if lines.next()? != "pullstart journal 1" {
        return None;
    }
    let mut value = |key: &str| lines.next()?.strip_prefix(key)?.strip_prefix(' ').map(str::to_owned);
    let old = value("old")?;
    let new = value("new")?;
    let pid = value("pid")?;
    Some(Journal {
        old: if old == "none" { None } else { Some(ObjectId::from_hex(old.as_bytes()).ok()?) },
        new: ObjectId::from_hex(new.as_bytes()).ok()?,
        pid: pid.parse().ok()?,
    })
}

/// Remove the journal once the update is complete.
pub fn remove(git_dir: &Path) -> anyhow::Result<()> {
    let path = path(git_dir);
    match std::fs::remove_file(&path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("failed to remove the journal `{}`", path.display()))
        }
        _ => Ok(()),
    }
}

/// Whether the process that wrote the journal is still a live pullstart.
pub fn writer_alive(journal: &Journal) -> bool {
    std::fs::read_to_string(format!("/proc/{}/comm", journal.pid)).is_ok_and(|comm| comm.trim() == "pullstart")
        && journal.pid != std::process::id()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_junk() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal { old: None, new: ObjectId::from_hex(b"0123456789012345678901234567890123456789").unwrap(), pid: 42 };
        write(dir.path(), &journal).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(journal.clone()));
        let with_old = Journal { old: Some(journal.new), ..journal };
        write(dir.path(), &with_old).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(with_old));
        remove(dir.path()).unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        remove(dir.path()).unwrap();
        for junk in ["", "pullstart journal 1\nold x\n", "hello", "pullstart journal 1\nold none\nnew 12\npid 1\n"] {
            std::fs::write(path(dir.path()), junk).unwrap();
            let err = read(dir.path()).unwrap_err();
            assert!(err.to_string().contains("damaged"), "{junk:?}: {err}");
        }
    }
}
