//! Exit 7: an advisory flock on `<git-dir>/pullstart.lock`; a second run exits at once.

use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn run_exits_7_at_once_while_flock_holds_the_lock() {
    let t = Fixture::new();
    t.push_files(&[("app/main.py", "print('v2')\n")]);
    let head = t.head();
    let _holder = hold_lock_with_flock(&t, 30);
    let out = t.run(&["run"]);
    out.code(7).stdout_empty();
    out.error_line();
    assert!(
        out.elapsed < Duration::from_secs(3),
        "a locked run must not wait: took {:?}",
        out.elapsed
    );
    assert_eq!(t.head(), head, "a locked run must not update");
    assert!(t.restart_calls().is_empty());
}

#[test]
fn check_takes_the_lock_too() {
    let t = Fixture::new();
    t.push_files(&[("app/main.py", "print('v2')\n")]);
    let _holder = hold_lock_with_flock(&t, 30);
    let out = t.run(&["check"]);
    out.code(7);
    out.error_line();
}

#[test]
fn locked_json_result() {
    let t = Fixture::new();
    let _holder = hold_lock_with_flock(&t, 30);
    let out = t.run(&["run", "--output", "json"]);
    out.code(7);
    let j = out.json();
    assert_eq!(j["result"], "locked", "{j}");
    assert_eq!(j["exit_code"], 7, "{j}");
    assert!(j["error"].is_string(), "{j}");
}

#[test]
fn lock_is_free_again_once_the_holder_exits() {
    let t = Fixture::new();
    let tip = t.push_files(&[("app/main.py", "print('v2')\n")]);
    {
        let _holder = hold_lock_with_flock(&t, 30);
        t.run(&["run"]).code(7);
    }
    t.run(&["run"]).code(0);
    assert_eq!(t.head(), tip);
    assert_git_clean(&t, &Clean::strict());
}

#[test]
fn a_leftover_lock_file_without_a_holder_does_not_block() {
    let t = Fixture::new();
    let tip = t.push_files(&[("app/main.py", "print('v2')\n")]);
    std::fs::write(t.lock_path(), "12345\n").unwrap();
    t.run(&["run"]).code(0);
    assert_eq!(t.head(), tip);
}

#[test]
fn second_run_exits_7_while_the_first_is_restarting() {
    let t = Fixture::new();
    let tip = t.push_files(&[("app/main.py", "print('v2')\n")]);
    t.slow_restart(3.0);
    let first = t.spawn(&["run"]);
    let first = KillOnDrop(first);
    t.wait_for_restart_call(Duration::from_secs(10));

    let second = t.run(&["run"]);
    second.code(7).stdout_empty();
    assert!(
        second.elapsed < Duration::from_secs(2),
        "the second run waited: {:?}",
        second.elapsed
    );

    let mut first = first;
    let out = first.0.wait_with_output_ref();
    assert_eq!(out.code, Some(0), "first run: {}{}", out.stdout, out.stderr);
    assert_eq!(
        t.restart_calls().len(),
        1,
        "only the first run restarts: {:?}",
        t.restart_calls()
    );
    assert_eq!(t.head(), tip);
    assert_eq!(t.deployed(), Some(tip));
    assert_git_clean(&t, &Clean::strict());
}

#[test]
fn two_concurrent_runs_one_works_the_other_exits_7() {
    let t = Fixture::new();
    let tip = t.push_files(&[("app/main.py", "print('v2')\n"), ("app/new.py", "n\n")]);
    t.slow_restart(2.0);
    let start = Instant::now();
    let a = KillOnDrop(t.spawn(&["run"]));
    let b = KillOnDrop(t.spawn(&["run"]));
    let (mut a, mut b) = (a, b);
    let ra = a.0.wait_with_output_ref();
    let rb = b.0.wait_with_output_ref();
    let mut codes = vec![ra.code, rb.code];
    codes.sort();
    assert_eq!(
        codes,
        vec![Some(0), Some(7)],
        "a: {}{}\nb: {}{}",
        ra.stdout,
        ra.stderr,
        rb.stdout,
        rb.stderr
    );
    assert!(start.elapsed() < Duration::from_secs(15));
    assert_eq!(
        t.restart_calls(),
        vec![RESTART_DEFAULT.to_string()],
        "exactly one run restarts"
    );
    assert_eq!(t.head(), tip);
    assert_eq!(t.deployed(), Some(tip));
    assert_git_clean(&t, &Clean::strict());
}

/// Output of a waited-for child, taken through a mutable reference (the child stays owned by
/// its `KillOnDrop`).
pub struct Waited {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub trait WaitRef {
    fn wait_with_output_ref(&mut self) -> Waited;
}

impl WaitRef for std::process::Child {
    fn wait_with_output_ref(&mut self) -> Waited {
        use std::io::Read;
        let mut stdout = String::new();
        let mut stderr = String::new();
        if let Some(mut o) = self.stdout.take() {
            o.read_to_string(&mut stdout).unwrap();
        }
        if let Some(mut e) = self.stderr.take() {
            e.read_to_string(&mut stderr).unwrap();
        }
        let status = self.wait().unwrap();
        Waited {
            code: status.code(),
            stdout,
            stderr,
        }
    }
}
