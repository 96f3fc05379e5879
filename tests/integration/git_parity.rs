//! Refuse exactly when `git merge --ff-only` refuses. Each test prepares two identical clones of
//! one bare remote the same way, pushes one update, runs `git merge --ff-only` in one clone and
//! pullstart in the other, and compares what git sees afterwards: whether the update was
//! refused, `git status --porcelain`, `git ls-files -s` (stages included), `git fsck`, HEAD and
//! every worktree byte. The cases are those of git's two-way merge table (`git read-tree -m`,
//! which `merge --ff-only` runs), where pullstart once differed from git.

use std::path::{Path, PathBuf};

use crate::support::*;

/// The checkout pullstart manages and its twin, both cloned from the remote at the same commit.
struct Twins {
    t: Fixture,
    twin: PathBuf,
}

/// What each side did with the update.
struct Verdicts {
    pullstart: Outcome,
    git: std::process::Output,
}

impl Verdicts {
    fn git_refused(&self) -> bool {
        !self.git.status.success()
    }
}

impl Twins {
    fn new(files: &[(&str, &str)]) -> Twins {
        let t = Fixture::with_files(files);
        t.git(&t.root, &["clone", "-q", path_str(&t.remote), "twin"]);
        let twin = t.root.join("twin");
        Twins { t, twin }
    }

    /// Prepares both clones the same way.
    fn both(&self, prepare: impl Fn(&Fixture, &Path)) {
        prepare(&self.t, &self.t.checkout);
        prepare(&self.t, &self.twin);
    }

    /// Pushes the update, then lets git and pullstart each take it.
    fn take_update(&self) -> Verdicts {
        self.t.push();
        self.t.git(&self.twin, &["fetch", "-q", "origin"]);
        let git = self
            .t
            .git_output(&self.twin, &["merge", "-q", "--ff-only", "origin/main"]);
        let pullstart = self.t.run(&["run"]);
        Verdicts { pullstart, git }
    }

    /// git and pullstart agree: both updated or both refused, and the two clones look the same
    /// to git and on disk.
    #[track_caller]
    fn assert_same_result(&self, verdicts: &Verdicts) {
        let t = &self.t;
        let git_stderr = String::from_utf8_lossy(&verdicts.git.stderr);
        if verdicts.git_refused() {
            verdicts.pullstart.code(4);
            verdicts.pullstart.error_line();
        } else {
            assert!(
                verdicts.pullstart.code == Some(0),
                "git fast-forwarded, pullstart did not: exit {:?}\n{}",
                verdicts.pullstart.code,
                verdicts.pullstart.stderr
            );
        }
        assert_eq!(
            t.rev_parse(&t.checkout, "HEAD"),
            t.rev_parse(&self.twin, "HEAD"),
            "HEAD differs (git said: {git_stderr})"
        );
        for args in [
            &["ls-files", "-s", "-z"][..],
            &["status", "--porcelain=v1", "-z", "--untracked-files=all"][..],
        ] {
            let ours = t.git_bytes(&t.checkout, args);
            let gits = t.git_bytes(&self.twin, args);
            assert_eq!(
                String::from_utf8_lossy(&ours).replace('\0', "\n"),
                String::from_utf8_lossy(&gits).replace('\0', "\n"),
                "`git {}` differs between pullstart's checkout (left) and git's (right)",
                args.join(" ")
            );
        }
        for dir in [&t.checkout, &self.twin] {
            let fsck = t.git_output(dir, &["fsck", "--no-progress", "--no-dangling"]);
            assert!(
                fsck.status.success(),
                "git fsck failed in {}:\n{}",
                dir.display(),
                String::from_utf8_lossy(&fsck.stderr)
            );
        }
        Snapshot::of(&self.twin).assert_same_content(&Snapshot::of(&t.checkout));
        assert!(
            !t.git_dir().join("pullstart-journal").exists(),
            "the run left its journal: it stopped half-way"
        );
    }
}

fn stage(t: &Fixture, dir: &Path, path: &str, content: &str) {
    write_file(dir, path, content);
    t.git(dir, &["add", path]);
}

// ----- a staged change that already equals the update: git keeps the index -----

#[test]
fn staged_change_equal_to_the_update_fast_forwards_keeping_the_index() {
    let twins = Twins::new(INITIAL_FILES);
    twins.both(|t, dir| stage(t, dir, "app/main.py", "print('v2')\n"));
    twins.t.dev_write("app/main.py", "print('v2')\n");
    twins.t.dev_commit("v2");
    let verdicts = twins.take_update();
    assert!(!verdicts.git_refused());
    twins.assert_same_result(&verdicts);
}

#[test]
fn staged_change_equal_to_the_update_with_a_further_edit_keeps_both() {
    // git's case 19: the index equals the update, the worktree holds one more edit; both stay.
    let twins = Twins::new(INITIAL_FILES);
    twins.both(|t, dir| {
        stage(t, dir, "app/main.py", "print('v2')\n");
        write_file(dir, "app/main.py", "print('v2, and my edit')\n");
    });
    twins.t.dev_write("app/main.py", "print('v2')\n");
    twins.t.dev_commit("v2");
    let verdicts = twins.take_update();
    assert!(!verdicts.git_refused());
    twins.assert_same_result(&verdicts);
    assert_eq!(twins.t.co_read("app/main.py"), "print('v2, and my edit')\n");
}

#[test]
fn staged_new_file_equal_to_the_added_file_fast_forwards() {
    // git's cases 6 and 7: the update adds exactly what is staged.
    let twins = Twins::new(INITIAL_FILES);
    twins.both(|t, dir| {
        stage(t, dir, "app/new.py", "new\n");
        stage(t, dir, "app/other.py", "other\n");
        write_file(dir, "app/other.py", "other, edited\n");
    });
    twins.t.dev_write("app/new.py", "new\n");
    twins.t.dev_write("app/other.py", "other\n");
    twins.t.dev_commit("add two");
    let verdicts = twins.take_update();
    assert!(!verdicts.git_refused());
    twins.assert_same_result(&verdicts);
}

// ----- a staged deletion the update also makes (git's case 2) -----

#[test]
fn staged_deletion_of_a_path_the_update_deletes_fast_forwards() {
    let twins = Twins::new(INITIAL_FILES);
    twins.both(|t, dir| {
        t.git(dir, &["rm", "-q", "docs/guide.md"]);
    });
    twins.t.dev_remove("docs/guide.md");
    twins.t.dev_write("app/main.py", "print('v2')\n");
    twins.t.dev_commit("drop the guide");
    let verdicts = twins.take_update();
    assert!(!verdicts.git_refused());
    twins.assert_same_result(&verdicts);
}

#[test]
fn staged_deletion_of_a_file_the_update_turns_into_a_directory_fast_forwards() {
    let twins = Twins::new(INITIAL_FILES);
    twins.both(|t, dir| {
        t.git(dir, &["rm", "-q", "docs/guide.md"]);
    });
    twins.t.dev_remove("docs/guide.md");
    twins.t.dev_write("docs/guide.md/part1.md", "part 1\n");
    twins.t.dev_commit("the guide is a directory");
    let verdicts = twins.take_update();
    assert!(!verdicts.git_refused());
    twins.assert_same_result(&verdicts);
}

#[test]
fn staged_deletion_of_a_directory_the_update_turns_into_a_file_fast_forwards() {
    let twins = Twins::new(INITIAL_FILES);
    twins.both(|t, dir| {
        t.git(dir, &["rm", "-q", "-r", "docs"]);
    });
    twins.t.dev_remove("docs");
    twins.t.dev_write("docs", "the docs are online now\n");
    twins.t.dev_commit("docs is a file");
    let verdicts = twins.take_update();
    assert!(!verdicts.git_refused());
    twins.assert_same_result(&verdicts);
}

#[test]
fn staged_deletion_of_a_file_the_update_changes_is_refused_as_git_does() {
    let twins = Twins::new(INITIAL_FILES);
    twins.both(|t, dir| {
        t.git(dir, &["rm", "-q", "docs/guide.md"]);
    });
    twins.t.dev_write("docs/guide.md", "guide v2\n");
    twins.t.dev_commit("guide v2");
    let verdicts = twins.take_update();
    assert!(verdicts.git_refused());
    twins.assert_same_result(&verdicts);
    verdicts.pullstart.stderr_contains("docs/guide.md");
}

// ----- unmerged entries: git refuses any merge -----

/// Leaves `path` unmerged (stages 1, 2 and 3, conflict markers in the worktree), as a merge
/// with a conflict would, without moving HEAD.
fn leave_unmerged(t: &Fixture, dir: &Path, path: &str) {
    let blob = |content: &str| {
        write_file(dir, ".blob", content);
        let id = t.git(dir, &["hash-object", "-w", ".blob"]);
        std::fs::remove_file(dir.join(".blob")).unwrap();
        id
    };
    let (base, ours, theirs) = (blob("base\n"), blob("ours\n"), blob("theirs\n"));
    let info = format!(
        "0 {zero}\t{path}\n100644 {base} 1\t{path}\n100644 {ours} 2\t{path}\n100644 {theirs} 3\t{path}\n",
        zero = "0".repeat(40)
    );
    let mut child = git_cmd(&t.home, dir, &["update-index", "--index-info"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(info.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    write_file(
        dir,
        path,
        "<<<<<<< ours\nours\n=======\ntheirs\n>>>>>>> theirs\n",
    );
}

#[test]
fn unmerged_entries_on_a_path_the_update_does_not_touch_refuse_as_git_does() {
    let twins = Twins::new(INITIAL_FILES);
    twins.both(|t, dir| leave_unmerged(t, dir, "README.md"));
    twins.t.dev_write("app/main.py", "print('v2')\n");
    twins.t.dev_commit("v2");
    let verdicts = twins.take_update();
    assert!(
        verdicts.git_refused(),
        "git refuses a merge with unmerged files"
    );
    twins.assert_same_result(&verdicts);
    verdicts
        .pullstart
        .stderr_contains("README.md")
        .stderr_contains("unmerged");
}

// ----- empty directories in the way: git removes them -----

#[test]
fn empty_untracked_directory_where_the_update_adds_a_file_is_removed() {
    let twins = Twins::new(INITIAL_FILES);
    twins.both(|_, dir| {
        std::fs::create_dir_all(dir.join("app/new/sub/deeper")).unwrap();
    });
    twins.t.dev_write("app/new", "a file now\n");
    twins.t.dev_commit("add app/new");
    let verdicts = twins.take_update();
    assert!(!verdicts.git_refused());
    twins.assert_same_result(&verdicts);
}

#[test]
fn directory_left_empty_by_a_local_deletion_where_the_update_writes_a_file() {
    let twins = Twins::new(INITIAL_FILES);
    twins.both(|_, dir| std::fs::remove_file(dir.join("docs/guide.md")).unwrap());
    twins.t.dev_remove("docs");
    twins.t.dev_write("docs", "the docs are online now\n");
    twins.t.dev_commit("docs is a file");
    let verdicts = twins.take_update();
    assert!(!verdicts.git_refused());
    twins.assert_same_result(&verdicts);
}

#[test]
fn empty_directory_inside_a_tracked_directory_that_becomes_a_file() {
    let twins = Twins::new(INITIAL_FILES);
    twins.both(|_, dir| std::fs::create_dir_all(dir.join("docs/e/f")).unwrap());
    twins.t.dev_remove("docs");
    twins.t.dev_write("docs", "the docs are online now\n");
    twins.t.dev_commit("docs is a file");
    let verdicts = twins.take_update();
    assert!(!verdicts.git_refused());
    twins.assert_same_result(&verdicts);
    // A later run has nothing left to finish.
    twins.t.run(&["run"]).code(0).silent();
}

// ----- the one intended difference -----

#[test]
fn an_ignored_file_in_the_way_refuses_where_git_overwrites_it() {
    let twins = Twins::new(&[("README.md", "x\n"), (".gitignore", ".env\n")]);
    twins.both(|_, dir| write_file(dir, ".env", "SECRET=local\n"));
    twins.t.dev_write(".env", "SECRET=pushed\n");
    twins.t.git(&twins.t.dev, &["add", "-f", ".env"]);
    twins.t.dev_commit("track .env");
    let verdicts = twins.take_update();
    assert!(!verdicts.git_refused(), "git overwrites ignored files");
    verdicts.pullstart.code(4).stderr_contains(".env");
    assert_eq!(twins.t.co_read(".env"), "SECRET=local\n");
    let twin_env = std::fs::read(twins.twin.join(".env")).unwrap();
    assert_eq!(twin_env.as_slice(), b"SECRET=pushed\n");
}
