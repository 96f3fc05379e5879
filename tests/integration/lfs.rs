//! Git LFS: an update with `filter=lfs` files is refused (exit 2, nothing touched) when git-lfs
//! is not set up for the checkout, instead of writing the pointer text into the worktree.
//! git-lfs itself is not needed: the pointer files are committed as plain text.

use crate::refusals::Untouched;
use crate::support::*;

const ATTRIBUTES: &str = "*.bin filter=lfs diff=lfs merge=lfs -text\n";

fn pointer(size: usize) -> String {
    format!(
        "version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize {size}\n",
        "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393"
    )
}

#[track_caller]
fn refused_naming(t: &Fixture, command: &str, paths: &[&str]) {
    let before = Untouched::capture(t);
    let out = t.run(&[command]);
    out.code(2).stdout_empty();
    let line = out.error_line();
    for needle in paths
        .iter()
        .chain(&["git lfs install", "nothing was touched"])
    {
        assert!(
            line.contains(needle),
            "the error line should name {needle}: {line}"
        );
    }
    before.assert(t);
    assert_ne!(
        t.deployed(),
        Some(t.remote_tip()),
        "the deployed ref moved to the tip"
    );
}

#[test]
fn refuses_lfs_files_when_git_lfs_is_not_set_up() {
    let t = Fixture::new();
    t.dev_write(".gitattributes", ATTRIBUTES);
    t.dev_write("model.bin", pointer(12));
    t.dev_write("app/main.py", "print('v2')\n");
    t.dev_commit("add a model through LFS");
    t.push();
    refused_naming(&t, "check", &["`model.bin`"]);
    refused_naming(&t, "run", &["`model.bin`"]);
    assert!(!t.co("model.bin").exists());
    assert!(!t.co(".gitattributes").exists());
    assert_eq!(t.co_read("app/main.py"), "print('hello')\n");
}

/// `filter=lfs` from the user's attributes file (`core.attributesFile`), not from the tree.
#[test]
fn refuses_lfs_files_named_by_core_attributes_file() {
    let t = Fixture::new();
    let attributes = t.root.join("user-attributes");
    std::fs::write(&attributes, ATTRIBUTES).unwrap();
    t.git(
        &t.checkout,
        &["config", "core.attributesFile", path_str(&attributes)],
    );
    t.dev_write("model.bin", pointer(12));
    t.dev_commit("add a model through LFS");
    t.push();
    refused_naming(&t, "run", &["`model.bin`"]);
    assert!(!t.co("model.bin").exists());
}

#[test]
fn refuses_lfs_files_under_a_nested_gitattributes() {
    let t = Fixture::new();
    t.dev_write("assets/.gitattributes", "*.png filter=lfs -text\n");
    t.dev_write("assets/img/logo.png", pointer(3));
    t.dev_write("assets/readme.txt", "plain\n");
    t.dev_commit("lfs below assets");
    t.push();
    refused_naming(&t, "run", &["`assets/img/logo.png`"]);
    let line = t.run(&["run"]).error_line();
    assert!(
        !line.contains("readme.txt"),
        "only LFS paths are named: {line}"
    );
}

#[test]
fn updates_normally_when_no_lfs_path_changes() {
    let mut files = INITIAL_FILES.to_vec();
    let model = pointer(12);
    files.push((".gitattributes", ATTRIBUTES));
    files.push(("model.bin", &model));
    let t = Fixture::with_files(&files);
    t.push_files(&[("app/main.py", "print('v2')\n")]);
    let out = t.run(&["run"]);
    out.code(0).stderr_empty();
    assert_eq!(t.head(), t.remote_tip());
    assert_eq!(t.co_read("app/main.py"), "print('v2')\n");
    assert_eq!(t.co_read("model.bin"), model);
}

#[test]
fn proceeds_when_an_lfs_smudge_filter_is_configured() {
    let t = Fixture::new();
    // Stands in for `git lfs install`: a smudge filter that passes the pointer through.
    t.git(&t.checkout, &["config", "filter.lfs.smudge", "cat"]);
    t.dev_write(".gitattributes", ATTRIBUTES);
    t.dev_write("model.bin", pointer(12));
    t.dev_commit("add a model through LFS");
    t.push();
    t.run(&["run"]).code(0).stderr_empty();
    assert_eq!(t.head(), t.remote_tip());
    assert_eq!(t.co_read("model.bin"), pointer(12));
}
