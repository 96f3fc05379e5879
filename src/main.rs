//! pullstart: fetch the followed branch, fast-forward the checkout safely, restart what changed.
//!
//! A run is a pipeline of steps, one module each (see `run`):
//! settings -> lock -> fetch -> plan -> guard -> apply -> restart -> record -> report.

mod apply;
mod beneath;
mod build_context;
mod checkout;
mod child;
mod cli;
mod compose;
mod dotenv;
mod entrypoint;
mod exit;
mod failpoint;
mod fetch;
mod generate;
mod guard;
mod health;
mod index_write;
mod hooks;
mod journal;
mod lfs;
mod lock;
mod metrics;
mod plan;
#[cfg(test)]
mod props;
mod record;
mod recover;
mod redact;
mod regular_file;
mod report;
mod restart;
mod run;
mod select;
mod settings;
mod status;
mod submodule;
mod verify;
mod watch;
mod watchdog;
mod webhook;

use clap::Parser;

fn main() {
    fetch::take_token_from_environment(); // first: no thread may run while the environment changes
    return_freed_memory_promptly();
    let cli = cli::Cli::parse(); // usage errors: clap's own message and exit code 2
    if let Some(what) = cli.generate {
        std::process::exit(generate::print(what, cli.command.is_some()));
    }
    let output = settings::output_from_flags(&cli);
    let settings = match settings::Settings::resolve(cli) {
        Ok(settings) => settings,
        Err(err) => {
            let style = report::Style {
                output,
                quiet: false,
                verbose: false,
                detailed_exitcode: false,
            };
            let outcome = report::Outcome::new(settings::Command::Run);
            std::process::exit(report::finish(&outcome, &Err(err), style));
        }
    };
    // The first SIGINT/SIGTERM/SIGHUP/SIGQUIT only sets a flag that the fetch, the splay and `watch`'s
    // sleep poll; a second one ends the process. The worktree update itself is never
    // interrupted half-way.
    // SAFETY: called once, before any other thread exists.
    let _ = unsafe { gix::interrupt::init_handler(1, || {}) };
    let style = report::Style {
        output: settings.output,
        quiet: settings.quiet,
        verbose: settings.verbose,
        detailed_exitcode: settings.detailed_exitcode,
    };
    std::process::exit(match (&settings.entrypoint, settings.watch) {
        (Some(_), _) => entrypoint::entrypoint(&settings, style),
        (None, Some(_)) => watch::watch(&settings, style),
        (None, None) => watch::once(&settings, style),
    });
}

/// Fixes glibc malloc's mmap and trim thresholds at their defaults (128 KiB), which also stops
/// them from sliding. By default, once a large block is freed, glibc serves blocks up to that
/// size from the heap and keeps up to twice that much free at the heap's top; a run's phases
/// each allocate and drop large buffers (pack indexing, tree diffs, the index), so about 2 MiB
/// that no phase used any more stayed resident into the next one. Measured with contrib/bench
/// (issue 7), 100-file update in the 20,000-file repository: peak RSS 12.1 -> 10.1 MiB, at a
/// cost of ~15 ms of CPU (43 -> 60 ms; 145 -> 174 ms for 1,000 files), because gitoxide
/// allocates a 380 KB zlib state for each object it adds to a thin pack, which is now mapped
/// and unmapped each time. A no-change run allocates nothing that large and is unaffected.
fn return_freed_memory_promptly() {
    // SAFETY: mallopt only sets malloc's parameters, under malloc's own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
    }
}
