//! Soak (issue 6): a long seeded sequence of random pushes (adds, modifies, deletes, renames,
//! file <-> directory, symlinks, executable bits), local edits on the server (untracked files,
//! edited tracked files, and their removal), restart failures and runs. After every run the
//! checkout is compared with a model: the exit code (0, 4 or 6), HEAD, the deployed ref, the
//! restarts, every tracked path against `git ls-tree HEAD`, every local change still there, and
//! `git status` reporting exactly the local changes. At the end nothing is left behind: no
//! temporary files, no journal, no lock files.
//!
//! The always-on test plays 200 steps with a fixed seed (well under a minute). Longer runs:
//!
//!     PULLSTART_SOAK_STEPS=5000 PULLSTART_SOAK_SEED=123 cargo test --test integration soak -- --nocapture
//!
//! A failure prints the seed, the step and the steps before it, so it can be replayed.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::panic::AssertUnwindSafe;
use std::path::Path;

use crate::support::oracle::{ls_tree, read_blobs};
use crate::support::*;

/// xorshift64*: a seeded sequence without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }
}

/// Few names, used for files and directories alike, so that paths collide: a file becomes a
/// directory, an untracked file sits where an update adds one, and so on.
const NAMES: &[&str] = &["a", "b", "c", "d.txt", "e"];
const LINK_TARGETS: &[&str] = &["a", "../b", "c/d.txt", "nowhere", "."];

fn random_path(rng: &mut Rng) -> String {
    let depth = 1 + rng.below(3);
    (0..depth)
        .map(|_| *rng.pick(NAMES).unwrap())
        .collect::<Vec<_>>()
        .join("/")
}

/// The ancestors of `path` ("a/b/c" -> ["a", "a/b"]).
fn ancestors(path: &str) -> Vec<&str> {
    path.match_indices('/').map(|(i, _)| &path[..i]).collect()
}

fn is_ancestor(dir: &str, path: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

/// Makes room for a new entry at `path` in a worktree: ancestors that are not directories and
/// whatever is at `path` itself are removed (the file <-> directory and symlink changes).
fn make_room(root: &Path, path: &str) {
    for dir in ancestors(path) {
        let full = root.join(dir);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => fs::remove_file(&full).unwrap(),
            Err(_) => {}
        }
    }
    let full = root.join(path);
    match fs::symlink_metadata(&full) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(&full).unwrap(),
        Ok(_) => fs::remove_file(&full).unwrap(),
        Err(_) => {}
    }
    if let Some(parent) = full.parent() {
        fs::create_dir_all(parent).unwrap();
    }
}

/// What the test did to the checkout on purpose, which every run must leave alone.
#[derive(Default)]
struct Local {
    /// Tracked regular files edited on the server: path -> content.
    edited: BTreeMap<String, Vec<u8>>,
    /// Untracked files: path -> content.
    untracked: BTreeMap<String, Vec<u8>>,
}

struct Model {
    head: String,
    deployed: String,
    restart_fails: bool,
    local: Local,
}

struct Soak {
    t: Fixture,
    rng: Rng,
    model: Model,
    counter: usize,
    history: Vec<String>,
    runs: usize,
    refusals: usize,
    restart_failures: usize,
    restarts: usize,
}

impl Soak {
    fn new(seed: u64) -> Soak {
        let t = Fixture::new();
        t.run(&["run"]).code(0).silent();
        let head = t.head();
        Soak {
            model: Model {
                head: head.clone(),
                deployed: head,
                restart_fails: false,
                local: Local::default(),
            },
            t,
            rng: Rng(seed.max(1)),
            counter: 0,
            history: vec![],
            runs: 0,
            refusals: 0,
            restart_failures: 0,
            restarts: 0,
        }
    }

    fn unique(&mut self, what: &str) -> String {
        self.counter += 1;
        format!("{what} {}\n", self.counter)
    }

    fn log(&mut self, entry: String) {
        self.history.push(entry);
    }

    // ----- pushes -----

    /// The dev clone's files and symlinks as they are now (uncommitted operations included).
    fn dev_tracked(&self) -> Vec<String> {
        walk(&self.t.dev)
            .into_iter()
            .filter(|p| !p.starts_with(".git/"))
            .collect()
    }

    fn push(&mut self) {
        let ops = 1 + self.rng.below(4);
        let mut done = vec![];
        for _ in 0..ops {
            let tracked = self.dev_tracked();
            let dev = self.t.dev.clone();
            let files: Vec<String> = tracked
                .iter()
                .filter(|p| fs::symlink_metadata(dev.join(p)).is_ok_and(|m| m.is_file()))
                .cloned()
                .collect();
            match self.rng.below(7) {
                0 | 1 => {
                    let path = random_path(&mut self.rng);
                    let content = self.unique("added");
                    make_room(&dev, &path);
                    fs::write(dev.join(&path), content).unwrap();
                    done.push(format!("add {path}"));
                }
                2 => {
                    if let Some(path) = self.rng.pick(&files).cloned() {
                        let content = self.unique("modified");
                        fs::write(dev.join(&path), content).unwrap();
                        if self.rng.chance(25) {
                            let mode = fs::metadata(dev.join(&path)).unwrap().mode();
                            fs::set_permissions(
                                dev.join(&path),
                                fs::Permissions::from_mode(mode ^ 0o111),
                            )
                            .unwrap();
                        }
                        done.push(format!("modify {path}"));
                    }
                }
                3 => {
                    if let Some(path) = self.rng.pick(&tracked).cloned() {
                        fs::remove_file(dev.join(&path)).unwrap();
                        done.push(format!("delete {path}"));
                    }
                }
                4 => {
                    if let Some(from) = self.rng.pick(&files).cloned() {
                        let to = random_path(&mut self.rng);
                        let content = fs::read(dev.join(&from)).unwrap();
                        fs::remove_file(dev.join(&from)).unwrap();
                        make_room(&dev, &to);
                        fs::write(dev.join(&to), content).unwrap();
                        done.push(format!("rename {from} -> {to}"));
                    }
                }
                5 => {
                    let path = random_path(&mut self.rng);
                    let target = *self.rng.pick(LINK_TARGETS).unwrap();
                    make_room(&dev, &path);
                    std::os::unix::fs::symlink(target, dev.join(&path)).unwrap();
                    done.push(format!("symlink {path} -> {target}"));
                }
                _ => {
                    // A whole directory goes.
                    let dirs: BTreeSet<&str> = tracked.iter().flat_map(|p| ancestors(p)).collect();
                    let dirs: Vec<&str> = dirs.into_iter().collect();
                    if let Some(dir) = self.rng.pick(&dirs).map(|d| d.to_string()) {
                        fs::remove_dir_all(dev.join(&dir)).unwrap();
                        done.push(format!("delete dir {dir}"));
                    }
                }
            }
        }
        // Always some new content, so that the commit changes something.
        let content = self.unique("touched");
        fs::write(self.t.dev.join("touched.txt"), content).unwrap();
        let tip = self.t.dev_commit("soak");
        self.t.push();
        self.log(format!("push {}: {}", &tip[..7], done.join(", ")));
    }

    // ----- local changes on the server -----

    fn checkout_files(&self) -> Vec<String> {
        let co = &self.t.checkout;
        split_z(&self.t.git_bytes(co, &["ls-files", "-z"]))
            .into_iter()
            .filter(|p| fs::symlink_metadata(co.join(p)).is_ok_and(|m| m.is_file()))
            .collect()
    }

    fn local_change(&mut self) {
        let co = self.t.checkout.clone();
        match self.rng.below(5) {
            0 | 1 => {
                // An untracked file, only where that needs no tracked entry moved.
                let path = random_path(&mut self.rng);
                let placeable =
                    ancestors(&path)
                        .iter()
                        .all(|d| match fs::symlink_metadata(co.join(d)) {
                            Ok(m) => m.is_dir(),
                            Err(_) => true,
                        })
                        && fs::symlink_metadata(co.join(&path)).is_err();
                if placeable {
                    let content = self.unique("untracked").into_bytes();
                    fs::create_dir_all(co.join(&path).parent().unwrap()).unwrap();
                    fs::write(co.join(&path), &content).unwrap();
                    self.model.local.untracked.insert(path.clone(), content);
                    self.log(format!("local: untracked {path}"));
                }
            }
            2 => {
                let files: Vec<String> = self
                    .checkout_files()
                    .into_iter()
                    .filter(|p| !self.model.local.edited.contains_key(p))
                    .collect();
                if let Some(path) = self.rng.pick(&files).cloned() {
                    let content = self.unique("local edit").into_bytes();
                    fs::write(co.join(&path), &content).unwrap();
                    self.model.local.edited.insert(path.clone(), content);
                    self.log(format!("local: edit {path}"));
                }
            }
            _ => self.resolve_one(None),
        }
    }

    /// Undo one local change (a random one, or `only` among the given paths).
    fn resolve_one(&mut self, only: Option<&BTreeSet<String>>) {
        let mut all: Vec<String> = self
            .model
            .local
            .edited
            .keys()
            .chain(self.model.local.untracked.keys())
            .cloned()
            .collect();
        if let Some(only) = only {
            all.retain(|p| only.contains(p));
        }
        let Some(path) = self.rng.pick(&all).cloned() else {
            return;
        };
        let co = self.t.checkout.clone();
        if self.model.local.edited.remove(&path).is_some() {
            self.t.git(&co, &["checkout", "--", &path]);
            self.log(format!("local: revert {path}"));
        } else {
            self.model.local.untracked.remove(&path);
            fs::remove_file(co.join(&path)).unwrap();
            // Directories that held only it go too (git does not see empty directories).
            for dir in ancestors(&path).into_iter().rev() {
                if fs::remove_dir(co.join(dir)).is_err() {
                    break;
                }
            }
            self.log(format!("local: remove {path}"));
        }
    }

    // ----- runs -----

    fn tree(&self, rev: &str) -> String {
        self.t.rev_parse(&self.t.remote, &format!("{rev}^{{tree}}"))
    }

    fn diff(&self, from: &str, to: &str) -> Vec<String> {
        split_z(&self.t.git_bytes(
            &self.t.remote,
            &["diff", "--name-only", "--no-renames", "-z", from, to],
        ))
    }

    /// The local changes that block moving HEAD to `tip`, as git's (and pullstart's) rules say.
    fn conflicts(&self, tip: &str) -> BTreeSet<String> {
        let changed = self.diff(&self.model.head, tip);
        let mut blocked = BTreeSet::new();
        for edited in self.model.local.edited.keys() {
            if changed.contains(edited) {
                blocked.insert(edited.clone());
            }
        }
        for untracked in self.model.local.untracked.keys() {
            if changed
                .iter()
                .any(|c| c == untracked || is_ancestor(c, untracked) || is_ancestor(untracked, c))
            {
                blocked.insert(untracked.clone());
            }
        }
        blocked
    }

    /// Whether a run that reaches the restart restarts: the run's changed paths (deployed..tip,
    /// plus deployed..HEAD when the last action failed) are not empty.
    fn needs_restart(&self, tip: &str) -> bool {
        let m = &self.model;
        if m.deployed == tip {
            return false;
        }
        let tip_tree = self.tree(tip);
        if m.deployed == m.head {
            self.tree(&m.head) != tip_tree
        } else {
            self.tree(&m.deployed) != self.tree(&m.head) || self.tree(&m.head) != tip_tree
        }
    }

    fn run(&mut self) {
        let tip = self.t.remote_tip();
        let conflicts = if self.model.head != tip {
            self.conflicts(&tip)
        } else {
            BTreeSet::new()
        };
        let (code, restarts) = if !conflicts.is_empty() {
            (4, 0)
        } else if self.needs_restart(&tip) {
            (if self.model.restart_fails { 6 } else { 0 }, 1)
        } else {
            (0, 0)
        };
        self.t.clear_compose_log();
        let out = self.t.run(&["run"]);
        self.runs += 1;
        self.log(format!(
            "run: expect exit {code} ({restarts} restarts), got {:?}: {}",
            out.code,
            out.stderr.trim()
        ));
        out.code(code);
        let calls = self.t.restart_calls();
        assert_eq!(calls.len(), restarts, "restart calls {calls:?}");
        match code {
            4 => {
                self.refusals += 1;
                let line = out.error_line();
                if conflicts.len() <= 5 {
                    // The message names the blocking paths ("path (reason)"), or for untracked
                    // content inside a directory the update replaces, that directory.
                    for path in &conflicts {
                        let named = std::iter::once(path.as_str())
                            .chain(ancestors(path))
                            .any(|p| line.contains(&format!("{p} (")));
                        assert!(named, "refusal does not name {path}: {line}");
                    }
                }
            }
            6 => {
                self.restart_failures += 1;
                self.model.head = tip;
            }
            _ => {
                self.model.head = tip.clone();
                self.model.deployed = tip;
            }
        }
        self.restarts += restarts;
        self.check();
    }

    /// The checkout against the model: refs, every tracked path, every local change, and what
    /// git reports.
    fn check(&self) {
        let t = &self.t;
        let co = &t.checkout;
        assert_eq!(t.head(), self.model.head, "HEAD");
        assert_eq!(
            t.deployed().as_deref(),
            Some(self.model.deployed.as_str()),
            "deployed ref"
        );
        let local = &self.model.local;

        // Stat data is fresh for everything but the edited files (before `git status` refreshes).
        let stale: BTreeSet<String> =
            split_z(&t.git_bytes(co, &["diff-files", "--name-only", "-z"]))
                .into_iter()
                .collect();
        let edited: BTreeSet<String> = local.edited.keys().cloned().collect();
        assert_eq!(
            stale, edited,
            "`git diff-files` (stale stat data or changed content)"
        );

        // `git status` reports exactly the local changes.
        let status = t.git_bytes(
            co,
            &["status", "--porcelain=v1", "-z", "--untracked-files=all"],
        );
        let reported: BTreeSet<String> = split_z(&status).into_iter().collect();
        let expected: BTreeSet<String> = local
            .edited
            .keys()
            .map(|p| format!(" M {p}"))
            .chain(local.untracked.keys().map(|p| format!("?? {p}")))
            .collect();
        assert_eq!(reported, expected, "`git status --porcelain`");

        // Every tracked path is what HEAD's tree says, or the local edit.
        let tree = ls_tree(t, co, "HEAD");
        let ids: Vec<String> = tree.iter().map(|e| e.1.clone()).collect();
        let blobs = read_blobs(t, co, &ids);
        for (mode, id, path) in &tree {
            let name = String::from_utf8(path.clone()).unwrap();
            let full = co.join(OsString::from_vec(path.clone()));
            let meta =
                fs::symlink_metadata(&full).unwrap_or_else(|e| panic!("{name} missing: {e}"));
            if let Some(content) = local.edited.get(&name) {
                assert_eq!(&fs::read(&full).unwrap(), content, "{name}: the local edit");
                continue;
            }
            match mode.as_str() {
                "100644" | "100755" => {
                    assert!(meta.is_file(), "{name} is not a file");
                    assert_eq!(fs::read(&full).unwrap(), blobs[id], "{name}: content");
                    assert_eq!(
                        meta.mode() & 0o100 != 0,
                        mode == "100755",
                        "{name}: executable bit"
                    );
                }
                "120000" => {
                    assert!(meta.file_type().is_symlink(), "{name} is not a symlink");
                    assert_eq!(
                        fs::read_link(&full).unwrap().into_os_string().into_vec(),
                        blobs[id],
                        "{name}: target"
                    );
                }
                other => panic!("{name}: unexpected mode {other}"),
            }
        }
        for (path, content) in &local.untracked {
            assert_eq!(
                &fs::read(co.join(path)).unwrap_or_default(),
                content,
                "untracked {path}"
            );
        }
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..=34 => self.push(),
            35..=59 => self.local_change(),
            60..=67 => {
                self.model.restart_fails = !self.model.restart_fails;
                if self.model.restart_fails {
                    self.t.fail_restart(1, "compose: service failed to start\n");
                } else {
                    self.t.heal_restart();
                }
                self.log(format!(
                    "restart now {}",
                    if self.model.restart_fails {
                        "fails"
                    } else {
                        "works"
                    }
                ));
            }
            _ => {
                self.run();
                // A refusal is usually answered: the operator removes one blocking change.
                if self.model.head != self.t.remote_tip() && self.rng.chance(80) {
                    let tip = self.t.remote_tip();
                    let conflicts = self.conflicts(&tip);
                    if !conflicts.is_empty() {
                        self.resolve_one(Some(&conflicts));
                    }
                }
            }
        }
    }

    /// Undo every local change, let the restart work, run once more: the checkout converges and
    /// nothing is left behind.
    fn finish(&mut self) {
        while !(self.model.local.edited.is_empty() && self.model.local.untracked.is_empty()) {
            self.resolve_one(None);
        }
        self.t.heal_restart();
        self.model.restart_fails = false;
        self.run();
        assert_eq!(self.model.head, self.t.remote_tip());
        assert_git_clean(&self.t, &Clean::strict());
        let leftovers: Vec<String> = walk(&self.t.checkout)
            .into_iter()
            .filter(|p| {
                let name = p.rsplit('/').next().unwrap();
                (name.starts_with('.') && name.contains(".pullstart-") && name.ends_with(".tmp"))
                    || (p.starts_with(".git/")
                        && !p.starts_with(".git/objects/")
                        && name != "pullstart.lock"
                        && (name.ends_with(".lock")
                            || name.starts_with("pullstart-journal")
                            || name.ends_with(".tmp")))
            })
            .collect();
        assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    }
}

fn split_z(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect()
}

/// Every non-directory entry under `root`, relative, with `/` separators.
fn walk(root: &Path) -> Vec<String> {
    fn go(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let path = e.path();
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                go(root, &path, out);
            } else {
                out.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let mut out = vec![];
    go(root, root, &mut out);
    out
}

fn soak(seed: u64, steps: usize) {
    let mut s = Soak::new(seed);
    let start = std::time::Instant::now();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        for i in 0..steps {
            s.log(format!("-- step {i}"));
            s.step();
        }
        s.log("-- finish".into());
        s.finish();
    }));
    if let Err(panic) = result {
        let recent = s.history.len().saturating_sub(40);
        eprintln!(
            "soak failed: seed {seed}, {steps} steps (PULLSTART_SOAK_SEED / PULLSTART_SOAK_STEPS to replay); the last steps:\n{}",
            s.history[recent..].join("\n")
        );
        std::panic::resume_unwind(panic);
    }
    eprintln!(
        "soak: seed {seed}, {steps} steps in {:?}: {} runs, {} refusals (exit 4), {} failed restarts (exit 6), {} restarts",
        start.elapsed(),
        s.runs,
        s.refusals,
        s.restart_failures,
        s.restarts
    );
    // The sequence must have exercised what it claims to.
    assert!(s.runs >= steps / 5, "too few runs: {}", s.runs);
    if steps >= 150 {
        assert!(
            s.refusals > 0 && s.restart_failures > 0,
            "no refusal or no failed restart: adjust the mix"
        );
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn soak_random_pushes_edits_failures_and_runs() {
    soak(
        env_or("PULLSTART_SOAK_SEED", 0x5eed_2024),
        env_or("PULLSTART_SOAK_STEPS", 200) as usize,
    );
}

#[test]
fn soak_another_seed() {
    // A second, shorter sequence: more shapes per second of test time.
    soak(
        env_or("PULLSTART_SOAK_SEED", 0x5eed_2024) ^ 0x9e37_79b9_7f4a_7c15,
        40,
    );
}
