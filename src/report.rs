//! Report: turns what a run did (or why it stopped) into output and the exit code, in one place.
//! Every line printed passes through [`redact`], so no credential from a URL reaches a log.

use std::borrow::Cow;
use std::io::Write;
use std::time::Instant;

use gix::bstr::{BStr, BString, ByteSlice};
use gix::objs::tree::EntryKind;
use gix::ObjectId;
use serde::Serialize;

use crate::exit::{self, ExitCode};
use crate::plan::Change;
use crate::redact::redact;
use crate::select::{Action, Services};
use crate::settings::{Command, OutputFormat};

/// How a successful invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Success {
    UpToDate,
    Updated,
    WouldUpdate,
}

impl Success {
    fn result(self) -> &'static str {
        match self {
            Success::UpToDate => "up_to_date",
            Success::Updated => "updated",
            Success::WouldUpdate => "would_update",
        }
    }
}

/// Everything known about the invocation, filled in step by step so that an error report can
/// still say where the branch and the deployed ref stand.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub command: Command,
    pub started: Instant,
    pub branch: Option<String>,
    pub from: Option<ObjectId>,
    pub to: Option<ObjectId>,
    pub deployed: Option<ObjectId>,
    /// The deployed commit before this run (the contract's `deployed` is the one after it).
    pub deployed_before: Option<ObjectId>,
    pub changes: Vec<Change>,
    pub changed_paths: Vec<BString>,
    pub services: Services,
    /// Services the plan named for `restart` that had no container: restart cannot create
    /// one, so they were left alone.
    pub left_alone: Vec<String>,
    /// The restart repeats one that failed in an earlier run (HEAD did not move).
    pub retried_restart: bool,
    pub success: Success,
    /// Extra lines for `status`.
    pub status_lines: Vec<String>,
    pub local_changes: Vec<String>,
}

impl Outcome {
    pub fn new(command: Command) -> Self {
        Outcome {
            command,
            started: Instant::now(),
            branch: None,
            from: None,
            to: None,
            deployed: None,
            deployed_before: None,
            changes: Vec::new(),
            changed_paths: Vec::new(),
            services: Services::nothing("no file changed"),
            left_alone: Vec::new(),
            retried_restart: false,
            success: Success::UpToDate,
            status_lines: Vec::new(),
            local_changes: Vec::new(),
        }
    }
}

/// How to print.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub output: OutputFormat,
    pub quiet: bool,
    pub verbose: bool,
    pub detailed_exitcode: bool,
}

/// Print the outcome and return the process exit code.
pub fn finish(outcome: &Outcome, result: &anyhow::Result<()>, style: Style) -> i32 {
    let code = match result {
        Ok(()) if style.detailed_exitcode && outcome.success != Success::UpToDate => {
            ExitCode::Updated
        }
        Ok(()) => ExitCode::Success,
        Err(err) => exit::code_of(err),
    };
    match style.output {
        OutputFormat::Json => print_json(outcome, result, code),
        OutputFormat::Text => print_text(outcome, result, style),
    }
    code.code()
}

fn print_text(outcome: &Outcome, result: &anyhow::Result<()>, style: Style) {
    match result {
        Err(err) => {
            let mut stderr = std::io::stderr().lock();
            let line = headline(err);
            let _ = writeln!(stderr, "pullstart: {}", escape_controls(&redact(&line)));
            if style.verbose {
                for cause in err.chain().skip(1) {
                    for line in cause.to_string().lines() {
                        let _ = writeln!(stderr, "  caused by: {}", escape_controls(&redact(line)));
                    }
                }
            }
        }
        Ok(()) if style.quiet && outcome.command != Command::Status => {}
        Ok(()) => {
            let text = success_text(outcome);
            if !text.is_empty() {
                let _ = std::io::stdout().lock().write_all(redact(&text).as_bytes());
            }
        }
    }
}

/// The one line an error shows: the outermost message that is not generic context, i.e. the
/// first [`exit::Failure`] in the chain, else the top of the chain.
pub fn headline(err: &anyhow::Error) -> String {
    exit::failure_of(err)
        .map(|f| f.message.clone())
        .unwrap_or_else(|| {
            let mut parts: Vec<String> = err.chain().map(|c| c.to_string()).collect();
            parts.dedup();
            // An internal error: the whole chain on one line, so cron mail says what broke.
            format!("error: {}", parts.join(": ").replace('\n', " "))
        })
}

fn success_text(outcome: &Outcome) -> String {
    match (outcome.command, outcome.success) {
        (Command::Status, _) => outcome
            .status_lines
            .iter()
            .map(|l| format!("{}\n", escape_controls(l)))
            .collect(),
        (_, Success::UpToDate) => String::new(),
        (Command::Run, _) => format!("{}\n", summary(outcome)),
        (Command::Check, _) => check_text(outcome),
    }
}

fn short(id: Option<ObjectId>) -> String {
    id.map_or_else(|| "(none)".into(), crate::run::short)
}

/// `restarted: web worker; rebuilt: api`, `restarted: all services (why)`,
/// `restarted: nothing (why)`.
fn services_label(services: &Services) -> String {
    match services {
        Services::Nothing { why } => format!("restarted: nothing ({})", escape_controls(why)),
        Services::All { why } => format!("restarted: all services ({})", escape_controls(why)),
        Services::Named(_) => [Action::Rebuild, Action::Recreate, Action::Restart]
            .into_iter()
            .filter_map(|action| {
                let names = services.with_action(action);
                (!names.is_empty()).then(|| format!("{}: {}", action.past(), names.join(" ")))
            })
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// One line per service: what would be done, to which paths, and why.
pub fn service_lines(services: &Services) -> Vec<String> {
    const SHOWN: usize = 3;
    match services {
        Services::Nothing { why } => {
            vec![format!("would restart nothing: {}", escape_controls(why))]
        }
        Services::All { why } => vec![format!(
            "would restart all services: {}",
            escape_controls(why)
        )],
        Services::Named(actions) => actions
            .iter()
            .map(|a| {
                let mut paths: Vec<String> = a
                    .paths
                    .iter()
                    .take(SHOWN)
                    .map(|p| quote_path(p.as_ref()).into_owned())
                    .collect();
                if a.paths.len() > SHOWN {
                    paths.push(format!("(+{} more)", a.paths.len() - SHOWN));
                }
                format!(
                    "would {} {}: {} [{}]",
                    a.action.verb(),
                    a.name,
                    paths.join(", "),
                    escape_controls(&a.reason)
                )
            })
            .collect(),
    }
}

/// `updated main 1a2b3c4..5d6e7f8 (12 files); restarted: web worker`
fn summary(outcome: &Outcome) -> String {
    let branch = outcome.branch.as_deref().unwrap_or("?");
    let mut services = services_label(&outcome.services);
    for name in &outcome.left_alone {
        services.push_str(&format!("; {name}: no container, left alone"));
    }
    if outcome.retried_restart {
        return format!(
            "restarted {branch} {} after an earlier failed restart ({} since {}); {services}",
            short(outcome.to),
            files(outcome.changed_paths.len()),
            short(outcome.deployed_before),
        );
    }
    format!(
        "updated {branch} {}..{} ({}); {services}",
        short(outcome.from),
        short(outcome.to),
        files(outcome.changes.len())
    )
}

fn files(count: usize) -> String {
    match count {
        1 => "1 file".into(),
        n => format!("{n} files"),
    }
}

fn check_text(outcome: &Outcome) -> String {
    let branch = outcome.branch.as_deref().unwrap_or("?");
    let mut text = format!(
        "would update {branch} {}..{} ({})\n",
        short(outcome.from),
        short(outcome.to),
        files(outcome.changes.len())
    );
    for change in &outcome.changes {
        text.push_str(&format!(
            "  {} {}\n",
            change_letter(change),
            quote_path(change.path.as_ref())
        ));
    }
    for line in service_lines(&outcome.services) {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// `path` as git prints it in human output (`core.quotePath`, on by default): as it is when
/// it holds only printable ASCII other than `"` and `\`, else in double quotes with C escapes
/// (`\n`, `\t`, `\"`, `\\`, and `\ooo` octal for other control bytes and every byte
/// above 0x7e, so non-UTF-8 names print too). A pushed file name can then neither start a line
/// of its own (forging a summary line in a log) nor send escape sequences to a terminal.
pub fn quote_path(path: &BStr) -> Cow<'_, str> {
    let needs_quotes = |b: u8| !(0x20..0x7f).contains(&b) || b == b'"' || b == b'\\';
    if !path.iter().any(|&b| needs_quotes(b)) {
        return path.to_str_lossy();
    }
    let mut out = String::with_capacity(path.len() + 2);
    out.push('"');
    for &byte in path.iter() {
        match byte {
            0x07 => out.push_str("\\a"),
            0x08 => out.push_str("\\b"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            0x0b => out.push_str("\\v"),
            0x0c => out.push_str("\\f"),
            b'\r' => out.push_str("\\r"),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b if needs_quotes(b) => out.push_str(&format!("\\{b:03o}")),
            b => out.push(char::from(b)),
        }
    }
    out.push('"');
    Cow::Owned(out)
}

/// `text` with every control character written as a C escape (`\n`, `\033`, ...), for
/// one human output line built from text that may hold a path from the checkout (an error
/// message, a reason): it stays one line and sends no escape sequence to a terminal.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() && (c as u32) < 0x100 => {
                out.push_str(&format!("\\{:03o}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn is_link_or_commit(kind: EntryKind) -> bool {
    matches!(kind, EntryKind::Link | EntryKind::Commit)
}

/// `git diff --name-status` letters.
fn change_letter(change: &Change) -> char {
    match (change.old, change.new) {
        (None, _) => 'A',
        (_, None) => 'D',
        (Some(old), Some(new))
            if is_link_or_commit(old.kind) != is_link_or_commit(new.kind)
                || (old.kind == EntryKind::Commit) != (new.kind == EntryKind::Commit) =>
        {
            'T'
        }
        _ => 'M',
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    result: &'a str,
    exit_code: i32,
    branch: Option<&'a str>,
    from: Option<String>,
    to: Option<String>,
    deployed: Option<String>,
    changed_paths: Vec<String>,
    services: Vec<String>,
    /// Whether the action is `restart` of the whole project (the project could not be read);
    /// `actions` then holds one entry for `*` with the reason.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    all_services: bool,
    /// Services named for `restart` that had no container, and so were left alone.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    left_alone: &'a [String],
    /// Per service: the action, the paths that caused it and why.
    actions: Vec<JsonAction>,
    duration_ms: u128,
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    local_changes: Option<&'a [String]>,
}

#[derive(Serialize)]
struct JsonAction {
    service: String,
    action: &'static str,
    paths: Vec<String>,
    reason: String,
}

/// Whether `services` may name anything: a run that stopped before acting (usage, fetch,
/// refusal, lock) restarted nothing; what it would have done stays in `actions`.
fn acts_on_services(code: ExitCode) -> bool {
    !matches!(
        code,
        ExitCode::Usage
            | ExitCode::FetchFailed
            | ExitCode::RefusedLocalChanges
            | ExitCode::RefusedNotFastForward
            | ExitCode::Locked
            | ExitCode::UntrustedCommit
            | ExitCode::UpdateIncomplete
    )
}

fn json_actions(outcome: &Outcome) -> Vec<JsonAction> {
    let paths = |paths: &[BString]| {
        paths
            .iter()
            .map(|p| p.to_str_lossy().into_owned())
            .collect()
    };
    if let Services::All { why } = &outcome.services {
        return vec![JsonAction {
            service: "*".into(),
            action: Action::Restart.verb(),
            paths: paths(&outcome.changed_paths),
            reason: why.clone(),
        }];
    }
    outcome
        .services
        .actions()
        .iter()
        .map(|a| JsonAction {
            service: a.name.clone(),
            action: a.action.verb(),
            paths: paths(&a.paths),
            reason: a.reason.clone(),
        })
        .collect()
}

/// The JSON `result` of an invocation that ended with `result`.
pub fn result_word(outcome: &Outcome, result: &anyhow::Result<()>) -> &'static str {
    match result {
        Ok(()) => outcome.success.result(),
        Err(err) => exit::code_of(err).failure_result(),
    }
}

fn print_json(outcome: &Outcome, result: &anyhow::Result<()>, code: ExitCode) {
    let hex = |id: Option<ObjectId>| id.map(|id| id.to_string());
    let report = JsonReport {
        result: result_word(outcome, result),
        exit_code: code.code(),
        branch: outcome.branch.as_deref(),
        from: hex(outcome.from),
        to: hex(outcome.to),
        deployed: hex(outcome.deployed),
        changed_paths: outcome
            .changed_paths
            .iter()
            .map(|p| p.to_str_lossy().into_owned())
            .collect(),
        services: if acts_on_services(code) {
            outcome.services.names()
        } else {
            Vec::new()
        },
        all_services: matches!(outcome.services, Services::All { .. }),
        left_alone: &outcome.left_alone,
        actions: json_actions(outcome),
        duration_ms: outcome.started.elapsed().as_millis(),
        error: result
            .as_ref()
            .err()
            .map(|err| redact(&headline(err)).into_owned()),
        local_changes: (outcome.command == Command::Status)
            .then_some(outcome.local_changes.as_slice()),
    };
    let json = serde_json::to_string(&report).expect("plain data serializes");
    let _ = writeln!(std::io::stdout().lock(), "{}", redact(&json));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_as_git_quotes_them() {
        let quoted = |path: &[u8]| quote_path(path.as_bstr()).into_owned();
        assert_eq!(quoted(b"app/main.py"), "app/main.py");
        assert_eq!(quoted(b"with space"), "with space");
        assert_eq!(quoted(b"a\nb"), r#""a\nb""#);
        assert_eq!(quoted(b"tab\there"), r#""tab\there""#);
        assert_eq!(quoted(b"esc\x1b[31m"), r#""esc\033[31m""#);
        assert_eq!(quoted(b"q\"uote\\"), r#""q\"uote\\""#);
        assert_eq!(quoted(b"caf\xc3\xa9"), r#""caf\303\251""#);
        assert_eq!(quoted(b"bad\xff"), r#""bad\377""#);
        assert_eq!(quoted(b"del\x7f"), r#""del\177""#);
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            failure_persistence: None,
            ..Default::default()
        })]

        /// No path, whatever its bytes, prints with a control character (so never as more than
        /// one line), and it is quoted exactly when it is not plain printable ASCII.
        #[test]
        fn quoted_paths_are_one_printable_line(path in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let quoted = quote_path(path.as_bstr());
            proptest::prop_assert!(!quoted.chars().any(|c| c.is_control() || !c.is_ascii()));
            let plain = path.iter().all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
            proptest::prop_assert_eq!(plain, quoted.as_bytes() == &path[..]);
        }

        #[test]
        fn escaped_lines_hold_no_control_character(text in "(?s).{0,60}") {
            proptest::prop_assert!(!escape_controls(&text).chars().any(char::is_control));
        }
    }

    #[test]
    fn control_characters_in_a_line_are_escaped() {
        assert_eq!(escape_controls("plain `x`"), "plain `x`");
        assert_eq!(
            escape_controls("`a\nupdated main`\t\u{1b}[2J"),
            "`a\\nupdated main`\\t\\033[2J"
        );
        assert_eq!(escape_controls("caf\u{e9}"), "caf\u{e9}");
    }
}
