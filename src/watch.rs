//! The waits around a run: the random splay before it, and `watch`, which repeats it.
//!
//! A run as cron starts it is [`once`]: splay, run, report, metrics. `watch` is the same in a
//! loop ([`watch`]), for a sidecar container; the lock is taken by each run, never held while
//! sleeping. Every sleep is cut into short steps that look at gix's interrupt flag (set by the
//! first SIGTERM, SIGINT, SIGHUP or SIGQUIT, see `main`), so that a signal ends a sleep within
//! [`POLL`], and a signal during a run ends the loop once that run has been reported.
//!
//! A run can also be asked for at once: by SIGUSR1 (for a host-side hook, or `docker kill -s
//! USR1`) and, with `--listen`, by a verified push webhook ([`crate::webhook`]). Requests only
//! set [`RUN_NOW`]; the loop clears it as a run starts, so any number of requests that arrive
//! during a run lead to exactly one more run.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::exit::{fail, ExitCode};
use crate::report::{self, Outcome, Style};
use crate::settings::{Command, Settings};
use crate::webhook::{self, LastRun, LoopState};
use crate::{checkout, metrics, run};

/// How often a sleep looks at the interrupt flag.
const POLL: Duration = Duration::from_millis(50);

/// Set by SIGUSR1 and by a verified push webhook: start the next run now.
static RUN_NOW: AtomicBool = AtomicBool::new(false);

/// One run or check (or `status`) as cron starts it; returns the exit code.
pub fn once(settings: &Settings, style: Style) -> i32 {
    if settings.command != Command::Status && !splay(settings) {
        return reported(settings, style, |_| {
            fail(
                ExitCode::Internal,
                "interrupted during the splay, before the run started; nothing was done",
            )
        });
    }
    reported(settings, style, |outcome| run::execute(settings, outcome))
}

/// `pullstart watch`: [`once`] every `settings.watch` (start to start; a run that takes longer
/// is followed by the next one at once) until a signal comes. A failed run is reported and the
/// loop goes on. Returns the exit code of the loop: 0, since only a signal ends it.
pub fn watch(settings: &Settings, style: Style) -> i32 {
    let every = settings.watch.expect("called for `watch` only");
    let state = Arc::new(Mutex::new(LoopState::default()));
    if let Err(code) = start_listener(settings, style, &state) {
        return code;
    }
    run_on_sigusr1();
    note(
        settings,
        format_args!(
            "watching `{}` every {}",
            settings.repo.display(),
            humantime::format_duration(every)
        ),
    );
    loop {
        let started = Instant::now();
        // Requests from now on ask for the run after this one.
        let asked = RUN_NOW.swap(false, Ordering::SeqCst);
        // An asked-for run skips the splay: the push is there now, for this host alone.
        if gix::interrupt::is_triggered() || (!asked && !splay(settings)) {
            break;
        }
        let mut outcome = Outcome::new(settings.command);
        let result = run::execute(settings, &mut outcome);
        let code = report::finish(&outcome, &result, style);
        let snapshot = match &settings.metrics_file {
            Some(path) => {
                let snapshot = metrics::snapshot(path, settings, &outcome, code);
                metrics::save(path, &snapshot);
                snapshot
            }
            None => {
                let previous = state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .metrics
                    .clone();
                metrics::snapshot_after(previous.as_deref(), settings, &outcome, code)
            }
        };
        *state.lock().unwrap_or_else(|e| e.into_inner()) = LoopState {
            last_run: Some(LastRun {
                exit_code: code,
                result: report::result_word(&outcome, &result).to_string(),
                finished: SystemTime::now(),
            }),
            metrics: Some(metrics::render(&snapshot)),
        };
        if sleep_until(started + every) == Woken::Signal {
            break;
        }
    }
    note(settings, format_args!("stopped watching: a signal came"));
    0
}

/// `--listen`: the webhook, health and metrics endpoint; `Err(exit code)` when it cannot start.
fn start_listener(
    settings: &Settings,
    style: Style,
    state: &Arc<Mutex<LoopState>>,
) -> Result<(), i32> {
    let Some(addr) = settings.listen else {
        return Ok(());
    };
    let for_branch = settings.clone();
    let followed: webhook::FollowedBranch = Arc::new(move || {
        // The checkout's followed branch, as the run resolves it (its upstream by default).
        checkout::open(&for_branch)
            .ok()
            .map(|c| c.remote_branch.clone())
    });
    let started = webhook::start(
        addr,
        settings.webhook_secret_file.as_deref(),
        Arc::clone(state),
        followed,
        Arc::new(|| RUN_NOW.store(true, Ordering::SeqCst)),
    );
    match started {
        Ok(bound) => {
            note(settings, format_args!("listening on {bound}"));
            Ok(())
        }
        Err(err) => Err(reported(settings, style, |_| Err(err))),
    }
}

/// SIGUSR1 sets [`RUN_NOW`] (an atomic store: safe in a signal handler).
fn run_on_sigusr1() {
    extern "C" fn on_usr1(_: libc::c_int) {
        RUN_NOW.store(true, Ordering::SeqCst);
    }
    // SAFETY: the handler only stores to an atomic; SA_RESTART keeps system calls going.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_usr1 as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut());
    }
}

/// Runs `work` with a fresh outcome, prints its report and, for a run or check, writes the
/// metrics file; returns the exit code.
fn reported(
    settings: &Settings,
    style: Style,
    work: impl FnOnce(&mut Outcome) -> anyhow::Result<()>,
) -> i32 {
    let mut outcome = Outcome::new(settings.command);
    let result = work(&mut outcome);
    let code = report::finish(&outcome, &result, style);
    if let (Some(path), false) = (&settings.metrics_file, settings.command == Command::Status) {
        metrics::record(path, settings, &outcome, code);
    }
    code
}

/// Sleeps a random time in `[0, settings.splay)`; false when a signal came first.
fn splay(settings: &Settings) -> bool {
    if settings.splay.is_zero() {
        return !gix::interrupt::is_triggered();
    }
    let pause = settings.splay.mul_f64(random_fraction());
    note(
        settings,
        format_args!("sleeping {:.3}s first (splay)", pause.as_secs_f64()),
    );
    sleep_until(Instant::now() + pause) != Woken::Signal
}

/// Why a sleep ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Woken {
    /// The time came.
    Time,
    /// A run was asked for ([`RUN_NOW`]).
    RunNow,
    /// SIGTERM, SIGINT, SIGHUP or SIGQUIT.
    Signal,
}

/// Sleeps until `until` in steps of [`POLL`], or until a run is asked for, or a signal comes.
fn sleep_until(until: Instant) -> Woken {
    loop {
        if gix::interrupt::is_triggered() {
            return Woken::Signal;
        }
        if RUN_NOW.load(Ordering::SeqCst) {
            return Woken::RunNow;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Woken::Time;
        }
        std::thread::sleep(left.min(POLL));
    }
}

/// A number in `[0, 1)`, different on every call and on every host. std's `RandomState` is
/// seeded from the operating system's random source; the time and the process id are mixed in
/// too. Good enough to spread a fleet, and no crate needed.
fn random_fraction() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.write_u32(std::process::id());
    // The top 53 bits: exactly representable, so the result is below 1.
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// A line on stderr with --verbose.
fn note(settings: &Settings, what: std::fmt::Arguments<'_>) {
    if settings.verbose {
        eprintln!("pullstart: {}", crate::redact::redact(&what.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_fractions_are_in_range_and_spread() {
        let values: Vec<f64> = (0..1000).map(|_| random_fraction()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        let low = values.iter().filter(|&&v| v < 0.5).count();
        assert!((350..650).contains(&low), "{low} of 1000 below 0.5");
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.dedup();
        assert!(sorted.len() > 990, "values repeat");
    }

    #[test]
    fn sleep_until_sleeps_until_then() {
        let start = Instant::now();
        assert_eq!(sleep_until(start + Duration::from_millis(120)), Woken::Time);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(120) && took < Duration::from_millis(600),
            "{took:?}"
        );
        // A moment already past: no sleep at all.
        let start = Instant::now();
        assert_eq!(sleep_until(start - Duration::from_millis(1)), Woken::Time);
        assert!(start.elapsed() < Duration::from_millis(50));
    }
}
