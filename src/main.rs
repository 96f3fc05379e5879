//! pullstart: fetch the followed branch, fast-forward the checkout safely, restart what changed.
//!
//! A run is a pipeline of steps, one module each (see `run`):
//! settings -> lock -> fetch -> plan -> guard -> apply -> restart -> record -> report.

mod apply;
mod checkout;
mod cli;
mod exit;
mod fetch;
mod guard;
mod lock;
mod plan;
mod record;
mod redact;
mod report;
mod restart;
mod run;
mod settings;

fn main() {
    std::process::exit(0);
}
