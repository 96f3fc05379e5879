//! Tree shapes: every update is checked against git with `assert_git_clean`.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;

use crate::support::*;

/// Runs, expects an applied update to the remote tip, and checks the checkout with git.
#[track_caller]
fn update(t: &Fixture, clean: &Clean) -> Outcome {
    let out = t.run(&["run"]);
    out.code(0).stderr_empty();
    out.summary();
    assert_git_clean(t, clean);
    assert_eq!(
        t.deployed(),
        Some(t.remote_tip()),
        "deployed ref after a successful run"
    );
    out
}

#[test]
fn adds_modifies_and_deletes_files() {
    let t = Fixture::new();
    t.dev_write("app/main.py", "print('v2')\n");
    t.dev_write("app/new/handler.py", "def handle(): pass\n");
    t.dev_write(
        "static/logo.bin",
        b"\x00\x01\x02\xff binary \x00 data".as_slice(),
    );
    t.dev_write("empty.txt", "");
    t.dev_remove("docs/guide.md");
    t.dev_commit("mixed");
    t.push();
    update(&t, &Clean::strict());
    assert!(
        !t.co("docs").exists(),
        "docs/ held only the deleted file and must be gone"
    );
}

#[test]
fn renames_a_file() {
    let t = Fixture::new();
    t.git(&t.dev, &["mv", "app/settings.py", "app/config.py"]);
    t.dev_commit("rename");
    t.push();
    update(&t, &Clean::strict());
    assert!(!t.co("app/settings.py").exists());
    assert_eq!(t.co_read("app/config.py"), "DEBUG = False\n");
}

#[test]
fn renames_and_edits_a_file_across_directories() {
    let t = Fixture::new();
    t.dev_remove("app/main.py");
    t.dev_write("src/main.py", "print('hello')\nprint('moved')\n");
    t.dev_commit("move");
    t.push();
    update(&t, &Clean::strict());
}

#[test]
fn sets_and_clears_the_executable_bit() {
    let t = Fixture::with_files(&[
        ("bin/run.sh", "#!/bin/sh\necho run\n"),
        ("bin/tool", "#!/bin/sh\n"),
    ]);
    t.dev_set_exec("bin/tool", true);
    t.dev_commit("tool is executable");
    t.push();
    update(&t, &Clean::strict());

    t.dev_set_exec("bin/tool", false);
    t.dev_set_exec("bin/run.sh", true);
    t.dev_commit("swap exec bits");
    t.push();
    update(&t, &Clean::strict());
}

#[test]
fn file_becomes_symlink_and_back() {
    let t = Fixture::new();
    t.dev_symlink("app/settings.py", "main.py");
    t.dev_commit("settings is a symlink");
    t.push();
    update(&t, &Clean::strict());
    assert!(fs::symlink_metadata(t.co("app/settings.py"))
        .unwrap()
        .file_type()
        .is_symlink());

    t.dev_write("app/settings.py", "DEBUG = 3\n");
    t.dev_commit("settings is a file again");
    t.push();
    update(&t, &Clean::strict());
    assert!(fs::symlink_metadata(t.co("app/settings.py"))
        .unwrap()
        .file_type()
        .is_file());
}

#[test]
fn symlink_target_changes_and_dangling_symlinks_are_created() {
    let t = Fixture::new();
    t.dev_symlink("current", "app");
    t.dev_symlink("dangling", "does/not/exist");
    t.dev_commit("links");
    t.push();
    update(&t, &Clean::strict());
    t.dev_symlink("current", "docs");
    t.dev_commit("relink");
    t.push();
    update(&t, &Clean::strict());
}

#[test]
fn file_becomes_directory_and_back() {
    let t = Fixture::new();
    t.dev_remove("docs/guide.md");
    t.dev_write("docs/guide.md/index.md", "index\n");
    t.dev_write("docs/guide.md/deep/more.md", "more\n");
    t.dev_commit("file -> dir");
    t.push();
    update(&t, &Clean::strict());
    assert!(t.co("docs/guide.md").is_dir());

    t.dev_remove("docs/guide.md");
    t.dev_write("docs/guide.md", "a file again\n");
    t.dev_commit("dir -> file");
    t.push();
    update(&t, &Clean::strict());
    assert!(t.co("docs/guide.md").is_file());
}

#[test]
fn directory_becomes_symlink() {
    let t = Fixture::new();
    t.dev_remove("docs");
    t.dev_symlink("docs", "app");
    t.dev_commit("docs -> app");
    t.push();
    update(&t, &Clean::strict());
    // The old directory's files must not have been deleted through the new symlink.
    assert_eq!(t.co_read("app/main.py"), "print('hello')\n");
}

#[test]
fn removes_emptied_nested_directories() {
    let t = Fixture::with_files(&[
        ("README.md", "r\n"),
        ("a/b/c/d.txt", "d\n"),
        ("x/y/z.txt", "z\n"),
        ("x/keep.txt", "k\n"),
    ]);
    t.dev_remove("a");
    t.dev_remove("x/y");
    t.dev_commit("remove nested");
    t.push();
    update(&t, &Clean::strict());
    assert!(
        !t.co("a").exists(),
        "a/b/c is empty after the update and must be removed up to a/"
    );
    assert!(!t.co("x/y").exists(), "x/y is empty and must be removed");
    assert!(
        t.co("x/keep.txt").is_file(),
        "x/ still holds a tracked file"
    );
}

#[test]
fn keeps_a_directory_still_holding_an_untracked_file() {
    let t = Fixture::with_files(&[("README.md", "r\n"), ("logs/app/readme.txt", "tracked\n")]);
    t.co_write("logs/app/today.log", "local log\n");
    t.dev_remove("logs");
    t.dev_commit("untrack logs");
    t.push();
    update(&t, &Clean::untracked());
    assert!(!t.co("logs/app/readme.txt").exists());
    assert_eq!(
        t.co_read("logs/app/today.log"),
        "local log\n",
        "the untracked file stays, with its directories"
    );
}

#[test]
fn handles_a_non_utf8_file_name() {
    let t = Fixture::new();
    let name = OsStr::from_bytes(b"data/caf\xe9-\xff.txt");
    write_file_os(&t.dev, name, "latin-1 name\n");
    t.dev_commit("non-utf8 name");
    t.push();
    update(&t, &Clean::strict());
    assert_eq!(fs::read(t.checkout.join(name)).unwrap(), b"latin-1 name\n");

    write_file_os(&t.dev, name, "changed\n");
    t.dev_commit("change it");
    t.push();
    update(&t, &Clean::strict());

    fs::remove_file(t.dev.join(name)).unwrap();
    t.dev_commit("remove it");
    t.push();
    update(&t, &Clean::strict());
    assert!(!t.checkout.join(name).exists());
}

#[test]
fn handles_file_names_with_spaces() {
    let t = Fixture::new();
    t.dev_write("my docs/read me.md", "spaces\n");
    t.dev_write("odd/ünïcødé.txt", "unicode\n");
    t.dev_commit("names with spaces");
    t.push();
    update(&t, &Clean::strict());
    t.git(
        &t.dev,
        &["mv", "my docs/read me.md", "my docs/read  me too.md"],
    );
    t.dev_commit("rename with spaces");
    t.push();
    update(&t, &Clean::strict());
    assert!(!t.co("my docs/read me.md").exists());
}

#[test]
fn handles_file_names_git_checks_out_on_linux() {
    // Quotes, a tab, a colon, a question mark, a trailing dot: forbidden on Windows, ordinary
    // on Linux, where git checks them out (core.protectNTFS guards only NTFS tricks such as
    // `.git::$INDEX_ALLOCATION` or `GIT~1`).
    let t = Fixture::new();
    t.dev_write("odd/tab\there.txt", "tab\n");
    t.dev_write("odd/quote\"and'apos.txt", "quotes\n");
    t.dev_write("odd/time 12:00?.txt", "colon\n");
    t.dev_write("odd/trailing.", "dot\n");
    t.dev_commit("odd names");
    t.push();
    update(&t, &Clean::strict());
}

#[test]
fn fast_forwards_an_unborn_branch_cloned_from_an_empty_remote() {
    let t = Fixture::empty_remote();
    assert_eq!(
        t.try_rev_parse(&t.checkout, "HEAD"),
        None,
        "the checkout's branch is unborn"
    );
    t.co_write("local-notes.txt", "untracked, not in the way\n");
    t.dev_write("app/main.py", "first\n");
    t.dev_write("run.sh", "#!/bin/sh\n");
    t.dev_set_exec("run.sh", true);
    t.dev_symlink("link", "app/main.py");
    let tip = t.dev_commit("first commit");
    t.push();
    let out = t.run(&["run"]);
    out.code(0).stderr_empty();
    let s = out.summary();
    assert!(tip.starts_with(&s.to), "{}", s.line);
    assert_git_clean(&t, &Clean::untracked());
    assert_eq!(t.co_read("local-notes.txt"), "untracked, not in the way\n");
    assert_eq!(t.deployed(), Some(tip));
    assert_eq!(t.restart_calls(), vec![RESTART_DEFAULT.to_string()]);
}

#[test]
fn up_to_date_on_an_unborn_branch_with_an_empty_remote() {
    let t = Fixture::empty_remote();
    let out = t.run(&["run"]);
    // The remote branch does not exist yet: the contract calls that a usage error (2); a tool
    // may also treat an empty remote as nothing to do (0). Either way nothing is touched.
    assert!(
        matches!(out.code, Some(0) | Some(2)),
        "exit {:?}: {}",
        out.code,
        out.stderr
    );
    assert_eq!(t.try_rev_parse(&t.checkout, "HEAD"), None);
    assert!(t.restart_calls().is_empty());
}

#[test]
fn leaves_local_edits_on_untouched_paths_exactly_as_they_are() {
    let t = Fixture::new();
    t.co_write("docs/guide.md", "my local edit\n");
    t.co_write("notes/todo.txt", "untracked\n");
    let before = Snapshot::of(&t.checkout);
    t.push_files(&[("app/main.py", "v2\n")]);
    update(&t, &Clean::untracked().local("docs/guide.md"));
    let after = Snapshot::of(&t.checkout);
    before.assert_untouched_except(&after, &["app/main.py"]);
    assert_eq!(t.co_read("docs/guide.md"), "my local edit\n");
}

#[test]
fn keeps_a_staged_change_on_an_untouched_path() {
    let t = Fixture::new();
    t.co_write("docs/guide.md", "staged edit\n");
    t.git(&t.checkout, &["add", "docs/guide.md"]);
    let staged = t.git(&t.checkout, &["rev-parse", ":docs/guide.md"]);
    t.push_files(&[("app/main.py", "v2\n")]);
    update(&t, &Clean::strict().local("docs/guide.md"));
    assert_eq!(
        t.git(&t.checkout, &["diff", "--cached", "--name-only"]),
        "docs/guide.md"
    );
    assert_eq!(
        t.git(&t.checkout, &["rev-parse", ":docs/guide.md"]),
        staged,
        "the staged blob is kept"
    );
    assert_eq!(t.co_read("docs/guide.md"), "staged edit\n");
}

#[test]
fn recreates_a_locally_deleted_file_that_the_update_changes() {
    let t = Fixture::new();
    t.co_remove("app/main.py");
    t.push_files(&[("app/main.py", "v2\n")]);
    update(&t, &Clean::strict());
    assert_eq!(t.co_read("app/main.py"), "v2\n");
}

#[test]
fn a_locally_deleted_file_the_update_does_not_touch_stays_deleted() {
    let t = Fixture::new();
    t.co_remove("docs/guide.md");
    t.push_files(&[("app/main.py", "v2\n")]);
    update(&t, &Clean::strict().local("docs/guide.md"));
    assert!(!t.co("docs/guide.md").exists());
}

#[test]
fn untouched_files_keep_their_inode_and_mtime() {
    let t = Fixture::with_files(&[
        ("README.md", "r\n"),
        ("app/a.py", "a\n"),
        ("app/b.py", "b\n"),
        ("lib/c.py", "c\n"),
    ]);
    t.dev_symlink("lib/link", "c.py");
    t.dev_commit("link");
    t.push();
    t.run(&["run"]).code(0);
    let before = Snapshot::of(&t.checkout);
    // Let a rewrite show up in the mtime even on coarse-grained file systems.
    std::thread::sleep(std::time::Duration::from_millis(20));
    t.dev_write("app/a.py", "a2\n");
    t.dev_write("lib/new.py", "new\n");
    t.dev_commit("change a, add new");
    t.push();
    update(&t, &Clean::strict());
    let after = Snapshot::of(&t.checkout);
    before.assert_untouched_except(&after, &["app/a.py", "lib/new.py"]);
    assert_ne!(
        before.0[std::path::Path::new("app/a.py")],
        after.0[std::path::Path::new("app/a.py")]
    );
}

#[test]
fn fast_forwards_across_several_commits_at_once() {
    let t = Fixture::new();
    let old = t.head();
    t.push_files(&[("tmp/transient.txt", "added then removed\n")]);
    t.push_files(&[("app/main.py", "v2\n")]);
    t.dev_remove("tmp");
    let tip = t.dev_commit("remove transient");
    t.push();
    let out = update(&t, &Clean::strict());
    let s = out.summary();
    s.assert_range(&old, &tip);
    assert_eq!(
        s.files, 1,
        "only app/main.py differs between the two trees: {}",
        s.line
    );
    assert!(!t.co("tmp").exists());
}

#[test]
fn many_files_in_one_update() {
    let t = Fixture::new();
    for i in 0..300 {
        t.dev_write(&format!("gen/d{}/f{i}.txt", i % 17), format!("file {i}\n"));
    }
    t.dev_commit("many");
    t.push();
    update(&t, &Clean::strict());
    for i in (0..300).step_by(2) {
        t.dev_remove(&format!("gen/d{}/f{i}.txt", i % 17));
    }
    t.dev_commit("half gone");
    t.push();
    update(&t, &Clean::strict());
}

#[test]
fn gitignored_tracked_file_is_updated() {
    // A file that is tracked although it matches .gitignore is updated like any other.
    let t = Fixture::with_files(&[("README.md", "r\n"), (".gitignore", "*.local\n")]);
    t.dev_write("app.local", "v1\n");
    t.git(&t.dev, &["add", "-f", "app.local"]);
    t.dev_commit("force-add");
    t.push();
    update(&t, &Clean::strict());
    t.dev_write("app.local", "v2\n");
    t.dev_commit("edit");
    t.push();
    update(&t, &Clean::strict());
}

#[test]
fn ignored_files_elsewhere_do_not_block_and_are_kept() {
    let t = Fixture::with_files(&[
        ("README.md", "r\n"),
        (".gitignore", ".env\nnode_modules/\n"),
    ]);
    t.co_write(".env", "KEY=local\n");
    t.co_write("node_modules/pkg/index.js", "x\n");
    t.push_files(&[("README.md", "r2\n")]);
    update(&t, &Clean::untracked());
    assert_eq!(t.co_read(".env"), "KEY=local\n");
    assert_eq!(t.co_read("node_modules/pkg/index.js"), "x\n");
}

#[test]
fn follows_the_current_branchs_upstream() {
    let t = Fixture::new();
    let main_before = t.rev_parse(&t.checkout, "refs/heads/main");
    t.git(
        &t.checkout,
        &["checkout", "-q", "-b", "deploy", "--track", "origin/main"],
    );
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    let out = t.run(&["run"]);
    out.code(0);
    assert_eq!(
        out.summary().branch,
        "deploy",
        "the summary names the local branch"
    );
    assert_git_clean(&t, &Clean::strict().branch("deploy", "main"));
    assert_eq!(t.rev_parse(&t.checkout, "refs/heads/deploy"), tip);
    assert_eq!(
        t.rev_parse(&t.checkout, "refs/heads/main"),
        main_before,
        "only the checked-out branch moves"
    );
}

#[test]
fn branch_flag_follows_another_remote_branch() {
    let t = Fixture::new();
    t.dev_write("app/main.py", "release\n");
    let rel = t.dev_commit("release");
    t.git(&t.dev, &["push", "-q", "origin", "HEAD:refs/heads/release"]);
    let out = t.run(&["run", "--branch", "release"]);
    out.code(0);
    assert_eq!(t.head(), rel);
    assert_git_clean(&t, &Clean::strict().branch("main", "release"));
}

#[test]
fn uses_the_current_directory_by_default() {
    let t = Fixture::new();
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    let mut cmd = t.pullstart();
    cmd.current_dir(&t.checkout)
        .args([
            "run",
            "--health-timeout",
            "0",
            "--services",
            SERVICES,
            "--compose-command",
        ])
        .arg(&t.stub);
    let out = Outcome::of(&mut cmd, vec!["run (cwd = checkout)".into()]);
    out.code(0);
    assert_eq!(t.head(), tip);
    assert_git_clean(&t, &Clean::strict());
}

#[test]
fn only_the_followed_branch_is_fetched() {
    let t = Fixture::new();
    t.git(&t.dev, &["checkout", "-q", "-b", "feature"]);
    t.dev_write("feature.txt", "f\n");
    t.dev_commit("feature");
    t.git(&t.dev, &["push", "-q", "origin", "feature"]);
    t.git(&t.dev, &["checkout", "-q", "main"]);
    t.push_files(&[("app/main.py", "v2\n")]);
    t.run(&["run"]).code(0);
    assert_eq!(
        t.try_rev_parse(&t.checkout, "refs/remotes/origin/feature"),
        None,
        "fetched a branch it does not follow"
    );
    assert_eq!(t.try_rev_parse(&t.checkout, "feature^{commit}"), None);
    assert_git_clean(&t, &Clean::strict());
}

#[test]
fn matches_git_merge_ff_only_in_a_twin_clone() {
    // Twin clones with the same local (non-blocking) edits: pullstart in one, git in the other.
    let t = Fixture::with_files(&[
        ("a.txt", "a\n"),
        ("d/b.txt", "b\n"),
        ("d/e/c.txt", "c\n"),
        ("link", "x"),
    ]);
    t.dev_symlink("link", "a.txt");
    t.dev_commit("link");
    t.push();
    t.run(&["run"]).code(0);
    let twin = t.root.join("twin");
    t.git(&t.root, &["clone", "-q", path_str(&t.remote), "twin"]);
    for dir in [&t.checkout, &twin] {
        write_file(dir, "untracked.txt", "u\n");
        write_file(dir, "d/e/local.txt", "local\n");
    }
    t.dev_remove("d/e/c.txt");
    t.dev_write("d/b.txt", "b2\n");
    t.dev_symlink("a.txt", "d/b.txt");
    t.dev_write("link", "now a file\n");
    t.dev_write("n/e/w.txt", "w\n");
    t.dev_commit("mix");
    t.push();
    t.run(&["run"]).code(0);
    t.git(&twin, &["pull", "-q", "--ff-only"]);
    Snapshot::of(&twin).assert_same_content(&Snapshot::of(&t.checkout));
    assert_git_clean(&t, &Clean::untracked());
}

/// Added paths that sort before and between modified ones: the index edit must still find the
/// existing entries (a regression once left the old and the new entry of a modified file, for
/// exactly the two-file shape below).
#[test]
fn additions_interleaved_with_modifications_leave_one_index_entry_per_path() {
    /// (path, content) pairs of one commit.
    type Files<'a> = &'a [(&'a str, &'a str)];
    let shapes: &[(Files, Files)] = &[
        (
            &[("message.txt", "v1\n"), ("app/main.sh", "m\n")],
            &[("message.txt", "v2\n"), ("app/helper.sh", "h\n")],
        ),
        (
            &[
                ("b.txt", "1\n"),
                ("d.txt", "1\n"),
                ("f.txt", "1\n"),
                ("h.txt", "1\n"),
            ],
            &[
                ("a.txt", "new\n"),
                ("c.txt", "new\n"),
                ("d.txt", "2\n"),
                ("e.txt", "new\n"),
                ("h.txt", "2\n"),
            ],
        ),
    ];
    for (initial, update_files) in shapes {
        let t = Fixture::with_files(initial);
        for (path, content) in *update_files {
            t.dev_write(path, content);
        }
        t.dev_commit("interleaved");
        t.push();
        update(&t, &Clean::strict());
        let staged = t.git(&t.checkout, &["ls-files", "-s"]);
        let mut paths: Vec<&str> = staged
            .lines()
            .map(|l| l.split('\t').nth(1).unwrap())
            .collect();
        let count = paths.len();
        paths.dedup();
        assert_eq!(paths.len(), count, "duplicate index entries:\n{staged}");
    }
}

/// A shallow clone (as CI systems and small servers make them) fast-forwards like a full one,
/// and stays shallow.
#[test]
fn fast_forwards_a_shallow_clone() {
    let t = Fixture::new();
    t.push_files(&[("app/main.py", "v2\n")]);
    fs::remove_dir_all(&t.checkout).unwrap();
    let url = format!("file://{}", t.remote.display());
    t.git(&t.root, &["clone", "-q", "--depth", "1", &url, "checkout"]);
    assert!(
        t.checkout.join(".git/shallow").exists(),
        "the fixture is shallow"
    );
    t.push_files(&[("app/main.py", "v3\n"), ("app/new.py", "new\n")]);
    update(&t, &Clean::strict());
    assert_eq!(t.co_read("app/main.py"), "v3\n");
    assert!(t.checkout.join(".git/shallow").exists(), "still shallow");
}

/// A submodule's gitlink that the update adds gets its empty directory, and one it moves is
/// recorded in the index; the submodule's own checkout is left alone, as `git merge` leaves it.
#[test]
fn adds_and_moves_a_submodule_gitlink() {
    let t = Fixture::new();
    // `git add -A` (dev_commit) would drop a gitlink whose directory is missing: commit directly.
    let commit = |msg: &str| t.git(&t.dev, &["commit", "-q", "-m", msg]);
    let commit_a = t.rev_parse(&t.dev, "HEAD");
    t.git(
        &t.dev,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{commit_a},vendor/lib"),
        ],
    );
    commit("add a gitlink");
    t.push();
    update(&t, &Clean::strict());
    assert!(
        t.co("vendor/lib").is_dir(),
        "an added gitlink gets its directory"
    );
    t.git(
        &t.dev,
        &[
            "update-index",
            "--cacheinfo",
            &format!("160000,{},vendor/lib", t.rev_parse(&t.dev, "HEAD")),
        ],
    );
    let commit_b = t.rev_parse(&t.dev, "HEAD");
    commit("move the gitlink");
    t.push();
    update(&t, &Clean::strict());
    let staged = t.git(&t.checkout, &["ls-files", "-s", "vendor/lib"]);
    assert!(
        staged.starts_with(&format!("160000 {commit_b} 0")),
        "{staged}"
    );
    assert_eq!(
        fs::read_dir(t.co("vendor/lib")).unwrap().count(),
        0,
        "the submodule checkout is left alone"
    );
}
