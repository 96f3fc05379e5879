//! Hostile trees and hooks: nothing is ever written outside the worktree or into `.git`, and
//! no git hook runs.

use std::fs;

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
