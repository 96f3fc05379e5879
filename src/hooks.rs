//! Hooks: the operator's own commands before the action, after success and on failure, from
//! host-side configuration only. They run with `sh -c` in the checkout, with the run's facts in
//! `PULLSTART_*` environment variables, within the restart time limit.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use gix::ObjectId;

use crate::exit::{ExitCode, Failure};
use crate::settings::{Hooks, Settings};

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Before,
    AfterSuccess,
    OnFailure,
}

impl Hook {
    fn name(self) -> &'static str {
        match self {
            Hook::Before => "before",
            Hook::AfterSuccess => "after_success",
            Hook::OnFailure => "on_failure",
        }
    }

    fn command(self, hooks: &Hooks) -> Option<&str> {
        match self {
            Hook::Before => hooks.before.as_deref(),
            Hook::AfterSuccess => hooks.after_success.as_deref(),
            Hook::OnFailure => hooks.on_failure.as_deref(),
        }
    }
}

/// What a hook is told, as `PULLSTART_RESULT`, `PULLSTART_EXIT_CODE`, `PULLSTART_BRANCH`,
/// `PULLSTART_FROM`, `PULLSTART_TO`, `PULLSTART_DEPLOYED`, `PULLSTART_SERVICES` (space
/// separated; empty for all) and `PULLSTART_ERROR`.
#[derive(Debug, Default)]
pub struct Facts {
    pub result: String,
    pub exit_code: i32,
    pub branch: String,
    pub from: Option<ObjectId>,
    pub to: Option<ObjectId>,
    pub deployed: Option<ObjectId>,
    pub services: Vec<String>,
    pub error: Option<String>,
}

/// Refuse a config file inside the checkout that sets hooks or another key naming a host command
/// or path: anyone who can push to the branch could make this host run or touch what they like.
pub fn refuse_host_keys_inside_checkout(settings: &Settings, workdir: &Path) -> anyhow::Result<()> {
    let keys = &settings.host_keys_from_file;
    if keys.is_empty() {
        return Ok(());
    }
    let Some(config) = &settings.config_file_absolute else {
        return Ok(());
    };
    let workdir = workdir
        .canonicalize()
        .with_context(|| format!("failed to resolve `{}`", workdir.display()))?;
    if config.starts_with(&workdir) {
        let named: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
        return Err(Failure::usage(format!(
            "config `{}` lies inside the checkout and sets {}, which name a host command or path and which anyone who can push could change; move the config file outside the checkout, or give them as flags",
            config.display(),
            named.join(", ")
        ))
        .into());
    }
    Ok(())
}

/// Run `hook` if configured. A failing hook is an error naming it (exit 6 for `before`, which
/// stops the action; the caller decides what a failing `after_success` or `on_failure` means).
pub fn run(
    settings: &Settings,
    workdir: &Path,
    timeout: Duration,
    hook: Hook,
    facts: &Facts,
) -> anyhow::Result<()> {
    let Some(command) = hook.command(&settings.hooks) else {
        return Ok(());
    };
    let hex = |id: Option<ObjectId>| id.map(|id| id.to_string()).unwrap_or_default();
    let expression = crate::child::cmd("sh", ["-c", command])
        .dir(workdir)
        .env("PULLSTART_HOOK", hook.name())
        .env("PULLSTART_RESULT", &facts.result)
        .env("PULLSTART_EXIT_CODE", facts.exit_code.to_string())
        .env("PULLSTART_BRANCH", &facts.branch)
        .env("PULLSTART_FROM", hex(facts.from))
        .env("PULLSTART_TO", hex(facts.to))
        .env("PULLSTART_DEPLOYED", hex(facts.deployed))
        .env("PULLSTART_SERVICES", facts.services.join(" "))
        .env("PULLSTART_ERROR", facts.error.clone().unwrap_or_default())
        .stdin_null()
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked();
    let handle = crate::child::start_in_group(expression)
        .with_context(|| format!("failed to start the `{}` hook with `sh`", hook.name()))?;
    let failure = |why: String| {
        Failure::new(
            ExitCode::RestartFailed,
            format!("hook `{}` {why}; the next run retries", hook.name()),
        )
    };
    let output = match crate::child::wait_or_kill(&handle, timeout)? {
        Some(output) => output,
        None => {
            return Err(
                failure(format!("did not finish within {}", whole_seconds(timeout))).into(),
            );
        }
    };
    if output.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let last = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("no output")
        .to_string();
    let how = crate::child::exit_description(&output.status);
    Err(failure(format!("`{command}` {how}: {last}")).into())
}

fn whole_seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs())
}
