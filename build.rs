//! Asks the linker to place the functions that pullstart's common runs execute next to each other
//! (the list is `contrib/link-order/hot-functions.txt`, made by `generate.sh` there).
//!
//! Why (issue 7): Linux maps a program's code in 64 KiB windows around each page it faults in,
//! so a run that executes ~2,000 functions spread over 5.6 MB of code makes nearly all of it
//! resident. Packed together they take ~1.4 MB, and a no-change run's peak RSS drops from 7.8
//! to 5.2 MiB (measured with contrib/bench).
//!
//! Only a linker that understands `--symbol-ordering-file` (lld, the default for this target
//! since Rust 1.90, and mold) can do this; GNU ld cannot. So this links a tiny probe program with
//! the same rustc, target, flags and linker, and passes the list on only when that probe links.
//! Any other linker builds the same pullstart, with its code in the default order.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const LIST: &str = "contrib/link-order/hot-functions.txt";

fn main() {
    println!("cargo:rerun-if-changed={LIST}");
    println!("cargo:rerun-if-changed=build.rs");
    let list = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join(LIST);
    if !list.exists() || env::var("PROFILE").as_deref() != Ok("release") {
        return;
    }
    let args = [
        format!("-Wl,--symbol-ordering-file={}", list.display()),
        // The list outlives code changes: a function it names that is gone is no error.
        "-Wl,--no-warn-symbol-ordering".to_string(),
    ];
    if probe_links(&args) {
        for arg in args {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
    } else {
        println!(
            "cargo:warning=the linker does not take --symbol-ordering-file: pullstart's code is \
             linked in the default order, which costs some memory (see {LIST})"
        );
    }
}

/// Whether an empty program links with `link_args` added, built as cargo builds this crate.
fn probe_links(link_args: &[String]) -> bool {
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let source = out_dir.join("link_order_probe.rs");
    if std::fs::write(&source, "fn main() {}\n").is_err() {
        return false;
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let mut probe = Command::new(rustc);
    probe
        .arg("--crate-type=bin")
        .arg("--target")
        .arg(env::var("TARGET").unwrap())
        .arg("-o")
        .arg(out_dir.join("link_order_probe"))
        .arg(&source);
    if let Ok(linker) = env::var("RUSTC_LINKER") {
        probe.arg("-C").arg(format!("linker={linker}"));
    }
    // The flags cargo passes to rustc (RUSTFLAGS, build.rustflags), which may pick the linker.
    if let Ok(flags) = env::var("CARGO_ENCODED_RUSTFLAGS") {
        probe.args(flags.split('\x1f').filter(|flag| !flag.is_empty()));
    }
    for arg in link_args {
        probe.arg("-C").arg(format!("link-arg={arg}"));
    }
    probe
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
