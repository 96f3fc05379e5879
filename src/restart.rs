//! Restart: the only code that runs the compose command, as
//! `CMD [-f FILE]... [-p NAME] restart [SERVICE]...` in the checkout, within a time limit.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::child;
use crate::exit::{ExitCode, Failure};
use crate::select::{Action, Services};
use crate::settings::Settings;

/// The compose command with the project's `-f` and `-p`, before the subcommand.
pub fn prefix(settings: &Settings) -> Vec<String> {
    let mut words = settings.compose_command.clone();
    for file in &settings.compose_files {
        words.push("-f".into());
        words.push(file.to_string_lossy().into_owned());
    }
    if let Some(project) = &settings.project_name {
        words.extend(["-p".into(), project.clone()]);
    }
    words
}

/// The compose invocations that carry out `services`, strongest action first (a rebuild may
/// take longest, and the services it rebuilds get nothing else):
/// `up -d --build --no-deps [--renew-anon-volumes] A`, `up -d --no-deps B`, `restart C D`;
/// `restart` alone for all.
pub fn commands(settings: &Settings, services: &Services) -> Vec<Vec<String>> {
    let with = |tail: &[&str], names: Vec<String>| {
        let mut words = prefix(settings);
        words.extend(tail.iter().map(|w| w.to_string()));
        words.extend(names);
        words
    };
    match services {
        Services::Nothing { .. } => vec![],
        Services::All { .. } => vec![with(&["restart"], vec![])],
        Services::Named(actions) => {
            // `-V` applies to every service of one `up`: those that need it get their own.
            let rebuild = |renew: bool| {
                actions
                    .iter()
                    .filter(|a| a.action == Action::Rebuild && a.renew_anon_volumes == renew)
                    .map(|a| a.name.clone())
                    .collect::<Vec<_>>()
            };
            [
                (
                    &["up", "-d", "--build", "--no-deps", "--renew-anon-volumes"][..],
                    rebuild(true),
                ),
                (&["up", "-d", "--build", "--no-deps"][..], rebuild(false)),
                (
                    &["up", "-d", "--no-deps"][..],
                    services.with_action(Action::Recreate),
                ),
                (&["restart"][..], services.with_action(Action::Restart)),
            ]
            .into_iter()
            .filter(|(_, names)| !names.is_empty())
            .map(|(tail, names)| with(tail, names))
            .collect()
        }
    }
}

/// Run the compose command in `workdir`. A non-zero exit, a signal, a time-out or a command that
/// cannot start is exit 6, with the last line compose printed in the message.
pub fn run(words: &[String], workdir: &Path, timeout: Duration) -> anyhow::Result<()> {
    let shown = shell_words::join(words);
    let handle = child::start_in_group(
        child::cmd(&words[0], &words[1..])
                .dir(workdir)
            .stdin_null()
            .stderr_to_stdout()
            .stdout_capture()
            .unchecked()
    )
        .map_err(|err| {
            let message = format!("restart failed: could not start `{}`: {err}; install Docker Compose or pass --compose-command", words[0]);
            anyhow::Error::new(err).context(Failure::new(ExitCode::RestartFailed, message))
        })?;
    let output = match child::wait_or_kill(&handle, timeout)
        .with_context(|| format!("failed to wait for `{shown}`"))?
    {
        Some(output) => output,
        None => {
            return Err(Failure::new(
                ExitCode::RestartFailed,
                format!("restart failed: `{shown}` did not finish within {}s and was killed; the next run retries", timeout.as_secs()),
            )
            .into());
        }
    };
    if output.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let how = child::exit_description(&output.status);
    let last = last_line(&text);
    let message = match last {
        Some(line) => format!("restart failed: `{shown}` {how}: {line}; the next run retries"),
        None => format!("restart failed: `{shown}` {how}; the next run retries"),
    };
    Err(anyhow::anyhow!("compose output:\n{}", text.trim_end())
        .context(Failure::new(ExitCode::RestartFailed, message)))
}

/// The last non-empty line of compose's output, without terminal escapes.
fn last_line(text: &str) -> Option<String> {
    text.lines()
        .map(crate::health::strip_escapes)
        .map(|l| l.trim().to_string())
        .rfind(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_line_skips_blank_lines_and_escapes() {
        let text = "Restarting web\n\u{1b}[2Kno such service: nosuch\n\n";
        assert_eq!(last_line(text).as_deref(), Some("no such service: nosuch"));
        assert_eq!(last_line("\n \n"), None);
    }
}
