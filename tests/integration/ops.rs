//! Operations: the metrics file (parsed with a Prometheus text-format parser), the splay, the
//! run timeout setting, and `watch`, the loop for a sidecar container, ended by SIGTERM.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_parse::{Scrape, Value};

use crate::support::{Fixture, KillOnDrop, Summary};

/// The commit time every fixture commit has (`GIT_COMMITTER_DATE` in `support::hermetic`).
const COMMIT_TIME: f64 = 1_700_000_000.0;

const METRICS: [&str; 7] = [
    "pullstart_last_run_timestamp_seconds",
    "pullstart_last_exit_code",
    "pullstart_run_duration_seconds",
    "pullstart_update_applied",
    "pullstart_deployed_commit_info",
    "pullstart_deployed_commit_timestamp_seconds",
    "pullstart_last_success_timestamp_seconds",
];

/// A metrics file as Prometheus reads it.
struct Metrics {
    text: String,
    /// Metric name -> (labels, value); every metric appears once.
    samples: HashMap<String, (HashMap<String, String>, f64)>,
}

impl Metrics {
    /// Parses `path` with `prometheus-parse`, and checks what that lenient parser does not:
    /// every sample line was understood, each metric has HELP and TYPE gauge, and none repeats.
    #[track_caller]
    fn read(path: &Path) -> Metrics {
        let text = fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read metrics `{}`: {e}", path.display()));
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{text}"));
        let sample_lines = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .count();
        assert_eq!(
            scrape.samples.len(),
            sample_lines,
            "a sample line was not understood\n{text}"
        );
        let mut samples = HashMap::new();
        for sample in scrape.samples {
            let value = match sample.value {
                Value::Gauge(v) => v,
                other => panic!("{} is not a gauge: {other:?}\n{text}", sample.metric),
            };
            assert!(
                scrape.docs.contains_key(&sample.metric),
                "no HELP for {}\n{text}",
                sample.metric
            );
            assert!(
                text.contains(&format!("# TYPE {} gauge\n", sample.metric)),
                "no TYPE for {}\n{text}",
                sample.metric
            );
            let labels: HashMap<String, String> = sample
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let previous = samples.insert(sample.metric.clone(), (labels, value));
            assert!(previous.is_none(), "{} repeats\n{text}", sample.metric);
        }
        Metrics { text, samples }
    }

    /// [`Metrics::read`], or `None` while the file does not exist.
    #[track_caller]
    fn read_if_there(path: &Path) -> Option<Metrics> {
        path.exists().then(|| Metrics::read(path))
    }

    #[track_caller]
    fn value(&self, name: &str) -> f64 {
        self.samples
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing\n{}", self.text))
            .1
    }

    #[track_caller]
    fn label(&self, name: &str, label: &str) -> String {
        let (labels, _) = self
            .samples
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing\n{}", self.text));
        labels
            .get(label)
            .unwrap_or_else(|| panic!("{name} has no label {label}\n{}", self.text))
            .clone()
    }

    fn has(&self, name: &str) -> bool {
        self.samples.contains_key(name)
    }

    /// Every sample carries the checkout and branch labels.
    #[track_caller]
    fn assert_labels(&self, t: &Fixture, branch: &str) {
        for (name, (labels, _)) in &self.samples {
            assert_eq!(
                labels.get("repo").map(String::as_str),
                Some(t.checkout.to_str().unwrap()),
                "{name}\n{}",
                self.text
            );
            assert_eq!(
                labels.get("branch").map(String::as_str),
                Some(branch),
                "{name}\n{}",
                self.text
            );
        }
    }
}

/// Polls `check` until it returns `Some`, for at most 5 s.
#[track_caller]
fn eventually<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "condition not met within 5s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A directory for the metrics file, as node_exporter's textfile collector directory would be.
fn metrics_dir(t: &Fixture) -> PathBuf {
    let dir = t.root.join("textfile");
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// The names in a directory, sorted.
fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ----- metrics -----

#[test]
fn metrics_after_an_update() {
    let t = Fixture::new();
    let dir = metrics_dir(&t);
    let prom = dir.join("pullstart.prom");
    let tip = t.push_files(&[("app/main.py", "print('v2')\n")]);
    let before = now();
    t.run(&["run", "--metrics-file", prom.to_str().unwrap()])
        .code(0);
    let after = now();

    let m = Metrics::read(&prom);
    for name in METRICS {
        assert!(m.has(name), "{name} missing\n{}", m.text);
    }
    m.assert_labels(&t, "main");
    assert_eq!(m.value("pullstart_last_exit_code"), 0.0);
    assert_eq!(m.value("pullstart_update_applied"), 1.0);
    assert_eq!(m.label("pullstart_deployed_commit_info", "commit"), tip);
    assert_eq!(m.value("pullstart_deployed_commit_info"), 1.0);
    assert_eq!(
        m.value("pullstart_deployed_commit_timestamp_seconds"),
        COMMIT_TIME
    );
    let last_run = m.value("pullstart_last_run_timestamp_seconds");
    assert!(
        before - 1.0 <= last_run && last_run <= after + 1.0,
        "{last_run}"
    );
    assert_eq!(
        m.value("pullstart_last_success_timestamp_seconds"),
        last_run
    );
    let duration = m.value("pullstart_run_duration_seconds");
    assert!(
        (0.0..=after - before + 0.01).contains(&duration),
        "{duration}"
    );
    assert_eq!(
        dir_names(&dir),
        ["pullstart.prom"],
        "no temporary file left"
    );
    let mode = fs::metadata(&prom).unwrap().mode();
    assert_eq!(mode & 0o044, 0o044, "readable by the collector: {mode:o}");
}

#[test]
fn metrics_when_up_to_date_and_for_check() {
    let t = Fixture::new();
    let prom = metrics_dir(&t).join("pullstart.prom");
    let prom_arg = prom.to_str().unwrap();
    t.run(&["run", "--metrics-file", prom_arg]).code(0).silent();
    let m = Metrics::read(&prom);
    m.assert_labels(&t, "main");
    assert_eq!(m.value("pullstart_last_exit_code"), 0.0);
    assert_eq!(m.value("pullstart_update_applied"), 0.0);
    assert_eq!(
        m.label("pullstart_deployed_commit_info", "commit"),
        t.head()
    );

    // `check` writes them too; a pending update is not an applied one.
    t.push_files(&[("app/main.py", "print('v2')\n")]);
    t.run(&["check", "--metrics-file", prom_arg, "--detailed-exitcode"])
        .code(10);
    let m = Metrics::read(&prom);
    assert_eq!(m.value("pullstart_last_exit_code"), 10.0);
    assert_eq!(m.value("pullstart_update_applied"), 0.0);
    assert_eq!(
        m.value("pullstart_last_success_timestamp_seconds"),
        m.value("pullstart_last_run_timestamp_seconds")
    );

    // `status` does not touch the file.
    let before = fs::read_to_string(&prom).unwrap();
    t.run(&["status", "--metrics-file", prom_arg]).code(0);
    assert_eq!(fs::read_to_string(&prom).unwrap(), before);
}

#[test]
fn metrics_after_a_refusal_keep_the_last_success() {
    let t = Fixture::new();
    let dir = metrics_dir(&t);
    let prom = dir.join("pullstart.prom");
    let prom_arg = prom.to_str().unwrap();
    t.run(&["run", "--metrics-file", prom_arg]).code(0);
    let first = Metrics::read(&prom);
    let success = first.value("pullstart_last_success_timestamp_seconds");
    let deployed = t.head();
    let inode = fs::metadata(&prom).unwrap().ino();

    std::thread::sleep(Duration::from_millis(20));
    t.co_write("app/main.py", "local edit\n");
    t.push_files(&[("app/main.py", "print('v2')\n")]);
    t.run(&["run", "--metrics-file", prom_arg]).code(4);

    let m = Metrics::read(&prom);
    m.assert_labels(&t, "main");
    assert_eq!(m.value("pullstart_last_exit_code"), 4.0);
    assert_eq!(m.value("pullstart_update_applied"), 0.0);
    assert_eq!(
        m.value("pullstart_last_success_timestamp_seconds"),
        success,
        "kept from the previous file"
    );
    assert!(m.value("pullstart_last_run_timestamp_seconds") > success);
    assert_eq!(
        m.label("pullstart_deployed_commit_info", "commit"),
        deployed
    );
    // Replaced by a rename, not rewritten in place; nothing left behind.
    assert_ne!(fs::metadata(&prom).unwrap().ino(), inode);
    assert_eq!(dir_names(&dir), ["pullstart.prom"]);

    // A second failure still keeps it; a success moves it on.
    t.run(&["run", "--metrics-file", prom_arg]).code(4);
    assert_eq!(
        Metrics::read(&prom).value("pullstart_last_success_timestamp_seconds"),
        success
    );
    t.co_remove("app/main.py");
    t.git(&t.checkout, &["checkout", "--", "app/main.py"]);
    t.run(&["run", "--metrics-file", prom_arg]).code(0);
    let m = Metrics::read(&prom);
    assert!(m.value("pullstart_last_success_timestamp_seconds") > success);
    assert_eq!(m.value("pullstart_update_applied"), 1.0);
}

#[test]
fn metrics_of_a_checkout_that_never_succeeded_and_of_early_failures() {
    let t = Fixture::new();
    let prom = metrics_dir(&t).join("pullstart.prom");
    let prom_arg = prom.to_str().unwrap();

    // The lock is held by another run: exit 7, and the metrics still name the deployed commit
    // (read from the repository, since the run stopped before reading it).
    t.run(&["run", "--metrics-file", prom_arg]).code(0);
    fs::remove_file(&prom).unwrap();
    let _lock = crate::support::hold_lock_with_flock(&t, 30);
    t.run(&["run", "--metrics-file", prom_arg]).code(7);
    let m = Metrics::read(&prom);
    m.assert_labels(&t, "main");
    assert_eq!(m.value("pullstart_last_exit_code"), 7.0);
    assert_eq!(
        m.value("pullstart_last_success_timestamp_seconds"),
        0.0,
        "no success known"
    );
    assert_eq!(
        m.label("pullstart_deployed_commit_info", "commit"),
        t.head()
    );
    assert_eq!(
        m.value("pullstart_deployed_commit_timestamp_seconds"),
        COMMIT_TIME
    );

    // Not a checkout at all (settings were fine): exit 2, written without a deployed commit.
    let empty = t.root.join("empty");
    fs::create_dir_all(&empty).unwrap();
    let other = metrics_dir(&t).join("other.prom");
    t.run(&[
        "run",
        "-C",
        empty.to_str().unwrap(),
        "--metrics-file",
        other.to_str().unwrap(),
    ])
    .code(2);
    let m = Metrics::read(&other);
    assert_eq!(m.value("pullstart_last_exit_code"), 2.0);
    assert!(!m.has("pullstart_deployed_commit_info"), "{}", m.text);
    assert_eq!(
        m.label("pullstart_last_exit_code", "repo"),
        empty.to_str().unwrap()
    );
}

#[test]
fn metrics_file_in_a_missing_directory_is_a_warning() {
    let t = Fixture::new();
    let prom = t.root.join("no/such/dir/pullstart.prom");
    let out = t.run(&["run", "--metrics-file", prom.to_str().unwrap()]);
    out.code(0).stdout_empty();
    let line = out.error_line();
    assert!(
        line.starts_with("pullstart: warning: failed to write the metrics file `")
            && line.contains("no/such/dir/pullstart.prom"),
        "{line}"
    );

    // A bad value is a usage error before anything runs.
    let out = t.run(&["run", "--metrics-file", "/tmp/"]);
    out.code(2);
    assert!(out
        .error_line()
        .contains("--metrics-file: `/tmp/` names a directory"));
}

#[test]
fn metrics_file_from_the_config() {
    let t = Fixture::new();
    let dir = metrics_dir(&t);
    let config = dir.join("pullstart.yml");
    fs::write(
        &config,
        "metrics_file: pullstart.prom\ntimeout: 2m\nsplay: 0\n",
    )
    .unwrap();
    t.run(&["run", "--config", config.to_str().unwrap()])
        .code(0);
    // Relative to the config file's directory.
    let m = Metrics::read(&dir.join("pullstart.prom"));
    assert_eq!(m.value("pullstart_last_exit_code"), 0.0);
}

// ----- splay and timeout -----

#[test]
fn splay_sleeps_less_than_the_splay_and_holds_no_lock() {
    let t = Fixture::new();
    let out = t.run(&["run", "--splay", "2s", "-v"]);
    out.code(0);
    assert!(
        out.elapsed < Duration::from_millis(2500),
        "{:?}",
        out.elapsed
    );
    let slept = splay_of(&out.stderr);
    // Printed to the millisecond: a draw just under 2 s shows as 2.000.
    assert!((0.0..=2.0).contains(&slept), "{slept}");
    assert!(
        out.elapsed.as_secs_f64() >= slept - 0.06,
        "{:?} < {slept}",
        out.elapsed
    );

    let out = t.run(&["run", "--splay", "0", "-v"]);
    out.code(0);
    assert!(!out.stderr.contains("(splay)"), "{}", out.stderr);
    assert!(out.elapsed < Duration::from_secs(2), "{:?}", out.elapsed);

    // `status` never sleeps.
    let out = t.run(&["status", "--splay", "10s"]);
    out.code(0);
    assert!(out.elapsed < Duration::from_secs(3), "{:?}", out.elapsed);

    // While it sleeps, the lock is free.
    let mut child = t.pullstart();
    child
        .args(t.full_args(&["run", "--splay", "20s", "-v"]))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = KillOnDrop(child.spawn().unwrap());
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let slept = splay_of(&line);
    if slept > 1.0 {
        let probe = Command::new("flock")
            .arg("-n")
            .arg(t.lock_path())
            .arg("true")
            .status()
            .unwrap();
        assert!(probe.success(), "the lock is held during the splay");
    }
}

/// The seconds of `pullstart: sleeping 1.2s first (splay)` in `stderr`.
#[track_caller]
fn splay_of(stderr: &str) -> f64 {
    let line = stderr
        .lines()
        .find(|l| l.ends_with("first (splay)"))
        .unwrap_or_else(|| panic!("no splay line in {stderr:?}"));
    line.trim_start_matches("pullstart: sleeping ")
        .trim_end_matches("s first (splay)")
        .parse()
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

#[test]
fn sigterm_during_the_splay_ends_the_run_at_once() {
    let t = Fixture::new();
    t.push_files(&[("app/main.py", "print('v2')\n")]);
    let prom = metrics_dir(&t).join("pullstart.prom");
    // A splay of a day sleeps long enough whatever the draw (unless it draws under 0.3 s).
    let child = t.spawn(&[
        "run",
        "--splay",
        "24h",
        "--metrics-file",
        prom.to_str().unwrap(),
    ]);
    let mut child = KillOnDrop(child);
    std::thread::sleep(Duration::from_millis(300));
    let signalled = term(&child.0);
    let (code, _stdout, stderr) = wait_output(&mut child.0, Duration::from_secs(5));
    assert!(signalled.elapsed() < Duration::from_millis(800));
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "pullstart: interrupted during the splay, before the run started; nothing was done\n"
    );
    assert_ne!(t.head(), t.remote_tip(), "nothing was done");
    assert_eq!(Metrics::read(&prom).value("pullstart_last_exit_code"), 1.0);
}

#[test]
fn timeout_is_accepted_and_validated() {
    let t = Fixture::new();
    t.push_files(&[("app/main.py", "print('v2')\n")]);
    t.run(&["run", "--timeout", "30s"]).code(0).summary();
    t.run(&["check", "--timeout=1m"]).code(0);
    for (value, expected) in [
        ("0", "--timeout: the timeout `0` is zero"),
        ("soon", "--timeout: `soon` is not a duration"),
        ("3days", "--timeout: the timeout `3days` is more than a day"),
    ] {
        let out = t.run(&["run", "--timeout", value]);
        out.code(2);
        assert!(out.error_line().contains(expected), "{}", out.stderr);
    }
    let config = t.root.join("pullstart.yml");
    fs::write(&config, "timeout: 0s\n").unwrap();
    let out = t.run(&["run", "--config", config.to_str().unwrap()]);
    out.code(2);
    assert!(
        out.error_line()
            .contains("line 1: `timeout`: the timeout `0s` is zero"),
        "{}",
        out.stderr
    );
}

// ----- watch -----

/// A running `pullstart watch`, its stdout read line by line on a thread.
pub(crate) struct Watch {
    pub(crate) child: KillOnDrop,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Watch {
    pub(crate) fn start(t: &Fixture, args: &[&str]) -> Watch {
        let mut child = t.spawn(args);
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Watch {
            child: KillOnDrop(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// The next stdout line, within `timeout`.
    #[track_caller]
    pub(crate) fn next_line(&mut self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => {
                self.seen.push(line.clone());
                line
            }
            Err(e) => panic!("no line within {timeout:?} ({e}); seen: {:?}", self.seen),
        }
    }

    /// The next JSON object on stdout.
    #[track_caller]
    pub(crate) fn next_json(&mut self, timeout: Duration) -> serde_json::Value {
        let line = self.next_line(timeout);
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(value.is_object(), "{line}");
        value
    }

    /// JSON objects until one whose `result` is `result`; returns it.
    #[track_caller]
    pub(crate) fn json_until(&mut self, result: &str, timeout: Duration) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            let value = self.next_json(left);
            if value["result"] == result {
                return value;
            }
        }
    }

    /// Sends SIGTERM, waits for the exit (at most `timeout`); returns the exit code, the time it
    /// took, the remaining stdout lines and stderr.
    #[track_caller]
    pub(crate) fn terminate(
        mut self,
        timeout: Duration,
    ) -> (Option<i32>, Duration, Vec<String>, String) {
        let signalled = term(&self.child.0);
        let (code, _, stderr) = wait_output(&mut self.child.0, timeout);
        let took = signalled.elapsed();
        let rest: Vec<String> = self.lines.iter().collect();
        (code, took, rest, stderr)
    }
}

/// `kill -TERM <pid>`; returns when it was sent.
fn term(child: &Child) -> Instant {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    Instant::now()
}

/// Waits for the child to exit, at most `timeout`; returns its code, stdout (if still piped)
/// and stderr.
#[track_caller]
fn wait_output(child: &mut Child, timeout: Duration) -> (Option<i32>, String, String) {
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < timeout,
            "pullstart did not exit within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout).unwrap();
    }
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        err.read_to_string(&mut stderr).unwrap();
    }
    (status.code(), stdout, stderr)
}

const ITERATION: Duration = Duration::from_secs(10);

#[test]
fn watch_picks_up_pushes_made_while_it_runs() {
    let t = Fixture::new();
    let prom = metrics_dir(&t).join("pullstart.prom");
    let initial = t.head();
    let first = t.push_files(&[("app/main.py", "print('v2')\n")]);
    let mut watch = Watch::start(
        &t,
        &[
            "watch",
            "--every",
            "1s",
            "--metrics-file",
            prom.to_str().unwrap(),
        ],
    );
    // Text output: one summary line per update, nothing while up to date.
    let line = watch.next_line(ITERATION);
    Summary::parse(&line)
        .unwrap_or_else(|e| panic!("{line}: {e}"))
        .assert_range(&initial, &first);
    // The metrics are written right after the report.
    let m = eventually(|| {
        let m = Metrics::read_if_there(&prom)?;
        (m.label("pullstart_deployed_commit_info", "commit") == first).then_some(m)
    });
    assert_eq!(m.value("pullstart_update_applied"), 1.0);

    std::thread::sleep(Duration::from_millis(1500)); // an up-to-date iteration or so
    let second = t.push_files(&[("app/settings.py", "DEBUG = True\n")]);
    let line = watch.next_line(ITERATION);
    Summary::parse(&line)
        .unwrap_or_else(|e| panic!("{line}: {e}"))
        .assert_range(&first, &second);
    assert_eq!(t.head(), second);
    assert_eq!(t.deployed().as_deref(), Some(second.as_str()));
    assert_eq!(
        t.restart_calls(),
        ["restart web worker", "restart web worker"]
    );
    eventually(|| {
        let m = Metrics::read_if_there(&prom)?;
        (m.label("pullstart_deployed_commit_info", "commit") == second).then_some(())
    });

    let (code, took, rest, stderr) = watch.terminate(Duration::from_secs(5));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(rest, Vec::<String>::new());
    assert_eq!(stderr, "");
}

#[test]
fn watch_json_prints_one_object_per_iteration_and_survives_a_failed_one() {
    let t = Fixture::new();
    t.fail_restart(1, "boom\n");
    let tip = t.push_files(&[("app/main.py", "print('v2')\n")]);
    let mut watch = Watch::start(&t, &["watch", "--every", "1s", "--output", "json"]);

    let failed = watch.next_json(ITERATION);
    assert_eq!(failed["result"], "restart_failed", "{failed}");
    assert_eq!(failed["exit_code"], 6);
    assert!(failed["error"].is_string());
    // The loop goes on: the next iteration retries the restart, and fails again.
    let again = watch.next_json(ITERATION);
    assert_eq!(again["result"], "restart_failed", "{again}");
    t.heal_restart();
    let updated = watch.json_until("updated", ITERATION);
    assert_eq!(updated["to"], tip.as_str());
    assert_eq!(updated["deployed"], tip.as_str());
    assert_eq!(updated["exit_code"], 0);
    assert_eq!(updated["error"], serde_json::Value::Null);
    // Then it is up to date, one object per iteration.
    let quiet = watch.next_json(ITERATION);
    assert_eq!(quiet["result"], "up_to_date", "{quiet}");
    assert_eq!(t.deployed().as_deref(), Some(tip.as_str()));

    let (code, took, rest, stderr) = watch.terminate(Duration::from_secs(5));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    for line in rest {
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(value.is_object(), "{line}");
    }
    assert_eq!(stderr, "", "json: errors go into the objects");
}

#[test]
fn watch_ends_promptly_on_sigterm_while_sleeping() {
    let t = Fixture::new();
    let mut watch = Watch::start(&t, &["watch", "--every", "1h", "--output", "json"]);
    let first = watch.next_json(ITERATION);
    assert_eq!(first["result"], "up_to_date");
    std::thread::sleep(Duration::from_millis(200));
    let (code, took, rest, stderr) = watch.terminate(Duration::from_secs(5));
    assert_eq!(code, Some(0), "{stderr}");
    // The sleep looks at the flag every 50 ms; the rest is the process ending under load.
    assert!(took < Duration::from_millis(750), "took {took:?}");
    assert_eq!(rest, Vec::<String>::new());
    assert_eq!(stderr, "");
}

#[test]
fn watch_ends_after_the_iteration_a_sigterm_interrupts() {
    let t = Fixture::new();
    t.slow_restart(1.5);
    let tip = t.push_files(&[("app/main.py", "print('v2')\n")]);
    let watch = Watch::start(&t, &["watch", "--every", "1s", "--output", "json", "-v"]);
    t.wait_for_restart_call(ITERATION);
    let (code, took, rest, stderr) = watch.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{stderr}");
    // It waited for the restart to finish, and started no other iteration.
    assert!(took > Duration::from_millis(800), "{took:?}");
    assert_eq!(rest.len(), 1, "{rest:?}");
    let last: serde_json::Value = serde_json::from_str(&rest[0]).unwrap();
    assert_eq!(last["result"], "updated", "{last}");
    assert_eq!(t.deployed().as_deref(), Some(tip.as_str()));
    assert_eq!(t.restart_calls().len(), 1);
    assert!(stderr.contains("pullstart: stopped watching"), "{stderr}");
}

#[test]
fn watch_needs_a_valid_interval() {
    let t = Fixture::new();
    let out = t.run(&["watch"]);
    out.code(2);
    assert!(
        out.error_line()
            .starts_with("pullstart: watch: the interval is missing; give it with --every"),
        "{}",
        out.stderr
    );
    let out = t.run(&["watch", "--every", "500ms"]);
    out.code(2);
    assert!(
        out.error_line()
            .contains("--every: the interval `500ms` is less than 1s"),
        "{}",
        out.stderr
    );
    // `--every` belongs to `watch`: clap's own usage error.
    let out = t.run(&["run", "--every", "5m"]);
    out.code(2);
    assert!(out.stderr.contains("--every"), "{}", out.stderr);
    // With json, the usage error is one object too.
    let out = t.run(&["watch", "--output", "json"]);
    out.code(2);
    assert_eq!(out.json()["result"], "usage_error");
}
