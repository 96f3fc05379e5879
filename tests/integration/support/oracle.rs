//! Git is the oracle: after a run, the checkout must look exactly like git says it should.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::{git_cmd, Fixture};

/// What `assert_git_clean` tolerates on purpose.
#[derive(Clone, Debug)]
pub struct Clean {
    /// Untracked (and ignored) files the test left in the worktree.
    pub untracked_ok: bool,
    /// Paths with local changes (worktree or index) that the update did not touch and that must
    /// therefore still be there: they are excluded from the tree comparison and must be exactly
    /// the paths `git status` reports as changed.
    pub local: Vec<Vec<u8>>,
    /// The checked-out branch.
    pub branch: String,
    /// The remote branch HEAD must equal.
    pub remote_branch: String,
}

impl Clean {
    pub fn strict() -> Clean {
        Clean {
            untracked_ok: false,
            local: vec![],
            branch: "main".into(),
            remote_branch: "main".into(),
        }
    }
    pub fn untracked() -> Clean {
        Clean {
            untracked_ok: true,
            ..Clean::strict()
        }
    }
    pub fn local(mut self, path: &str) -> Clean {
        self.local.push(path.as_bytes().to_vec());
        self
    }
    pub fn branch(mut self, local: &str, remote: &str) -> Clean {
        self.branch = local.into();
        self.remote_branch = remote.into();
        self
    }
}

fn split_z(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| s.to_vec())
        .collect()
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// A tree or index entry: (mode, object id, path).
type Entry = (String, String, Vec<u8>);

/// `git ls-tree -r -z <rev>` as (mode, id, path).
pub fn ls_tree(t: &Fixture, dir: &Path, rev: &str) -> Vec<Entry> {
    let out = t.git_bytes(dir, &["ls-tree", "-r", "-z", rev]);
    split_z(&out)
        .into_iter()
        .map(|rec| {
            let tab = rec.iter().position(|b| *b == b'\t').unwrap();
            let meta = show(&rec[..tab]);
            let mut it = meta.split(' ');
            let mode = it.next().unwrap().to_string();
            let _kind = it.next().unwrap();
            let id = it.next().unwrap().to_string();
            (mode, id, rec[tab + 1..].to_vec())
        })
        .collect()
}

/// `git ls-files -s -z` as (mode, id, path), stage 0 asserted.
pub fn ls_files(t: &Fixture, dir: &Path) -> Vec<Entry> {
    let out = t.git_bytes(dir, &["ls-files", "-s", "-z"]);
    split_z(&out)
        .into_iter()
        .map(|rec| {
            let tab = rec.iter().position(|b| *b == b'\t').unwrap();
            let meta = show(&rec[..tab]);
            let parts: Vec<&str> = meta.split(' ').collect();
            assert_eq!(
                parts[2],
                "0",
                "unmerged index entry {}",
                show(&rec[tab + 1..])
            );
            (
                parts[0].to_string(),
                parts[1].to_string(),
                rec[tab + 1..].to_vec(),
            )
        })
        .collect()
}

/// Reads many blobs at once with `git cat-file --batch`.
pub fn read_blobs(t: &Fixture, dir: &Path, ids: &[String]) -> BTreeMap<String, Vec<u8>> {
    let mut child = git_cmd(&t.home, dir, &["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input: String = ids.iter().map(|id| format!("{id}\n")).collect();
    let writer = std::thread::spawn(move || {
        stdin.write_all(input.as_bytes()).unwrap();
    });
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    writer.join().unwrap();
    assert!(child.wait().unwrap().success());
    let mut map = BTreeMap::new();
    let mut pos = 0;
    for id in ids {
        let nl = pos + out[pos..].iter().position(|b| *b == b'\n').unwrap();
        let header = show(&out[pos..nl]);
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 3, "cat-file header {header:?}");
        let size: usize = parts[2].parse().unwrap();
        let body = out[nl + 1..nl + 1 + size].to_vec();
        pos = nl + 1 + size + 1;
        map.insert(id.clone(), body);
    }
    map
}

/// The last 20 bytes of the index are the SHA-1 of everything before them (`sha1sum` computes
/// it: the tests need no hashing crate of their own).
#[track_caller]
pub fn assert_index_checksum(index: &Path) {
    let bytes = std::fs::read(index).expect("read the index");
    assert!(bytes.len() > 20, "the index is too short");
    let (content, trailer) = bytes.split_at(bytes.len() - 20);
    let mut sha1sum = std::process::Command::new("sha1sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha1sum");
    sha1sum.stdin.take().unwrap().write_all(content).unwrap();
    let output = sha1sum.wait_with_output().unwrap();
    let computed = String::from_utf8_lossy(&output.stdout);
    let recorded: String = trailer.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        computed.split_whitespace().next(),
        Some(recorded.as_str()),
        "the index's trailing checksum does not match its content"
    );
}

/// Checks the checkout with git's own eyes after a successful update:
/// - `git diff-files` (which does not refresh the index) reports nothing: the index holds fresh
///   stat data for what pullstart wrote;
/// - `git status --porcelain` is empty (untracked files aside when tolerated, and the paths the
///   test changed locally on purpose, which must be exactly those reported);
/// - `git ls-files -s` equals `git ls-tree -r HEAD` (mode, id, path);
/// - every file's bytes and executable bit, and every symlink's target, match the commit;
/// - `git fsck` passes, and the index's trailing checksum is right;
/// - the branch is checked out, HEAD equals the remote branch tip, and the branch reflog's
///   newest entry starts with `pullstart: fast-forward`.
#[track_caller]
pub fn assert_git_clean(t: &Fixture, clean: &Clean) {
    let dir = &t.checkout;
    let local: BTreeSet<Vec<u8>> = clean.local.iter().cloned().collect();

    // 1. The index's stat data matches the worktree without a refresh.
    let stale: BTreeSet<Vec<u8>> = split_z(&t.git_bytes(dir, &["diff-files", "--name-only", "-z"]))
        .into_iter()
        .collect();
    let stale: Vec<String> = stale.difference(&local).map(|p| show(p)).collect();
    assert!(
        stale.is_empty(),
        "`git diff-files` (no index refresh) reports {stale:?}: stale stat data or wrong content"
    );

    // 2. git status.
    let untracked = if clean.untracked_ok {
        "--untracked-files=no"
    } else {
        "--untracked-files=all"
    };
    let status = t.git_bytes(dir, &["status", "--porcelain=v1", "-z", untracked]);
    let reported: BTreeSet<Vec<u8>> = split_z(&status)
        .into_iter()
        .map(|rec| rec[3..].to_vec())
        .collect();
    assert_eq!(
        reported.iter().map(|p| show(p)).collect::<Vec<_>>(),
        local.iter().map(|p| show(p)).collect::<Vec<_>>(),
        "`git status --porcelain` reports other paths than the local changes the test made:\n{}",
        show(&status).replace('\0', "\n")
    );

    // 3. Index equals HEAD's tree.
    let tree: Vec<Entry> = ls_tree(t, dir, "HEAD")
        .into_iter()
        .filter(|e| !local.contains(&e.2))
        .collect();
    let index: Vec<Entry> = ls_files(t, dir)
        .into_iter()
        .filter(|e| !local.contains(&e.2))
        .collect();
    if tree != index {
        let fmt = |v: &[Entry]| {
            v.iter()
                .map(|(m, id, p)| format!("{m} {id} {}", show(p)))
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "`git ls-files -s` differs from `git ls-tree -r HEAD`\nindex:\n{}\ntree:\n{}",
            fmt(&index),
            fmt(&tree)
        );
    }

    // 4. The worktree matches the commit, byte for byte, mode for mode.
    let ids: Vec<String> = tree
        .iter()
        .filter(|e| e.0 != "160000")
        .map(|e| e.1.clone())
        .collect();
    let blobs = read_blobs(t, dir, &ids);
    for (mode, id, path) in &tree {
        let full = dir.join(OsString::from_vec(path.clone()));
        let meta = fs::symlink_metadata(&full)
            .unwrap_or_else(|e| panic!("{} missing from the worktree: {e}", show(path)));
        if mode == "160000" {
            // A submodule: git checks out an (empty) directory for it and nothing inside.
            assert!(
                meta.is_dir(),
                "{} (a submodule) should be a directory",
                show(path)
            );
            continue;
        }
        let blob = &blobs[id];
        match mode.as_str() {
            "100644" | "100755" => {
                assert!(
                    meta.file_type().is_file(),
                    "{} should be a regular file, is {:?}",
                    show(path),
                    meta.file_type()
                );
                let content = fs::read(&full).unwrap();
                assert!(
                    content == *blob,
                    "{} content differs from the commit: {:?} != {:?}",
                    show(path),
                    show(&content),
                    show(blob)
                );
                let exec = meta.mode() & 0o100 != 0;
                assert_eq!(
                    exec,
                    mode == "100755",
                    "{}: executable bit {} but git mode {mode}",
                    show(path),
                    exec
                );
            }
            "120000" => {
                assert!(
                    meta.file_type().is_symlink(),
                    "{} should be a symlink, is {:?}",
                    show(path),
                    meta.file_type()
                );
                let target = fs::read_link(&full).unwrap();
                assert_eq!(
                    target.as_os_str().as_bytes(),
                    &blob[..],
                    "{}: symlink target",
                    show(path)
                );
            }
            "160000" => {}
            other => panic!("unexpected mode {other} for {}", show(path)),
        }
    }

    // 5. fsck.
    let fsck = t.git_output(dir, &["fsck", "--no-progress", "--no-dangling"]);
    assert!(
        fsck.status.success(),
        "git fsck failed:\n{}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );

    // 5b. The index's trailing checksum: `git fsck` does not verify it, and git itself reads
    // the index without checking it, but libgit2 and `git update-index --verify` would reject
    // a wrong one.
    assert_index_checksum(&dir.join(".git/index"));

    // 6. Refs and reflog.
    let head_ref = t.git(dir, &["symbolic-ref", "HEAD"]);
    assert_eq!(
        head_ref,
        format!("refs/heads/{}", clean.branch),
        "HEAD is not on the branch"
    );
    let tip = t.rev_parse(&t.remote, &format!("refs/heads/{}", clean.remote_branch));
    assert_eq!(t.head(), tip, "HEAD does not equal the remote branch tip");
    let reflog = t.git(
        dir,
        &[
            "reflog",
            "show",
            "--format=%gs",
            "-n1",
            &format!("refs/heads/{}", clean.branch),
        ],
    );
    assert!(
        reflog.starts_with("pullstart: fast-forward"),
        "newest reflog entry of {} is {reflog:?}, expected `pullstart: fast-forward...`",
        clean.branch
    );
}

/// The repository state a refusing run or `check` must not change: HEAD, the index file, the
/// refs (remote-tracking refs excepted: a fetch may move them) and the branch reflog.
#[derive(Debug, PartialEq, Eq)]
pub struct RepoState {
    head_ref: String,
    head: Option<String>,
    index: Option<Vec<u8>>,
    refs: Vec<String>,
    reflog: Option<Vec<u8>>,
}

impl RepoState {
    /// `with_pullstart_refs`: whether `refs/pullstart/*` are part of the state (they are for
    /// `check`, which must not create the deployed ref; a refusing run may create it at HEAD).
    pub fn capture(t: &Fixture, with_pullstart_refs: bool) -> RepoState {
        let git_dir = t.git_dir();
        // Read the index before running any git command that might refresh it.
        let index = fs::read(git_dir.join("index")).ok();
        let refs = t
            .git(
                &t.checkout,
                &["for-each-ref", "--format=%(refname) %(objectname)"],
            )
            .lines()
            .filter(|l| !l.starts_with("refs/remotes/"))
            .filter(|l| with_pullstart_refs || !l.starts_with("refs/pullstart/"))
            .map(String::from)
            .collect();
        RepoState {
            head_ref: fs::read_to_string(git_dir.join("HEAD")).unwrap(),
            head: t.try_rev_parse(&t.checkout, "HEAD"),
            index,
            refs,
            reflog: fs::read(git_dir.join("logs/refs/heads/main")).ok(),
        }
    }
}

/// One worktree entry as the file system sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsEntry {
    pub kind: &'static str,
    pub mode: u32,
    pub ino: u64,
    pub mtime: (i64, i64),
    /// File content or symlink target (lossy, for readable diffs).
    pub data: String,
}

/// Every entry of a worktree (`.git` excluded), with content, mode, inode and mtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot(pub BTreeMap<PathBuf, FsEntry>);

impl Snapshot {
    pub fn of(dir: &Path) -> Snapshot {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, FsEntry>) {
            for e in fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                let path = e.path();
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                if rel.as_os_str() == ".git" {
                    continue;
                }
                let meta = fs::symlink_metadata(&path).unwrap();
                let ft = meta.file_type();
                let (kind, data) = if ft.is_symlink() {
                    (
                        "symlink",
                        fs::read_link(&path).unwrap().to_string_lossy().into_owned(),
                    )
                } else if ft.is_dir() {
                    ("dir", String::new())
                } else {
                    (
                        "file",
                        String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned(),
                    )
                };
                out.insert(
                    rel,
                    FsEntry {
                        kind,
                        mode: meta.mode(),
                        ino: meta.ino(),
                        mtime: (meta.mtime(), meta.mtime_nsec()),
                        data,
                    },
                );
                if ft.is_dir() {
                    walk(root, &path, out);
                }
            }
        }
        let mut map = BTreeMap::new();
        walk(dir, dir, &mut map);
        Snapshot(map)
    }

    /// Asserts two snapshots are identical, listing the differing entries.
    #[track_caller]
    pub fn assert_same(&self, after: &Snapshot, what: &str) {
        if self == after {
            return;
        }
        let mut diffs = vec![];
        let keys: BTreeSet<&PathBuf> = self.0.keys().chain(after.0.keys()).collect();
        for k in keys {
            let (a, b) = (self.0.get(k), after.0.get(k));
            if a != b {
                diffs.push(format!(
                    "{}:\n  before {:?}\n  after  {:?}",
                    k.display(),
                    a,
                    b
                ));
            }
        }
        panic!("{what}: the worktree changed:\n{}", diffs.join("\n"));
    }

    /// Asserts two worktrees hold the same entries with the same kind, content, symlink target
    /// and executable bit (inodes and times aside).
    #[track_caller]
    pub fn assert_same_content(&self, other: &Snapshot) {
        let view = |s: &Snapshot| -> BTreeMap<PathBuf, (&'static str, bool, String)> {
            s.0.iter()
                .map(|(p, e)| {
                    (
                        p.clone(),
                        (
                            e.kind,
                            e.kind == "file" && e.mode & 0o100 != 0,
                            e.data.clone(),
                        ),
                    )
                })
                .collect()
        };
        let (a, b) = (view(self), view(other));
        if a != b {
            let keys: BTreeSet<&PathBuf> = a.keys().chain(b.keys()).collect();
            let diffs: Vec<String> = keys
                .into_iter()
                .filter(|k| a.get(*k) != b.get(*k))
                .map(|k| format!("{}: {:?} vs {:?}", k.display(), a.get(k), b.get(k)))
                .collect();
            panic!("worktrees differ:\n{}", diffs.join("\n"));
        }
    }

    /// Asserts every file and symlink of `self` outside `changed` (paths, or directories holding
    /// them) is still there in `after` with the same content, mode, inode and mtime.
    #[track_caller]
    pub fn assert_untouched_except(&self, after: &Snapshot, changed: &[&str]) {
        for (path, before) in &self.0 {
            if before.kind == "dir" {
                continue;
            }
            let p = path.to_string_lossy();
            if changed
                .iter()
                .any(|c| p == *c || p.starts_with(&format!("{c}/")))
            {
                continue;
            }
            let now = after
                .0
                .get(path)
                .unwrap_or_else(|| panic!("untouched {p} disappeared"));
            assert_eq!(
                before, now,
                "untouched {p} changed (content, mode, inode or mtime)"
            );
        }
    }
}
