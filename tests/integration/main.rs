//! Integration tests for pullstart: one test binary made of modules (see docs/style.md), laid
//! out as cargo's own testsuite is (`tests/<name>/main.rs` is discovered as one test target,
//! so no `[[test]]` entry is needed): `cargo test --test integration`.
//!
//! Every test builds real repositories with the git CLI in a temporary directory (a bare
//! remote, the checkout pullstart manages, and a "dev" clone that commits and pushes), runs
//! the compiled binary with a hermetic environment, and checks the result with git's own eyes.

mod support;

mod check;
mod config;
mod entrypoint;
mod exit_codes;
mod fast_forward;
mod faults;
mod first_day;
mod git_parity;
mod hooks;
mod hostile;
mod hostile_input;
mod lfs;
mod listen;
mod lock;
mod manual;
mod ops;
mod output;
mod policies;
mod refusals;
mod restart;
mod select;
mod selection_shapes;
mod signatures;
mod snapshots;
mod soak;
mod submodules;
mod transport;
mod transport_remote;
