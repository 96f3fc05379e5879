//! The run lock: an advisory `flock` on `<git-dir>/pullstart.lock`, held until the process
//! ends. The kernel releases it when the process dies, so a crash never leaves it stuck.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use anyhow::Context;

use crate::exit::{ExitCode, Failure};

/// Holds the lock while alive.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Take the lock without waiting; another run holding it is exit 7.
pub fn acquire(git_dir: &Path) -> anyhow::Result<RunLock> {
    let path = git_dir.join("pullstart.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("failed to open the lock file `{}`", path.display()))?;
    // std's `try_lock` is flock(2) on Linux (stable since Rust 1.89), so no crate is needed.
    match file.try_lock() {
        Ok(()) => Ok(RunLock { _file: file }),
        Err(TryLockError::WouldBlock) => Err(Failure::new(
            ExitCode::Locked,
            format!(
                "skipped: another pullstart run holds `{}`; the next scheduled run will try again",
                path.display()
            ),
        )
        .into()),
        Err(TryLockError::Error(err)) => {
            Err(err).with_context(|| format!("failed to lock `{}`", path.display()))
        }
    }
}
