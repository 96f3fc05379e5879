//! What a new user meets on the first day: a compose stand-in that cannot list containers, a
//! service that was never started, compose started from cron's `$HOME`, a bare number of
//! seconds, and the JSON fields of `check` and of a refusal as the contract states them.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::support::*;

/// A stand-in that prints its own command line for `ps`, as contrib/demo.sh's does, cannot show
/// containers: the health wait is skipped with one warning, and the run succeeds.
#[test]
fn a_compose_stand_in_that_prints_no_container_ids_skips_the_health_wait() {
    let t = Fixture::new();
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    t.compose_ps("compose -p demo ps -a -q web worker\n");
    let out = t.run(&["run", "--health-timeout", "5s", "--health-settle", "0"]);
    out.code(0);
    assert!(
        out.stdout.contains("restarted: web worker"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("health wait skipped") && out.stderr.lines().count() == 1,
        "one warning line: {}",
        out.stderr
    );
    assert_eq!(t.deployed(), Some(tip));
}

/// `docker compose restart` fails as a whole for a service with no container, so such a
/// service is left alone, the others restart, and the run succeeds (the next one is quiet).
#[test]
fn a_service_without_a_container_is_left_alone_and_the_others_restart() {
    let t = Fixture::new();
    t.compose_ps("web\n"); // `ps -a --services`: only web has a container
    t.compose_absent(&["worker"]);
    t.compose_declared(&["web", "worker"]);
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    let out = t.run(&["run"]);
    out.code(0);
    assert_eq!(
        t.action_calls(),
        vec!["restart web worker".to_string(), "restart web".to_string()]
    );
    assert!(
        out.stdout
            .contains("restarted: web; worker: no container, left alone"),
        "{}",
        out.stdout
    );
    assert_eq!(t.deployed(), Some(tip));
    t.run(&["run"]).code(0).silent();

    let tip = t.push_files(&[("app/main.py", "v3\n")]);
    let out = t.run(&["run", "--output", "json"]);
    out.code(0);
    let j = out.json();
    assert_eq!(j["services"], serde_json::json!(["web"]), "{j}");
    assert_eq!(j["left_alone"], serde_json::json!(["worker"]), "{j}");
    assert_eq!(t.deployed(), Some(tip));
}

/// A name the project does not declare is a mistake to report (exit 6), not a service to
/// leave alone.
#[test]
fn a_service_the_project_does_not_declare_still_fails_the_restart() {
    let t = Fixture::new();
    t.compose_ps("web\n");
    t.compose_absent(&["nosuch"]);
    t.compose_declared(&["web", "worker"]);
    t.push_files(&[("app/main.py", "v2\n")]);
    let out = t.run(&["run", "--services", "web,nosuch"]);
    out.code(6);
    assert!(
        out.error_line().contains("no such service: nosuch"),
        "{}",
        out.stderr
    );
    assert_eq!(t.action_calls(), vec!["restart web nosuch".to_string()]);
}

/// When no service has a container, nothing is restarted and the deployed ref still moves.
#[test]
fn a_project_without_any_listed_service_restarts_nothing() {
    let t = Fixture::new();
    t.compose_ps("tools\n");
    t.compose_absent(&["web", "worker"]);
    t.compose_declared(&["tools", "web", "worker"]);
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    let out = t.run(&["run"]);
    out.code(0);
    assert_eq!(t.action_calls(), vec!["restart web worker".to_string()]);
    assert!(
        out.stdout.contains("web: no container, left alone")
            && out.stdout.contains("worker: no container, left alone"),
        "{}",
        out.stdout
    );
    assert_eq!(t.deployed(), Some(tip));
}

/// Compose resolves `${PWD}` from the environment: a child started in the checkout sees the
/// checkout there, not the directory cron (or the operator) started pullstart from.
#[test]
fn compose_sees_the_checkout_as_pwd() {
    let t = Fixture::new();
    let log = t.root.join("pwd.log");
    let compose = t.root.join("compose-pwd");
    fs::write(
        &compose,
        format!("#!/bin/sh\necho \"$PWD\" >> '{}'\n", path_str(&log)),
    )
    .unwrap();
    fs::set_permissions(&compose, fs::Permissions::from_mode(0o755)).unwrap();
    t.push_files(&[("app/main.py", "v2\n")]);
    let mut cmd = t.pullstart();
    cmd.env("PWD", &t.home)
        .args(t.full_args(&["run", "--compose-command", path_str(&compose)]));
    let out = Outcome::of(&mut cmd, vec![]);
    out.code(0);
    let seen = fs::read_to_string(&log).unwrap();
    let checkout = fs::canonicalize(&t.checkout).unwrap();
    assert!(!seen.is_empty());
    for line in seen.lines() {
        assert_eq!(
            fs::canonicalize(line).unwrap(),
            checkout,
            "PWD seen by compose: {seen}"
        );
    }
}

/// A bare number is seconds, in flags and in the config file, as systemd and coreutils read it.
#[test]
fn a_bare_number_of_seconds_is_a_duration() {
    let t = Fixture::new();
    t.run(&["run", "--timeout", "5", "--restart-timeout", "30"])
        .code(0)
        .silent();
    let config = t.config_file("timeout: 5\nrestart_timeout: '30'\nhealth_timeout: 0\n");
    t.run(&["run", "--config", path_str(&config)])
        .code(0)
        .silent();
    let out = t.run(&["run", "--timeout", "5x"]);
    out.code(2);
    assert!(out.error_line().contains("5x"), "{}", out.stderr);
    let junk = t.config_file("timeout: [5]\n");
    let out = t.run(&["run", "--config", path_str(&junk)]);
    out.code(2);
    assert!(out.error_line().contains("duration"), "{}", out.stderr);
}

/// `check` creates no deployed ref, so its JSON says `deployed: null` while the ref is missing.
#[test]
fn check_json_reports_a_missing_deployed_ref_as_null() {
    let t = Fixture::new();
    t.push_files(&[("app/main.py", "v2\n")]);
    let out = t.run(&["check", "--output", "json"]);
    out.code(0);
    let j = out.json();
    assert_eq!(j["deployed"], serde_json::Value::Null, "{j}");
    assert_eq!(t.deployed(), None, "check must not create the ref");
}

/// After a refusal nothing was restarted: `services` is `[]`; `actions` keeps the plan.
#[test]
fn refusals_report_no_services_in_json() {
    let t = Fixture::new();
    t.co_write("app/main.py", "local\n");
    t.push_files(&[("app/main.py", "upstream\n")]);
    for command in ["run", "check"] {
        let out = t.run(&[command, "--output", "json"]);
        out.code(4);
        let j = out.json();
        assert_eq!(j["services"], serde_json::json!([]), "{command}: {j}");
    }
    t.git(&t.checkout, &["checkout", "--", "app/main.py"]);
    t.co_write("local.txt", "x\n");
    t.git(&t.checkout, &["add", "local.txt"]);
    t.git(&t.checkout, &["commit", "-qm", "local"]);
    let out = t.run(&["run", "--output", "json"]);
    out.code(5);
    assert_eq!(out.json()["services"], serde_json::json!([]));
}

/// A compose command whose `config` prints nothing usable cannot tell which services changed:
/// the run restarts all services (`restart` with no names) and says why, in text and JSON.
#[test]
fn an_unreadable_compose_project_restarts_all_services() {
    for printed in ["", "compose -p demo config\n"] {
        let t = Fixture::new();
        t.compose_config(printed);
        t.push_files(&[("app/main.py", "v2\n")]);
        let out = t.run_mapped(&["run"]);
        out.code(0);
        assert_eq!(t.action_calls(), vec!["restart".to_string()], "{printed:?}");
        assert!(
            out.stdout
                .contains("restarted: all services (the compose project could not be read"),
            "{printed:?}: {}",
            out.stdout
        );
        // JSON says the same, so that a reader can tell it from "nothing to do".
        t.push_files(&[("app/main.py", "v3\n")]);
        let j = t.run_mapped(&["check", "--output", "json"]).json();
        assert_eq!(j["all_services"], true, "{j}");
        assert_eq!(j["actions"][0]["service"], "*", "{j}");
        assert!(
            j["actions"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("could not be read"),
            "{j}"
        );
    }
}

/// A config file inside the checkout is content anyone who can push may change: it may not
/// name a host command or host path, for any subcommand.
#[test]
fn a_config_inside_the_checkout_may_not_name_host_commands_or_paths() {
    let t = Fixture::new();
    for (key, value) in [
        ("compose_command", "/bin/sh -c 'touch /tmp/pwned'"),
        ("metrics_file", "../../../x.prom"),
        ("token_file", "/etc/shadow"),
        ("ssh_key", "/root/.ssh/id_ed25519"),
    ] {
        t.push_files(&[("deploy/pullstart.yml", &format!("{key}: \"{value}\"\n"))]);
        t.git(&t.checkout, &["pull", "-q", "--ff-only"]);
        let config = t.co("deploy/pullstart.yml");
        for command in ["run", "check", "status"] {
            let out = t.run_exact(&[
                command,
                "-C",
                path_str(&t.checkout),
                "--config",
                path_str(&config),
            ]);
            out.code(2);
            let line = out.error_line();
            assert!(
                line.contains("inside the checkout") && line.contains(&format!("`{key}`")),
                "{command} {key}: {line}"
            );
        }
    }
    // A config outside the checkout may set them.
    let outside = t.config_file("metrics_file: m.prom\n");
    t.run(&["run", "--config", path_str(&outside)]).code(0);
}

/// One `ps -a --format json` line as Compose v2 prints it (trimmed to the fields it reads).
fn compose_v2_row(id: &str, service: &str, state: &str, exit_code: i32, health: &str) -> String {
    format!(
        r#"{{"ExitCode":{exit_code},"Health":"{health}","ID":"{id}","Labels":"com.docker.compose.oneoff=False,com.docker.compose.project=demo,com.docker.compose.service={service}","Name":"demo-{service}-1","Service":"{service}","State":"{state}","Status":"irrelevant"}}"#
    )
}

/// A compose command whose containers `docker` cannot see (podman compose, another context) but
/// which shows them in `ps --format json`: its view decides. An exited container fails the run.
#[test]
fn compose_s_own_view_of_an_exited_container_fails_the_run() {
    let t = Fixture::new();
    t.compose_ps(&format!(
        "{}\n{}\n",
        compose_v2_row("0badc0de0001", "web", "exited", 3, ""),
        compose_v2_row("0badc0de0002", "worker", "running", 0, "healthy"),
    ));
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    let out = t.run(&["run", "--health-timeout", "5s", "--health-settle", "0"]);
    out.code(6);
    assert!(
        out.stderr
            .contains("health check failed: service web exited with code 3"),
        "{}",
        out.stderr
    );
    assert_ne!(
        t.deployed(),
        Some(tip),
        "a failed health check deploys nothing"
    );
}

/// The same view with every container running (and healthy where it has a check) passes quietly.
#[test]
fn compose_s_own_view_of_running_containers_passes() {
    let t = Fixture::new();
    t.compose_ps(&format!(
        "[{},{}]\n",
        compose_v2_row("0badc0de0001", "web", "running", 0, ""),
        compose_v2_row("0badc0de0002", "worker", "running", 0, "healthy"),
    ));
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    let out = t.run(&["run", "--health-timeout", "5s", "--health-settle", "0"]);
    out.code(0);
    assert_eq!(out.stderr, "", "no warning: the view was read");
    assert_eq!(t.deployed(), Some(tip));
}

/// Compose v1 or a wrapper that lists ids (`ps -a -q`) but no JSON, for containers `docker`
/// does not know (or with no `docker` on PATH): nothing can be judged, so the wait is skipped
/// with one warning and the run succeeds.
#[test]
fn container_ids_that_docker_does_not_know_skip_the_health_wait() {
    let t = Fixture::new();
    t.compose_ps("0badc0de0001\n0badc0de0002\n");
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    let out = t.run(&["run", "--health-timeout", "5s", "--health-settle", "0"]);
    out.code(0);
    assert!(
        out.stderr
            .starts_with("pullstart: warning: health wait skipped: ")
            && out.stderr.lines().count() == 1,
        "one warning line: {}",
        out.stderr
    );
    assert_eq!(t.deployed(), Some(tip));
}
