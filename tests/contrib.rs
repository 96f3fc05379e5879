//! The contrib kit, exercised rather than just shipped:
//!
//! - `contrib/systemd/pullstart.{service,timer}`: `systemd-analyze verify` accepts them (where it
//!   is installed), and the service's ExecStart command line, with its paths pointed at a
//!   fixture, runs the real binary to success;
//! - `contrib/sidecar/docker-compose.sidecar.yml`: `docker compose config` accepts it, and its
//!   command, pointed at a fixture, runs `watch` until SIGTERM ends it with exit 0;
//! - `contrib/entrypoint/Dockerfile`: built FROM the local test image with the pullstart binary,
//!   git and the libraries they link; a container from it clones the app into /app and execs the
//!   command as PID 1, and a second container fast-forwards that checkout;
//! - `contrib/docker-compose.override.example.yml`: every service mounts the checkout read-only
//!   with `.git` hidden, and a real container from it reads the code, cannot write the checkout
//!   or reach the host's `.git`, while pullstart on the host still updates it.
//!
//! The Docker parts follow tests/docker.rs: without an engine, a loud `SKIPPED` line on stderr,
//! unless the environment variable `CI` is set, which makes them fail
//! (`contrib/docker-setup.sh` starts the engine and builds `pullstart-test/busybox:1`).

mod docker_support;

use docker_support::{bin, git_cmd, git_output, hermetic, image};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

fn contrib(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(path)
}

/// Runs `cmd` to completion; panics with everything it printed unless it succeeded.
#[track_caller]
fn must(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A bare remote with one commit holding `app/main.py`, and a checkout cloned from it.
struct Repo {
    _tmp: TempDir,
    root: PathBuf,
    remote: PathBuf,
    checkout: PathBuf,
    dev: PathBuf,
}

impl Repo {
    fn new() -> Repo {
        let tmp = tempfile::Builder::new()
            .prefix("pullstart-contrib-")
            .tempdir()
            .unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let repo = Repo {
            remote: root.join("remote.git"),
            checkout: root.join("checkout"),
            dev: root.join("dev"),
            root,
            _tmp: tmp,
        };
        repo.git(&repo.root, &["init", "-q", "--bare", "remote.git"]);
        repo.git(&repo.root, &["clone", "-q", "remote.git", "dev"]);
        repo.commit("app/main.py", "print('v1')\n");
        repo.git(&repo.root, &["clone", "-q", "remote.git", "checkout"]);
        repo
    }

    fn git(&self, dir: &Path, args: &[&str]) -> String {
        git_output(&mut git_cmd(&self.root, dir, args))
    }

    /// Commits `content` at `path` in the dev clone and pushes it.
    fn commit(&self, path: &str, content: &str) {
        let file = self.dev.join(path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(file, content).unwrap();
        self.git(&self.dev, &["add", "-A"]);
        self.git(&self.dev, &["commit", "-q", "-m", path]);
        self.git(&self.dev, &["push", "-q", "origin", "HEAD:main"]);
    }

    fn pullstart(&self) -> Command {
        let mut cmd = Command::new(bin());
        hermetic(&mut cmd, &self.root);
        cmd.current_dir(&self.root).stdin(Stdio::null());
        cmd
    }
}

/// `text` with every `${VAR:-default}` replaced by its default, as compose does when VAR is
/// unset.
fn defaults(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closed ${") + start;
        let inner = &rest[start + 2..end];
        out.push_str(inner.split_once(":-").map_or("", |(_, d)| d));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The value of `key=` in a unit file (the last one wins, as in systemd).
fn unit_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .next_back()
        .map(str::to_string)
}

// =============================================================================================
// systemd
// =============================================================================================

#[test]
fn systemd_units_verify_and_exec_start_runs_the_real_binary() {
    let service = fs::read_to_string(contrib("systemd/pullstart.service")).unwrap();
    let timer = fs::read_to_string(contrib("systemd/pullstart.timer")).unwrap();
    assert_eq!(unit_value(&service, "Type").as_deref(), Some("oneshot"));
    assert!(
        unit_value(&service, "SuccessExitStatus").is_none(),
        "exit codes keep their meaning"
    );
    assert_eq!(unit_value(&timer, "OnCalendar").as_deref(), Some("*:0/5"));
    assert!(unit_value(&timer, "RandomizedDelaySec").is_some());

    let exec_start = unit_value(&service, "ExecStart").expect("ExecStart");
    let argv = shell_words::split(&exec_start).unwrap();
    assert_eq!(argv[0], "/usr/local/bin/pullstart");

    // The same arguments with the paths pointed at a fixture: a real run, up to date, exit 0,
    // silent, and the metrics file written.
    let repo = Repo::new();
    let config = repo.root.join("app.yml");
    fs::write(
        &config,
        format!("repo: {}\nservices: [web]\n", repo.checkout.display()),
    )
    .unwrap();
    let metrics = repo.root.join("pullstart.prom");
    let args: Vec<String> = argv[1..]
        .iter()
        .map(|a| match a.as_str() {
            "/etc/pullstart/app.yml" => config.display().to_string(),
            a if a.ends_with(".prom") => metrics.display().to_string(),
            a => a.to_string(),
        })
        .collect();
    assert!(args.contains(&config.display().to_string()), "{args:?}");
    let out = must(repo.pullstart().args(&args));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    let text = fs::read_to_string(&metrics).expect("the metrics file");
    assert!(
        text.lines()
            .any(|l| l.starts_with("pullstart_last_exit_code{") && l.ends_with(" 0")),
        "{text}"
    );

    // systemd's own check, with ExecStart pointed at the binary under test (verify insists that
    // the program exists).
    let verify = Command::new("systemd-analyze").arg("--version").output();
    if !verify.is_ok_and(|o| o.status.success()) {
        eprintln!("\n*** systemd-analyze is not installed: only the parse above was checked ***\n");
        return;
    }
    let dir = repo.root.join("units");
    fs::create_dir(&dir).unwrap();
    fs::write(
        dir.join("pullstart.service"),
        service.replace("/usr/local/bin/pullstart", &bin().display().to_string()),
    )
    .unwrap();
    fs::write(dir.join("pullstart.timer"), &timer).unwrap();
    let out = must(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(dir.join("pullstart.timer"))
            .arg(dir.join("pullstart.service")),
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// =============================================================================================
// The sidecar
// =============================================================================================

#[test]
fn sidecar_compose_file_is_valid_and_its_command_watches_until_sigterm() {
    let file = contrib("sidecar/docker-compose.sidecar.yml");
    let text = fs::read_to_string(&file).unwrap();
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let service = &yaml["services"]["pullstart"];
    let command: Vec<String> = service["command"]
        .as_sequence()
        .expect("command as a list")
        .iter()
        .map(|v| defaults(v.as_str().unwrap()))
        .collect();
    assert_eq!(command[..3], ["watch", "--every", "5m"]);
    let volumes: Vec<&str> = service["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        volumes.contains(&"/var/run/docker.sock:/var/run/docker.sock"),
        "{volumes:?}"
    );
    assert!(
        volumes.contains(&"${APP_DIR:-/srv/app}:${APP_DIR:-/srv/app}"),
        "the checkout at the same path inside and out: {volumes:?}"
    );

    // The command, pointed at a fixture (every second, no splay), is the real `watch`: it runs,
    // writes the metrics file, and SIGTERM ends it with exit 0.
    let repo = Repo::new();
    let metrics = repo.root.join("pullstart.prom");
    let args: Vec<String> = command
        .iter()
        .map(|a| match a.as_str() {
            "/srv/app" => repo.checkout.display().to_string(),
            "5m" => "1s".into(),
            "30s" => "0".into(),
            a if a.ends_with(".prom") => metrics.display().to_string(),
            a => a.to_string(),
        })
        .collect();
    let child = repo
        .pullstart()
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !metrics.exists() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    must(Command::new("kill").args(["-TERM", &child.id().to_string()]));
    let out = child.wait_with_output().unwrap();
    assert!(metrics.exists(), "no run finished: {out:?}");
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    if !docker_support::docker_ready(
        "sidecar_compose_file_is_valid_and_its_command_watches_until_sigterm",
        false,
    ) {
        return;
    }
    let out = must(
        Command::new("docker")
            .args(["compose", "-f"])
            .arg(&file)
            .args(["config", "--format", "json"])
            .env("APP_DIR", &repo.checkout),
    );
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let service = &config["services"]["pullstart"];
    assert_eq!(service["entrypoint"][0], "/usr/local/bin/pullstart");
    assert_eq!(service["command"][6], repo.checkout.display().to_string());
}

// =============================================================================================
// The entrypoint image
// =============================================================================================

/// Copies `program` and every library `ldd` lists for it to the same paths under `rootfs`.
fn copy_with_libraries(program: &Path, at: &str, rootfs: &Path) {
    let copy = |from: &Path, to: &str| {
        let dest = rootfs.join(to.trim_start_matches('/'));
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(from, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    };
    copy(program, at);
    let out = must(Command::new("ldd").arg(program));
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let path = match line.split_once("=>") {
            Some((_, right)) => right.trim().split(' ').next().unwrap_or(""),
            None => line.trim().split(' ').next().unwrap_or(""),
        };
        if path.starts_with('/') {
            copy(Path::new(path), path);
        }
    }
}

struct RemoveImage(String);

impl Drop for RemoveImage {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["image", "rm", "-f", &self.0])
            .output();
    }
}

#[test]
fn entrypoint_dockerfile_clones_then_fast_forwards_in_a_real_container() {
    if !docker_support::docker_ready(
        "entrypoint_dockerfile_clones_then_fast_forwards_in_a_real_container",
        false,
    ) {
        return;
    }
    let repo = Repo::new();
    let ctx = repo.root.join("ctx");
    let rootfs = ctx.join("rootfs");
    copy_with_libraries(&bin(), "/usr/local/bin/pullstart", &rootfs);
    // file:// needs `git upload-pack` in the image.
    let git =
        String::from_utf8(must(Command::new("sh").args(["-c", "command -v git"])).stdout).unwrap();
    copy_with_libraries(Path::new(git.trim()), "/usr/local/bin/git", &rootfs);

    let tag = format!("pullstart-test/entrypoint:{}", std::process::id());
    let _cleanup = RemoveImage(tag.clone());
    must(
        Command::new("docker")
            .args(["build", "-q", "--network", "none", "-t", &tag])
            .args(["--build-arg", &format!("BASE={}", image())])
            .arg("-f")
            .arg(contrib("entrypoint/Dockerfile"))
            .arg(&ctx),
    );

    let app = repo.root.join("app-volume");
    fs::create_dir(&app).unwrap();
    let run = || {
        must(
            Command::new("docker")
                .args(["run", "--rm", "--network", "none"])
                .arg("-v")
                .arg(format!("{}:/remote.git:ro", repo.remote.display()))
                .arg("-v")
                .arg(format!("{}:/app", app.display()))
                .args(["-e", "PULLSTART_URL=file:///remote.git", &tag])
                .args(["sh", "-c", "echo pid=$$; cat /app/app/main.py"]),
        )
    };
    // An empty volume: cloned, then the command runs as PID 1 on the new code.
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("cloned file:///remote.git main"),
        "{stdout}"
    );
    assert!(
        stdout.contains("pid=1\n"),
        "the command must be PID 1: {stdout}"
    );
    assert!(stdout.contains("print('v1')"), "{stdout}");

    // The volume holds the checkout: the next start fast-forwards it.
    repo.commit("app/main.py", "print('v2')\n");
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("updated main "), "{stdout}");
    assert!(
        stdout.contains("pid=1\n") && stdout.contains("print('v2')"),
        "{stdout}"
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// =============================================================================================
// The override example: the checkout read-only in the containers, `.git` hidden
// =============================================================================================

/// Removes the compose project `name` (containers and volumes) when dropped.
struct ComposeDown {
    name: String,
    dir: PathBuf,
}

impl Drop for ComposeDown {
    fn drop(&mut self) {
        let _ = docker_support::docker(&["compose", "-p", &self.name, "down", "-t", "0", "-v"])
            .current_dir(&self.dir)
            .output();
    }
}

#[test]
fn override_example_mounts_the_checkout_read_only_and_hides_git() {
    let file = contrib("docker-compose.override.example.yml");
    let text = fs::read_to_string(&file).unwrap();
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let services = yaml["services"].as_mapping().expect("services");
    for (name, service) in services {
        let volumes = service["volumes"].as_sequence().expect("volumes");
        assert!(
            volumes.iter().any(|v| v.as_str() == Some(".:/app:ro")),
            "{name:?}: the checkout read-only"
        );
        assert!(
            volumes.iter().any(|v| v["type"].as_str() == Some("tmpfs")
                && v["target"].as_str() == Some("/app/.git")),
            "{name:?}: .git hidden"
        );
    }

    if !docker_support::docker_ready(
        "override_example_mounts_the_checkout_read_only_and_hides_git",
        false,
    ) {
        return;
    }
    let repo = Repo::new();
    let compose = format!(
        "services:\n  web:\n    image: {0}\n    command: [sleep, '3600']\n    network_mode: none\n  worker:\n    image: {0}\n    command: [sleep, '3600']\n    network_mode: none\n",
        image()
    );
    repo.commit("docker-compose.yml", &compose);
    repo.git(&repo.checkout, &["pull", "-q"]);
    fs::copy(&file, repo.checkout.join("docker-compose.override.yml")).unwrap();
    fs::write(
        repo.checkout.join(".git/info/exclude"),
        "docker-compose.override.yml\n",
    )
    .unwrap();
    let name = format!("ps-contrib-ro-{}", std::process::id());
    let _down = ComposeDown {
        name: name.clone(),
        dir: repo.checkout.clone(),
    };
    let compose_cmd = |args: &[&str]| {
        let mut cmd = docker_support::docker(&["compose", "-p", &name]);
        cmd.args(args).current_dir(&repo.checkout);
        cmd
    };
    must(&mut compose_cmd(&["up", "-d"]));
    let in_web = |script: &str| {
        compose_cmd(&["exec", "-T", "web", "sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };

    // The container reads the code, cannot write the checkout, and sees no `.git`.
    let code = in_web("cat /app/app/main.py");
    assert_eq!(String::from_utf8_lossy(&code.stdout), "print('v1')\n");
    assert!(
        !in_web("touch /app/app/new").status.success(),
        "the checkout is writable"
    );
    let git_dir = in_web("ls -A /app/.git");
    assert!(
        git_dir.status.success() && git_dir.stdout.is_empty(),
        "{git_dir:?}"
    );
    let config_before = fs::read(repo.checkout.join(".git/config")).unwrap();
    let written = in_web("printf '[core]\\n\\tfsmonitor = /tmp/x\\n' >> /app/.git/config");
    assert!(
        written.status.success(),
        "the tmpfs is the container's own: {written:?}"
    );
    assert_eq!(
        fs::read(repo.checkout.join(".git/config")).unwrap(),
        config_before,
        "the host's .git/config changed"
    );
    assert!(
        in_web("echo x > /data/x").status.success(),
        "the data volume is writable"
    );

    // pullstart on the host still updates the checkout and restarts the service on it.
    repo.commit("app/main.py", "print('v2')\n");
    let out = repo
        .pullstart()
        .arg("-C")
        .arg(&repo.checkout)
        .args(["--compose-command", &format!("docker compose -p {name}")])
        .args(["--services", "web", "--health-timeout", "0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let code = in_web("cat /app/app/main.py");
    assert_eq!(String::from_utf8_lossy(&code.stdout), "print('v2')\n");
}
