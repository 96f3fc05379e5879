//! Metrics: after each run or check, a Prometheus text-format file for node_exporter's textfile
//! collector (`--metrics-file`), replaced atomically so that the collector never reads half a
//! file.
//!
//! Every series carries the same two labels, `repo` (the checkout's absolute path) and `branch`
//! (the checked-out branch), so that several checkouts on one host can write side by side into
//! the collector's directory, each to its own file.
//!
//! Alert rules for the README (Prometheus rule file syntax):
//!
//! ```yaml
//! groups:
//!   - name: pullstart
//!     rules:
//!       # No successful run for 30 minutes (six 5-minute cron slots): the fetch keeps failing,
//!       # the restart keeps failing, or cron stopped starting pullstart. A checkout that never
//!       # succeeded has the value 0 and so alerts too.
//!       - alert: PullstartNoSuccess
//!         expr: time() - pullstart_last_success_timestamp_seconds > 30 * 60
//!         labels: {severity: warning}
//!         annotations:
//!           summary: "pullstart has not updated {{ $labels.repo }} successfully for 30 minutes"
//!       # pullstart stopped writing the file at all (cron, the timer or the sidecar is gone).
//!       - alert: PullstartNotRunning
//!         expr: time() - pullstart_last_run_timestamp_seconds > 15 * 60
//!         labels: {severity: warning}
//!       # Refused (4: local changes; 5: not a fast-forward; 9: an untrusted commit) or a rebuild
//!       # the policy stops (8):
//!       # no retry fixes these, a human must look at the checkout.
//!       - alert: PullstartNeedsAHuman
//!         expr: pullstart_last_exit_code == 4 or pullstart_last_exit_code == 5 or pullstart_last_exit_code == 8 or pullstart_last_exit_code == 9
//!         labels: {severity: critical}
//!         annotations:
//!           summary: "pullstart refused to update {{ $labels.repo }} (exit {{ $value }}); see `pullstart status`"
//!       # The deployed code is old: the remote has not moved, or updates stopped landing.
//!       # (Informational; tune or drop.)
//!       - alert: PullstartDeployedCommitOld
//!         expr: time() - pullstart_deployed_commit_timestamp_seconds > 14 * 24 * 3600
//!         labels: {severity: info}
//! ```

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use gix::bstr::ByteSlice;
use gix::ObjectId;

use crate::report::{Outcome, Success};
use crate::settings::Settings;

/// What one run leaves for monitoring.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The checkout's absolute path (label `repo`).
    pub repo: String,
    /// The checked-out branch (label `branch`); empty when unknown.
    pub branch: String,
    /// When the run ended.
    pub finished: SystemTime,
    pub exit_code: i32,
    /// How long the run took (the splay not included).
    pub duration: Duration,
    /// The run applied an update and its restart succeeded (result `updated`).
    pub update_applied: bool,
    /// `refs/pullstart/deployed` after the run.
    pub deployed: Option<ObjectId>,
    /// The deployed commit's committer time, in seconds since the epoch.
    pub deployed_time: Option<i64>,
    /// When a run last succeeded: this one's end if it did, else the previous file's value;
    /// `None` when no run is known to have succeeded.
    pub last_success: Option<SystemTime>,
}

/// Whether a run with this exit code succeeded (0, or 10 with --detailed-exitcode).
pub fn is_success(exit_code: i32) -> bool {
    matches!(exit_code, 0 | 10)
}

/// The metrics of the run that just ended with `exit_code`, written to `path`. A failure to
/// write them is a warning on stderr: the run's own result and exit code stand.
pub fn record(path: &Path, settings: &Settings, outcome: &Outcome, exit_code: i32) {
    save(path, &snapshot(path, settings, outcome, exit_code));
}

/// [`write`], with a failure as a warning on stderr.
pub fn save(path: &Path, snapshot: &Snapshot) {
    if let Err(err) = write(path, snapshot) {
        eprintln!(
            "pullstart: warning: {}",
            crate::redact::redact(&format!("{err:#}"))
        );
    }
}

/// Gathers the snapshot: from the outcome, the repository (deployed commit and its time, when the
/// outcome does not know them) and the previous metrics file (the last success).
pub fn snapshot(path: &Path, settings: &Settings, outcome: &Outcome, exit_code: i32) -> Snapshot {
    let previous = fs::read_to_string(path).ok();
    snapshot_after(previous.as_deref(), settings, outcome, exit_code)
}

/// [`snapshot`], with the previous metrics given as their text (`watch --listen` keeps them in
/// memory).
pub fn snapshot_after(
    previous: Option<&str>,
    settings: &Settings,
    outcome: &Outcome,
    exit_code: i32,
) -> Snapshot {
    let finished = SystemTime::now();
    let previous = previous.map(parse).unwrap_or_default();
    let repo = gix::open(&settings.repo).ok();
    // An early failure (the lock, say) leaves the outcome without it: read the ref.
    let deployed = outcome
        .deployed
        .or_else(|| crate::record::deployed(repo.as_ref()?).ok().flatten());
    let deployed_time = deployed.and_then(|id| {
        let commit = repo.as_ref()?.find_commit(id).ok()?;
        commit.time().ok().map(|time| time.seconds)
    });
    let branch = outcome
        .branch
        .clone()
        .or_else(|| {
            let name = repo.as_ref()?.head_name().ok()??;
            Some(name.shorten().to_str_lossy().into_owned())
        })
        .or_else(|| previous.label("pullstart_last_exit_code", "branch"))
        .unwrap_or_default();
    let success = is_success(exit_code);
    Snapshot {
        repo: repo_label(&settings.repo),
        branch,
        finished,
        exit_code,
        duration: outcome.started.elapsed(),
        update_applied: success && outcome.success == Success::Updated,
        deployed,
        deployed_time,
        last_success: if success {
            Some(finished)
        } else {
            previous
                .value("pullstart_last_success_timestamp_seconds")
                .and_then(time_from_seconds)
        },
    }
}

/// The checkout's absolute path, without `.` components or a trailing `/`: the same label
/// whichever way the path was written.
fn repo_label(repo: &Path) -> String {
    let absolute = std::path::absolute(repo).unwrap_or_else(|_| repo.to_path_buf());
    absolute
        .components()
        .collect::<PathBuf>()
        .to_string_lossy()
        .into_owned()
}

/// Writes the snapshot to `path` atomically: a temporary file in the same directory (whose name
/// does not end in `.prom`, so the collector skips it), flushed to disk, then renamed over `path`.
pub fn write(path: &Path, snapshot: &Snapshot) -> anyhow::Result<()> {
    let text = render(snapshot);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("the metrics file `{}` has no file name", path.display()))?;
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| -> std::io::Result<()> {
        // A leftover of a crashed run with the same process id.
        let _ = fs::remove_file(&temp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if let Err(err) = written {
        let _ = fs::remove_file(&temp);
        return Err(err).with_context(|| {
            format!(
                "failed to write the metrics file `{}`; check that its directory exists and is writable",
                path.display()
            )
        });
    }
    // Make the rename itself durable; a failure here loses nothing that matters.
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// The metrics in Prometheus text format (version 0.0.4).
pub fn render(s: &Snapshot) -> String {
    let labels = format!(
        "repo=\"{}\",branch=\"{}\"",
        escape_label(&s.repo),
        escape_label(&s.branch)
    );
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, extra: &str, value: String| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        out.push_str(&format!("{name}{{{labels}{extra}}} {value}\n"));
    };
    gauge(
        "pullstart_last_run_timestamp_seconds",
        "When the last pullstart run or check ended, in seconds since the Unix epoch.",
        "",
        seconds(s.finished),
    );
    gauge(
        "pullstart_last_exit_code",
        "The exit code of the last run: 0 or 10 success, 3 fetch failed, 4 or 5 refused (needs a human), 6 restart failed, 7 locked, 8 rebuild required.",
        "",
        s.exit_code.to_string(),
    );
    gauge(
        "pullstart_run_duration_seconds",
        "How long the last run took, in seconds, the splay not included.",
        "",
        format!("{:.3}", s.duration.as_secs_f64()),
    );
    gauge(
        "pullstart_update_applied",
        "1 if the last run applied an update and restarted the services, else 0.",
        "",
        u8::from(s.update_applied).to_string(),
    );
    if let Some(id) = s.deployed {
        gauge(
            "pullstart_deployed_commit_info",
            "The commit the services were last successfully restarted with (refs/pullstart/deployed).",
            &format!(",commit=\"{id}\""),
            "1".into(),
        );
    }
    if let Some(time) = s.deployed_time {
        gauge(
            "pullstart_deployed_commit_timestamp_seconds",
            "The committer time of the deployed commit, in seconds since the Unix epoch.",
            "",
            time.to_string(),
        );
    }
    gauge(
        "pullstart_last_success_timestamp_seconds",
        "When a run last ended with exit code 0 or 10, in seconds since the Unix epoch; 0 if none is known.",
        "",
        s.last_success.map_or_else(|| "0".into(), seconds),
    );
    out
}

/// The time a value written by [`seconds`] stands for, to the millisecond, so that a value
/// carried from one file to the next stays the same; `None` for 0 (never) and nonsense.
fn time_from_seconds(seconds: f64) -> Option<SystemTime> {
    if !(seconds > 0.0 && seconds < 1e12) {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::from_millis((seconds * 1000.0).round() as u64))
}

/// Seconds since the epoch with millisecond precision.
fn seconds(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:03}", since.as_secs(), since.subsec_millis())
}

/// A label value as the text format writes it: `\`, `"` and newline escaped.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The samples of a previous metrics file, as far as they can be read: just enough of the text
/// format to carry the last success (and the branch label) from one run to the next.
#[derive(Debug, Default)]
struct Samples(Vec<Sample>);

#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Samples {
    fn value(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|s| s.name == name).map(|s| s.value)
    }

    fn label(&self, name: &str, label: &str) -> Option<String> {
        let sample = self.0.iter().find(|s| s.name == name)?;
        sample
            .labels
            .iter()
            .find(|(key, _)| key == label)
            .map(|(_, value)| value.clone())
            .filter(|value| !value.is_empty())
    }
}

/// Reads `name{label="value",...} value` lines; comments and lines it cannot read are skipped.
fn parse(text: &str) -> Samples {
    Samples(text.lines().filter_map(parse_line).collect())
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let end = loop {
            // Skip separators, then read `key="value"` or the closing brace.
            while chars.next_if(|&(_, c)| c == ',' || c == ' ').is_some() {}
            let (start, c) = chars.next()?;
            if c == '}' {
                break start + 1;
            }
            let eq = inner[start..].find('=')? + start;
            let key = inner[start..eq].trim().to_owned();
            while chars.next_if(|&(i, _)| i <= eq).is_some() {}
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    c => value.push(c),
                }
            }
            labels.push((key, value));
        };
        rest = &inner[end..];
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            repo: "/srv/app".into(),
            branch: "main".into(),
            finished: UNIX_EPOCH + Duration::from_millis(1_700_000_123_456),
            exit_code: 0,
            duration: Duration::from_millis(1234),
            update_applied: true,
            deployed: Some(
                ObjectId::from_hex(b"1111111111111111111111111111111111111111").unwrap(),
            ),
            deployed_time: Some(1_700_000_000),
            last_success: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_100)),
        }
    }

    #[test]
    fn renders_every_metric_with_help_type_and_labels() {
        let text = render(&snapshot());
        let expected = r#"# HELP pullstart_last_run_timestamp_seconds When the last pullstart run or check ended, in seconds since the Unix epoch.
# TYPE pullstart_last_run_timestamp_seconds gauge
pullstart_last_run_timestamp_seconds{repo="/srv/app",branch="main"} 1700000123.456
"#;
        assert!(text.starts_with(expected), "{text}");
        for line in [
            "pullstart_last_exit_code{repo=\"/srv/app\",branch=\"main\"} 0\n",
            "pullstart_run_duration_seconds{repo=\"/srv/app\",branch=\"main\"} 1.234\n",
            "pullstart_update_applied{repo=\"/srv/app\",branch=\"main\"} 1\n",
            "pullstart_deployed_commit_info{repo=\"/srv/app\",branch=\"main\",commit=\"1111111111111111111111111111111111111111\"} 1\n",
            "pullstart_deployed_commit_timestamp_seconds{repo=\"/srv/app\",branch=\"main\"} 1700000000\n",
            "pullstart_last_success_timestamp_seconds{repo=\"/srv/app\",branch=\"main\"} 1700000100.000\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // Every sample has its HELP and TYPE lines right before it.
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 7 * 3);
        for chunk in lines.chunks(3) {
            let name = chunk[2].split('{').next().unwrap();
            assert!(
                chunk[0].starts_with(&format!("# HELP {name} ")),
                "{chunk:?}"
            );
            assert_eq!(chunk[1], format!("# TYPE {name} gauge"));
        }
    }

    #[test]
    fn unknown_values_are_left_out_or_zero() {
        let text = render(&Snapshot {
            deployed: None,
            deployed_time: None,
            last_success: None,
            update_applied: false,
            exit_code: 3,
            ..snapshot()
        });
        assert!(!text.contains("pullstart_deployed_commit"), "{text}");
        assert!(text.contains(
            "pullstart_last_success_timestamp_seconds{repo=\"/srv/app\",branch=\"main\"} 0\n"
        ));
        assert!(text.contains("pullstart_update_applied{repo=\"/srv/app\",branch=\"main\"} 0\n"));
        assert!(text.contains("pullstart_last_exit_code{repo=\"/srv/app\",branch=\"main\"} 3\n"));
    }

    #[test]
    fn labels_are_escaped() {
        let text = render(&Snapshot {
            repo: "/srv/a \"b\"\\c\nd".into(),
            branch: "fix/\"x\"".into(),
            ..snapshot()
        });
        assert!(
            text.contains(r#"{repo="/srv/a \"b\"\\c\nd",branch="fix/\"x\""}"#),
            "{text}"
        );
        // And they read back as they were.
        let samples = parse(&text);
        assert_eq!(
            samples.label("pullstart_last_exit_code", "repo").as_deref(),
            Some("/srv/a \"b\"\\c\nd")
        );
        assert_eq!(
            samples
                .label("pullstart_last_exit_code", "branch")
                .as_deref(),
            Some("fix/\"x\"")
        );
    }

    #[test]
    fn parses_its_own_output_back() {
        let text = render(&snapshot());
        let samples = parse(&text);
        assert_eq!(samples.0.len(), 7);
        assert_eq!(
            samples.value("pullstart_last_success_timestamp_seconds"),
            Some(1_700_000_100.0)
        );
        assert_eq!(samples.value("pullstart_run_duration_seconds"), Some(1.234));
        assert_eq!(
            samples
                .label("pullstart_deployed_commit_info", "commit")
                .as_deref(),
            Some("1111111111111111111111111111111111111111")
        );
        assert_eq!(samples.value("no_such_metric"), None);
    }

    #[test]
    fn last_success_survives_the_round_trip_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pullstart.prom");
        // Values whose float is just below the decimal they print as.
        for millis in [1_795_952_774_658u64, 1_700_000_000_001, 1_795_952_782_017] {
            let written = Snapshot {
                last_success: Some(UNIX_EPOCH + Duration::from_millis(millis)),
                ..snapshot()
            };
            write(&path, &written).unwrap();
            let value = parse(&fs::read_to_string(&path).unwrap())
                .value("pullstart_last_success_timestamp_seconds")
                .unwrap();
            let carried = time_from_seconds(value).unwrap();
            assert_eq!(seconds(carried), seconds(written.last_success.unwrap()));
        }
        for nonsense in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e300] {
            assert_eq!(time_from_seconds(nonsense), None, "{nonsense}");
        }
    }

    #[test]
    fn parse_skips_what_it_cannot_read() {
        let samples = parse(
            "# a comment\n\nbroken{repo=\"x} 1\nplain 2\nwith_ts{a=\"b\"} 3 1700000000\nbad_value x\n{nameless=\"1\"} 4\n",
        );
        let names: Vec<&str> = samples.0.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["plain", "with_ts", ""]);
        assert_eq!(samples.value("with_ts"), Some(3.0));
    }

    #[test]
    fn success_is_0_or_10() {
        for code in [0, 10] {
            assert!(is_success(code));
        }
        for code in [1, 2, 3, 4, 5, 6, 7, 8] {
            assert!(!is_success(code));
        }
    }

    #[test]
    fn repo_label_is_absolute_and_clean() {
        assert_eq!(repo_label(Path::new("/srv/app/")), "/srv/app");
        assert_eq!(repo_label(Path::new("/srv/./app")), "/srv/app");
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(repo_label(Path::new(".")), cwd.to_string_lossy());
    }

    #[test]
    fn write_replaces_the_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pullstart.prom");
        fs::write(&path, "old\n").unwrap();
        write(&path, &snapshot()).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), render(&snapshot()));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["pullstart.prom"]);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o044, 0o044, "readable by the collector: {mode:o}");

        let err = write(&dir.path().join("missing/x.prom"), &snapshot()).unwrap_err();
        assert!(
            format!("{err:#}").contains("failed to write the metrics file"),
            "{err:#}"
        );
    }
}
