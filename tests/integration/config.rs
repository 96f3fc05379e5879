//! The YAML config file (`--config`): read, flags win, and a bad file is a usage error (2)
//! naming the file (and the key, and its line).

use std::path::PathBuf;

use crate::support::*;

fn config(t: &Fixture, text: &str) -> PathBuf {
    let p = t.root.join("pullstart.yml");
    std::fs::write(&p, text).unwrap();
    p
}

/// A checkout whose only remote is `prod`, with no upstream configured: without being told,
/// pullstart looks for `origin` and fails with 2.
fn fixture_with_remote_prod() -> Fixture {
    let t = Fixture::new();
    t.git(&t.checkout, &["remote", "add", "prod", path_str(&t.remote)]);
    t.git(&t.checkout, &["branch", "--unset-upstream"]);
    t.git(&t.checkout, &["remote", "remove", "origin"]);
    t
}

#[test]
fn without_a_config_the_default_remote_origin_is_missing() {
    let t = fixture_with_remote_prod();
    t.push_files(&[("app/main.py", "v2\n")]);
    let out = t.run(&["run"]);
    out.code(2);
    assert!(out.error_line().contains("origin"));
}

#[test]
fn config_file_sets_the_remote() {
    let t = fixture_with_remote_prod();
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    let cfg = config(&t, "remote: prod\n");
    t.run(&["run", "--config", path_str(&cfg)]).code(0);
    assert_eq!(t.head(), tip);
}

#[test]
fn flags_win_over_the_config_file() {
    let t = fixture_with_remote_prod();
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    let cfg = config(&t, "remote: nosuchremote\nbranch: nosuchbranch\n");
    t.run(&[
        "run",
        "--config",
        path_str(&cfg),
        "--remote",
        "prod",
        "--branch",
        "main",
    ])
    .code(0);
    assert_eq!(t.head(), tip);
}

#[test]
fn config_file_value_is_used_when_no_flag_is_given() {
    let t = Fixture::new();
    let cfg = config(&t, "branch: nosuchbranch\n");
    let out = t.run(&["run", "--config", path_str(&cfg)]);
    out.code(2);
    assert!(out.error_line().contains("nosuchbranch"));
}

#[test]
fn unknown_config_key_exits_2_naming_file_key_and_line() {
    let t = Fixture::new();
    let cfg = config(&t, "# pullstart config\n#\n#\n#\n#\n#\nno_such_option: 1\n");
    let out = t.run(&["run", "--config", path_str(&cfg)]);
    out.code(2).stdout_empty();
    let line = out.error_line();
    assert!(
        line.contains("pullstart.yml"),
        "the error should name the file: {line}"
    );
    assert!(
        line.contains("no_such_option"),
        "the error should name the key: {line}"
    );
    assert!(
        line.contains(":7") || line.contains("line 7"),
        "the error should give the line (7): {line}"
    );
    assert!(t.restart_calls().is_empty());
}

#[test]
fn malformed_yaml_exits_2_naming_the_file() {
    let t = Fixture::new();
    let cfg = config(&t, "remote: [unclosed\n");
    let out = t.run(&["run", "--config", path_str(&cfg)]);
    out.code(2).stdout_empty();
    let line = out.error_line();
    assert!(
        line.contains("pullstart.yml"),
        "the error should name the file: {line}"
    );
}

#[test]
fn wrong_type_for_a_key_exits_2_naming_the_key() {
    let t = Fixture::new();
    let cfg = config(&t, "remote:\n  nested: map\n");
    let out = t.run(&["run", "--config", path_str(&cfg)]);
    out.code(2).stdout_empty();
    let line = out.error_line();
    assert!(
        line.contains("pullstart.yml") && line.contains("remote"),
        "{line}"
    );
}

#[test]
fn missing_config_file_exits_2() {
    let t = Fixture::new();
    let missing = t.root.join("absent.yml");
    let out = t.run(&["run", "--config", path_str(&missing)]);
    out.code(2).stdout_empty();
    assert!(out.error_line().contains("absent.yml"));
}

#[test]
fn bad_config_with_json_output_is_a_usage_error_object() {
    let t = Fixture::new();
    let cfg = config(&t, "no_such_option: 1\n");
    let out = t.run(&["run", "--config", path_str(&cfg), "--output", "json"]);
    out.code(2);
    let j = out.json();
    assert_eq!(j["result"], "usage_error", "{j}");
    assert!(
        j["error"].as_str().unwrap_or("").contains("no_such_option"),
        "{j}"
    );
}
