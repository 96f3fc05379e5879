//! Exit 4 (local changes would be overwritten) and exit 5 (not a fast-forward): the run touches
//! nothing (HEAD, index, branch ref and reflog, every worktree entry with its inode and mtime)
//! and restarts nothing.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::support::*;

/// The state a refusing run must leave exactly as it was.
pub struct Untouched {
    state: RepoState,
    snap: Snapshot,
}

impl Untouched {
    pub fn capture(t: &Fixture) -> Untouched {
        Untouched {
            state: RepoState::capture(t, false),
            snap: Snapshot::of(&t.checkout),
        }
    }

    #[track_caller]
    pub fn assert(&self, t: &Fixture) {
        assert_eq!(
            RepoState::capture(t, false),
            self.state,
            "a refusing run changed HEAD, the index or refs"
        );
        self.snap
            .assert_same(&Snapshot::of(&t.checkout), "a refusing run");
        assert!(
            t.restart_calls().is_empty(),
            "a refusing run restarted: {:?}",
            t.restart_calls()
        );
    }
}

/// Runs, expects `code` and one error line containing every one of `paths`; returns the line.
#[track_caller]
fn refused(t: &Fixture, code: i32, paths: &[&str]) -> String {
    let before = Untouched::capture(t);
    let out = t.run(&["run"]);
    out.code(code).stdout_empty();
    let line = out.error_line();
    for p in paths {
        assert!(line.contains(p), "the error line should name {p}: {line}");
    }
    before.assert(t);
    line
}

// ----- exit 4 -----

#[test]
fn refuses_modified_tracked_file_the_update_changes() {
    let t = Fixture::new();
    t.co_write("app/settings.py", "DEBUG = True  # local hotfix\n");
    t.push_files(&[("app/settings.py", "DEBUG = False\nNEW = 1\n")]);
    refused(&t, 4, &["app/settings.py"]);
    assert_eq!(
        t.co_read("app/settings.py"),
        "DEBUG = True  # local hotfix\n"
    );
}

#[test]
fn refuses_modified_tracked_file_the_update_deletes() {
    let t = Fixture::new();
    t.co_write("docs/guide.md", "my local notes\n");
    t.dev_remove("docs/guide.md");
    t.dev_commit("drop guide");
    t.push();
    refused(&t, 4, &["docs/guide.md"]);
}

#[test]
fn refuses_staged_change_on_a_path_the_update_changes() {
    let t = Fixture::new();
    // Staged only: the worktree is back to HEAD's content, the index differs.
    t.co_write("app/main.py", "print('staged')\n");
    t.git(&t.checkout, &["add", "app/main.py"]);
    t.co_write("app/main.py", "print('hello')\n");
    t.push_files(&[("app/main.py", "print('v2')\n")]);
    refused(&t, 4, &["app/main.py"]);
}

#[test]
fn refuses_staged_new_file_at_a_path_the_update_adds() {
    let t = Fixture::new();
    t.co_write("app/extra.py", "local\n");
    t.git(&t.checkout, &["add", "app/extra.py"]);
    t.push_files(&[("app/extra.py", "upstream\n")]);
    refused(&t, 4, &["app/extra.py"]);
}

#[test]
fn refuses_untracked_file_where_update_adds_one() {
    let t = Fixture::new();
    t.co_write("app/new.py", "my untracked work\n");
    t.push_files(&[("app/new.py", "upstream\n")]);
    refused(&t, 4, &["app/new.py"]);
    assert_eq!(t.co_read("app/new.py"), "my untracked work\n");
}

#[test]
fn refuses_untracked_file_where_update_needs_a_directory() {
    let t = Fixture::new();
    t.co_write("conf", "untracked file named like the new directory\n");
    t.push_files(&[("conf/app.yml", "a: 1\n")]);
    refused(&t, 4, &["conf"]);
}

#[test]
fn refuses_untracked_content_in_a_directory_that_becomes_a_file() {
    let t = Fixture::with_files(&[("README.md", "r\n"), ("data/seed.txt", "seed\n")]);
    t.co_write("data/local.txt", "local untracked\n");
    t.dev_remove("data");
    t.dev_write("data", "now a file\n");
    t.dev_commit("data becomes a file");
    t.push();
    refused(&t, 4, &["data"]);
    assert_eq!(t.co_read("data/local.txt"), "local untracked\n");
}

#[test]
fn refuses_ignored_file_at_a_path_the_update_adds() {
    let t = Fixture::with_files(&[("README.md", "r\n"), (".gitignore", ".env\n")]);
    t.co_write(".env", "SECRET_KEY=local\n");
    t.dev_write(".env", "SECRET_KEY=upstream\n");
    t.git(&t.dev, &["add", "-f", ".env"]);
    t.dev_commit("track .env");
    t.push();
    refused(&t, 4, &[".env"]);
    assert_eq!(t.co_read(".env"), "SECRET_KEY=local\n");
}

#[test]
fn refuses_local_type_change_of_a_file_the_update_changes() {
    let t = Fixture::new();
    make_symlink(&t.checkout, "app/settings.py", "main.py");
    t.push_files(&[("app/settings.py", "DEBUG = 2\n")]);
    refused(&t, 4, &["app/settings.py"]);
}

#[test]
fn refusal_lists_every_blocking_path() {
    let t = Fixture::new();
    t.co_write("app/main.py", "local edit\n");
    t.co_write("app/new.py", "untracked\n");
    t.dev_write("app/main.py", "upstream edit\n");
    t.dev_write("app/new.py", "upstream new\n");
    t.dev_commit("two");
    t.push();
    refused(&t, 4, &["app/main.py", "app/new.py"]);
}

#[test]
fn refusal_does_not_name_paths_that_do_not_block() {
    let t = Fixture::new();
    t.co_write("app/main.py", "local edit\n");
    t.co_write("docs/guide.md", "local edit on an untouched path\n");
    t.push_files(&[("app/main.py", "upstream edit\n")]);
    let line = refused(&t, 4, &["app/main.py"]);
    assert!(
        !line.contains("docs/guide.md"),
        "an untouched path does not block: {line}"
    );
}

#[test]
fn update_goes_through_once_the_blocking_change_is_gone() {
    let t = Fixture::new();
    t.co_write("app/new.py", "untracked\n");
    let tip = t.push_files(&[("app/new.py", "upstream\n")]);
    t.run(&["run"]).code(4);
    t.co_remove("app/new.py");
    t.run(&["run"]).code(0);
    assert_eq!(t.head(), tip);
    assert_git_clean(&t, &Clean::strict());
    assert_eq!(t.restart_calls(), vec![RESTART_DEFAULT.to_string()]);
}

#[test]
fn refuses_untracked_file_in_the_way_on_an_unborn_branch() {
    let t = Fixture::empty_remote();
    t.co_write("app.py", "local\n");
    t.dev_write("app.py", "first\n");
    t.dev_commit("first");
    t.push();
    let before = Snapshot::of(&t.checkout);
    let out = t.run(&["run"]);
    out.code(4).stdout_empty();
    assert!(out.error_line().contains("app.py"));
    before.assert_same(&Snapshot::of(&t.checkout), "refusal on an unborn branch");
    assert_eq!(
        t.try_rev_parse(&t.checkout, "HEAD"),
        None,
        "the branch must stay unborn"
    );
    assert!(t.restart_calls().is_empty());
}

// ----- exit 5 -----

#[test]
fn refuses_when_the_checkout_has_local_commits() {
    let t = Fixture::new();
    t.co_write("app/main.py", "local commit\n");
    t.git(&t.checkout, &["commit", "-q", "-am", "local"]);
    let line = refused(&t, 5, &[]);
    let l = line.to_lowercase();
    assert!(
        l.contains("ahead") || l.contains("local commit"),
        "the message should say the checkout has local commits: {line}"
    );
}

#[test]
fn refuses_when_the_branches_diverged() {
    let t = Fixture::new();
    t.co_write("docs/local.md", "local commit\n");
    t.git(&t.checkout, &["add", "."]);
    t.git(&t.checkout, &["commit", "-q", "-m", "local"]);
    t.push_files(&[("app/main.py", "upstream\n")]);
    let line = refused(&t, 5, &[]);
    assert!(
        line.to_lowercase().contains("diverged"),
        "the message should say diverged: {line}"
    );
}

/// Brings the checkout to a second commit B through pullstart, so that origin/main == HEAD == B.
fn fixture_at_second_commit() -> (Fixture, String, String) {
    let t = Fixture::new();
    let a = t.head();
    let b = t.push_files(&[("app/main.py", "print('B')\n")]);
    t.run(&["run"]).code(0);
    assert_eq!(t.head(), b);
    t.clear_compose_log();
    (t, a, b)
}

#[test]
fn refuses_when_the_remote_was_force_pushed() {
    let (t, a, _b) = fixture_at_second_commit();
    t.git(&t.dev, &["reset", "-q", "--hard", &a]);
    t.dev_write("app/main.py", "print('rewritten')\n");
    t.dev_commit("B'");
    t.force_push();
    let line = refused(&t, 5, &[]);
    assert!(
        line.to_lowercase().contains("force"),
        "the message should say the remote was force-pushed: {line}"
    );
}

#[test]
fn refuses_when_the_remote_was_rolled_back() {
    let (t, a, _b) = fixture_at_second_commit();
    t.git(&t.dev, &["reset", "-q", "--hard", &a]);
    t.force_push();
    let line = refused(&t, 5, &[]);
    let l = line.to_lowercase();
    assert!(
        l.contains("rolled back") || l.contains("force"),
        "the message should say the remote was rolled back (or force-pushed): {line}"
    );
}

#[test]
fn not_fast_forward_messages_tell_the_cases_apart() {
    // Local commits and diverged histories must not read the same.
    let ahead = {
        let t = Fixture::new();
        t.co_write("app/main.py", "local\n");
        t.git(&t.checkout, &["commit", "-q", "-am", "local"]);
        let out = t.run(&["run"]);
        out.code(5);
        out.error_line()
    };
    let diverged = {
        let t = Fixture::new();
        t.co_write("app/main.py", "local\n");
        t.git(&t.checkout, &["commit", "-q", "-am", "local"]);
        t.push_files(&[("docs/guide.md", "upstream\n")]);
        let out = t.run(&["run"]);
        out.code(5);
        out.error_line()
    };
    // Commit ids differ between fixtures only through content; compare the words.
    let words = |s: &str| {
        s.split(|c: char| !c.is_alphabetic())
            .filter(|w| w.len() > 3)
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
    };
    assert_ne!(
        words(&ahead),
        words(&diverged),
        "same message for local commits and divergence:\n{ahead}\n{diverged}"
    );
}

// ----- exit 11: the update stopped part-way -----

/// Makes a file immutable (`chattr +i`, which even root cannot write through) until dropped;
/// `None` where the file system or the user cannot.
pub(crate) struct Immutable(std::path::PathBuf);

impl Immutable {
    pub(crate) fn set(path: std::path::PathBuf) -> Option<Immutable> {
        let ok = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: cannot `chattr +i` here (needs root and a file system with it)");
            return None;
        }
        Some(Immutable(path))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

/// A pushed update that deletes `docs/guide.md` (removed first) and changes `app/main.py`,
/// which is immutable in the checkout: the run stops after the first removal.
fn stopped_part_way() -> Option<(Fixture, Immutable, String)> {
    let t = Fixture::new();
    t.run(&["run"]).code(0);
    let old = t.head();
    t.dev_remove("docs/guide.md");
    t.dev_write("app/main.py", "print('v2')\n");
    t.dev_commit("v2");
    t.push();
    let immutable = Immutable::set(t.co("app/main.py"))?;
    for attempt in 0..2 {
        let out = t.run(&["run"]);
        out.code(11).stdout_empty();
        let line = out.error_line();
        assert!(
            line.contains("stopped part-way"),
            "attempt {attempt}: {line}"
        );
        assert!(line.contains("mid-update"), "{line}");
        assert!(
            line.contains("app/main.py"),
            "the cause names the file: {line}"
        );
        assert_eq!(t.head(), old, "the branch moved with the update unfinished");
        assert!(t.git_dir().join("pullstart-journal").exists());
        assert!(t.restart_calls().is_empty(), "restarted half-written code");
        assert_eq!(t.co_read("app/main.py"), "print('hello')\n");
    }
    let json = t.run(&["run", "--output", "json"]).json();
    assert_eq!(json["result"], "update_incomplete");
    assert_eq!(json["exit_code"], 11);
    Some((t, immutable, old))
}

#[test]
fn a_file_that_cannot_be_replaced_stops_the_update_with_exit_11_until_it_can() {
    let Some((t, immutable, _)) = stopped_part_way() else {
        return;
    };
    drop(immutable);
    t.run(&["run"]).code(0);
    assert_git_clean(&t, &Clean::strict());
    assert_eq!(t.restart_calls().len(), 1);
}

#[test]
fn a_newer_remote_commit_replaces_an_update_that_cannot_be_finished() {
    let Some((t, immutable, _)) = stopped_part_way() else {
        return;
    };
    // The fix leaves app/main.py as it was and changes something else.
    t.dev_write("app/main.py", "print('hello')\n");
    t.dev_write("README.md", "# demo app, fixed\n");
    let fixed = t.dev_commit("leave main.py alone");
    t.push();
    t.run(&["run"]).code(0);
    assert_eq!(t.head(), fixed);
    assert!(!t.git_dir().join("pullstart-journal").exists());
    assert_git_clean(&t, &Clean::strict());
    assert_eq!(t.restart_calls().len(), 1);
    drop(immutable);
}

#[test]
fn a_newer_remote_commit_that_still_needs_the_file_fails_again_with_exit_11() {
    let Some((t, immutable, old)) = stopped_part_way() else {
        return;
    };
    t.dev_write("app/main.py", "print('v3')\n");
    let v3 = t.dev_commit("v3");
    t.push();
    let out = t.run(&["run"]);
    out.code(11);
    assert!(out.error_line().contains(&v3[..7]), "names the new tip");
    assert_eq!(t.head(), old);
    drop(immutable);
    t.run(&["run"]).code(0);
    assert_git_clean(&t, &Clean::strict());
}

/// Monitoring must see that the checkout is mid-update even when the remote cannot be reached:
/// exit 11, not the fetch's 3, with the fetch's failure as a warning.
#[test]
fn an_update_that_cannot_be_finished_stays_exit_11_when_the_fetch_fails_too() {
    let Some((t, immutable, old)) = stopped_part_way() else {
        return;
    };
    let away = t.root.join("remote-away");
    std::fs::rename(&t.remote, &away).unwrap();
    let out = t.run(&["run"]);
    out.code(11);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stderr);
    assert!(
        lines[0].starts_with("pullstart: warning: the fetch failed too: failed to fetch"),
        "{}",
        out.stderr
    );
    assert!(lines[1].contains("mid-update"), "{}", out.stderr);
    assert_eq!(t.head(), old);
    std::fs::rename(&away, &t.remote).unwrap();
    drop(immutable);
    t.run(&["run"]).code(0);
    assert_git_clean(&t, &Clean::strict());
}

// ----- what the pushed content and the filters fail on: refused before anything is touched -----

#[test]
fn a_required_filter_that_fails_refuses_the_update_before_anything_is_touched() {
    let t = Fixture::new();
    t.run(&["run"]).code(0);
    for (key, value) in [
        ("filter.strict.smudge", "false"),
        ("filter.strict.clean", "cat"),
        ("filter.strict.required", "true"),
    ] {
        t.git(&t.checkout, &["config", key, value]);
    }
    // Removed and changed before the filtered file would be written, were it not staged first.
    t.dev_remove("docs/guide.md");
    t.dev_write("app/main.py", "print('v2')\n");
    t.dev_write(".gitattributes", "*.dat filter=strict\n");
    t.dev_write("z/data.dat", "payload\n");
    t.dev_commit("a filtered file");
    t.push();
    for _ in 0..2 {
        // Every file and symlink keeps content, inode and mtime (the temporary files written
        // beside them and removed again do change their directories' mtimes).
        let state = RepoState::capture(&t, false);
        let files = Snapshot::of(&t.checkout);
        let out = t.run(&["run"]);
        out.code(2).stdout_empty();
        let line = out.error_line();
        for expected in ["z/data.dat", "nothing was touched", "filter"] {
            assert!(line.contains(expected), "{expected}: {line}");
        }
        assert_eq!(RepoState::capture(&t, false), state);
        let now = Snapshot::of(&t.checkout);
        files.assert_untouched_except(&now, &[]);
        files.assert_same_content(&now);
        assert!(t.restart_calls().is_empty());
        assert!(!t.git_dir().join("pullstart-journal").exists());
        let leftovers: Vec<_> = Snapshot::of(&t.checkout)
            .0
            .into_keys()
            .filter(|p| p.to_string_lossy().contains(".pullstart-"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
    t.git(&t.checkout, &["config", "filter.strict.smudge", "cat"]);
    t.run(&["run"]).code(0);
    assert_git_clean(&t, &Clean::strict());
}

#[test]
fn refuses_a_populated_submodule_that_the_update_turns_into_a_file() {
    let t = Fixture::new();
    // A gitlink (a submodule without .gitmodules is enough: pullstart never clones one).
    let commit = t.head();
    t.git(
        &t.dev,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{commit},libsub"),
        ],
    );
    t.git(&t.dev, &["commit", "-q", "-m", "a submodule"]);
    t.push();
    t.run(&["run"]).code(0);
    assert!(t.co("libsub").is_dir());
    // Its checkout, as `git submodule update` would have made it.
    t.co_write("libsub/lib.py", "the submodule's own file\n");
    t.git(&t.dev, &["rm", "-q", "--cached", "libsub"]);
    t.dev_write("libsub", "vendored into one file now\n");
    t.dev_commit("libsub is a file");
    t.push();
    t.clear_compose_log();
    refused(&t, 4, &["libsub/lib.py"]);
    assert_eq!(t.co_read("libsub/lib.py"), "the submodule's own file\n");
}

// ----- stat data: trusted as git trusts it, except for racily clean entries -----

/// The committed `app/settings.py` edited in place to this, with its size kept.
const SAME_SIZE_EDIT: &str = "DEBUG = True!\n";

/// Makes the index entry of `path` record `mtime` with the committed content, then edits the file
/// in place (same size, same inode) and puts `mtime` back, so that with `core.trustctime` off the
/// file's stat data is the entry's, while its content is not the committed one.
fn edit_keeping_the_stat_data(t: &Fixture, path: &str, edit: &str, mtime: SystemTime) {
    use std::io::Write;
    t.git(&t.checkout, &["config", "core.trustctime", "false"]);
    let file = t.co(path);
    fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    t.git(&t.checkout, &["update-index", "-q", "--refresh"]);
    assert_eq!(fs::metadata(&file).unwrap().len(), edit.len() as u64);
    let mut f = fs::File::options().write(true).open(&file).unwrap(); // no truncation
    f.write_all(edit.as_bytes()).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    assert_eq!(
        index_stat(t, path),
        file_stat(&file),
        "the index entry's stat data should match the edited file"
    );
}

/// (mtime seconds, mtime nanoseconds, size, inode) of `path`'s index entry (`git ls-files --debug`).
fn index_stat(t: &Fixture, path: &str) -> (u64, u64, u64, u64) {
    let debug = t.git(&t.checkout, &["ls-files", "--debug", "--", path]);
    let field = |name: &str| -> String {
        debug
            .split_whitespace()
            .skip_while(|w| *w != name)
            .nth(1)
            .unwrap_or_else(|| panic!("no {name} in {debug}"))
            .to_string()
    };
    let mtime = field("mtime:");
    let (secs, nsecs) = mtime.split_once(':').unwrap();
    (
        secs.parse().unwrap(),
        nsecs.parse().unwrap(),
        field("size:").parse().unwrap(),
        field("ino:").parse().unwrap(),
    )
}

fn file_stat(file: &Path) -> (u64, u64, u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(file).unwrap();
    (m.mtime() as u64, m.mtime_nsec() as u64, m.size(), m.ino())
}

/// git's racy-git rule: an entry whose mtime is not older than the index file proves nothing by
/// its stat data (the file may have changed in the same second as the index was written), so
/// the file is hashed. Here the index file's mtime is the entry's own, the edge of that rule.
#[test]
fn refuses_a_same_size_edit_whose_stat_data_matches_a_racily_clean_entry() {
    let t = Fixture::new();
    let when = SystemTime::now() - Duration::from_secs(3600);
    edit_keeping_the_stat_data(&t, "app/settings.py", SAME_SIZE_EDIT, when);
    fs::File::options()
        .write(true)
        .open(t.git_dir().join("index"))
        .unwrap()
        .set_modified(when)
        .unwrap();
    assert_eq!(
        t.git(&t.checkout, &["diff-files", "--name-only"]).trim(),
        "app/settings.py",
        "git hashes the racily clean entry and sees the edit"
    );
    t.push_files(&[("app/settings.py", "DEBUG = False\nNEW = 1\n")]);
    refused(&t, 4, &["app/settings.py"]);
    assert_eq!(t.co_read("app/settings.py"), SAME_SIZE_EDIT);
}

/// An entry older than the index whose stat data matches the file is trusted without reading the
/// file, as git trusts it: an edit that kept size, inode and mtime (with `core.trustctime` off) is
/// invisible to git too, and the update overwrites it as `git merge --ff-only` would. (This is
/// how the test sees that the file is not read: reading it would find the edit and refuse.)
#[test]
fn trusts_stat_data_older_than_the_index_as_git_does() {
    let t = Fixture::new();
    let when = SystemTime::now() - Duration::from_secs(3600);
    edit_keeping_the_stat_data(&t, "app/settings.py", SAME_SIZE_EDIT, when);
    assert_eq!(
        t.git(&t.checkout, &["diff-files", "--name-only"]).trim(),
        "",
        "git trusts the stat data and does not see the edit"
    );
    t.push_files(&[("app/settings.py", "DEBUG = False\nNEW = 1\n")]);
    t.run(&["run"]).code(0);
    assert_eq!(t.co_read("app/settings.py"), "DEBUG = False\nNEW = 1\n");
    assert_git_clean(&t, &Clean::strict());
}
