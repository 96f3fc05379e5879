//! Named fail points for fault-injection tests, compiled in only with the `failpoints` feature.
//!
//! `PULLSTART_FAILPOINT=name` aborts the process (like `kill -9`: no cleanup, no unwinding) the
//! first time the point is hit; `name:N` at the N-th hit (for points inside loops). Without the
//! feature every call is an empty inline function.

#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static HITS: AtomicUsize = AtomicUsize::new(0);
    let Ok(spec) = std::env::var("PULLSTART_FAILPOINT") else {
        return;
    };
    let (target, nth) = match spec.split_once(':') {
        Some((target, n)) => (target.to_string(), n.parse::<usize>().unwrap_or(1)),
        None => (spec.clone(), 1),
    };
    if target != name {
        return;
    }
    if HITS.fetch_add(1, Ordering::SeqCst) + 1 == nth {
        eprintln!("pullstart: fail point `{name}` reached: aborting");
        std::process::abort();
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}
