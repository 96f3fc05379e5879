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
    /// The process that wrote it.
    pub pid: u32,
    pub phase: Phase,
    /// The identity (inode and birth time) of the `index.lock` this run created: a lock with it is the killed
    /// run's own and may be removed; any other may belong to a live git and is left alone.
    pub lock_identity: Option<u64>,
}

/// How far the update got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Checking for local changes: nothing has been touched yet.
    Guarding,
    /// Writing the worktree, the index and the branch.
    Applying,
}

pub fn path(git_dir: &Path) -> PathBuf {
    git_dir.join("pullstart-journal")
}

/// Write the journal through a temporary file renamed into place, so that a reader sees a
/// whole journal or none.
///
/// An `Applying` journal is synced, file and directory, before this returns: it must be on
/// disk before the first worktree write is, or a power cut mid-update would leave a
/// half-written worktree that nothing recognises. A `Guarding` one is not: it only has to
/// outlive the process (a killed run's lock is then known as its own), which the page cache
/// does; after a power cut the worst case is git's own "index.lock exists" refusal. Syncing
/// it too cost two more fsyncs a run, tens of milliseconds on a busy disk, for nothing.
pub fn write(git_dir: &Path, journal: &Journal) -> anyhow::Result<()> {
    let final_path = path(git_dir);
    let tmp = git_dir.join(format!("pullstart-journal.{}.tmp", std::process::id()));
    let text = format!(
        "pullstart journal 1\nold {}\nnew {}\npid {}\nphase {}\nlock_identity {}\n",
        journal
            .old
            .map_or_else(|| "none".to_string(), |id| id.to_string()),
        journal.new,
        journal.pid,
        match journal.phase {
            Phase::Guarding => "guarding",
            Phase::Applying => "applying",
        },
        journal
            .lock_identity
            .map_or_else(|| "none".to_string(), |ino| ino.to_string()),
    );
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        let durable = journal.phase == Phase::Applying;
        if durable {
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &final_path)?;
        if durable {
            // The rename must be on disk before the first worktree write is.
            std::fs::File::open(git_dir)?.sync_all()?;
        }
        Ok(())
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
    let text = match read_text(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(err)
                .with_context(|| format!("failed to read the journal `{}`", path.display()))
        }
    };
    text.as_deref().and_then(parse).map(Some).ok_or_else(|| {
        Failure::usage(format!(
            "the journal `{}` is damaged; check that `git status` shows what you expect, then remove that file",
            path.display()
        ))
        .into()
    })
}

/// The journal's text, or `None` when it is not a regular file of a journal's size: a FIFO
/// there must not hang the run (it is opened without blocking), nor a huge file fill memory.
fn read_text(path: &Path) -> std::io::Result<Option<String>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    const AT_MOST: u64 = 4096;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Ok(None);
    }
    let mut text = String::new();
    if file.take(AT_MOST + 1).read_to_string(&mut text).is_err() || text.len() as u64 > AT_MOST {
        return Ok(None);
    }
    Ok(Some(text))
}

fn parse(text: &str) -> Option<Journal> {
    let mut lines = text.lines();
    if lines.next()? != "pullstart journal 1" {
        return None;
    }
    let mut value = |key: &str| {
        lines
            .next()?
            .strip_prefix(key)?
            .strip_prefix(' ')
            .map(str::to_owned)
    };
    let old = value("old")?;
    let new = value("new")?;
    let pid = value("pid")?;
    let phase = value("phase")?;
    let lock_identity = value("lock_identity")?;
    Some(Journal {
        old: if old == "none" {
            None
        } else {
            Some(ObjectId::from_hex(old.as_bytes()).ok()?)
        },
        new: ObjectId::from_hex(new.as_bytes()).ok()?,
        pid: pid.parse().ok()?,
        phase: match phase.as_str() {
            "guarding" => Phase::Guarding,
            "applying" => Phase::Applying,
            _ => return None,
        },
        lock_identity: if lock_identity == "none" {
            None
        } else {
            Some(lock_identity.parse().ok()?)
        },
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
    std::fs::read_to_string(format!("/proc/{}/comm", journal.pid))
        .is_ok_and(|comm| comm.trim() == "pullstart")
        && journal.pid != std::process::id()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_junk() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal {
            old: None,
            new: ObjectId::from_hex(b"0123456789012345678901234567890123456789").unwrap(),
            pid: 42,
            phase: Phase::Guarding,
            lock_identity: None,
        };
        write(dir.path(), &journal).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(journal.clone()));
        let with_old = Journal {
            old: Some(journal.new),
            phase: Phase::Applying,
            lock_identity: Some(7),
            ..journal
        };
        write(dir.path(), &with_old).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(with_old));
        remove(dir.path()).unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        remove(dir.path()).unwrap();
        std::fs::remove_file(path(dir.path())).ok();
        let fifo =
            std::ffi::CString::new(path(dir.path()).into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        // In a thread with a time limit: a read that blocks must fail the test, not hang it.
        let (done, result) = std::sync::mpsc::channel();
        let git_dir = dir.path().to_path_buf();
        std::thread::spawn(move || done.send(read(&git_dir).map_err(|e| e.to_string())));
        let outcome = result
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("reading a FIFO journal blocked");
        let err = outcome.unwrap_err();
        assert!(err.contains("damaged"), "a FIFO: {err}");
        std::fs::remove_file(path(dir.path())).unwrap();
        for junk in [
            "",
            "pullstart journal 1\nold x\n",
            "hello",
            "pullstart journal 1\nold none\nnew 12\npid 1\n",
        ] {
            std::fs::write(path(dir.path()), junk).unwrap();
            let err = read(dir.path()).unwrap_err();
            assert!(err.to_string().contains("damaged"), "{junk:?}: {err}");
        }
    }
}
