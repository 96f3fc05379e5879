//! The waits around a run: the random splay before it, and `watch`, which repeats it.
//!
//! A run as cron starts it is [`once`]: splay, run, report, metrics. `watch` is the same in a
//! loop ([`watch`]), for a sidecar container; the lock is taken by each run, never held while
//! sleeping. Every sleep is cut into short steps that look at gix's interrupt flag (set by the
//! first SIGTERM, SIGINT, SIGHUP or SIGQUIT, see `main`), so that a signal ends a sleep within
//! [`POLL`], and a signal during a run ends the loop once that run has been reported.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::exit::{fail, ExitCode};
use crate::report::{self, Outcome, Style};
use crate::settings::{Command, Settings};
use crate::{metrics, run};

/// How often a sleep looks at the interrupt flag.
const POLL: Duration = Duration::from_millis(50);

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
        if !splay(settings) {
            break;
        }
        reported(settings, style, |outcome| run::execute(settings, outcome));
        if !sleep_until(started + every) {
            break;
        }
    }
    note(settings, format_args!("stopped watching: a signal came"));
    0
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
    sleep_until(Instant::now() + pause)
}

/// Sleeps until `until` in steps of [`POLL`]; false as soon as a signal has come.
fn sleep_until(until: Instant) -> bool {
    loop {
        if gix::interrupt::is_triggered() {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
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
        assert!(sleep_until(start + Duration::from_millis(120)));
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(120) && took < Duration::from_millis(600),
            "{took:?}"
        );
        // A moment already past: no sleep at all.
        let start = Instant::now();
        assert!(sleep_until(start - Duration::from_millis(1)));
        assert!(start.elapsed() < Duration::from_millis(50));
    }
}
