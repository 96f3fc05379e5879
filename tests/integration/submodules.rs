//! `submodules: update`: a push that moves a submodule's gitlink also brings the submodule's
//! checkout to the recorded commit, guarded like the checkout itself, and files changed inside
//! the submodule select services like any other path. The default (`ignore`) leaves the
//! submodule's checkout alone. Git is the oracle: `git status` clean in both, `git submodule
//! status` without `+`, `git fsck` passing in both.

use std::fs;
use std::path::PathBuf;

use crate::support::*;

/// Where the submodule sits in the checkout.
const SUB: &str = "lib/sub";

/// `Fixture::new()` plus a second bare remote `sub.git` (with its own dev clone `subdev`), added
/// to the project as submodule `lib/sub` with a relative url (`../sub.git`, resolved against the
/// project's remote as git does), and initialised in the checkout by `git submodule update
/// --init`.
struct WithSubmodule {
    t: Fixture,
    sub_remote: PathBuf,
    sub_dev: PathBuf,
}

/// git refuses `file://` submodules unless told otherwise.
const ALLOW_FILE: [&str; 2] = ["-c", "protocol.file.allow=always"];

impl WithSubmodule {
    fn new() -> Self {
        let t = Fixture::new();
        let sub_remote = t.root.join("sub.git");
        let sub_dev = t.root.join("subdev");
        t.git(&t.root, &["init", "-q", "--bare", "sub.git"]);
        t.git(&t.root, &["clone", "-q", "sub.git", "subdev"]);
        write_file(&sub_dev, "x.py", "x = 1\n");
        write_file(&sub_dev, "docs/notes.md", "notes\n");
        t.git(&sub_dev, &["add", "-A"]);
        t.git(&sub_dev, &["commit", "-q", "-m", "sub initial"]);
        t.git(&sub_dev, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
        let mut add = ALLOW_FILE.to_vec();
        add.extend(["submodule", "add", "-q", "../sub.git", SUB]);
        t.git(&t.dev, &add);
        t.dev_commit("add the submodule");
        t.push();
        t.git(&t.checkout, &["pull", "-q"]);
        let mut init = ALLOW_FILE.to_vec();
        init.extend(["submodule", "update", "--init", "-q"]);
        t.git(&t.checkout, &init);
        WithSubmodule {
            t,
            sub_remote,
            sub_dev,
        }
    }

    /// Commit `files` in the submodule's own repository and push them there (the project's
    /// gitlink does not move yet); returns the new submodule commit.
    fn push_to_submodule(&self, files: &[(&str, &str)]) -> String {
        let t = &self.t;
        for (path, content) in files {
            write_file(&self.sub_dev, path, content);
        }
        t.git(&self.sub_dev, &["add", "-A"]);
        t.git(&self.sub_dev, &["commit", "-q", "-m", "sub change"]);
        t.git(
            &self.sub_dev,
            &["push", "-q", "origin", "HEAD:refs/heads/main"],
        );
        t.rev_parse(&self.sub_dev, "HEAD")
    }

    /// Move the project's gitlink to `commit` and push the project; returns the project's tip.
    fn push_gitlink(&self, commit: &str) -> String {
        let t = &self.t;
        let dev_sub = t.dev.join(SUB);
        t.git(&dev_sub, &["fetch", "-q", "origin"]);
        t.git(&dev_sub, &["checkout", "-q", commit]);
        let tip = t.dev_commit("move the submodule");
        t.push();
        tip
    }

    /// A new submodule commit with `files`, recorded by a new project commit that is pushed.
    fn push_submodule_change(&self, files: &[(&str, &str)]) -> (String, String) {
        let commit = self.push_to_submodule(files);
        let tip = self.push_gitlink(&commit);
        (commit, tip)
    }

    fn co_sub(&self) -> PathBuf {
        self.t.co(SUB)
    }

    fn sub_head(&self) -> String {
        self.t.rev_parse(&self.co_sub(), "HEAD")
    }

    /// Both repositories as git wants them: the project clean and on its remote's tip, the
    /// submodule clean and at its gitlink (`git submodule status` without `+`), `git fsck`
    /// passing in both.
    #[track_caller]
    fn assert_all_clean(&self) {
        assert_git_clean(&self.t, &Clean::strict());
        self.assert_submodule_clean();
    }

    /// The submodule clean and at its gitlink, `git fsck` passing in both repositories.
    #[track_caller]
    fn assert_submodule_clean(&self) {
        let t = &self.t;
        let status = t.git(
            &self.co_sub(),
            &["status", "--porcelain", "--untracked-files=all"],
        );
        assert_eq!(status, "", "`git status` in the submodule");
        let submodules = t.git(&t.checkout, &["submodule", "status"]);
        assert!(
            submodules.starts_with(' '),
            "`git submodule status`: {submodules}"
        );
        t.git(&t.checkout, &["fsck", "--no-progress"]);
        t.git(&self.co_sub(), &["fsck", "--no-progress"]);
    }
}

#[test]
fn a_moved_gitlink_brings_the_submodule_to_the_recorded_commit() {
    let s = WithSubmodule::new();
    let t = &s.t;
    let (commit, tip) = s.push_submodule_change(&[("x.py", "x = 2\n"), ("y.py", "y = 1\n")]);
    t.git(&s.sub_dev, &["rm", "-q", "docs/notes.md"]);
    t.git(&s.sub_dev, &["commit", "-q", "-m", "drop the notes"]);
    t.git(
        &s.sub_dev,
        &["push", "-q", "origin", "HEAD:refs/heads/main"],
    );
    let commit2 = t.rev_parse(&s.sub_dev, "HEAD");
    assert_ne!(commit, commit2);
    let tip2 = s.push_gitlink(&commit2);
    assert_ne!(tip, tip2);

    let old = t.head();
    let out = t.run(&["run", "--submodules", "update"]);
    out.code(0).stderr_empty();
    // Two project commits move the gitlink; the submodule's update writes x.py, y.py and
    // removes docs/notes.md: the line counts them all.
    assert_eq!(
        out.stdout,
        format!(
            "updated main {}..{} (4 files); restarted: web worker\n",
            &old[..7],
            &tip2[..7]
        )
    );

    assert_eq!(t.head(), tip2);
    assert_eq!(s.sub_head(), commit2);
    assert_eq!(t.co_read("lib/sub/x.py"), "x = 2\n");
    assert_eq!(t.co_read("lib/sub/y.py"), "y = 1\n");
    assert!(
        !t.co("lib/sub/docs").exists(),
        "the deleted file's directory is gone"
    );
    // The submodule's HEAD stays detached, as `git submodule update` leaves it.
    let symbolic = t.git_output(&s.co_sub(), &["symbolic-ref", "-q", "HEAD"]);
    assert!(!symbolic.status.success(), "HEAD is detached");
    assert_eq!(t.restart_calls(), vec![RESTART_DEFAULT.to_string()]);
    s.assert_all_clean();
}

#[test]
fn the_config_key_opts_in_too() {
    let s = WithSubmodule::new();
    let t = &s.t;
    let (commit, _) = s.push_submodule_change(&[("x.py", "x = 2\n")]);
    let cfg = t.config_file("submodules: update\n");
    t.run(&["run", "--config", path_str(&cfg)]).code(0);
    assert_eq!(s.sub_head(), commit);
    s.assert_all_clean();
}

#[test]
fn a_service_mapped_to_a_path_inside_the_submodule_is_restarted() {
    let s = WithSubmodule::new();
    let t = &s.t;
    s.push_submodule_change(&[("x.py", "x = 2\n")]);
    let cfg = t.config_file(
        "submodules: update\n\
         services:\n  \
           web:\n    paths: [\"app/**\"]\n  \
           lib:\n    paths: [\"lib/sub/*.py\"]\n",
    );
    t.run_mapped(&["run", "--config", path_str(&cfg)]).code(0);
    assert_eq!(t.action_calls(), vec!["restart lib".to_string()]);
    s.assert_all_clean();
}

#[test]
fn local_changes_inside_the_submodule_refuse_and_nothing_is_touched() {
    let s = WithSubmodule::new();
    let t = &s.t;
    let old_head = t.head();
    let old_sub = s.sub_head();
    s.push_submodule_change(&[("x.py", "x = 2\n")]);
    t.co_write("lib/sub/x.py", "x = 'mine'\n");
    let before = Snapshot::of(&t.checkout);

    let out = t.run(&["run", "--submodules", "update"]);
    out.code(4);
    assert_eq!(
        out.error_line(),
        "pullstart: refused: local changes to lib/sub/x.py (modified) would be overwritten; \
         commit, stash or remove them (nothing was touched)"
    );

    Snapshot::of(&t.checkout).assert_same(&before, "a refused run");
    assert_eq!(t.head(), old_head);
    assert_eq!(s.sub_head(), old_sub);
    assert_eq!(t.co_read("lib/sub/x.py"), "x = 'mine'\n");
    assert!(t.action_calls().is_empty(), "{:?}", t.action_calls());
    assert!(!t.git_dir().join("pullstart-journal").exists());
    assert!(!t
        .git_dir()
        .join("modules/lib/sub/pullstart-journal")
        .exists());
}

#[test]
fn a_branch_checked_out_in_the_submodule_refuses() {
    let s = WithSubmodule::new();
    let t = &s.t;
    let old_head = t.head();
    t.git(&s.co_sub(), &["checkout", "-q", "-b", "mine"]);
    s.push_submodule_change(&[("x.py", "x = 2\n")]);
    let out = t.run(&["run", "--submodules", "update"]);
    out.code(4)
        .stderr_contains("submodule `lib/sub` has branch `mine` checked out");
    assert_eq!(t.head(), old_head);
}

#[test]
fn by_default_only_the_gitlink_moves() {
    let s = WithSubmodule::new();
    let t = &s.t;
    let old_sub = s.sub_head();
    let (_, tip) = s.push_submodule_change(&[("x.py", "x = 2\n")]);
    t.run(&["run"]).code(0);
    assert_eq!(t.head(), tip);
    assert_eq!(s.sub_head(), old_sub);
    assert_eq!(t.co_read("lib/sub/x.py"), "x = 1\n");
    let submodules = t.git(&t.checkout, &["submodule", "status"]);
    assert!(submodules.starts_with('+'), "{submodules}");
}

#[test]
fn a_submodule_fetch_failure_exits_3_touching_nothing_and_the_next_run_retries() {
    let s = WithSubmodule::new();
    let t = &s.t;
    let old_head = t.head();
    let old_sub = s.sub_head();
    let (commit, tip) = s.push_submodule_change(&[("x.py", "x = 2\n")]);
    let away = t.root.join("sub-away.git");
    fs::rename(&s.sub_remote, &away).unwrap();
    let before = Snapshot::of(&t.checkout);

    let out = t.run(&["run", "--submodules", "update"]);
    out.code(3);
    let line = out.error_line();
    assert!(
        line.starts_with(&format!(
            "pullstart: submodule `lib/sub`: failed to fetch `{commit}`"
        )),
        "{line}"
    );
    assert!(line.ends_with("nothing was touched"), "{line}");
    Snapshot::of(&t.checkout).assert_same(&before, "a failed submodule fetch");
    assert_eq!(t.head(), old_head);
    assert_eq!(s.sub_head(), old_sub);
    assert!(t.action_calls().is_empty());

    fs::rename(&away, &s.sub_remote).unwrap();
    t.run(&["run", "--submodules", "update"]).code(0);
    assert_eq!(t.head(), tip);
    assert_eq!(s.sub_head(), commit);
    assert_eq!(t.restart_calls(), vec![RESTART_DEFAULT.to_string()]);
    s.assert_all_clean();
}

#[test]
fn a_submodule_behind_its_gitlink_is_updated_by_a_later_run() {
    let s = WithSubmodule::new();
    let t = &s.t;
    let (commit, tip) = s.push_submodule_change(&[("x.py", "x = 2\n")]);
    // A run without the setting moves only the gitlink; the services count as deployed.
    t.run(&["run"]).code(0);
    assert_eq!(t.deployed(), Some(tip.clone()));
    t.clear_compose_log();

    let cfg = t.config_file(
        "submodules: update\n\
         services:\n  \
           lib:\n    paths: [\"lib/sub/**\"]\n",
    );
    let out = t.run_mapped(&["run", "--config", path_str(&cfg)]);
    out.code(0).stderr_empty();
    assert_eq!(
        out.stdout,
        format!(
            "updated main {}..{} (1 file); restarted: lib\n",
            &tip[..7],
            &tip[..7]
        )
    );
    assert_eq!(s.sub_head(), commit);
    assert_eq!(t.head(), tip);
    // What changed on disk inside the submodule concerns its service.
    assert_eq!(t.action_calls(), vec!["restart lib".to_string()]);
    s.assert_all_clean();

    // And then there is nothing left to do.
    t.clear_compose_log();
    t.run_mapped(&["run", "--config", path_str(&cfg)])
        .code(0)
        .silent();
    assert!(t.action_calls().is_empty());
}

#[test]
fn check_reports_local_changes_inside_the_submodule() {
    let s = WithSubmodule::new();
    let t = &s.t;
    s.push_submodule_change(&[("x.py", "x = 2\n")]);
    t.co_write("lib/sub/x.py", "x = 'mine'\n");
    t.run(&["check", "--submodules", "update"])
        .code(4)
        .stderr_contains("lib/sub/x.py (modified)");
}

#[test]
fn an_uninitialised_submodule_is_left_alone_with_a_warning() {
    let s = WithSubmodule::new();
    let t = &s.t;
    let mut deinit = ALLOW_FILE.to_vec();
    deinit.extend(["submodule", "deinit", "-q", "--all"]);
    t.git(&t.checkout, &deinit);
    let (_, tip) = s.push_submodule_change(&[("x.py", "x = 2\n")]);
    let out = t.run(&["run", "--submodules", "update"]);
    out.code(0).stderr_contains(
        "warning: submodule `lib/sub` is not initialised, so only its gitlink moves; \
         run `git submodule update --init --recursive` once",
    );
    assert_eq!(t.head(), tip);
    assert_eq!(fs::read_dir(s.co_sub()).unwrap().count(), 0);
    assert_git_clean(t, &Clean::strict());
}

#[test]
fn a_run_killed_while_it_moved_the_submodule_is_finished_by_the_next_run() {
    use std::os::unix::process::ExitStatusExt;
    let s = WithSubmodule::new();
    let t = &s.t;
    let (commit, tip) = s.push_submodule_change(&[("x.py", "x = 2\n"), ("y.py", "y = 1\n")]);
    // The first write is the project's gitlink; the second is the submodule's first file.
    let out = t
        .pullstart()
        .args(t.full_args(&["run", "--submodules", "update"]))
        .env("PULLSTART_FAILPOINT", "write-file:2")
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(t.head(), tip, "the project moved before the submodule");
    assert!(t
        .git_dir()
        .join("modules/lib/sub/pullstart-journal")
        .exists());
    assert!(t.action_calls().is_empty());

    t.run(&["run", "--submodules", "update"]).code(0);
    assert_eq!(s.sub_head(), commit);
    assert_eq!(t.co_read("lib/sub/y.py"), "y = 1\n");
    assert!(!t
        .git_dir()
        .join("modules/lib/sub/pullstart-journal")
        .exists());
    // The killed run never restarted; this one does, and records the deployment.
    assert_eq!(t.restart_calls(), vec![RESTART_DEFAULT.to_string()]);
    assert_eq!(t.deployed(), Some(tip));
    s.assert_all_clean();
}

#[test]
fn a_nested_submodule_follows_its_parent() {
    let s = WithSubmodule::new();
    let t = &s.t;
    // inner.git becomes submodule `vendor/inner` of the submodule, initialised everywhere.
    let inner_dev = t.root.join("innerdev");
    t.git(&t.root, &["init", "-q", "--bare", "inner.git"]);
    t.git(&t.root, &["clone", "-q", "inner.git", "innerdev"]);
    write_file(&inner_dev, "i.txt", "i1\n");
    t.git(&inner_dev, &["add", "-A"]);
    t.git(&inner_dev, &["commit", "-q", "-m", "inner initial"]);
    t.git(
        &inner_dev,
        &["push", "-q", "origin", "HEAD:refs/heads/main"],
    );
    let mut add = ALLOW_FILE.to_vec();
    add.extend(["submodule", "add", "-q", "../inner.git", "vendor/inner"]);
    t.git(&s.sub_dev, &add);
    t.git(&s.sub_dev, &["commit", "-q", "-m", "add inner"]);
    t.git(
        &s.sub_dev,
        &["push", "-q", "origin", "HEAD:refs/heads/main"],
    );
    let with_inner = t.rev_parse(&s.sub_dev, "HEAD");
    s.push_gitlink(&with_inner);
    t.git(&t.checkout, &["pull", "-q"]);
    let mut init = ALLOW_FILE.to_vec();
    init.extend(["submodule", "update", "--init", "--recursive", "-q"]);
    t.git(&t.checkout, &init);
    t.run(&["run"]).code(0);
    t.clear_compose_log();

    // A change in the inner repository, recorded by the submodule, recorded by the project.
    write_file(&inner_dev, "i.txt", "i2\n");
    t.git(&inner_dev, &["commit", "-q", "-am", "inner change"]);
    t.git(
        &inner_dev,
        &["push", "-q", "origin", "HEAD:refs/heads/main"],
    );
    let inner_commit = t.rev_parse(&inner_dev, "HEAD");
    let sub_inner = s.sub_dev.join("vendor/inner");
    t.git(&sub_inner, &["fetch", "-q", "origin"]);
    t.git(&sub_inner, &["checkout", "-q", &inner_commit]);
    t.git(&s.sub_dev, &["commit", "-q", "-am", "move inner"]);
    t.git(
        &s.sub_dev,
        &["push", "-q", "origin", "HEAD:refs/heads/main"],
    );
    let sub_commit = t.rev_parse(&s.sub_dev, "HEAD");
    let tip = s.push_gitlink(&sub_commit);

    let cfg = t.config_file(
        "submodules: update\n\
         services:\n  \
           inner:\n    paths: [\"lib/sub/vendor/inner/**\"]\n  \
           web:\n    paths: [\"app/**\"]\n",
    );
    t.run_mapped(&["run", "--config", path_str(&cfg)]).code(0);
    assert_eq!(t.head(), tip);
    assert_eq!(s.sub_head(), sub_commit);
    let co_inner = t.co("lib/sub/vendor/inner");
    assert_eq!(t.rev_parse(&co_inner, "HEAD"), inner_commit);
    assert_eq!(t.co_read("lib/sub/vendor/inner/i.txt"), "i2\n");
    assert_eq!(t.action_calls(), vec!["restart inner".to_string()]);
    s.assert_all_clean();
    let recursive = t.git(&t.checkout, &["submodule", "status", "--recursive"]);
    assert!(
        recursive.lines().all(|line| line.starts_with(' ')),
        "{recursive}"
    );
    assert_eq!(t.git(&co_inner, &["status", "--porcelain"]), "");
    t.git(&co_inner, &["fsck", "--no-progress"]);
}

/// One `ps -a --format json` line as Compose v2 prints it (the fields the health wait reads).
fn compose_row(id: &str, service: &str, state: &str, exit_code: i32) -> String {
    format!(
        r#"{{"ExitCode":{exit_code},"Health":"","ID":"{id}","Labels":"com.docker.compose.oneoff=False,com.docker.compose.service={service}","Name":"demo-{service}-1","Service":"{service}","State":"{state}","Status":"irrelevant"}}"#
    )
}

#[test]
fn a_rollback_moves_the_submodule_back_too() {
    let s = WithSubmodule::new();
    let t = &s.t;
    let old_head = t.head();
    let old_sub = s.sub_head();
    s.push_submodule_change(&[("x.py", "x = 2\n"), ("y.py", "y = 1\n")]);
    // compose's view: web exited, so the health check fails (after the rollback too).
    t.compose_ps(&format!(
        "{}\n{}\n",
        compose_row("0badc0de0001", "web", "exited", 3),
        compose_row("0badc0de0002", "worker", "running", 0),
    ));
    let out = t.run(&[
        "run",
        "--submodules",
        "update",
        "--rollback",
        "--health-timeout",
        "2s",
        "--health-settle",
        "0",
    ]);
    out.code(6);
    assert_eq!(t.head(), old_head, "{}", out.stderr);
    assert_eq!(
        s.sub_head(),
        old_sub,
        "the submodule went back with the checkout"
    );
    assert_eq!(t.co_read("lib/sub/x.py"), "x = 1\n");
    assert!(!t.co("lib/sub/y.py").exists());
    // Clean, on the deployed commit (not the remote's tip, which is rejected).
    assert_eq!(t.git(&t.checkout, &["status", "--porcelain"]), "");
    s.assert_submodule_clean();
}

/// A process sharing the checkout swaps the submodule's parent directory for a symlink to
/// another repository on the host, with the same history: pullstart must not update that one.
/// The superproject's guard would refuse later (`lib` is no longer a directory), but a swap
/// after the guard must not get further: the submodule's repository is refused as soon as it is
/// opened, and its writes go through directory descriptors walked from the checkout's root.
#[test]
fn a_symlink_swapped_in_on_the_submodule_s_way_does_not_lead_to_another_repository() {
    let s = WithSubmodule::new();
    let t = &s.t;
    let host = t.root.join("host");
    fs::create_dir(&host).unwrap();
    t.git(&host, &["clone", "-q", path_str(&s.sub_remote), "sub"]);
    t.git(&host.join("sub"), &["checkout", "-q", "--detach"]);
    let host_head = t.rev_parse(&host.join("sub"), "HEAD");
    let host_files = Snapshot::of(&host.join("sub"));
    s.push_submodule_change(&[("x.py", "x = 2\n")]);
    fs::rename(t.co("lib"), t.co("lib.moved")).unwrap();
    std::os::unix::fs::symlink(&host, t.co("lib")).unwrap();

    let out = t.run(&["run", "--submodules", "update"]);
    out.code(2);
    assert!(
        out.error_line().contains("keeps its repository outside"),
        "{}",
        out.stderr
    );
    assert_eq!(t.rev_parse(&host.join("sub"), "HEAD"), host_head);
    host_files.assert_same(&Snapshot::of(&host.join("sub")), "the host's repository");
}
