//! The last resort behind `--timeout` and the first signal: a thread that ends the process when
//! a run is still going [`GRACE`] after its deadline (or after SIGTERM, SIGINT, SIGHUP or
//! SIGQUIT, before the update started).
//!
//! Every step that waits on something outside bounds itself (the fetch's reads, compose and
//! hooks are killed at the deadline), so the main thread normally reports a time-out itself.
//! What no step can bound is a read inside pullstart or gitoxide that blocks for good: a FIFO or a
//! device that a container with the checkout mounted put where git keeps a ref or a config
//! file. Such a run would hold `<git-dir>/pullstart.lock` forever and every later run would exit
//! 7. This thread reports the time-out in the usual form (one error line, or the JSON object)
//! and exits with the code of the step that ran out of time; the lock, a `flock`, goes with
//! the process.
//!
//! It never ends a run while the worktree is being updated ([`Step::Updating`], which includes
//! finishing an interrupted update): that step is bounded by the size of the update, and is
//! finished rather than cut. Were the process killed there anyway, the journal lets the next run
//! finish it.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::exit::{ExitCode, Failure};
use crate::report::{self, Outcome, Style};
use crate::settings::{Command, Deadline, Settings};

/// How long after the deadline (or the signal) the run may still go on: enough for a step that
/// was killed at the deadline to report that itself.
const GRACE: Duration = Duration::from_secs(2);

/// The same while acting: each `docker inspect` of the health wait is given at least 10 s even
/// when the deadline is close (see `health`), and reports its own time-out after that.
const GRACE_ACTING: Duration = Duration::from_secs(15);

/// How often the thread looks.
const POLL: Duration = Duration::from_millis(50);

/// Where the run is, for the exit code and the message of a run that had to be ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    /// Opening the checkout, taking the lock, planning, guarding: nothing is touched yet.
    Preparing = 0,
    Fetching = 1,
    /// Writing the worktree, the index and the branch: never cut.
    Updating = 2,
    /// The hooks, the compose command, the health wait, recording the deployed commit.
    Acting = 3,
}

static STEP: AtomicU8 = AtomicU8::new(Step::Preparing as u8);

/// Tells the watchdog that the run has reached `step`.
pub fn enter(step: Step) {
    STEP.store(step as u8, Ordering::SeqCst);
}

fn current() -> Step {
    match STEP.load(Ordering::SeqCst) {
        1 => Step::Fetching,
        2 => Step::Updating,
        3 => Step::Acting,
        _ => Step::Preparing,
    }
}

impl Step {
    /// The exit code of a run that had to be ended here: that of the step that ran out of time.
    fn exit_code(self) -> ExitCode {
        match self {
            Step::Preparing | Step::Updating => ExitCode::Internal,
            Step::Fetching => ExitCode::FetchFailed,
            Step::Acting => ExitCode::RestartFailed,
        }
    }

    fn grace(self) -> Duration {
        match self {
            Step::Acting => GRACE_ACTING,
            _ => GRACE,
        }
    }

    /// A signal ends the run only before anything was touched: a restart under way is let
    /// finish (it is bounded by the deadline).
    fn ends_on_signal(self) -> bool {
        matches!(self, Step::Preparing | Step::Fetching)
    }

    fn what_was_cut(self) -> &'static str {
        match self {
            Step::Preparing | Step::Updating => {
                "before the update started; nothing was touched, the next run starts over"
            }
            Step::Fetching => "while fetching; the next run retries",
            Step::Acting => "during the restart; the next run retries the restart",
        }
    }
}

/// The watchdog of one run; dropping it (the run is over) stops the thread.
pub struct Watchdog {
    /// Set by whichever comes first: the run that ended (it reports itself) or the thread that
    /// ends it (it reports for it), so that a run is never reported twice.
    over: Arc<AtomicBool>,
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if self.over.swap(true, Ordering::SeqCst) {
            // The thread is reporting this run and ending the process: wait for that.
            loop {
                std::thread::park();
            }
        }
    }
}

/// Watches the run that `settings` describes, which must be over by `deadline`.
pub fn start(settings: &Settings, deadline: Deadline) -> Watchdog {
    enter(Step::Preparing);
    let over = Arc::new(AtomicBool::new(false));
    let settings = settings.clone();
    let flag = over.clone();
    let watch = move || {
        // Since when the run has had reason to be over.
        let mut overdue_since: Option<Instant> = None;
        while !flag.load(Ordering::SeqCst) {
            std::thread::sleep(POLL);
            let step = current();
            let timed_out = deadline.remaining().is_zero();
            let signalled = gix::interrupt::is_triggered() && step.ends_on_signal();
            if step == Step::Updating || !(timed_out || signalled) {
                overdue_since = None;
                continue;
            }
            let since = *overdue_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= step.grace() && !flag.swap(true, Ordering::SeqCst) {
                end_the_run(&settings, step, timed_out);
            }
        }
    };
    // Without a thread there is no watchdog, and the run goes on as before.
    let _ = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(watch);
    Watchdog { over }
}

/// Report the run as cut short at `step` and end the process.
fn end_the_run(settings: &Settings, step: Step, timed_out: bool) -> ! {
    let why = if timed_out {
        format!(
            "the run did not finish within --timeout {}",
            humantime::format_duration(settings.timeout)
        )
    } else {
        "the run did not stop after a signal".to_owned()
    };
    let message = format!(
        "{why} and was ended {}; run with --verbose to see the last step it reached",
        step.what_was_cut()
    );
    let failure = Failure::new(step.exit_code(), message);
    let style = Style {
        output: settings.output,
        quiet: settings.quiet,
        verbose: settings.verbose,
        detailed_exitcode: settings.detailed_exitcode,
    };
    let outcome = Outcome::new(settings.command);
    let code = report::finish(&outcome, &Err(failure.into()), style);
    if let (Some(path), false) = (&settings.metrics_file, settings.command == Command::Status) {
        crate::metrics::record(path, settings, &outcome, code);
    }
    // `watch` ends with 0 on a signal (its contract); a run cut at its deadline ends the loop
    // with that run's code, for the container's restart policy to see.
    let signalled_watch = settings.watch.is_some() && !timed_out;
    std::process::exit(if signalled_watch { 0 } else { code })
}
