//! The exit codes of the contract, and the one typed error that carries one.
//!
//! Every failure that the user must be able to tell apart by exit code is a [`Failure`] with an
//! [`ExitCode`]; anything else that goes wrong is an internal error (exit 1). The mapping from
//! result to number lives here and nowhere else.

use std::fmt;

/// What a run ended with. The discriminants are the process exit codes of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitCode {
    /// Nothing to do, or updated and restarted, or (`check`) an update is pending.
    Success = 0,
    /// An unexpected internal error.
    Internal = 1,
    /// Bad flag or config, not a git checkout, detached HEAD, unknown remote or branch.
    Usage = 2,
    /// The fetch failed; transient, the next run retries.
    FetchFailed = 3,
    /// Local changes would be overwritten; nothing was touched.
    RefusedLocalChanges = 4,
    /// The checkout has commits the remote branch lacks; nothing was touched.
    RefusedNotFastForward = 5,
    /// The code is updated but the restart failed; the next run retries the restart.
    RestartFailed = 6,
    /// Another pullstart run holds the lock.
    Locked = 7,
    /// Dependency or image files changed and the policy says stop.
    RebuildRequired = 8,
    /// `verify_signatures`: a commit of the update is not signed by a trusted key; nothing was
    /// touched.
    UntrustedCommit = 9,
    /// Only with `--detailed-exitcode`: an update was applied (or, for `check`, is pending).
    Updated = 10,
    /// The worktree update stopped part-way: the checkout is mid-update until a run finishes it.
    UpdateIncomplete = 11,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The `result` field of the JSON output for a failure with this code.
    pub fn failure_result(self) -> &'static str {
        match self {
            ExitCode::Success | ExitCode::Updated => "updated",
            ExitCode::Internal => "error",
            ExitCode::Usage => "usage_error",
            ExitCode::FetchFailed => "fetch_failed",
            ExitCode::RefusedLocalChanges => "refused_local_changes",
            ExitCode::RefusedNotFastForward => "refused_not_fast_forward",
            ExitCode::RestartFailed => "restart_failed",
            ExitCode::Locked => "locked",
            ExitCode::RebuildRequired => "rebuild_required",
            ExitCode::UntrustedCommit => "untrusted_commit",
            ExitCode::UpdateIncomplete => "update_incomplete",
        }
    }

    /// The table printed in `--help` and kept equal to the README's (a test compares them).
    pub const TABLE: &'static str = "\
Exit codes:
  0   success: nothing to do, or updated and restarted (check: an update is pending)
  1   unexpected internal error, or interrupted by a signal before the update started
  2   usage or configuration error (bad flag or config, not a git checkout, detached HEAD,
      unknown remote, branch missing on the remote)
  3   fetch failed (network, auth, timeout): transient, the next run retries
  4   refused: local changes would be overwritten; nothing was touched
  5   refused: the checkout has commits the remote branch lacks; nothing was touched
  6   the code is updated but the restart failed; the next run retries the restart
  7   another pullstart run holds the lock; skipped
  8   dependency or image files changed and the policy says stop
  9   refused: verify_signatures is on and a commit of the update is not signed by a trusted
      key; nothing was touched
  10  with --detailed-exitcode: an update was applied (check, status: is pending)
  11  the update stopped part-way (a file that cannot be written, a full disk): the checkout
      is mid-update; the next run finishes it, or a newer remote commit replaces it";
}

/// One row of the contract's exit-code table: the man page's EXIT STATUS section is made from
/// these rows, and a test holds the README's table to them word for word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: ExitCode,
    /// The values the JSON output's `result` field takes with this code.
    pub results: &'static [&'static str],
    /// What the code means, in the README's words.
    pub meaning: &'static str,
}

/// Every exit code of the contract, in order. `--help` prints the shorter [`ExitCode::TABLE`],
/// which fits a terminal.
pub const EXIT_STATUSES: &[ExitStatus] = &[
    ExitStatus {
        code: ExitCode::Success,
        results: &["up_to_date", "updated", "would_update"],
        meaning: "success: nothing to do, or updated and restarted (`check`: an update is pending)",
    },
    ExitStatus {
        code: ExitCode::Internal,
        results: &["error"],
        meaning: "unexpected internal error, or interrupted by a signal (SIGTERM, SIGINT, SIGHUP, \
                  SIGQUIT) before the update started; nothing was done",
    },
    ExitStatus {
        code: ExitCode::Usage,
        results: &["usage_error"],
        meaning: "usage or configuration error: bad flag or config, not a git checkout, detached \
                  HEAD, unknown remote, branch missing on the remote",
    },
    ExitStatus {
        code: ExitCode::FetchFailed,
        results: &["fetch_failed"],
        meaning: "fetch failed (network, auth, timeout): transient, the next run retries",
    },
    ExitStatus {
        code: ExitCode::RefusedLocalChanges,
        results: &["refused_local_changes"],
        meaning: "local changes would be overwritten; nothing was touched",
    },
    ExitStatus {
        code: ExitCode::RefusedNotFastForward,
        results: &["refused_not_fast_forward"],
        meaning: "the checkout has commits the remote branch lacks (diverged, local commits, or \
                  the remote was force-pushed or rolled back); nothing was touched",
    },
    ExitStatus {
        code: ExitCode::RestartFailed,
        results: &["restart_failed"],
        meaning: "the code is updated but the restart failed; the next run retries the restart",
    },
    ExitStatus {
        code: ExitCode::Locked,
        results: &["locked"],
        meaning: "another pullstart run holds the lock; skipped",
    },
    ExitStatus {
        code: ExitCode::RebuildRequired,
        results: &["rebuild_required"],
        meaning: "dependency or image files changed and the policy says stop (see the config)",
    },
    ExitStatus {
        code: ExitCode::UntrustedCommit,
        results: &["untrusted_commit"],
        meaning: "`verify_signatures` is on and a commit of the update is not signed by a trusted \
                  key; nothing was touched, the next run checks again",
    },
    ExitStatus {
        code: ExitCode::Updated,
        results: &["updated", "would_update"],
        meaning: "only with --detailed-exitcode: an update was applied and the restart succeeded \
                  (`check`, `status`: is pending)",
    },
    ExitStatus {
        code: ExitCode::UpdateIncomplete,
        results: &["update_incomplete"],
        meaning: "the worktree update stopped part-way (a file that cannot be written or removed, \
                  such as an immutable one, or a full disk): the checkout is mid-update and \
                  nothing was restarted; the next run finishes the update once the cause is \
                  gone, or a newer remote commit replaces it (see \"After a crash\"); while \
                  it is so, a run whose fetch fails still exits 11, with the fetch's failure as \
                  a warning",
    },
];

/// A failure whose kind decides the exit code. The message is the one line the user sees:
/// it names the cause and the remedy. Lower-level causes travel as anyhow context behind it
/// and are printed only with `--verbose`.
#[derive(Debug)]
pub struct Failure {
    pub code: ExitCode,
    pub message: String,
}

impl Failure {
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Usage, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Shorthand for `Err(Failure::new(code, message).into())`.
pub fn fail<T>(code: ExitCode, message: impl Into<String>) -> anyhow::Result<T> {
    Err(Failure::new(code, message).into())
}

/// The outermost [`Failure`] of an error, whether it is the error itself, a `.context()` layer
/// (which `chain()` does not downcast), or a source further down.
pub fn failure_of(err: &anyhow::Error) -> Option<&Failure> {
    err.downcast_ref::<Failure>().or_else(|| {
        err.chain()
            .find_map(|cause| cause.downcast_ref::<Failure>())
    })
}

/// The exit code an error maps to: its outermost [`Failure`]'s, else internal.
pub fn code_of(err: &anyhow::Error) -> ExitCode {
    failure_of(err).map_or(ExitCode::Internal, |failure| failure.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_the_contract() {
        let table = [
            (ExitCode::Success, 0),
            (ExitCode::Internal, 1),
            (ExitCode::Usage, 2),
            (ExitCode::FetchFailed, 3),
            (ExitCode::RefusedLocalChanges, 4),
            (ExitCode::RefusedNotFastForward, 5),
            (ExitCode::RestartFailed, 6),
            (ExitCode::Locked, 7),
            (ExitCode::RebuildRequired, 8),
            (ExitCode::UntrustedCommit, 9),
            (ExitCode::Updated, 10),
            (ExitCode::UpdateIncomplete, 11),
        ];
        for (code, number) in table {
            assert_eq!(code.code(), number, "{code:?}");
        }
    }

    #[test]
    fn readme_and_help_list_every_code_with_its_result() {
        let readme = include_str!("../README.md");
        for (code, result) in [
            (ExitCode::Success, "up_to_date"),
            (ExitCode::Internal, "error"),
            (ExitCode::Usage, "usage_error"),
            (ExitCode::FetchFailed, "fetch_failed"),
            (ExitCode::RefusedLocalChanges, "refused_local_changes"),
            (ExitCode::RefusedNotFastForward, "refused_not_fast_forward"),
            (ExitCode::RestartFailed, "restart_failed"),
            (ExitCode::Locked, "locked"),
            (ExitCode::RebuildRequired, "rebuild_required"),
            (ExitCode::UntrustedCommit, "untrusted_commit"),
            (ExitCode::Updated, "updated"),
            (ExitCode::UpdateIncomplete, "update_incomplete"),
        ] {
            let row = format!("| {} | `{result}`", code.code());
            assert!(
                readme.contains(&row),
                "README's exit-code table lacks `{row}`"
            );
            if code != ExitCode::Success && code != ExitCode::Updated {
                assert_eq!(code.failure_result(), result);
            }
            let help_line = format!("\n  {:<3} ", code.code());
            assert!(
                ExitCode::TABLE.contains(&help_line),
                "--help lacks code {}",
                code.code()
            );
        }
    }

    /// The README's exit-code table as (code, results, meaning) rows, backticks kept.
    fn readme_exit_code_rows() -> Vec<(String, String, String)> {
        let readme = include_str!("../README.md");
        let table = readme
            .split("### Exit codes\n")
            .nth(1)
            .expect("README has an `### Exit codes` section");
        table
            .lines()
            .skip_while(|line| !line.starts_with("| code |"))
            .skip(2) // the header and the `| --- |` line
            .take_while(|line| line.starts_with('|'))
            .map(|line| {
                let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
                assert_eq!(cells.len(), 3, "README row with other than 3 cells: {line}");
                let [code, results, meaning] = [0, 1, 2].map(|i| cells[i].trim().to_owned());
                (code, results, meaning)
            })
            .collect()
    }

    #[test]
    fn the_readme_table_is_the_code_table_word_for_word() {
        let expected: Vec<(String, String, String)> = EXIT_STATUSES
            .iter()
            .map(|status| {
                let results: Vec<String> =
                    status.results.iter().map(|r| format!("`{r}`")).collect();
                (
                    status.code.code().to_string(),
                    results.join(", "),
                    status.meaning.to_owned(),
                )
            })
            .collect();
        assert_eq!(readme_exit_code_rows(), expected);
    }

    #[test]
    fn the_code_table_lists_every_code_once_with_its_failure_result() {
        let codes: Vec<i32> = EXIT_STATUSES.iter().map(|s| s.code.code()).collect();
        assert_eq!(codes, (0..=11).collect::<Vec<_>>());
        for status in EXIT_STATUSES {
            if !matches!(status.code, ExitCode::Success | ExitCode::Updated) {
                assert_eq!(status.results, [status.code.failure_result()]);
            }
        }
    }

    #[test]
    fn failure_inside_context_keeps_its_code() {
        let err = anyhow::Error::from(Failure::new(ExitCode::FetchFailed, "x")).context("outer");
        assert_eq!(code_of(&err), ExitCode::FetchFailed);
        let as_context = anyhow::anyhow!("io")
            .context(Failure::new(ExitCode::Locked, "y"))
            .context("outer");
        assert_eq!(code_of(&as_context), ExitCode::Locked);
        assert_eq!(code_of(&anyhow::anyhow!("plain")), ExitCode::Internal);
    }
}
