//! Property tests (issue 6's fuzzing) for the code that decides what may be printed, what may be
//! written, and what configuration is accepted: `redact::redact`, `plan::unsafe_path` and the
//! config parser behind `Settings::resolve`.
//!
//! proptest rather than cargo-fuzz: fuzzing needs a nightly toolchain and a library target, and
//! this crate is a binary built on stable. The default run is bounded (proptest's 256 cases per
//! property, a second or two); longer runs:
//!
//!     PROPTEST_CASES=100000 cargo test --bin pullstart props
//!
//! Failures are not persisted to files: a failing case is printed minimised, and belongs in the
//! unit tests of the module it breaks.

use clap::Parser;
use gix::bstr::ByteSlice;
use gix::objs::tree::EntryKind;
use proptest::prelude::*;
use proptest::test_runner::Config;

use crate::cli::Cli;
use crate::exit::{code_of, ExitCode};
use crate::plan::unsafe_path;
use crate::redact::redact;
use crate::settings::Settings;

fn config() -> Config {
    // PROPTEST_CASES (read by `Config::default`) sets the number of cases.
    Config {
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// redact
// ---------------------------------------------------------------------------------------------

fn any_scheme() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "http",
        "https",
        "HTTPS",
        "git+https",
        "ssh",
        "git",
        "ftp",
        "git+ssh",
        "svn+ssh",
    ])
}

fn http_scheme() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "http",
        "https",
        "HTTP",
        "Https",
        "git+https",
        "git+http",
    ])
}

/// A user name as URLs carry it: unreserved characters and percent-escapes.
fn user() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._~-]{1,10}(%[0-9A-F]{2})?"
}

/// A password as RFC 3986 allows it raw in the userinfo: unreserved characters, percent-escapes,
/// sub-delims and `:`.
fn password() -> impl Strategy<Value = String> {
    "([A-Za-z0-9._~!$&'()*+,;=:-]|%[0-9A-F]{2}){6,24}"
}

/// A token used as the user of an http(s) URL, the way GitHub and GitLab tokens are.
fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{6,40}"
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5}){0,2}(:[0-9]{1,5})?",
        Just("[::1]:8443".to_string()),
        Just("[fe80::1]".to_string()),
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
    ]
}

/// Nothing, or a path (which may hold an `@`, like npm scopes), query or fragment.
fn rest() -> impl Strategy<Value = String> {
    "((/[A-Za-z0-9._~@-]{0,10}){1,3}(\\?[a-z]=[a-z0-9@]{0,5})?(#[a-z]{0,5})?)?"
}

/// Running text around a URL: anything without `://`.
fn text() -> impl Strategy<Value = String> {
    any::<String>().prop_filter("no URL", |s| !s.contains("://"))
}

/// What may stand right before a URL in running text: none of the scheme's own characters.
fn before() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        " ",
        "\n",
        "\t",
        "\"",
        "'",
        "`",
        "(",
        "<",
        "=",
        ": ",
        "[",
        "{\"url\":\"",
    ])
}

/// What may end a URL in running text.
fn after() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![" ", "\n", "\t", "\"", "'", "`", ">", "", "\r\n"])
}

proptest! {
    #![proptest_config(config())]

    /// `scheme://user:PASSWORD@host/...` shows as `scheme://user:***@host/...`, exactly.
    #[test]
    fn redact_masks_a_password_exactly(scheme in any_scheme(), user in user(), password in password(), host in host(), rest in rest()) {
        let url = format!("{scheme}://{user}:{password}@{host}{rest}");
        let expected = format!("{scheme}://{user}:***@{host}{rest}");
        prop_assert_eq!(redact(&url), expected);
    }

    /// `http(s)://TOKEN@host/...` shows as `http(s)://***@host/...`, exactly.
    #[test]
    fn redact_masks_an_http_token_exactly(scheme in http_scheme(), token in token(), host in host(), rest in rest()) {
        let url = format!("{scheme}://{token}@{host}{rest}");
        let expected = format!("{scheme}://***@{host}{rest}");
        prop_assert_eq!(redact(&url), expected);
    }

    /// Wherever a URL with a credential stands in arbitrary text, the credential never shows.
    #[test]
    fn redact_never_prints_a_credential_in_running_text(
        prefix in text(), b in before(), scheme in any_scheme(), http in http_scheme(),
        user in user(), password in password(), token in token(), host in host(), rest in rest(),
        a in after(), suffix in text(), use_token in any::<bool>(),
    ) {
        let (url, secret) = if use_token {
            (format!("{http}://{token}@{host}{rest}"), token)
        } else {
            (format!("{scheme}://{user}:{password}@{host}{rest}"), password)
        };
        let input = format!("{prefix}{b}{url}{a}{suffix}");
        // The secret must not occur elsewhere in the text, or its showing there would be no leak.
        prop_assume!(input.matches(secret.as_str()).count() == 1);
        prop_assume!(!format!("{prefix}{b}{a}{suffix}{user}{host}{rest}").contains(secret.as_str()));
        let out = redact(&input);
        prop_assert!(!out.contains(secret.as_str()), "{:?} -> {:?}", input, out);
    }

    /// Redacting twice changes nothing more: URLs, hostile near-URLs and arbitrary text.
    #[test]
    fn redact_is_idempotent(
        s in prop_oneof![
            any::<String>(),
            "([a-z+]{0,6}://[A-Za-z0-9:@/?#%\\[\\]*'\"`<> .-]{0,30}){1,3}",
        ],
    ) {
        let once = redact(&s).into_owned();
        prop_assert_eq!(redact(&once), once.as_str());
    }

    /// Text without a URL comes back unchanged (and unallocated).
    #[test]
    fn redact_leaves_url_free_text_alone(s in text()) {
        match redact(&s) {
            std::borrow::Cow::Borrowed(out) => prop_assert_eq!(out, s.as_str()),
            std::borrow::Cow::Owned(out) => prop_assert!(false, "{:?} changed to {:?}", s, out),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// unsafe_path
// ---------------------------------------------------------------------------------------------

/// An ordinary file or directory name: never special to git on any file system.
fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_][a-zA-Z0-9_-]{0,8}(\\.[a-z]{1,4})?"
}

fn names() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(name(), 1..6)
}

fn kind() -> impl Strategy<Value = EntryKind> {
    prop::sample::select(vec![
        EntryKind::Blob,
        EntryKind::BlobExecutable,
        EntryKind::Link,
    ])
}

/// `.git` in any case.
fn dot_git() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<bool>(), 3).prop_map(|upper| {
        let mut s = String::from(".");
        for (c, up) in "git".chars().zip(upper) {
            s.push(if up { c.to_ascii_uppercase() } else { c });
        }
        s
    })
}

/// `names` with `special` put in at `at` (modulo the length + 1).
fn with_component(mut names: Vec<String>, at: usize, special: String) -> String {
    let at = at % (names.len() + 1);
    names.insert(at, special);
    names.join("/")
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ordinary_paths_are_safe(names in names(), kind in kind()) {
        let path = names.join("/");
        prop_assert_eq!(unsafe_path(path.as_bytes().as_bstr(), kind), None, "{}", path);
    }

    #[test]
    fn a_dot_git_component_in_any_case_is_unsafe(names in names(), at in any::<usize>(), dot_git in dot_git(), kind in kind()) {
        let path = with_component(names, at, dot_git);
        prop_assert!(unsafe_path(path.as_bytes().as_bstr(), kind).is_some(), "{}", path);
    }

    #[test]
    fn ntfs_spellings_of_dot_git_are_unsafe(
        names in names(), at in any::<usize>(), kind in kind(),
        special in prop::sample::select(vec![".git.", ".git ", ".GIT..", ".git. .", "git~1", "GIT~1"]),
    ) {
        let path = with_component(names, at, special.to_string());
        prop_assert!(unsafe_path(path.as_bytes().as_bstr(), kind).is_some(), "{}", path);
    }

    #[test]
    fn dot_and_dot_dot_components_are_unsafe(
        names in names(), at in any::<usize>(), kind in kind(),
        special in prop::sample::select(vec![".", ".."]),
    ) {
        let path = with_component(names, at, special.to_string());
        prop_assert!(unsafe_path(path.as_bytes().as_bstr(), kind).is_some(), "{}", path);
    }

    #[test]
    fn empty_components_are_unsafe(names in names(), at in any::<usize>(), kind in kind()) {
        // `a//b`, a leading `/` (absolute), a trailing `/`.
        let path = with_component(names, at, String::new());
        prop_assert!(unsafe_path(path.as_bytes().as_bstr(), kind).is_some(), "{:?}", path);
    }

    #[test]
    fn absolute_paths_are_unsafe(names in names(), kind in kind()) {
        let path = format!("/{}", names.join("/"));
        prop_assert!(unsafe_path(path.as_bytes().as_bstr(), kind).is_some(), "{}", path);
    }
}

// ---------------------------------------------------------------------------------------------
// the config parser
// ---------------------------------------------------------------------------------------------

/// The config's own keys, then nested keys and near misses.
fn keys() -> Vec<&'static str> {
    let mut keys = crate::settings::CONFIG_KEYS.to_vec();
    keys.extend([
        "before",
        "after_success",
        "on_failure",
        "web",
        "paths",
        "servics",
        "",
    ]);
    keys
}

/// Pieces of YAML and of things that are almost YAML.
fn yaml_token() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(keys()).prop_map(|k| format!("{k}:")),
        prop::sample::select(vec![
            " ",
            "  ",
            "\n",
            "\n  ",
            "\n- ",
            "- ",
            ": ",
            ":",
            "[",
            "]",
            "{",
            "}",
            ",",
            "\"",
            "'",
            "&a ",
            "*a",
            "<<: *a",
            "!!binary ",
            "!tag ",
            "|",
            ">-",
            "? ",
            "---\n",
            "...\n",
            "%YAML 1.2\n",
            "# comment",
            "\t",
            "~",
            "null",
            "yes",
            "no",
            "true",
            "0",
            "-1",
            "1.5",
            "1e400",
            "0x1f",
            "5m",
            "30s",
            "0s",
            "25h",
            "1 minute",
            "stop",
            "restart",
            "rebuild",
            "json",
            "text",
            "docker compose",
            "\"\\n\"",
            "\"\\u0000\"",
            "\"a\\tb\"",
            "../x",
            "/",
            ".",
            "é",
            "🚀",
            "\r\n",
            "\u{feff}",
            "\u{85}",
            "=",
            "@",
            "`",
            "$(x)",
            "${X}",
        ])
        .prop_map(str::to_string),
        "[a-z_]{1,8}",
        "[ -~]{1,6}",
    ]
}

fn yaml_junk() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(yaml_token(), 0..40).prop_map(|tokens| tokens.concat().into_bytes())
}

/// Well-formed YAML documents with pullstart's keys and values of every shape.
fn yaml_value(depth: u32) -> BoxedStrategy<serde_yaml::Value> {
    use serde_yaml::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>().prop_map(|n| Value::Number(n.into())),
        any::<String>().prop_map(Value::String),
        yaml_token().prop_map(Value::String),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    prop_oneof![
        3 => leaf,
        1 => prop::collection::vec(yaml_value(depth - 1), 0..4).prop_map(Value::Sequence),
        1 => prop::collection::vec((prop::sample::select(keys()), yaml_value(depth - 1)), 0..4).prop_map(|entries| {
            Value::Mapping(entries.into_iter().map(|(k, v)| (Value::String(k.to_string()), v)).collect())
        }),
    ]
    .boxed()
}

fn yaml_document() -> impl Strategy<Value = Vec<u8>> {
    yaml_value(3).prop_map(|value| {
        serde_yaml::to_string(&value)
            .unwrap_or_default()
            .into_bytes()
    })
}

/// Resolving `--config FILE` with these bytes: never a panic; an error is one line starting with
/// `config ` and a usage error (exit 2).
fn check_config(dir: &std::path::Path, bytes: &[u8]) -> Result<(), TestCaseError> {
    let path = dir.join("pullstart.yml");
    std::fs::write(&path, bytes).unwrap();
    let cli = Cli::try_parse_from(["pullstart".as_ref(), "--config".as_ref(), path.as_os_str()])
        .expect("the command line itself is valid");
    if let Err(err) = Settings::resolve(cli) {
        let message = err.to_string();
        prop_assert!(!message.contains('\n'), "not one line: {:?}", message);
        prop_assert!(message.starts_with("config "), "{:?}", message);
        prop_assert_eq!(code_of(&err), ExitCode::Usage, "{}", message);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn config_of_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let dir = tempfile::tempdir().unwrap();
        check_config(dir.path(), &bytes)?;
    }

    #[test]
    fn config_of_yaml_ish_junk(bytes in yaml_junk()) {
        let dir = tempfile::tempdir().unwrap();
        check_config(dir.path(), &bytes)?;
    }

    #[test]
    fn config_of_well_formed_yaml(bytes in yaml_document()) {
        let dir = tempfile::tempdir().unwrap();
        check_config(dir.path(), &bytes)?;
    }

    /// Values that hold line breaks (a `|` block, a quoted `\n`), alone or in a list, under
    /// every key: the message that quotes a bad value still fits on one line.
    #[test]
    fn config_values_with_line_breaks(
        key in prop::sample::select(crate::settings::CONFIG_KEYS.to_vec()),
        value in "[a-z -]{0,6}[\n\r\u{85}\u{2028}][a-z -]{0,6}",
        in_list in any::<bool>(),
    ) {
        use serde_yaml::Value;
        let value = Value::String(value);
        let value = if in_list { Value::Sequence(vec![value]) } else { value };
        let document = Value::Mapping([(Value::String(key.to_string()), value)].into_iter().collect());
        let dir = tempfile::tempdir().unwrap();
        check_config(dir.path(), serde_yaml::to_string(&document).unwrap().as_bytes())?;
    }
}
