//! Hostile trees and hooks: nothing is ever written outside the worktree or into `.git`, and
//! no git hook runs.

use std::fs;
use std::os::unix::fs::FileTypeExt;

use crate::support::*;

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn symlinked_dir_becomes_real_dir(target: impl Fn(&Fixture) -> String) {
    let t = Fixture::new();
    let outside = t.root.join("outside");
    fs::create_dir(&outside).unwrap();
    t.dev_symlink("shared", &target(&t));
    t.dev_commit("shared -> outside");
    t.push();
    t.run(&["run"]).code(0);
    assert!(fs::symlink_metadata(t.co("shared"))
        .unwrap()
        .file_type()
        .is_symlink());

    t.dev_remove("shared");
    t.dev_write("shared/config.yml", "evil: true\n");
    t.dev_write("shared/sub/deeper.txt", "deeper\n");
    t.dev_commit("shared is a real directory now");
    t.push();
    let out = t.run(&["run"]);
    out.code(0);
    assert_eq!(
        entries(&outside),
        Vec::<String>::new(),
        "something was written through the old symlink"
    );
    assert!(
        fs::symlink_metadata(t.co("shared")).unwrap().is_dir(),
        "shared must be a real directory"
    );
    assert_git_clean(&t, &Clean::strict());
}

#[test]
fn symlink_to_an_absolute_outside_directory_replaced_by_a_real_directory() {
    symlinked_dir_becomes_real_dir(|t| t.root.join("outside").display().to_string());
}

#[test]
fn symlink_to_a_relative_outside_directory_replaced_by_a_real_directory() {
    symlinked_dir_becomes_real_dir(|_| "../outside".to_string());
}

#[test]
fn symlink_inside_the_worktree_replaced_by_a_real_directory() {
    let t = Fixture::new();
    t.dev_symlink("lib", "app");
    t.dev_commit("lib -> app");
    t.push();
    t.run(&["run"]).code(0);
    let app_before = Snapshot::of(&t.co("app"));

    t.dev_remove("lib");
    t.dev_write(
        "lib/main.py",
        "would clobber app/main.py through the link\n",
    );
    t.dev_write("lib/extra.py", "extra\n");
    t.dev_commit("lib is real");
    t.push();
    t.run(&["run"]).code(0);
    app_before.assert_same(
        &Snapshot::of(&t.co("app")),
        "app/ reached through the old symlink lib",
    );
    assert_git_clean(&t, &Clean::strict());
}

#[test]
fn no_git_hooks_run() {
    let t = Fixture::new();
    let markers: Vec<_> = [
        "post-merge",
        "post-checkout",
        "post-rewrite",
        "reference-transaction",
        "pre-merge-commit",
        "post-index-change",
        "pre-auto-gc",
    ]
    .iter()
    .map(|h| t.install_hook(h))
    .collect();
    t.push_files(&[("app/main.py", "v2\n"), ("app/new.py", "n\n")]);
    t.run(&["run"]).code(0);
    for m in &markers {
        assert!(!m.exists(), "a hook ran: {}", m.display());
    }
    assert_eq!(t.head(), t.remote_tip());
    // The hooks are real: git itself runs them.
    t.git(&t.checkout, &["checkout", "-q", "-b", "probe"]);
    assert!(
        markers.iter().any(|m| m.exists()),
        "the test's hooks do not work"
    );
}

/// Pushes a commit whose root tree is HEAD's plus one crafted entry `name` -> tree holding
/// `file` with `content`. Returns the commit id.
fn push_crafted_tree(t: &Fixture, name: &str, file: &str, content: &str) -> String {
    use std::io::Write;
    let mut hash = git_cmd(&t.home, &t.dev, &["hash-object", "-w", "--stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    hash.stdin
        .take()
        .unwrap()
        .write_all(content.as_bytes())
        .unwrap();
    let blob = String::from_utf8(hash.wait_with_output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    let mktree = |input: String| -> String {
        let mut c = git_cmd(&t.home, &t.dev, &["mktree"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let sub = mktree(format!("100644 blob {blob}\t{file}\n"));
    let mut root = t.git(&t.dev, &["ls-tree", "HEAD"]);
    root.push_str(&format!("\n040000 tree {sub}\t{name}\n"));
    let root = mktree(root);
    let commit = t.git(
        &t.dev,
        &["commit-tree", &root, "-p", "HEAD", "-m", "crafted"],
    );
    t.git(
        &t.dev,
        &["push", "-q", "origin", &format!("{commit}:refs/heads/main")],
    );
    commit
}

#[test]
fn refuses_a_tree_entry_named_dot_git() {
    let t = Fixture::new();
    let config_before = fs::read(t.git_dir().join("config")).unwrap();
    let head = t.head();
    push_crafted_tree(&t, ".git", "config", "[core]\n\thooksPath = /tmp/evil\n");
    let out = t.run(&["run"]);
    assert!(
        !matches!(out.code, Some(0) | Some(10)),
        "a tree with a `.git` entry must be refused: {:?} {}",
        out.code,
        out.stderr
    );
    out.error_line();
    assert_eq!(
        fs::read(t.git_dir().join("config")).unwrap(),
        config_before,
        ".git/config was overwritten"
    );
    assert_eq!(t.head(), head);
    assert!(t.restart_calls().is_empty());
}

#[test]
fn refuses_a_tree_entry_named_dot_dot() {
    let t = Fixture::new();
    let root_before = entries(&t.root);
    let head = t.head();
    push_crafted_tree(&t, "..", "escaped.txt", "escaped\n");
    let out = t.run(&["run"]);
    assert!(
        !matches!(out.code, Some(0) | Some(10)),
        "a tree with a `..` entry must be refused: {:?} {}",
        out.code,
        out.stderr
    );
    assert!(
        !t.root.join("escaped.txt").exists(),
        "wrote outside the worktree"
    );
    let mut now = entries(&t.root);
    now.retain(|e| e != "compose.log");
    assert_eq!(now, root_before);
    assert_eq!(t.head(), head);
    assert!(t.restart_calls().is_empty());
}

/// A raw tree entry: mode, name bytes, object id.
type RawEntry<'a> = (&'a str, &'a [u8], &'a str);

/// Writes a tree object with exactly these entries (mode, name bytes, object id), in the order
/// given and unchecked, as `git mktree` would refuse to: `hash-object --literally`.
fn literal_tree(t: &Fixture, entries: &[RawEntry]) -> String {
    use std::io::Write;
    let mut data = Vec::new();
    for (mode, name, id) in entries {
        data.extend_from_slice(mode.as_bytes());
        data.push(b' ');
        data.extend_from_slice(name);
        data.push(0);
        let hex = id.as_bytes();
        for pair in hex.chunks(2) {
            let byte = u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap();
            data.push(byte);
        }
    }
    let mut hash = git_cmd(
        &t.home,
        &t.dev,
        &["hash-object", "-w", "-t", "tree", "--literally", "--stdin"],
    )
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    hash.stdin.take().unwrap().write_all(&data).unwrap();
    let out = hash.wait_with_output().unwrap();
    assert!(out.status.success(), "hash-object --literally failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Pushes (forced) a commit on top of the dev clone's HEAD whose root tree is `root`.
fn push_tree(t: &Fixture, root: &str) -> String {
    let commit = t.git(
        &t.dev,
        &["commit-tree", root, "-p", "HEAD", "-m", "crafted"],
    );
    t.git(
        &t.dev,
        &[
            "push",
            "-q",
            "--force",
            "origin",
            &format!("{commit}:refs/heads/main"),
        ],
    );
    commit
}

/// The root entries of the dev clone's HEAD as (mode, name, id), plus `extra`, sorted as git
/// sorts tree entries (a tree's name as if it ended in `/`).
fn root_with(t: &Fixture, extra: &[RawEntry]) -> String {
    let listing = t.git_bytes(&t.dev, &["ls-tree", "-z", "HEAD"]);
    let mut owned: Vec<(String, Vec<u8>, String)> = listing
        .split(|b| *b == 0)
        .filter(|r| !r.is_empty())
        .map(|r| {
            let tab = r.iter().position(|b| *b == b'\t').unwrap();
            let meta = String::from_utf8_lossy(&r[..tab]).into_owned();
            let parts: Vec<&str> = meta.split(' ').collect();
            let mode = if parts[0] == "040000" {
                "40000"
            } else {
                parts[0]
            };
            (
                mode.to_string(),
                r[tab + 1..].to_vec(),
                parts[2].to_string(),
            )
        })
        .collect();
    for (mode, name, id) in extra {
        owned.push((mode.to_string(), name.to_vec(), id.to_string()));
    }
    let key = |(mode, name, _): &(String, Vec<u8>, String)| {
        let mut k = name.clone();
        if mode == "40000" {
            k.push(b'/');
        }
        k
    };
    owned.sort_by_key(key);
    let entries: Vec<RawEntry> = owned
        .iter()
        .map(|(m, n, i)| (m.as_str(), n.as_slice(), i.as_str()))
        .collect();
    literal_tree(t, &entries)
}

fn blob(t: &Fixture, content: &str) -> String {
    write_file(&t.dev, ".crafted-blob", content);
    let id = t.git(&t.dev, &["hash-object", "-w", ".crafted-blob"]);
    std::fs::remove_file(t.dev.join(".crafted-blob")).unwrap();
    id
}

#[test]
fn tree_entry_names_git_would_refuse_are_refused_with_exit_2_touching_nothing() {
    let t = Fixture::new();
    t.run(&["run"]).code(0);
    let payload = blob(&t, "pushed content\n");
    let inner = literal_tree(&t, &[("100644", b"config", &payload)]);
    // (An empty name cannot be pushed: git's pack-objects refuses it. The unit tests of
    // `plan::unsafe_name` cover it, and NUL, which a tree object cannot hold in a name.)
    let cases: Vec<(&str, Vec<RawEntry>)> = vec![
        // A name with `/` beside the real `app` directory: the index would get two entries
        // for `app/main.py`.
        ("slash", vec![("100644", b"app/main.py", &payload)]),
        (
            "slash at the root",
            vec![("100644", b"/etc-passwd", &payload)],
        ),
        ("dot", vec![("40000", b".", &inner)]),
        ("dot dot", vec![("40000", b"..", &inner)]),
        (".Git", vec![("40000", b".Git", &inner)]),
        ("NTFS .git", vec![("40000", b"GIT~1", &inner)]),
    ];
    for (what, extra) in cases {
        let root = root_with(&t, &extra);
        push_tree(&t, &root);
        let before = crate::refusals::Untouched::capture(&t);
        let check = t.run(&["check"]);
        check.code(2);
        let out = t.run(&["run"]);
        out.code(2).stdout_empty();
        let line = out.error_line();
        assert!(line.contains("git would never check out"), "{what}: {line}");
        before.assert(&t);
        assert!(
            !t.git_dir().join("pullstart-journal").exists(),
            "{what}: a journal was left"
        );
        // (No `git fsck` here: the fetched bad tree is in the object store, as `git fetch`
        // would have put it there, and fsck names it. The index and worktree are untouched.)
    }
    // A fixing push goes through.
    t.git(
        &t.dev,
        &["push", "-q", "--force", "origin", "HEAD:refs/heads/main"],
    );
    t.push_files(&[("app/main.py", "print('fixed')\n")]);
    t.run(&["run"]).code(0);
    // The refused trees are still in the object store (fetched, as `git fetch` would), where
    // `git fsck` names them; once nothing refers to them they go, as with git.
    t.git(
        &t.checkout,
        &[
            "reflog",
            "expire",
            "--expire=now",
            "refs/remotes/origin/main",
        ],
    );
    t.git(
        &t.checkout,
        &[
            "-c",
            "gc.reflogExpire=never",
            "-c",
            "gc.reflogExpireUnreachable=never",
            "gc",
            "-q",
            "--prune=now",
        ],
    );
    assert_git_clean(&t, &Clean::strict());
}

/// Runs with a pushed tree that cannot be checked out: exit 2 from `check` and `run`, one line
/// containing `expected`, nothing touched, no journal left.
#[track_caller]
fn refused_up_front(t: &Fixture, expected: &str) {
    let before = crate::refusals::Untouched::capture(t);
    t.run(&["check"]).code(2);
    let out = t.run(&["run"]);
    out.code(2).stdout_empty();
    let line = out.error_line();
    assert!(line.contains(expected), "{line}");
    assert!(line.contains("nothing was touched"), "{line}");
    before.assert(t);
    assert!(!t.git_dir().join("pullstart-journal").exists());
}

#[test]
fn a_symlink_target_longer_than_the_system_allows_is_refused_before_any_write() {
    let t = Fixture::new();
    t.run(&["run"]).code(0);
    // Also a change that would be written before the symlink, were it not refused first.
    t.dev_remove("docs/guide.md");
    t.dev_write("app/main.py", "print('v2')\n");
    t.git(&t.dev, &["add", "-A"]);
    // No file system holds such a link, so it goes into the index by hand.
    let target = blob(&t, &"x/".repeat(2500));
    t.git(
        &t.dev,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("120000,{target},z-long"),
        ],
    );
    t.git(
        &t.dev,
        &["commit", "-q", "-m", "a symlink no file system can hold"],
    );
    t.push();
    refused_up_front(&t, "z-long");
    assert_eq!(t.co_read("docs/guide.md"), "guide\n");
}

#[test]
fn a_symlink_and_a_path_through_it_in_one_tree_are_refused_before_any_write() {
    let t = Fixture::new();
    t.run(&["run"]).code(0);
    let outside = t.root.join("outside");
    std::fs::create_dir(&outside).unwrap();
    let target = blob(&t, outside.to_str().unwrap());
    let payload = blob(&t, "written through the symlink\n");
    let inner = literal_tree(&t, &[("100644", b"x", &payload)]);
    // `evil` twice: a symlink to outside, and a directory holding `x`.
    let root = root_with(
        &t,
        &[("120000", b"evil", &target), ("40000", b"evil", &inner)],
    );
    push_tree(&t, &root);
    refused_up_front(&t, "evil");
    assert_eq!(entries(&outside), Vec::<String>::new(), "wrote outside");
}

/// Runs pullstart with `args` (plus the defaults) and fails the test, killing the run, if it
/// has not ended within `limit`: a run that blocks must fail the test, not hang it.
fn run_within(t: &Fixture, args: &[&str], limit: std::time::Duration) -> Outcome {
    let start = std::time::Instant::now();
    let mut child = t.spawn(args);
    loop {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return Outcome::from_output(
                out,
                args.iter().map(|a| a.to_string()).collect(),
                start.elapsed(),
            );
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pullstart {args:?} blocked for {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo");
    assert!(status.success());
}

#[test]
fn a_fifo_at_gitattributes_never_blocks_the_guard() {
    let t = Fixture::new();
    t.run(&["run"]).code(0);
    t.push_files(&[("app/main.py", "print('v2')\n")]);
    // The guard must hash app/main.py (its times changed), reading the attributes on the way.
    mkfifo(&t.co(".gitattributes"));
    let touched = std::process::Command::new("touch")
        .args(["-d", "2001-01-01 00:00:00"])
        .arg(t.co("app/main.py"))
        .status()
        .unwrap();
    assert!(touched.success());
    run_within(&t, &["run"], std::time::Duration::from_secs(20)).code(0);
    assert!(fs::symlink_metadata(t.co(".gitattributes"))
        .unwrap()
        .file_type()
        .is_fifo());
    fs::remove_file(t.co(".gitattributes")).unwrap();
    assert_git_clean(&t, &Clean::strict());
}

#[test]
fn a_fifo_at_a_path_the_update_changes_refuses_without_blocking() {
    let t = Fixture::new();
    t.dev_write("run.sh", "#!/bin/sh\n");
    t.dev_set_exec("run.sh", true);
    t.dev_commit("an executable");
    t.push();
    t.run(&["run"]).code(0);
    t.push_files(&[
        ("app/main.py", "print('v2')\n"),
        ("app/new.py", "new\n"),
        ("run.sh", "#!/bin/sh\necho v2\n"),
    ]);
    fs::remove_file(t.co("app/main.py")).unwrap();
    mkfifo(&t.co("app/main.py"));
    mkfifo(&t.co("app/new.py"));
    // Executable like the file it replaces: only its content can tell them apart.
    fs::remove_file(t.co("run.sh")).unwrap();
    mkfifo(&t.co("run.sh"));
    set_exec(&t.checkout, "run.sh", true);
    let out = run_within(&t, &["run"], std::time::Duration::from_secs(20));
    out.code(4);
    let line = out.error_line();
    for path in ["app/main.py", "app/new.py", "run.sh"] {
        assert!(line.contains(path), "{path}: {line}");
    }
}

/// Swaps two names in the checkout back and forth with `renameat2(RENAME_EXCHANGE)` until
/// dropped, as a process in the app's container could: the directory `data` and a symlink to
/// a directory outside the worktree change places millions of times while pullstart runs.
struct Swapper {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Swapper {
    fn start(a: &std::path::Path, b: &std::path::Path) -> Swapper {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &std::path::Path| std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        let (a, b) = (c(a), c(b));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                let done = unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                // Fails while pullstart has removed one of the names; an attacker retries.
                if done == 0 {
                    swaps += 1;
                }
            }
            swaps
        });
        Swapper {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop swapping; returns how many swaps were made.
    fn stop(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

#[test]
fn a_directory_swapped_with_a_symlink_to_outside_while_pullstart_writes_gets_nothing_outside() {
    const FILES: usize = 40;
    const PUSHES: usize = 20;
    let t = Fixture::new();
    let outside = t.root.join("outside");
    fs::create_dir(&outside).unwrap();
    // Files with the names the pushes write and delete: a write or a removal through the
    // symlink would change them.
    for i in 0..FILES {
        fs::write(outside.join(format!("f{i}.txt")), "host file\n").unwrap();
    }
    let host_files = Snapshot::of(&outside);
    for i in 0..FILES {
        t.dev_write(&format!("data/f{i}.txt"), "first\n");
    }
    t.dev_commit("data");
    t.push();
    t.run(&["run"]).code(0);
    let swap = t.co("swap");
    std::os::unix::fs::symlink(&outside, &swap).unwrap();

    let swapper = Swapper::start(&t.co("data"), &swap);
    let mut codes = Vec::new();
    for push in 0..PUSHES {
        // Every other push deletes half the files and brings them back changed.
        for i in 0..FILES {
            if push % 2 == 1 && i % 2 == 0 {
                t.dev_remove(&format!("data/f{i}.txt"));
            } else {
                t.dev_write(&format!("data/f{i}.txt"), format!("push {push}\n"));
            }
        }
        t.dev_commit(&format!("push {push}"));
        t.push();
        let out = t.run(&["run"]);
        if !matches!(out.code, Some(0 | 4)) {
            eprintln!("exit {:?}: {}", out.code, out.stderr);
        }
        codes.push(out.code);
        host_files.assert_same(
            &Snapshot::of(&outside),
            "a file outside the worktree, reached through the swapped symlink",
        );
    }
    let swaps = swapper.stop();
    eprintln!("{swaps} swaps; exit codes while racing: {codes:?}");
    assert!(swaps > 1000, "the swapper made only {swaps} swaps");
    // Put the directory back where it belongs and let pullstart finish what the race stopped.
    if fs::symlink_metadata(t.co("data")).unwrap().is_symlink() {
        fs::rename(t.co("data"), t.root.join("link")).unwrap();
        fs::rename(&swap, t.co("data")).unwrap();
        fs::rename(t.root.join("link"), &swap).unwrap();
    }
    fs::remove_file(&swap).unwrap();
    let last = t.run(&["run"]);
    assert!(
        last.code == Some(0),
        "after the race the next run finishes the update: exit {:?}, {} (codes while racing: {codes:?})",
        last.code,
        last.stderr
    );
    assert_git_clean(&t, &Clean::strict());
    host_files.assert_same(&Snapshot::of(&outside), "outside the worktree");
}
