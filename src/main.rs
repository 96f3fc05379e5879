//! pullstart: fetch the followed branch, fast-forward the checkout safely, restart what changed.
//!
//! A run is a pipeline of steps, one module each (see `run`):
//! settings -> lock -> fetch -> plan -> guard -> apply -> restart -> record -> report.

mod apply;
mod checkout;
mod cli;
mod compose;
mod exit;
mod failpoint;
mod fetch;
mod guard;
mod health;
mod hooks;
mod journal;
mod lock;
mod plan;
mod record;
mod recover;
mod redact;
mod report;
mod restart;
mod run;
mod select;
mod settings;
mod status;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse(); // usage errors: clap's own message and exit code 2
    let output = settings::output_from_flags(&cli);
    let settings = settings::Settings::resolve(cli);
    let style = match &settings {
        Ok(s) => report::Style {
            output: s.output,
            quiet: s.quiet,
            verbose: s.verbose,
            detailed_exitcode: s.detailed_exitcode,
        },
        Err(_) => report::Style {
            output,
            quiet: false,
            verbose: false,
            detailed_exitcode: false,
        },
    };
    let mut outcome = report::Outcome::new(settings::Command::Run);
    let result = settings.and_then(|settings| {
        // The first SIGINT/SIGTERM only sets a flag that the fetch polls; a second one ends
        // the process. The worktree update itself is never interrupted half-way.
        // SAFETY: called once, before any other thread exists.
        let _ = unsafe { gix::interrupt::init_handler(1, || {}) };
        outcome.command = settings.command;
        run::execute(&settings, &mut outcome)
    });
    std::process::exit(report::finish(&outcome, &result, style));
}
