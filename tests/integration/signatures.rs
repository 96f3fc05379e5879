//! `verify_signatures`: only commits signed by a key the host trusts are deployed.
//!
//! The commits are signed by the git CLI itself: SSH signatures (`gpg.format=ssh`) with keys
//! made by `ssh-keygen`, OpenPGP signatures with keys made by `gpg --quick-gen-key` in the
//! fixture's own HOME (so its agent and keyring are the test's alone). Every refused push must
//! leave the checkout, its refs and the services untouched.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// An SSH key pair made by `ssh-keygen` under the fixture's root.
struct SshKey {
    private: PathBuf,
    public: String,
}

fn ssh_key(t: &Fixture, name: &str) -> SshKey {
    let dir = t.root.join("keys");
    fs::create_dir_all(&dir).unwrap();
    let private = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&private)
        .output()
        .expect("ssh-keygen runs");
    assert!(out.status.success(), "ssh-keygen: {out:?}");
    let public = fs::read_to_string(private.with_extension("pub")).unwrap();
    SshKey {
        private,
        public: public.trim().to_string(),
    }
}

/// An allowed-signers file with one line per `(principal, options, key)`.
fn allowed_signers(t: &Fixture, lines: &[(&str, &str, &SshKey)]) -> PathBuf {
    let path = t.root.join("allowed_signers");
    let text: String = lines
        .iter()
        .map(|(principal, options, key)| {
            let options = if options.is_empty() {
                String::new()
            } else {
                format!("{options} ")
            };
            format!("{principal} {options}{}\n", key.public)
        })
        .collect();
    fs::write(&path, text).unwrap();
    path
}

/// Makes the dev clone sign its next commits with `key` (SSH), or stop signing (`None`).
fn sign_with_ssh(t: &Fixture, key: Option<&SshKey>) {
    match key {
        Some(key) => {
            t.git(&t.dev, &["config", "gpg.format", "ssh"]);
            t.git(
                &t.dev,
                &["config", "user.signingKey", path_str(&key.private)],
            );
            t.git(&t.dev, &["config", "commit.gpgSign", "true"]);
        }
        None => {
            t.git(&t.dev, &["config", "commit.gpgSign", "false"]);
        }
    }
}

/// The checkout as git sees it: HEAD, the worktree's status and the fsck verdict.
fn assert_untouched(t: &Fixture, head: &str, deployed: Option<String>) {
    assert_eq!(t.head(), head, "HEAD moved");
    assert_eq!(t.deployed(), deployed, "refs/pullstart/deployed moved");
    assert_eq!(t.git(&t.checkout, &["status", "--porcelain"]), "");
    t.git(&t.checkout, &["fsck", "--no-progress"]);
    assert!(t.action_calls().is_empty(), "{:?}", t.action_calls());
}

fn flag(path: &Path) -> String {
    path_str(path).to_string()
}

#[test]
fn ssh_signed_pushes_deploy_and_an_unsigned_one_exits_9_touching_nothing() {
    let t = Fixture::new();
    let key = ssh_key(&t, "dev");
    let signers = allowed_signers(&t, &[("dev@example.com", "", &key)]);
    let signers_flag = flag(&signers);

    sign_with_ssh(&t, Some(&key));
    let signed = t.push_files(&[("app/main.py", "v2\n")]);
    t.run(&["run", "--allowed-signers", &signers_flag]).code(0);
    assert_eq!(t.head(), signed);
    t.clear_compose_log();

    sign_with_ssh(&t, None);
    let unsigned = t.push_files(&[("app/main.py", "v3 by an attacker\n")]);
    let out = t.run(&["run", "--allowed-signers", &signers_flag]);
    out.code(9);
    let line = out.error_line();
    for words in [
        format!("untrusted commit {unsigned}"),
        "is unsigned".to_string(),
        format!("`{signers_flag}`"),
    ] {
        assert!(line.contains(&words), "`{words}` missing: {line}");
    }
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert_untouched(&t, &signed, Some(signed.clone()));
    assert_eq!(t.co_read("app/main.py"), "v2\n");

    // JSON says so, with no services; the next run tries again and refuses again.
    let out = t.run(&[
        "run",
        "--allowed-signers",
        &signers_flag,
        "--output",
        "json",
    ]);
    out.code(9);
    let j = out.json();
    assert_eq!(j["result"], "untrusted_commit", "{j}");
    assert_eq!(j["services"], serde_json::json!([]), "{j}");
    // check and status give the same verdict and change nothing either.
    t.run(&["check", "--allowed-signers", &signers_flag])
        .code(9)
        .stderr_contains("is unsigned");
    let out = t.run(&["status", "--allowed-signers", &signers_flag]);
    out.code(0);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("signed:   untrusted commit") && l.contains("is unsigned")),
        "{}",
        out.stdout
    );
    assert_untouched(&t, &signed, Some(signed.clone()));

    // A signed commit on top does not bless the unsigned one below it (mode `all`)...
    sign_with_ssh(&t, Some(&key));
    let on_top = t.push_files(&[("app/main.py", "v4\n")]);
    t.run(&["run", "--allowed-signers", &signers_flag])
        .code(9)
        .stderr_contains(&format!("untrusted commit {unsigned}"));
    assert_untouched(&t, &signed, Some(signed.clone()));

    // ...but in mode `tip` only the tip counts, as its signer vouches for the tree.
    let config = t.config_file(&format!(
        "verify_signatures:\n  allowed_signers: {signers_flag}\n  mode: tip\n"
    ));
    t.run(&["run", "--config", path_str(&config)]).code(0);
    assert_eq!(t.head(), on_top);
    assert_eq!(t.co_read("app/main.py"), "v4\n");
}

#[test]
fn a_key_that_the_file_does_not_list_or_not_now_exits_9() {
    let t = Fixture::new();
    let listed = ssh_key(&t, "listed");
    let stranger = ssh_key(&t, "stranger");
    let signers = allowed_signers(&t, &[("dev@example.com", "", &listed)]);
    let signers_flag = flag(&signers);
    let before = t.head();

    sign_with_ssh(&t, Some(&stranger));
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    let out = t.run(&["run", "--allowed-signers", &signers_flag]);
    out.code(9);
    let line = out.error_line();
    assert!(
        line.contains(&format!("untrusted commit {tip}"))
            && line.contains("is signed by SSH key SHA256:")
            && line.contains("does not list"),
        "{line}"
    );
    assert_untouched(&t, &before, Some(before.clone()));

    // Listed, but only until 2024 (the commit's date, 2023, lies inside the window: git's
    // verify-commit would accept it; a deploy judges the key as of now).
    sign_with_ssh(&t, Some(&listed));
    t.push_files(&[("app/main.py", "v3\n")]);
    for window in ["valid-before=\"20240101\"", "valid-after=\"29990101\""] {
        let signers = allowed_signers(&t, &[("dev@example.com", window, &listed)]);
        let out = t.run(&["run", "--allowed-signers", path_str(&signers)]);
        out.code(9);
        assert!(
            out.error_line()
                .contains("does not list as a signer valid now"),
            "{window}: {}",
            out.stderr
        );
        assert_untouched(&t, &before, Some(before.clone()));
    }
    let signers = allowed_signers(&t, &[("dev@example.com", "", &listed)]);
    let out = t.run(&["run", "--allowed-signers", path_str(&signers)]);
    // The stranger's commit is still below the listed key's: mode `all` refuses it.
    out.code(9)
        .stderr_contains(&format!("untrusted commit {tip}"));
}

#[test]
fn the_checkout_s_own_allowed_signers_file_is_used_when_the_config_names_none() {
    let t = Fixture::new();
    let key = ssh_key(&t, "dev");
    let signers = allowed_signers(&t, &[("dev@example.com", "", &key)]);
    t.git(
        &t.checkout,
        &["config", "gpg.ssh.allowedSignersFile", path_str(&signers)],
    );
    let config = t.config_file("verify_signatures: true\n");
    let config = path_str(&config).to_string();

    let before = t.head();
    t.push_files(&[("app/main.py", "unsigned\n")]);
    t.run(&["run", "--config", &config])
        .code(9)
        .stderr_contains("is unsigned");
    assert_untouched(&t, &before, Some(before.clone()));

    // Without any key file the setting is refused as a usage error, before any fetch.
    t.git(
        &t.checkout,
        &["config", "--unset", "gpg.ssh.allowedSignersFile"],
    );
    t.run(&["run", "--config", &config])
        .code(2)
        .stderr_contains("names no keys");

    t.git(
        &t.checkout,
        &["config", "gpg.ssh.allowedSignersFile", path_str(&signers)],
    );
    sign_with_ssh(&t, Some(&key));
    t.git(&t.dev, &["reset", "-q", "--hard", &before]);
    t.dev_write("app/main.py", "signed\n");
    let signed = t.dev_commit("signed");
    t.force_push();
    // The remote was rewritten to drop the unsigned commit: the checkout never took it.
    t.run(&["run", "--config", &config]).code(0);
    assert_eq!(t.head(), signed);
}

#[test]
fn verify_signatures_may_not_come_from_a_config_inside_the_checkout_and_junk_is_refused() {
    let t = Fixture::with_files(&[("deploy/pullstart.yml", "verify_signatures: false\n")]);
    let inside = t.co("deploy/pullstart.yml");
    t.run(&["run", "--config", path_str(&inside)])
        .code(2)
        .stderr_contains("verify_signatures");

    for (text, words) in [
        (
            "verify_signatures: maybe\n",
            "`true`, `false`, or a mapping",
        ),
        (
            "verify_signatures: {allowed_signer: x}\n",
            "unknown key `allowed_signer`, expected one of `allowed_signers`",
        ),
        (
            "verify_signatures: {mode: some}\n",
            "unknown variant `some`",
        ),
    ] {
        let config = t.config_file(text);
        t.run(&["run", "--config", path_str(&config)])
            .code(2)
            .stderr_contains(words);
    }
    t.run(&["run", "--allowed-signers", "/nonexistent/signers"])
        .code(2)
        .stderr_contains("cannot be read");
}

// ----- OpenPGP -----

/// Runs gpg with the fixture's HOME (its own ~/.gnupg and agent), in batch mode.
fn gpg(t: &Fixture, args: &[&str]) -> String {
    let mut cmd = Command::new("gpg");
    hermetic(&mut cmd, &t.home);
    let out = cmd
        .args([
            "--batch",
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ])
        .args(args)
        .output()
        .expect("gpg runs");
    assert!(
        out.status.success(),
        "gpg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A new OpenPGP signing key for `uid`; its fingerprint.
fn gpg_key(t: &Fixture, uid: &str) -> String {
    let gnupg = t.home.join(".gnupg");
    fs::create_dir_all(&gnupg).unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut fs::metadata(&gnupg).unwrap().permissions(),
        0o700,
    );
    gpg(t, &["--quick-gen-key", uid, "ed25519", "sign", "never"]);
    let listing = gpg(t, &["--with-colons", "--list-keys", uid]);
    listing
        .lines()
        .find_map(|l| l.strip_prefix("fpr:"))
        .map(|rest| rest.trim_matches(':').to_string())
        .expect("a fingerprint")
}

/// Exports `fingerprints` (armored) into a keyring file.
fn gpg_keyring(t: &Fixture, name: &str, fingerprints: &[&str]) -> PathBuf {
    let path = t.root.join(name);
    let mut args = vec!["--armor", "--export"];
    args.extend(fingerprints);
    fs::write(&path, gpg(t, &args)).unwrap();
    path
}

fn sign_with_gpg(t: &Fixture, fingerprint: &str) {
    t.git(&t.dev, &["config", "gpg.format", "openpgp"]);
    t.git(&t.dev, &["config", "user.signingKey", fingerprint]);
    t.git(&t.dev, &["config", "commit.gpgSign", "true"]);
}

/// Stops the fixture's gpg-agent, which would outlive the test.
struct AgentStop<'a>(&'a Fixture);

impl Drop for AgentStop<'_> {
    fn drop(&mut self) {
        let mut cmd = Command::new("gpgconf");
        hermetic(&mut cmd, &self.0.home);
        let _ = cmd.args(["--kill", "all"]).output();
    }
}

#[test]
fn openpgp_signatures_by_a_key_in_the_keyring_deploy_and_others_exit_9() {
    let t = Fixture::new();
    let _agent = AgentStop(&t);
    let trusted = gpg_key(&t, "Dev Eloper <dev@example.com>");
    let stranger = gpg_key(&t, "Someone Else <else@example.com>");
    let keyring = gpg_keyring(&t, "trusted.asc", &[&trusted]);
    let keyring_flag = flag(&keyring);

    sign_with_gpg(&t, &trusted);
    let signed = t.push_files(&[("app/main.py", "v2\n")]);
    t.run(&["run", "--gpg-keyring", &keyring_flag]).code(0);
    assert_eq!(t.head(), signed);
    t.clear_compose_log();

    sign_with_gpg(&t, &stranger);
    let foreign = t.push_files(&[("app/main.py", "v3\n")]);
    let out = t.run(&["run", "--gpg-keyring", &keyring_flag]);
    out.code(9);
    let line = out.error_line();
    assert!(
        line.contains(&format!("untrusted commit {foreign}"))
            && line.contains(&format!("which `{keyring_flag}` does not hold")),
        "{line}"
    );
    assert_untouched(&t, &signed, Some(signed.clone()));

    // An SSH-only host refuses an OpenPGP signature, naming what is missing.
    let ssh = ssh_key(&t, "dev");
    let signers = allowed_signers(&t, &[("dev@example.com", "", &ssh)]);
    t.run(&["run", "--allowed-signers", path_str(&signers)])
        .code(9)
        .stderr_contains("is signed with an OpenPGP key, but no gpg_keyring is set");
}

#[test]
fn openpgp_signatures_by_a_revoked_or_expired_key_exit_9() {
    let t = Fixture::new();
    let _agent = AgentStop(&t);
    let before = t.head();

    // Revoked: GnuPG wrote a revocation certificate when it made the key; importing it (the
    // leading `:` guards against accidents) revokes the key, and the export carries that.
    let revoked = gpg_key(&t, "Revoked Key <revoked@example.com>");
    sign_with_gpg(&t, &revoked);
    let tip = t.push_files(&[("app/main.py", "by a revoked key\n")]);
    let certificate = t
        .home
        .join(".gnupg/openpgp-revocs.d")
        .join(format!("{revoked}.rev"));
    let text = fs::read_to_string(&certificate).unwrap();
    let usable = t.root.join("revoke.asc");
    fs::write(&usable, text.replace(":-----BEGIN", "-----BEGIN")).unwrap();
    gpg(&t, &["--import", path_str(&usable)]);
    let keyring = gpg_keyring(&t, "revoked.asc", &[&revoked]);
    let out = t.run(&["run", "--gpg-keyring", path_str(&keyring)]);
    out.code(9);
    assert!(
        out.error_line()
            .contains(&format!("untrusted commit {tip}"))
            && out.error_line().contains("which is revoked"),
        "{}",
        out.stderr
    );
    assert_untouched(&t, &before, Some(before.clone()));

    // Expired: a key that expires a second after the commit was signed.
    t.git(&t.dev, &["reset", "-q", "--hard", &before]);
    let expiring = gpg_key(&t, "Expiring Key <expiring@example.com>");
    sign_with_gpg(&t, &expiring);
    t.dev_write("app/main.py", "by a key that expired\n");
    let tip = t.dev_commit("expiring");
    t.force_push();
    gpg(&t, &["--quick-set-expire", &expiring, "seconds=1"]);
    let keyring = gpg_keyring(&t, "expired.asc", &[&expiring]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let out = t.run(&["run", "--gpg-keyring", path_str(&keyring)]);
    out.code(9);
    assert!(
        out.error_line()
            .contains(&format!("untrusted commit {tip}"))
            && out.error_line().contains("which has expired"),
        "{}",
        out.stderr
    );
    assert_untouched(&t, &before, Some(before.clone()));
}

// ----- the entrypoint -----

#[test]
fn the_entrypoint_does_not_clone_or_start_on_an_untrusted_tip() {
    let t = Fixture::new();
    let key = ssh_key(&t, "dev");
    let signers = allowed_signers(&t, &[("dev@example.com", "", &key)]);
    let dir = t.root.join("app");
    let started = t.root.join("started");
    let script = format!("touch '{}'", started.display());
    let url = format!("file://{}", t.remote.display());
    let entrypoint = |dir: &Path| {
        t.run_exact(&[
            "entrypoint",
            "--url",
            &url,
            "--dir",
            path_str(dir),
            "--allowed-signers",
            path_str(&signers),
            "--",
            "sh",
            "-c",
            &script,
        ])
    };

    // The remote's tip (the fixture's first commit) is unsigned: nothing is cloned or started.
    let out = entrypoint(&dir);
    out.code(9).stderr_contains("is unsigned");
    assert!(!started.exists(), "the app started on an untrusted tree");
    let left: Vec<_> = fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "the clone left {left:?}");

    // Signed: cloned, and the app starts.
    sign_with_ssh(&t, Some(&key));
    let signed = t.push_files(&[("app/main.py", "signed\n")]);
    entrypoint(&dir).code(0);
    assert!(started.exists(), "the app did not start");
    assert_eq!(t.rev_parse(&dir, "HEAD"), signed);

    // A later start with an unsigned update: the update is refused and the app starts on the
    // signed tree it has.
    fs::remove_file(&started).unwrap();
    sign_with_ssh(&t, None);
    t.push_files(&[("app/main.py", "unsigned\n")]);
    let out = entrypoint(&dir);
    out.code(0).stderr_contains("is unsigned");
    assert!(started.exists(), "the app did not start on the signed tree");
    assert_eq!(t.rev_parse(&dir, "HEAD"), signed);
}

#[test]
fn a_signed_merge_vouches_for_the_unsigned_side_it_merges() {
    let t = Fixture::new();
    let key = ssh_key(&t, "dev");
    let signers = allowed_signers(&t, &[("dev@example.com", "", &key)]);

    // A contributor's unsigned branch, merged (--no-ff) by a maintainer who signs the merge.
    t.git(&t.dev, &["checkout", "-q", "-b", "feature"]);
    t.dev_write("app/feature.py", "contributed\n");
    t.dev_commit("unsigned contribution");
    t.git(&t.dev, &["checkout", "-q", "main"]);
    sign_with_ssh(&t, Some(&key));
    t.git(
        &t.dev,
        &[
            "merge",
            "-q",
            "--no-ff",
            "-m",
            "merge the feature",
            "feature",
        ],
    );
    t.push();
    let merge = t.rev_parse(&t.dev, "HEAD");
    t.run(&["run", "--allowed-signers", path_str(&signers)])
        .code(0);
    assert_eq!(t.head(), merge);
    assert_eq!(t.co_read("app/feature.py"), "contributed\n");
}
