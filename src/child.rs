//! Starting child processes: the compose command, `docker compose config`, `docker inspect`,
//! hooks.
//!
//! Every child is built with [`cmd`], which hands std a program *path*: duct clears the
//! environment and sets it again, and then std cannot trust `PATH` to `posix_spawnp` a bare
//! name and falls back to `fork`, copying pullstart's page tables for every child. With a path
//! std uses `posix_spawn` (a `vfork`). The search is done here as `execvp` does it; no crate is
//! needed for a dozen lines. Every child also runs in a process group of its own
//! ([`start_in_group`]), so that a time-out ([`wait_or_kill`]) kills what it started too.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// A duct expression for `program args...`, `program` resolved on `PATH`. (No child sees
/// pullstart's token: `main` took it out of the environment.)
pub(crate) fn cmd<I, A>(program: &str, args: I) -> duct::Expression
where
    I: IntoIterator<Item = A>,
    A: Into<OsString>,
{
    duct::cmd(program_path(program), args)
}

/// `program` as `execvp` would find it: itself when it holds a `/`, else the first executable
/// file of that name in a `PATH` directory; itself again when there is none, so that the error
/// of the failed start names what the user wrote.
fn program_path(program: &str) -> PathBuf {
    if program.contains('/') {
        return program.into();
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                // An empty entry means "the current directory" to execvp; a cron job's PATH
                // should not have one, and pullstart does not look there.
                .filter(|dir| !dir.as_os_str().is_empty())
                .map(|dir| dir.join(program))
                .find(|candidate| is_executable_file(candidate))
        })
        .unwrap_or_else(|| program.into())
}

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Start the command in a process group of its own, so that a time-out can kill it together
/// with everything it started (`sh -c` hooks, compose plugins, build helpers).
fn in_own_group(expression: duct::Expression) -> duct::Expression {
    use std::os::unix::process::CommandExt;
    expression.before_spawn(|command| {
        command.process_group(0);
        // A shell keeps `PWD` equal to the working directory, and compose resolves `${PWD}` in
        // compose files from it: a child started in the checkout must not see the caller's.
        if let Some(dir) = command.get_current_dir() {
            let dir = std::path::absolute(dir)?;
            command.env("PWD", dir);
        }
        Ok(())
    })
}

/// Start `expression` in a process group of its own ([`in_own_group`]).
pub(crate) fn start_in_group(expression: duct::Expression) -> std::io::Result<duct::Handle> {
    in_own_group(expression).start()
}

/// Wait at most `timeout` for a command started with [`start_in_group`]; at the time-out, kill
/// it together with everything it started and return `None`.
pub(crate) fn wait_or_kill(
    handle: &duct::Handle,
    timeout: std::time::Duration,
) -> std::io::Result<Option<std::process::Output>> {
    match handle.wait_timeout(timeout)? {
        Some(output) => Ok(Some(output.clone())),
        None => {
            kill_group(handle);
            Ok(None)
        }
    }
}

/// How a finished command ended, for messages: `exited with code 3`, `was killed by signal 9`.
pub(crate) fn exit_description(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "failed".into(),
    }
}

/// Kill the process group of a command started with [`in_own_group`], then reap it.
fn kill_group(handle: &duct::Handle) {
    for pid in handle.pids() {
        // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
        }
    }
    let _ = handle.kill();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_name_is_found_on_path_and_a_path_is_kept() {
        let sh = program_path("sh");
        assert!(sh.is_absolute(), "{}", sh.display());
        assert!(is_executable_file(&sh));
        assert_eq!(program_path("./compose"), PathBuf::from("./compose"));
        assert_eq!(program_path("/usr/bin/env"), PathBuf::from("/usr/bin/env"));
    }

    #[test]
    fn a_name_not_on_path_is_left_for_the_start_to_report() {
        assert_eq!(
            program_path("pullstart-no-such-program"),
            PathBuf::from("pullstart-no-such-program")
        );
    }
}
