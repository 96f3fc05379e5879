//! The validated settings of one invocation: the flags laid over the `--config` YAML file, with
//! every default resolved and every value checked, before anything touches the repository.
//!
//! Precedence: a flag that was given wins over the file's key, which wins over the default.
//! Every error here is a [`Failure`] with [`ExitCode::Usage`](crate::exit::ExitCode::Usage) and a
//! one-line message naming the flag, or the file, line and key, and what to do.
//!
//! Paths: a relative `repo` in the config file is relative to the file's directory; a relative
//! `--repo` is relative to the current directory. Compose files, from the file or from `-f`, are
//! kept as given: compose resolves them in the checkout, its working directory, so
//! `compose_files: [compose.prod.yml]` means the checkout's file wherever the config lives.
//! Path patterns (`services.NAME.paths`, `ignore`, `dependency_files`) are kept as written and
//! matched against paths relative to the checkout root, compiled by [`compile_globs`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::cli::{Cli, CliCommand, EntrypointArgs, Options};
use crate::exit::Failure;

/// What this invocation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Fetch, fast-forward, restart.
    Run,
    /// Fetch and report what a run would do, acting on nothing (also `--dry-run`).
    Check,
    /// Offline report of the checkout's state.
    Status,
}

/// How results and errors are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// One summary line on an update, one error line on stderr, nothing otherwise
    #[default]
    Text,
    /// Exactly one JSON object on stdout per invocation
    Json,
}

/// A path rule from the config: changes to paths matching `paths` concern `service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRule {
    /// A valid compose service name.
    pub service: String,
    /// Glob patterns as written, never empty, each one compiling with [`compile_globs`].
    pub paths: Vec<String>,
}

/// What a run does when a Dockerfile or a dependency manifest changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RebuildPolicy {
    /// Rebuild the images and recreate the services (`up -d --build --no-deps`)
    #[default]
    Rebuild,
    /// Apply nothing and exit 8 naming the files, until a run with --allow-rebuild
    Stop,
}

/// What a run does with the checkout of a submodule whose gitlink the update moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Submodules {
    /// Move the gitlink only and leave the submodule's checkout alone, as `git merge` does
    #[default]
    Ignore,
    /// Also bring each initialised submodule to its recorded commit, guarded and journaled like
    /// the checkout itself
    Update,
}

/// Shell command lines (run with `sh -c`) from the config file; each one, when set, is not blank.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    /// Before the action on the services.
    pub before: Option<String>,
    /// After the action and the health check succeeded.
    pub after_success: Option<String>,
    /// After the action or the health check failed.
    pub on_failure: Option<String>,
}

/// `verify_signatures`: deploy only commits signed by a trusted key (see `src/verify.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySignatures {
    /// SSH signers, in git's allowed-signers format; `None`: the checkout's
    /// `gpg.ssh.allowedSignersFile`.
    pub allowed_signers: Option<PathBuf>,
    /// OpenPGP public keys: a keyring or armored keys.
    pub gpg_keyring: Option<PathBuf>,
    pub mode: VerifyMode,
}

/// Which commits of an update must be signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// Every commit from HEAD to the tip on the first-parent line.
    #[default]
    All,
    /// The tip only.
    Tip,
}

/// Everything one invocation needs to know, validated, with every default resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub command: Command,
    /// The checkout; `.` by default.
    pub repo: PathBuf,
    /// `None`: resolve from the current branch's upstream (else `origin`) once the repo is open.
    pub remote: Option<String>,
    /// `None`: resolve from the current branch's upstream (else its own name) once the repo is open.
    pub branch: Option<String>,
    /// The program and its leading arguments; never empty, the program never an empty word.
    pub compose_command: Vec<String>,
    /// Passed to compose as `-f FILE`, in this order.
    pub compose_files: Vec<PathBuf>,
    /// Passed to compose as `-p NAME`.
    pub project_name: Option<String>,
    /// `None`: not configured (derive the services from the changes). Never `Some(empty)`; names
    /// are unique, in the order given. When `Some`, it wins over `rules` (the explicit list).
    pub services: Option<Vec<String>>,
    /// The config's path rules (`services:` written as a mapping), in file order, service names
    /// unique; empty when none. Kept even when `services` is `Some` (which takes precedence).
    pub rules: Vec<ServiceRule>,
    /// Globs of changed paths that concern no service; empty when none.
    pub ignore: Vec<String>,
    /// Globs of files whose change needs a rebuild: the config's list (possibly empty), else
    /// [`DEFAULT_DEPENDENCY_FILES`].
    pub dependency_files: Vec<String>,
    /// What to do when a rebuild is needed.
    pub rebuild_policy: RebuildPolicy,
    /// `--allow-rebuild`: rebuild even though the policy is `stop` (never from the file).
    pub allow_rebuild: bool,
    /// Whether the update also moves the submodules' checkouts.
    pub submodules: Submodules,
    /// The time limit for the compose command.
    pub restart_timeout: Duration,
    /// How long to wait for the touched services to be running (and healthy); zero: no wait.
    pub health_timeout: Duration,
    /// How long a restarted container must stay up to count as started; may be zero.
    pub health_settle: Duration,
    /// On a failed health check, go back to the deployed commit and restart again.
    pub rollback: bool,
    /// From the config file only.
    pub hooks: Hooks,
    pub detailed_exitcode: bool,
    pub output: OutputFormat,
    pub quiet: bool,
    pub verbose: bool,
    /// The `--config` file as given on the command line.
    pub config_file: Option<PathBuf>,
    /// The `--config` file's absolute path with symlinks resolved (canonical), to tell whether it
    /// lies inside the checkout.
    pub config_file_absolute: Option<PathBuf>,
    /// The keys the config file set that name a host command or a host path (hooks,
    /// `compose_command`, `metrics_file`, `token_file`, `ssh_key`, `verify_signatures`, `listen`,
    /// `webhook_secret_file`): refused when the file lies
    /// inside the checkout, since anyone who can push could change them.
    pub host_keys_from_file: Vec<&'static str>,
    /// The time limit for one run (each iteration of `watch`), counted from the start of
    /// [`crate::run::execute`]: see [`Deadline`]. More than zero.
    pub timeout: Duration,
    /// The upper bound of the random sleep before a run or check (not `status`); may be zero.
    pub splay: Duration,
    /// Where to write the Prometheus metrics after each run or check.
    pub metrics_file: Option<PathBuf>,
    /// The ssh private key for ssh remotes.
    pub ssh_key: Option<PathBuf>,
    /// The file holding the https token.
    pub token_file: Option<PathBuf>,
    /// `None`: commits are deployed whoever signed them (or nobody).
    pub verify_signatures: Option<VerifySignatures>,
    /// `watch --listen`: the address of the webhook, health and metrics endpoint.
    pub listen: Option<std::net::SocketAddr>,
    /// `watch --webhook-secret-file`: where the webhooks' shared secret is.
    pub webhook_secret_file: Option<PathBuf>,
    /// `Some(interval)`: the `watch` subcommand, which repeats `command` every interval (at
    /// least [`MIN_WATCH_INTERVAL`]); `None`: one run.
    pub watch: Option<Duration>,
    /// `Some` for the `entrypoint` subcommand: what to clone and what to exec. `repo` is then
    /// its `--dir` and `command` is [`Command::Run`]. A run then acts on no service (compose,
    /// health wait, `before` hook): the app is not started yet, and no compose project is read.
    pub entrypoint: Option<Entrypoint>,
}

/// The `entrypoint` subcommand's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entrypoint {
    /// The URL to clone from when the directory is missing or empty.
    pub url: String,
    /// The command to exec, never empty.
    pub cmd: Vec<std::ffi::OsString>,
}

/// The moment a run must be over by: [`Settings::timeout`] after the run started. Each step
/// that waits (the fetch, a compose command, the health wait) waits at most [`Deadline::min`]
/// of its own limit and what is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(Instant);

impl Deadline {
    /// `timeout` from now.
    pub fn after(timeout: Duration) -> Deadline {
        Deadline(Instant::now() + timeout)
    }

    /// What is left until the deadline; zero once it has passed.
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// The shorter of a step's own `limit` and what is left.
    pub fn min(self, limit: Duration) -> Duration {
        limit.min(self.remaining())
    }
}

/// The compose command when neither the flag nor the file names one.
pub const DEFAULT_COMPOSE_COMMAND: [&str; 2] = ["docker", "compose"];
/// The compose command's time limit when neither the flag nor the file sets one.
pub const DEFAULT_RESTART_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long to wait for the touched services to be up (and healthy) when nothing sets it.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a restarted container must stay up when nothing sets it.
pub const DEFAULT_HEALTH_SETTLE: Duration = Duration::from_secs(2);
/// The time limit of a run when nothing sets it: a little under a 5-minute cron slot.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(4 * 60 + 30);
/// The shortest interval `watch` accepts.
pub const MIN_WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// The longest duration accepted (a larger one is surely a typo, and would overflow timers).
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// The files whose change needs an image rebuild when the config does not list its own
/// (`dependency_files`): Dockerfiles, and the manifests and lock files of Python, Node, Rust, Go,
/// Ruby, PHP and Java. Patterns as [`compile_globs`] reads them.
pub const DEFAULT_DEPENDENCY_FILES: &[&str] = &[
    "Dockerfile",
    "Dockerfile.*",
    "*.dockerfile",
    ".dockerignore",
    "requirements*.txt",
    "constraints*.txt",
    "pyproject.toml",
    "poetry.lock",
    "Pipfile",
    "Pipfile.lock",
    "uv.lock",
    "setup.py",
    "setup.cfg",
    "package.json",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "bun.lockb",
    "Cargo.toml",
    "Cargo.lock",
    "go.mod",
    "go.sum",
    "Gemfile",
    "Gemfile.lock",
    "*.gemspec",
    "composer.json",
    "composer.lock",
    "pom.xml",
    "build.gradle",
    "build.gradle.kts",
    "settings.gradle",
    "settings.gradle.kts",
    "gradle.lockfile",
    "gradle/wrapper/gradle-wrapper.properties",
];
/// `ADDR:PORT` for `--listen`: an IP address (`0.0.0.0` for every interface, `127.0.0.1`, `[::]`)
/// and a port; no host names, which would make the bound address depend on DNS.
fn parse_listen(text: &str) -> Result<std::net::SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!(
            "`{text}` is not an address and port; give one like `0.0.0.0:9000` or \
             `127.0.0.1:9000`"
        )
    })
}

/// A config file larger than this is refused unread.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

impl Settings {
    /// Flags plus the YAML file (if `--config`) -> one value; every error is a [`Failure`] with
    /// exit code 2 (usage).
    ///
    /// Both sources are validated in full, each into a [`Layer`], before they are merged: a bad
    /// value in the file is an error even where a flag overrides it today.
    pub fn resolve(cli: Cli) -> Result<Settings> {
        let Cli {
            command,
            options: flags,
            ..
        } = cli;
        let (file, config_file_absolute) = match &flags.config {
            Some(path) => {
                let file = ConfigFile::load(path)?;
                (file.layer()?, Some(file.absolute))
            }
            None => (Layer::default(), None),
        };
        let host_keys_from_file = [
            ("hooks", file.hooks.is_some()),
            ("compose_command", file.compose_command.is_some()),
            ("metrics_file", file.metrics_file.is_some()),
            ("token_file", file.token_file.is_some()),
            ("ssh_key", file.ssh_key.is_some()),
            ("verify_signatures", file.verify_signatures.is_some()),
            ("listen", file.listen.is_some()),
            ("webhook_secret_file", file.webhook_secret_file.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
        let command = command.unwrap_or(CliCommand::Run);
        // `Some` for `watch`: its `--every` as given.
        let every = match &command {
            CliCommand::Watch(args) => Some(args.every.clone()),
            _ => None,
        };
        let (listen_flag, secret_flag) = match &command {
            CliCommand::Watch(args) => (
                args.listen
                    .as_deref()
                    .map(parse_listen)
                    .transpose()
                    .map_err(|problem| Failure::usage(format!("--listen: {problem}")))?,
                args.webhook_secret_file
                    .clone()
                    .map(|path| check_path("webhook secret file", path))
                    .transpose()
                    .map_err(|problem| {
                        Failure::usage(format!("--webhook-secret-file: {problem}"))
                    })?,
            ),
            _ => (None, None),
        };
        let is_watch = every.is_some();
        let entrypoint = match &command {
            CliCommand::Entrypoint(args) => Some(entrypoint_settings(args, &flags)?),
            _ => None,
        };
        let entrypoint_dir = match &command {
            CliCommand::Entrypoint(args) => args.dir.clone(),
            _ => None,
        };
        let command = match command {
            // The app must start: an entrypoint always runs (a clone or a fast-forward).
            CliCommand::Entrypoint(_) => Command::Run,
            // `watch --dry-run` repeats `check`.
            CliCommand::Run | CliCommand::Watch(_) if flags.dry_run => Command::Check,
            CliCommand::Run | CliCommand::Watch(_) => Command::Run,
            CliCommand::Check => Command::Check,
            // Status changes nothing: --dry-run is already true of it.
            CliCommand::Status => Command::Status,
        };
        let every_flag = every
            .flatten()
            .map(|text| parse_interval(&text))
            .transpose()
            .map_err(|problem| Failure::usage(format!("--every: {problem}")))?;
        let config_file = flags.config.clone();
        let flags = Layer::from_flags(flags)?;
        // The file's `every` is read only by `watch`, so one file can serve cron and a sidecar.
        let watch =
            match every_flag.or(file.every) {
                _ if !is_watch => None,
                Some(every) => Some(every),
                None => return Err(Failure::usage(
                    "watch: the interval is missing; give it with --every, like `pullstart watch \
                     --every 5m`, or set `every` in the config",
                )
                .into()),
            };

        let verify_signatures = verify_signatures(&flags, &file);
        // Like `every`, read only by `watch`.
        let (listen, webhook_secret_file) = match is_watch {
            true => (
                listen_flag.or(file.listen),
                secret_flag.or(file.webhook_secret_file.clone()),
            ),
            false => (None, None),
        };
        Ok(Settings {
            command,
            repo: entrypoint_dir
                .or(flags.repo)
                .or(file.repo)
                .unwrap_or_else(|| PathBuf::from(".")),
            remote: flags.remote.or(file.remote),
            branch: flags.branch.or(file.branch),
            compose_command: flags
                .compose_command
                .or(file.compose_command)
                .unwrap_or_else(|| DEFAULT_COMPOSE_COMMAND.map(String::from).to_vec()),
            compose_files: flags
                .compose_files
                .or(file.compose_files)
                .unwrap_or_default(),
            project_name: flags.project_name.or(file.project_name),
            services: flags.services.or(file.services),
            rules: flags.rules.or(file.rules).unwrap_or_default(),
            ignore: flags.ignore.or(file.ignore).unwrap_or_default(),
            dependency_files: flags
                .dependency_files
                .or(file.dependency_files)
                .unwrap_or_else(|| {
                    DEFAULT_DEPENDENCY_FILES
                        .iter()
                        .map(|&p| p.to_owned())
                        .collect()
                }),
            rebuild_policy: flags
                .rebuild_policy
                .or(file.rebuild_policy)
                .unwrap_or_default(),
            allow_rebuild: flags.allow_rebuild.or(file.allow_rebuild).unwrap_or(false),
            submodules: flags.submodules.or(file.submodules).unwrap_or_default(),
            restart_timeout: flags
                .restart_timeout
                .or(file.restart_timeout)
                .unwrap_or(DEFAULT_RESTART_TIMEOUT),
            health_timeout: flags
                .health_timeout
                .or(file.health_timeout)
                .unwrap_or(DEFAULT_HEALTH_TIMEOUT),
            health_settle: flags
                .health_settle
                .or(file.health_settle)
                .unwrap_or(DEFAULT_HEALTH_SETTLE),
            rollback: flags.rollback.or(file.rollback).unwrap_or(false),
            hooks: flags.hooks.or(file.hooks).unwrap_or_default(),
            detailed_exitcode: flags
                .detailed_exitcode
                .or(file.detailed_exitcode)
                .unwrap_or(false),
            output: flags.output.or(file.output).unwrap_or_default(),
            quiet: flags.quiet.or(file.quiet).unwrap_or(false),
            verbose: flags.verbose.or(file.verbose).unwrap_or(false),
            config_file,
            config_file_absolute,
            host_keys_from_file,
            timeout: flags.timeout.or(file.timeout).unwrap_or(DEFAULT_TIMEOUT),
            splay: flags.splay.or(file.splay).unwrap_or(Duration::ZERO),
            metrics_file: flags.metrics_file.or(file.metrics_file),
            ssh_key: flags.ssh_key.or(file.ssh_key),
            token_file: flags.token_file.or(file.token_file),
            verify_signatures,
            listen,
            webhook_secret_file,
            watch,
            entrypoint,
        })
    }
}

/// The environment variable `entrypoint` reads the URL from when --url is not given (so that one
/// image serves several repositories).
pub const ENTRYPOINT_URL_ENV: &str = "PULLSTART_URL";

/// Checks what clap cannot about `entrypoint`'s arguments.
fn entrypoint_settings(args: &EntrypointArgs, flags: &Options) -> Result<Entrypoint> {
    if flags.repo.is_some() {
        return Err(
            Failure::usage("entrypoint: the checkout is --dir; -C/--repo does not apply").into(),
        );
    }
    if flags.dry_run {
        return Err(Failure::usage(
            "entrypoint: --dry-run does not apply (the app must start on updated code); use `pullstart check`",
        )
        .into());
    }
    let url = match &args.url {
        Some(url) => url.clone(),
        None => std::env::var(ENTRYPOINT_URL_ENV).unwrap_or_default(),
    };
    if url.trim().is_empty() {
        return Err(Failure::usage(format!(
            "entrypoint: the repository URL is missing; give it with --url or in the environment variable {ENTRYPOINT_URL_ENV}"
        ))
        .into());
    }
    if args.dir.as_ref().is_none_or(|d| d.as_os_str().is_empty()) {
        return Err(Failure::usage("entrypoint: --dir is empty").into());
    }
    match args.cmd.first() {
        Some(program) if !program.is_empty() => {}
        _ => {
            return Err(Failure::usage(
                "entrypoint: the command to start is missing; give it after `--`, like `pullstart entrypoint --url URL --dir /app -- python main.py`",
            )
            .into())
        }
    }
    Ok(Entrypoint {
        url,
        cmd: args.cmd.clone(),
    })
}

/// The validated values of one source, flags or file; `None` where that source says nothing.
#[derive(Debug, Default)]
struct Layer {
    repo: Option<PathBuf>,
    remote: Option<String>,
    branch: Option<String>,
    compose_command: Option<Vec<String>>,
    compose_files: Option<Vec<PathBuf>>,
    project_name: Option<String>,
    services: Option<Vec<String>>,
    /// File only: `services` written as a mapping.
    rules: Option<Vec<ServiceRule>>,
    /// File only.
    ignore: Option<Vec<String>>,
    /// File only.
    dependency_files: Option<Vec<String>>,
    rebuild_policy: Option<RebuildPolicy>,
    /// Flags only: the operator's one-off permission.
    allow_rebuild: Option<bool>,
    submodules: Option<Submodules>,
    restart_timeout: Option<Duration>,
    health_timeout: Option<Duration>,
    health_settle: Option<Duration>,
    rollback: Option<bool>,
    /// File only.
    hooks: Option<Hooks>,
    detailed_exitcode: Option<bool>,
    output: Option<OutputFormat>,
    quiet: Option<bool>,
    verbose: Option<bool>,
    timeout: Option<Duration>,
    splay: Option<Duration>,
    metrics_file: Option<PathBuf>,
    ssh_key: Option<PathBuf>,
    token_file: Option<PathBuf>,
    /// File only: `verify_signatures:` as `true`/`false` or a mapping (which turns it on), with
    /// the files and mode it names; the flags name the files and turn it on.
    verify_signatures: Option<bool>,
    allowed_signers: Option<PathBuf>,
    gpg_keyring: Option<PathBuf>,
    verify_mode: Option<VerifyMode>,
    /// File only (the flag belongs to `watch` and is read in [`Settings::resolve`]).
    every: Option<Duration>,
    /// File only, as `every`.
    listen: Option<std::net::SocketAddr>,
    /// File only, as `every`.
    webhook_secret_file: Option<PathBuf>,
}

/// On when the file turns it on or a flag names a key file; each file from the flag, else the
/// config.
fn verify_signatures(flags: &Layer, file: &Layer) -> Option<VerifySignatures> {
    let named_by_flag = flags.allowed_signers.is_some() || flags.gpg_keyring.is_some();
    (named_by_flag || file.verify_signatures == Some(true)).then(|| VerifySignatures {
        allowed_signers: flags
            .allowed_signers
            .clone()
            .or_else(|| file.allowed_signers.clone()),
        gpg_keyring: flags
            .gpg_keyring
            .clone()
            .or_else(|| file.gpg_keyring.clone()),
        mode: file.verify_mode.unwrap_or_default(),
    })
}

impl Layer {
    /// The flags' layer. A switch that was not given says nothing (the file may turn it on).
    fn from_flags(flags: Options) -> Result<Layer> {
        /// Turns a problem with a flag's value into the one-line usage error.
        fn flag(name: &'static str) -> impl Fn(String) -> anyhow::Error {
            move |problem| Failure::usage(format!("{name}: {problem}")).into()
        }
        let compose_files = match flags.compose_files {
            files if files.is_empty() => None,
            files => Some(
                files
                    .into_iter()
                    .map(|f| check_path("compose file", f))
                    .collect::<Result<_, _>>()
                    .map_err(flag("--compose-file"))?,
            ),
        };
        Ok(Layer {
            repo: flags
                .repo
                .map(|repo| check_path("checkout path", repo))
                .transpose()
                .map_err(flag("--repo"))?,
            remote: flags
                .remote
                .map(|name| check_git_name("remote", name))
                .transpose()
                .map_err(flag("--remote"))?,
            branch: flags
                .branch
                .map(|name| check_git_name("branch", name))
                .transpose()
                .map_err(flag("--branch"))?,
            compose_command: flags
                .compose_command
                .map(|line| split_command(&line))
                .transpose()
                .map_err(flag("--compose-command"))?,
            compose_files,
            project_name: flags
                .project_name
                .map(check_project_name)
                .transpose()
                .map_err(flag("--project-name"))?,
            services: flags
                .services
                .map(check_services)
                .transpose()
                .map_err(flag("--services"))?,
            rules: None,
            ignore: None,
            dependency_files: None,
            rebuild_policy: flags.rebuild_policy,
            allow_rebuild: flags.allow_rebuild.then_some(true),
            submodules: flags.submodules,
            restart_timeout: flags
                .restart_timeout
                .map(|text| parse_timeout("restart timeout", &text))
                .transpose()
                .map_err(flag("--restart-timeout"))?,
            health_timeout: flags
                .health_timeout
                .map(|text| parse_duration("health timeout", &text))
                .transpose()
                .map_err(flag("--health-timeout"))?,
            health_settle: flags
                .health_settle
                .map(|text| parse_duration("health settle time", &text))
                .transpose()
                .map_err(flag("--health-settle"))?,
            rollback: flags.rollback.then_some(true),
            hooks: None,
            detailed_exitcode: flags.detailed_exitcode.then_some(true),
            output: flags.output,
            quiet: flags.quiet.then_some(true),
            verbose: flags.verbose.then_some(true),
            timeout: flags
                .timeout
                .map(|text| parse_timeout("timeout", &text))
                .transpose()
                .map_err(flag("--timeout"))?,
            splay: flags
                .splay
                .map(|text| parse_duration("splay", &text))
                .transpose()
                .map_err(flag("--splay"))?,
            metrics_file: flags
                .metrics_file
                .map(check_metrics_file)
                .transpose()
                .map_err(flag("--metrics-file"))?,
            ssh_key: flags
                .ssh_key
                .map(|path| check_path("ssh key", path))
                .transpose()
                .map_err(flag("--ssh-key"))?,
            token_file: flags
                .token_file
                .map(|path| check_path("token file", path))
                .transpose()
                .map_err(flag("--token-file"))?,
            verify_signatures: None,
            allowed_signers: flags
                .allowed_signers
                .map(|path| check_path("allowed signers file", path))
                .transpose()
                .map_err(flag("--allowed-signers"))?,
            gpg_keyring: flags
                .gpg_keyring
                .map(|path| check_path("gpg keyring", path))
                .transpose()
                .map_err(flag("--gpg-keyring"))?,
            verify_mode: None,
            every: None,
            listen: None,
            webhook_secret_file: None,
        })
    }
}

/// The output format the user asked for on the command line alone: used to report errors that
/// happen while resolving settings (an `output` key in a config file that fails to load cannot
/// be trusted).
pub fn output_from_flags(cli: &Cli) -> OutputFormat {
    cli.options.output.unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The config file
// ---------------------------------------------------------------------------------------------

/// The keys a config file may hold, in the order the help lists them. Kept equal to
/// [`RawConfig`]'s fields by a test.
pub(crate) const CONFIG_KEYS: [&str; 29] = [
    "repo",
    "remote",
    "branch",
    "compose_command",
    "compose_files",
    "project_name",
    "services",
    "restart_timeout",
    "rebuild_policy",
    "submodules",
    "health_timeout",
    "health_settle",
    "rollback",
    "detailed_exitcode",
    "output",
    "quiet",
    "verbose",
    "ignore",
    "dependency_files",
    "hooks",
    "timeout",
    "splay",
    "metrics_file",
    "ssh_key",
    "token_file",
    "verify_signatures",
    "every",
    "listen",
    "webhook_secret_file",
];

/// The config file's values as written, type-checked by serde but not yet validated. A key set to
/// null (`remote:` with nothing after it) counts as not set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    repo: Option<PathBuf>,
    remote: Option<String>,
    branch: Option<String>,
    /// A string split like the flag, or a list of words; checked in [`command_from_yaml`].
    compose_command: Option<serde_yaml::Value>,
    compose_files: Option<Vec<PathBuf>>,
    project_name: Option<String>,
    /// A list of names (like `--services`) or a mapping of names to path rules.
    services: Option<RawServices>,
    #[serde(default, deserialize_with = "duration_text")]
    restart_timeout: Option<String>,
    rebuild_policy: Option<RebuildPolicy>,
    submodules: Option<Submodules>,
    #[serde(default, deserialize_with = "duration_text")]
    health_timeout: Option<String>,
    #[serde(default, deserialize_with = "duration_text")]
    health_settle: Option<String>,
    rollback: Option<bool>,
    detailed_exitcode: Option<bool>,
    output: Option<OutputFormat>,
    quiet: Option<bool>,
    verbose: Option<bool>,
    ignore: Option<Vec<String>>,
    dependency_files: Option<Vec<String>>,
    hooks: Option<RawHooks>,
    #[serde(default, deserialize_with = "duration_text")]
    timeout: Option<String>,
    #[serde(default, deserialize_with = "duration_text")]
    splay: Option<String>,
    metrics_file: Option<PathBuf>,
    ssh_key: Option<PathBuf>,
    token_file: Option<PathBuf>,
    verify_signatures: Option<RawVerify>,
    #[serde(default, deserialize_with = "duration_text")]
    every: Option<String>,
    listen: Option<String>,
    webhook_secret_file: Option<PathBuf>,
}

/// The config's `verify_signatures` as written: a switch, or a mapping that turns it on.
#[derive(Debug)]
enum RawVerify {
    Switch(bool),
    Keys(RawVerifyKeys),
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping like `{allowed_signers: FILE, gpg_keyring: FILE, mode: all}`"
)]
struct RawVerifyKeys {
    allowed_signers: Option<PathBuf>,
    gpg_keyring: Option<PathBuf>,
    mode: Option<VerifyMode>,
}

impl<'de> Deserialize<'de> for RawVerify {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawVerify;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "`true`, `false`, or a mapping like `{allowed_signers: FILE, gpg_keyring: \
                     FILE, mode: all}`",
                )
            }

            fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<RawVerify, E> {
                Ok(RawVerify::Switch(on))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawVerify, A::Error> {
                RawVerifyKeys::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawVerify::Keys)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A duration key's value: a string, or a bare integer (seconds) as YAML reads `timeout: 5`.
fn duration_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct Text;
    impl<'de> serde::de::Visitor<'de> for Text {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a duration like `90s` or a number of seconds")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            Ok(Some(text.to_string()))
        }
        fn visit_u64<E: serde::de::Error>(self, seconds: u64) -> Result<Self::Value, E> {
            Ok(Some(seconds.to_string()))
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(Text)
        }
    }
    d.deserialize_option(Text)
}

/// The config's `services`, in either form.
#[derive(Debug)]
enum RawServices {
    /// `services: [web, worker]`: the same as `--services`.
    List(Vec<String>),
    /// `services: {web: {paths: [...]}}`: path rules, in file order.
    Rules(Vec<(String, RawRule)>),
}

/// One service's path rule as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a rule like `{paths: [\"app/**\"]}`")]
struct RawRule {
    paths: Vec<String>,
}

/// The config's `hooks` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of hooks to command lines, like `{before: \"./notify.sh\"}`"
)]
struct RawHooks {
    before: Option<String>,
    after_success: Option<String>,
    on_failure: Option<String>,
}

impl<'de> Deserialize<'de> for RawServices {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawServices;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a list of services like `[web, worker]`, or a mapping of services to path \
                     rules like `{web: {paths: [\"app/**\"]}}`",
                )
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawServices, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(RawServices::List(names))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawServices, A::Error> {
                let mut rules = Vec::new();
                while let Some((name, rule)) = map.next_entry::<String, RawRule>()? {
                    rules.push((name, rule));
                }
                Ok(RawServices::Rules(rules))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A loaded config file: where it is, its text (to point at lines), and its values.
#[derive(Debug)]
struct ConfigFile {
    /// As given with `--config`, for messages.
    path: PathBuf,
    /// The absolute directory relative paths in the file are resolved against.
    dir: PathBuf,
    /// The file's canonical path (absolute, symlinks resolved).
    absolute: PathBuf,
    text: String,
    values: RawConfig,
}

impl ConfigFile {
    fn load(path: &Path) -> Result<ConfigFile> {
        let shown = path.display();
        if path.as_os_str().is_empty() {
            return Err(Failure::usage("--config: the file name is empty").into());
        }
        let absolute = std::path::absolute(path)
            .map_err(|e| Failure::usage(format!("cannot read config `{shown}`: {e}")))?;
        let dir = absolute
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| absolute.clone());

        // The file may lie in the checkout, where a container can put a FIFO or a device.
        let read = crate::regular_file::read(path, MAX_CONFIG_BYTES);
        if read
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::FileTooLarge)
        {
            return Err(Failure::usage(format!(
                "config `{shown}` is larger than 1 MiB; a pullstart config is a short YAML file: \
                 check the --config path"
            ))
            .into());
        }
        let bytes = read.map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::NotFound => "; check the --config path",
                std::io::ErrorKind::PermissionDenied => "; check its permissions",
                std::io::ErrorKind::IsADirectory | std::io::ErrorKind::InvalidInput => {
                    "; give the path of a YAML file"
                }
                _ => "",
            };
            Failure::usage(format!(
                "cannot read config `{shown}`: {}{hint}",
                io_reason(&e)
            ))
        })?;
        // The file was read, so it exists: resolve symlinks, so that a link outside the checkout
        // to a file inside it counts as inside.
        let absolute = std::fs::canonicalize(path).unwrap_or(absolute);
        let text = String::from_utf8(bytes).map_err(|e| {
            let (line, column) = line_column(e.as_bytes(), e.utf8_error().valid_up_to());
            Failure::usage(format!(
                "config `{shown}` line {line} column {column}: not UTF-8 text (a binary file?); \
                 a config is a YAML text file"
            ))
        })?;

        let mut file = ConfigFile {
            path: path.to_path_buf(),
            dir,
            absolute,
            text,
            values: RawConfig::default(),
        };
        file.values = file.parse()?;
        Ok(file)
    }

    fn parse(&self) -> Result<RawConfig> {
        let text = &self.text;
        if let Some(offset) =
            text.find(|c: char| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{85}'))
        {
            let (line, column) = line_column(text.as_bytes(), offset);
            return Err(self.error(
                Some((line, Some(column))),
                "contains a control character (a binary file?); a config is a YAML text file",
            ));
        }
        // Look at the document's shape first, so that a list or a scalar gets a clear message.
        let document: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| self.yaml_error(e))?;
        match document {
            serde_yaml::Value::Null => return Ok(RawConfig::default()),
            serde_yaml::Value::Mapping(_) => {}
            other => {
                return Err(self.error(
                    first_content_line(text).map(|line| (line, None)),
                    &format!(
                        "expected a mapping of keys to values (like `remote: origin`), found {}",
                        yaml_kind(&other)
                    ),
                ))
            }
        }
        serde_yaml::from_str(text).map_err(|e| self.yaml_error(e))
    }

    /// The file's layer: every value checked, relative paths made absolute.
    fn layer(&self) -> Result<Layer> {
        let raw = &self.values;
        let verify_keys = match &raw.verify_signatures {
            Some(RawVerify::Keys(keys)) => Some(keys),
            _ => None,
        };
        Ok(Layer {
            repo: raw
                .repo
                .as_deref()
                .map(|repo| self.path(repo))
                .transpose()
                .map_err(self.key_error("repo"))?,
            remote: raw
                .remote
                .clone()
                .map(|name| check_git_name("remote", name))
                .transpose()
                .map_err(self.key_error("remote"))?,
            branch: raw
                .branch
                .clone()
                .map(|name| check_git_name("branch", name))
                .transpose()
                .map_err(self.key_error("branch"))?,
            compose_command: raw
                .compose_command
                .as_ref()
                .map(command_from_yaml)
                .transpose()
                .map_err(self.key_error("compose_command"))?,
            compose_files: raw
                .compose_files
                .as_ref()
                .map(|files| {
                    files
                        .iter()
                        .map(|f| check_path("compose file", f.clone()))
                        .collect::<Result<_, _>>()
                })
                .transpose()
                .map_err(self.key_error("compose_files"))?,
            project_name: raw
                .project_name
                .clone()
                .map(check_project_name)
                .transpose()
                .map_err(self.key_error("project_name"))?,
            services: match &raw.services {
                Some(RawServices::List(names)) => {
                    Some(check_services(names.clone()).map_err(self.key_error("services"))?)
                }
                _ => None,
            },
            rules: match &raw.services {
                Some(RawServices::Rules(rules)) => Some(self.rules(rules)?),
                _ => None,
            },
            ignore: raw
                .ignore
                .as_deref()
                .map(|patterns| self.patterns(&["ignore"], patterns))
                .transpose()?,
            dependency_files: raw
                .dependency_files
                .as_deref()
                .map(|patterns| self.patterns(&["dependency_files"], patterns))
                .transpose()?,
            rebuild_policy: raw.rebuild_policy,
            allow_rebuild: None,
            submodules: raw.submodules,
            restart_timeout: raw
                .restart_timeout
                .as_deref()
                .map(|text| parse_timeout("restart timeout", text))
                .transpose()
                .map_err(self.key_error("restart_timeout"))?,
            health_timeout: raw
                .health_timeout
                .as_deref()
                .map(|text| parse_duration("health timeout", text))
                .transpose()
                .map_err(self.key_error("health_timeout"))?,
            health_settle: raw
                .health_settle
                .as_deref()
                .map(|text| parse_duration("health settle time", text))
                .transpose()
                .map_err(self.key_error("health_settle"))?,
            rollback: raw.rollback,
            hooks: raw
                .hooks
                .as_ref()
                .map(|hooks| self.hooks(hooks))
                .transpose()?,
            detailed_exitcode: raw.detailed_exitcode,
            output: raw.output,
            quiet: raw.quiet,
            verbose: raw.verbose,
            timeout: raw
                .timeout
                .as_deref()
                .map(|text| parse_timeout("timeout", text))
                .transpose()
                .map_err(self.key_error("timeout"))?,
            splay: raw
                .splay
                .as_deref()
                .map(|text| parse_duration("splay", text))
                .transpose()
                .map_err(self.key_error("splay"))?,
            metrics_file: raw
                .metrics_file
                .as_deref()
                .map(|path| {
                    check_metrics_file(path.to_path_buf()).and_then(|path| self.path(&path))
                })
                .transpose()
                .map_err(self.key_error("metrics_file"))?,
            ssh_key: raw
                .ssh_key
                .as_deref()
                .map(|path| self.path(path))
                .transpose()
                .map_err(self.key_error("ssh_key"))?,
            token_file: raw
                .token_file
                .as_deref()
                .map(|path| self.path(path))
                .transpose()
                .map_err(self.key_error("token_file"))?,
            verify_signatures: raw.verify_signatures.as_ref().map(|raw| match raw {
                RawVerify::Switch(on) => *on,
                RawVerify::Keys(_) => true,
            }),
            allowed_signers: verify_keys
                .and_then(|keys| keys.allowed_signers.as_deref())
                .map(|path| self.path(path))
                .transpose()
                .map_err(self.key_error("verify_signatures"))?,
            gpg_keyring: verify_keys
                .and_then(|keys| keys.gpg_keyring.as_deref())
                .map(|path| self.path(path))
                .transpose()
                .map_err(self.key_error("verify_signatures"))?,
            verify_mode: verify_keys.and_then(|keys| keys.mode),
            every: raw
                .every
                .as_deref()
                .map(parse_interval)
                .transpose()
                .map_err(self.key_error("every"))?,
            listen: raw
                .listen
                .as_deref()
                .map(parse_listen)
                .transpose()
                .map_err(self.key_error("listen"))?,
            webhook_secret_file: raw
                .webhook_secret_file
                .as_deref()
                .map(|path| self.path(path))
                .transpose()
                .map_err(self.key_error("webhook_secret_file"))?,
        })
    }

    /// The path rules of `services:` written as a mapping.
    fn rules(&self, raw: &[(String, RawRule)]) -> Result<Vec<ServiceRule>> {
        if raw.is_empty() {
            return Err(self.key_error("services")(
                "the mapping of services is empty; give each service its path rule, like \
                 `{web: {paths: [\"app/**\"]}}`, or leave the key out"
                    .to_owned(),
            ));
        }
        let mut seen = HashSet::new();
        let mut rules = Vec::with_capacity(raw.len());
        for (name, rule) in raw {
            let at = self.nested_line(&["services", name], None);
            let service = check_service_name(name.clone()).map_err(|problem| {
                self.error(at.map(|l| (l, None)), &format!("`services`: {problem}"))
            })?;
            if !seen.insert(service.clone()) {
                return Err(self.error(
                    at.map(|l| (l, None)),
                    &format!(
                        "`services`: the service `{}` is given twice; keep one",
                        printable(&service)
                    ),
                ));
            }
            let key = format!("services.{}.paths", printable(&service));
            if rule.paths.is_empty() {
                let at = self.nested_line(&["services", name, "paths"], None);
                return Err(self.error(
                    at.map(|l| (l, None)),
                    &format!(
                        "`{key}`: the list of paths is empty; give at least one pattern, like \
                         `app/**`, or leave the service out"
                    ),
                ));
            }
            let paths = self.patterns(&["services", name, "paths"], &rule.paths)?;
            rules.push(ServiceRule { service, paths });
        }
        Ok(rules)
    }

    /// Glob patterns under the key path `keys`: each one must compile.
    fn patterns(&self, keys: &[&str], patterns: &[String]) -> Result<Vec<String>> {
        for pattern in patterns {
            if let Err(problem) = compile_glob(pattern) {
                let key = keys
                    .iter()
                    .map(|k| printable(k))
                    .collect::<Vec<_>>()
                    .join(".");
                let at = self.nested_line(keys, Some(pattern));
                return Err(self.error(at.map(|l| (l, None)), &format!("`{key}`: {problem}")));
            }
        }
        Ok(patterns.to_vec())
    }

    /// The hooks: each one set is a command line that is not blank.
    fn hooks(&self, raw: &RawHooks) -> Result<Hooks> {
        let check = |name: &str, command: &Option<String>| -> Result<Option<String>> {
            match command {
                Some(line) if line.trim().is_empty() => {
                    let at = self.nested_line(&["hooks", name], None);
                    Err(self.error(
                        at.map(|l| (l, None)),
                        &format!(
                            "`hooks.{name}`: the command is empty; give a shell command line, \
                             or leave the hook out"
                        ),
                    ))
                }
                other => Ok(other.clone()),
            }
        };
        Ok(Hooks {
            before: check("before", &raw.before)?,
            after_success: check("after_success", &raw.after_success)?,
            on_failure: check("on_failure", &raw.on_failure)?,
        })
    }

    /// The line of a nested key, like `["services", "core", "paths"]`: each key searched for at
    /// or after its parent's line; with `value`, the first line from there that holds the value's
    /// text (a list item). The deepest line found; `None` when even the first key is not found.
    fn nested_line(&self, keys: &[&str], value: Option<&str>) -> Option<usize> {
        let mut line = None;
        for key in keys {
            let from = line.unwrap_or(1);
            match key_positions(&self.text, key)
                .into_iter()
                .find(|&(l, _)| l >= from)
            {
                Some((l, _)) => line = Some(l),
                None => break,
            }
        }
        let from = line?;
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            if let Some(index) = self
                .text
                .lines()
                .enumerate()
                .skip(from - 1)
                .position(|(_, text)| text.contains(value))
            {
                return Some(from + index);
            }
        }
        Some(from)
    }

    /// A path from the file: relative ones are relative to the file's directory.
    fn path(&self, path: &Path) -> Result<PathBuf, String> {
        let path = check_path("path", path.to_path_buf())?;
        if path.starts_with("~") {
            return Err(format!(
                "`{}`: `~` is not expanded here; write the full path",
                path.display()
            ));
        }
        Ok(if path.is_absolute() {
            path
        } else {
            self.dir.join(path)
        })
    }

    /// The one-line error for `message` about this file, at a line (and column) when known.
    fn error(&self, at: Option<(usize, Option<usize>)>, message: &str) -> anyhow::Error {
        let place = match at {
            Some((line, Some(column))) => format!(" line {line} column {column}"),
            Some((line, None)) => format!(" line {line}"),
            None => String::new(),
        };
        // One line whatever the file holds: a value quoted back may contain line breaks.
        let message: String = message
            .chars()
            .flat_map(|c| {
                if c.is_control() {
                    c.escape_default().collect::<Vec<_>>()
                } else {
                    vec![c]
                }
            })
            .collect();
        Failure::usage(format!(
            "config `{}`{place}: {message}",
            self.path.display()
        ))
        .into()
    }

    /// Turns a problem with a key's value into the one-line error pointing at the key.
    fn key_error<'a>(&'a self, key: &'a str) -> impl Fn(String) -> anyhow::Error + 'a {
        move |problem| {
            let at = key_positions(&self.text, key)
                .first()
                .map(|&(line, _)| (line, None));
            self.error(at, &format!("`{key}`: {problem}"))
        }
    }

    /// Rewords serde_yaml's error (`path: message at line L column C`) as ours.
    fn yaml_error(&self, err: serde_yaml::Error) -> anyhow::Error {
        let mut message = err.to_string();
        let mut at = err.location().map(|l| (l.line(), Some(l.column())));
        if let Some(location) = err.location() {
            let suffix = format!(" at line {} column {}", location.line(), location.column());
            if let Some(start) = message.find(&suffix) {
                message.replace_range(start..start + suffix.len(), "");
            }
        }

        // A value of the wrong type: serde_yaml names the key path and points at the value.
        if let Some((path, rest)) = message.split_once(": ") {
            let key = path.split(['[', '.']).next().unwrap_or(path);
            if CONFIG_KEYS.contains(&key) {
                // A key given twice inside `services` or `hooks` (from the first look).
                if let Some(name) = rest
                    .strip_prefix("duplicate entry with key \"")
                    .and_then(|name| name.strip_suffix('"'))
                {
                    let parents: Vec<&str> = path.split('.').collect();
                    let from = self.nested_line(&parents, None).unwrap_or(1);
                    let positions: Vec<_> = key_positions(&self.text, name)
                        .into_iter()
                        .filter(|&(line, _)| line >= from)
                        .collect();
                    if let Some(&(line, column)) = positions.get(1).or(positions.first()) {
                        at = Some((line, Some(column)));
                    }
                    return self.error(
                        at,
                        &format!("key `{path}.{}` is given twice; keep one", printable(name)),
                    );
                }
                let mut rest = rest.to_owned();
                if rest.contains("expected a sequence") {
                    rest.push_str("; write a list, like `[a, b]` or one `- a` line per item");
                } else if rest.starts_with("unknown variant") && key == "output" {
                    rest = rest.replacen("unknown variant", "unknown format", 1);
                } else if rest.starts_with("unknown variant") && key == "rebuild_policy" {
                    rest = rest.replacen("unknown variant", "unknown policy", 1);
                } else if rest.starts_with("unknown variant") && key == "submodules" {
                    rest = rest.replacen("unknown variant", "unknown value", 1);
                } else if rest.starts_with("unknown field") {
                    // Inside `hooks` or a service's rule.
                    rest = rest.replacen("unknown field", "unknown key", 1);
                } else if rest.starts_with("missing field") {
                    rest = rest.replacen("missing field", "missing key", 1);
                }
                return self.error(at, &format!("`{path}`: {rest}"));
            }
        }

        if let Some(name) = backticked_after(&message, "unknown field `") {
            // serde_yaml points at the unknown key itself; a textual search could find the
            // same name as a key elsewhere first (inside a service's rule, say).
            if at.is_none() {
                at = key_positions(&self.text, &name)
                    .first()
                    .map(|&(line, column)| (line, Some(column)));
            }
            let suggestion = CONFIG_KEYS
                .iter()
                .map(|key| (strsim::levenshtein(&name.replace('-', "_"), key), key))
                .filter(|&(distance, _)| distance <= 2)
                .min()
                .map(|(_, key)| format!(" (did you mean `{key}`?)"))
                .unwrap_or_default();
            return self.error(
                at,
                &format!(
                    "unknown key `{}`{suggestion}; expected one of: {}",
                    printable(&name),
                    CONFIG_KEYS.join(", ")
                ),
            );
        }
        let duplicate = backticked_after(&message, "duplicate field `").or_else(|| {
            // From the first look at the document, as a plain mapping.
            let rest = message.strip_prefix("duplicate entry with key \"")?;
            Some(rest[..rest.find('"')?].to_owned())
        });
        if let Some(name) = duplicate {
            let positions = key_positions(&self.text, &name);
            if let Some(&(line, column)) = positions.get(1).or(positions.first()) {
                at = Some((line, Some(column)));
            }
            return self.error(
                at,
                &format!("key `{}` is given twice; keep one", printable(&name)),
            );
        }
        if message.contains("expected field identifier") {
            return self.error(at, &format!("{message}: keys are names like `remote`"));
        }

        let mut message = format!("not valid YAML: {message}");
        if message.contains("tab character") || message.contains("cannot start any token") {
            message.push_str("; YAML indents with spaces, not tabs");
        } else if message.contains("while scanning an alias") {
            message.push_str(
                "; quote a pattern that starts with `*`, like `'*.md'` (YAML reads `*name` as \
                 an alias)",
            );
        } else if message.contains("while parsing a flow") {
            message.push_str(
                "; inside `[...]` or `{...}`, quote values holding `[`, `]`, `{`, `}` or `,`, \
                 like `'a/[ab].txt'`",
            );
        }
        self.error(at, &message)
    }
}

/// The text between `prefix` and the next backtick, when `message` starts with `prefix`.
fn backticked_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    Some(rest[..rest.find('`')?].to_owned())
}

/// Where `key` stands as a mapping key in `text`: (line, column), 1-based, in order. A textual
/// scan (serde_yaml keeps no positions of keys): `key:`, `"key":` or `'key':` at the start of a
/// line or after `{` or `,`, outside comments.
fn key_positions(text: &str, key: &str) -> Vec<(usize, usize)> {
    let forms = [key.to_owned(), format!("\"{key}\""), format!("'{key}'")];
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let content = match line.find(" #") {
            Some(comment) => &line[..comment],
            None => line,
        };
        if content.trim_start().starts_with('#') {
            continue;
        }
        let mut hit = None;
        for form in &forms {
            for (start, _) in content.match_indices(form.as_str()) {
                let before = content[..start].trim_end_matches([' ', '\t']);
                let starts_key = before.is_empty()
                    || before.ends_with(['{', ','])
                    || before.ends_with("- ")
                    || before == "-"
                    || before == "?";
                let after = content[start + form.len()..].trim_start_matches([' ', '\t']);
                let ends_key = after == ":" || after.starts_with(": ") || after.starts_with(":\t");
                if starts_key && ends_key {
                    hit = Some(hit.map_or(start, |h: usize| h.min(start)));
                }
            }
        }
        if let Some(start) = hit {
            found.push((index + 1, content[..start].chars().count() + 1));
        }
    }
    found
}

/// The first line holding something other than blanks, comments and document markers.
fn first_content_line(text: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let line = line.trim();
            !(line.is_empty() || line.starts_with('#') || line == "---" || line.starts_with('%'))
        })
        .map(|index| index + 1)
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

fn yaml_kind(value: &serde_yaml::Value) -> &'static str {
    match value {
        serde_yaml::Value::Null => "nothing",
        serde_yaml::Value::Bool(_) => "a boolean",
        serde_yaml::Value::Number(_) => "a number",
        serde_yaml::Value::String(_) => "a string",
        serde_yaml::Value::Sequence(_) => "a list",
        serde_yaml::Value::Mapping(_) => "a mapping",
        serde_yaml::Value::Tagged(_) => "a tagged value",
    }
}

/// A value for a message: as written, with control characters escaped.
fn printable(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// An I/O error's reason without Rust's ` (os error N)` suffix.
fn io_reason(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(end) => text[..end].to_owned(),
        None => text,
    }
}

// ---------------------------------------------------------------------------------------------
// Checks shared by flags and the file. Each returns the problem as a phrase that follows
// "--flag: " or "config `F` line L: `key`: " and says what to do.
// ---------------------------------------------------------------------------------------------

fn check_path(what: &str, path: PathBuf) -> Result<PathBuf, String> {
    if path.as_os_str().is_empty() {
        return Err(format!("the {what} is empty; give a path"));
    }
    Ok(path)
}

/// A remote or branch name: what git would refuse in a ref name, and what would be read as an
/// option.
fn check_git_name(what: &str, name: String) -> Result<String, String> {
    let shown = printable(&name);
    let example = if what == "remote" { "origin" } else { "main" };
    let remedy = format!("give the {what}'s name as git knows it, like `{example}`");
    let problem = if name.is_empty() {
        return Err(format!("the {what} name is empty; {remedy}"));
    } else if name.starts_with('-') {
        "starts with `-`".to_owned()
    } else if name.chars().any(char::is_whitespace) {
        "contains whitespace".to_owned()
    } else if name.chars().any(char::is_control) {
        "contains a control character".to_owned()
    } else if name.contains("..") {
        "contains `..`".to_owned()
    } else if let Some(c) = name
        .chars()
        .find(|c| matches!(c, '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
    {
        format!("contains `{c}`")
    } else if name.contains("@{") || name == "@" {
        "contains `@{` or is `@`".to_owned()
    } else if name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        "has an empty path component (a leading, trailing or double `/`)".to_owned()
    } else if name
        .split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        "has a component that starts with `.` or ends with `.lock`".to_owned()
    } else if name.ends_with('.') {
        "ends with `.`".to_owned()
    } else {
        return Ok(name);
    };
    Err(format!(
        "`{shown}` {problem}, which git does not allow in a {what} name; {remedy}"
    ))
}

/// A compose project name as compose accepts it: `[a-z0-9][a-z0-9_-]*`.
fn check_project_name(name: String) -> Result<String, String> {
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(name)
    } else {
        Err(format!(
            "compose would reject the project name `{}`; use lowercase letters, digits, `-` and \
             `_`, starting with a letter or digit",
            printable(&name)
        ))
    }
}

/// Service names as the compose file format allows them (`[a-zA-Z0-9._-]+`), none starting with
/// `-` (compose would read it as an option). Duplicates are dropped, the first one kept.
fn check_services(names: Vec<String>) -> Result<Vec<String>, String> {
    if names.is_empty() {
        return Err(
            "the list of services is empty; name at least one service, or leave the \
                    setting out to restart the services the changes map to"
                .to_owned(),
        );
    }
    let mut seen = HashSet::new();
    let mut services = Vec::with_capacity(names.len());
    for name in names {
        let name = check_service_name(name)?;
        if seen.insert(name.clone()) {
            services.push(name);
        }
    }
    Ok(services)
}

/// One service name, trimmed (`--services "web, worker"` means what it says).
fn check_service_name(name: String) -> Result<String, String> {
    let name = name.trim().to_owned();
    if name.is_empty() {
        return Err(
            "a service name is empty; separate the names with single commas, like `web,worker`"
                .to_owned(),
        );
    }
    let shown = printable(&name);
    if name.starts_with('-') {
        return Err(format!(
            "the service name `{shown}` starts with `-`, which compose would read as an \
             option; give the names of services in the compose file"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        let separate = if c.is_whitespace() {
            " (separate names with commas)"
        } else {
            ""
        };
        return Err(format!(
            "the service name `{shown}` contains `{}`{separate}; compose service names use \
             letters, digits, `.`, `_` and `-`",
            printable(c.encode_utf8(&mut [0; 4]))
        ));
    }
    Ok(name)
}

/// Compiles the user's path patterns the one way pullstart matches them, against paths relative
/// to the checkout root with `/` separators:
///
/// - a pattern without `/` matches a file or directory name (and all below it) at any depth, like in `.gitignore` (`*.md`,
///   `Dockerfile` matches `worker/Dockerfile`);
/// - a pattern with `/` is anchored at the checkout root (`assistant/**`, `docs/*.md`); a leading
///   `/` or `./` only anchors (`/Dockerfile` is the root's Dockerfile);
/// - a trailing `/` means everything below (`docs/` is `docs/**`);
/// - `*`, `?` and `[...]` do not cross `/`, `**` does (as a whole path component); `{a,b}`
///   alternates; a backslash escapes the next character.
///
/// An invalid pattern is an error naming the pattern and why.
pub fn compile_globs(patterns: &[String]) -> Result<GlobSet, String> {
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        for glob in compile_glob(pattern)? {
            set.add(glob);
        }
    }
    set.build()
        .map_err(|e| format!("cannot compile the patterns: {e}"))
}

/// One pattern of [`compile_globs`]: one glob, or two for a name without `/`, which (as in
/// .gitignore) matches a file of that name or a directory of that name with all below it.
fn compile_glob(pattern: &str) -> Result<Vec<globset::Glob>, String> {
    let shown = printable(pattern);
    let invalid = |why: &str| {
        format!(
            "invalid pattern `{shown}`: {why}; write globs like `app/**`, `*.md` or `docs/`, \
             relative to the checkout"
        )
    };
    if pattern.is_empty() {
        return Err("a pattern is empty; write globs like `app/**`, `*.md` or `docs/`".to_owned());
    }
    let anchored = pattern.contains('/');
    let mut rest = pattern;
    while let Some(stripped) = rest.strip_prefix("./").or_else(|| rest.strip_prefix('/')) {
        rest = stripped;
    }
    let below = rest.ends_with('/');
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest == "." {
        return Err(invalid(
            "it names the whole checkout; name the files, like `app/**`",
        ));
    }
    if rest.split('/').any(|part| part == "..") {
        return Err(invalid(
            "`..` leaves the checkout; patterns are relative to the checkout root",
        ));
    }
    if rest.split('/').any(|part| part.is_empty() || part == ".") {
        return Err(invalid("it has an empty or `.` path component"));
    }
    let globs = match (anchored, below) {
        (false, false) => vec![format!("**/{rest}"), format!("**/{rest}/**")],
        (false, true) => vec![format!("**/{rest}/**")],
        (true, false) => vec![rest.to_owned()],
        (true, true) => vec![format!("{rest}/**")],
    };
    globs
        .iter()
        .map(|glob| {
            GlobBuilder::new(glob)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| invalid(&e.kind().to_string()))
        })
        .collect()
}

/// Splits a compose command like a shell (quotes and backslashes, no expansion).
fn split_command(line: &str) -> Result<Vec<String>, String> {
    let words = shell_words::split(line).map_err(|e| {
        format!(
            "cannot split `{}` into words: {e}; quote like a shell, e.g. `'my compose' --ansi never`",
            printable(line)
        )
    })?;
    check_command(words)
}

/// The config's `compose_command`: a string split like the flag, or a list of words.
fn command_from_yaml(value: &serde_yaml::Value) -> Result<Vec<String>, String> {
    use serde_yaml::Value;
    match value {
        Value::String(line) => split_command(line),
        Value::Sequence(items) => {
            let words = items
                .iter()
                .map(|item| match item {
                    Value::String(word) => Ok(word.clone()),
                    Value::Number(number) => Ok(number.to_string()),
                    Value::Bool(flag) => Ok(flag.to_string()),
                    other => Err(format!(
                        "expected a list of words, found {} in it",
                        yaml_kind(other)
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            check_command(words)
        }
        other => Err(format!(
            "expected a command line like `docker compose` or a list of words like \
             `[docker, compose]`, found {}",
            yaml_kind(other)
        )),
    }
}

fn check_command(words: Vec<String>) -> Result<Vec<String>, String> {
    match words.first() {
        None => {
            Err("the compose command is empty; give a command like `docker compose`".to_owned())
        }
        Some(program) if program.is_empty() => Err(
            "the compose command's program is an empty word; give a command like `docker compose`"
                .to_owned(),
        ),
        Some(_) => Ok(words),
    }
}

/// A time limit such as `90s`, `2m` or `1h 30m`: more than zero, at most a day.
fn parse_timeout(what: &str, text: &str) -> Result<Duration, String> {
    let duration = parse_duration(what, text)?;
    if duration.is_zero() {
        return Err(format!(
            "the {what} `{}` is zero; give a time like `90s` or `5m`",
            printable(text)
        ));
    }
    Ok(duration)
}

/// `watch`'s interval: at least [`MIN_WATCH_INTERVAL`], at most a day.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let duration = parse_duration("interval", text)?;
    if duration < MIN_WATCH_INTERVAL {
        return Err(format!(
            "the interval `{}` is less than 1s; give a time like `30s` or `5m`",
            printable(text)
        ));
    }
    Ok(duration)
}

/// The metrics file: a path that names a file (its directory must exist when it is written).
fn check_metrics_file(path: PathBuf) -> Result<PathBuf, String> {
    let path = check_path("metrics file", path)?;
    let names_a_directory = path.as_os_str().as_encoded_bytes().ends_with(b"/")
        || !matches!(
            path.components().next_back(),
            Some(std::path::Component::Normal(_))
        );
    if names_a_directory {
        return Err(format!(
            "`{}` names a directory; give the path of a file, like \
             `/var/lib/node_exporter/textfile_collector/pullstart.prom`",
            path.display()
        ));
    }
    Ok(path)
}

/// A duration such as `90s`, `2m`, `1h 30m` or `0`: at most a day. Zero is allowed (the health
/// timeout and settle time); [`parse_timeout`] refuses it.
fn parse_duration(what: &str, text: &str) -> Result<Duration, String> {
    let shown = printable(text);
    let text = text.trim();
    // A bare number is seconds, as systemd, coreutils `timeout`, ssh and curl read it.
    let text: std::borrow::Cow<str> =
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            format!("{text}s").into()
        } else {
            text.into()
        };
    let duration = humantime::parse_duration(&text).map_err(|e| {
        format!("`{shown}` is not a duration ({e}); write one like `90s`, `5m` or `1h`")
    })?;
    if duration > MAX_DURATION {
        return Err(format!(
            "the {what} `{shown}` is more than a day; give a time like `90s` or `5m` \
             (`m` is minutes, `M` months)"
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::{code_of, ExitCode};
    use clap::Parser;

    fn cli(args: &[&str]) -> Cli {
        let mut argv = vec!["pullstart"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn resolve(args: &[&str]) -> Settings {
        Settings::resolve(cli(args)).unwrap_or_else(|e| panic!("{args:?}: {e:#}"))
    }

    /// The one-line usage error resolving `args` gives.
    fn usage_error(args: &[&str]) -> String {
        let err = Settings::resolve(cli(args)).expect_err(&format!("{args:?} should fail"));
        assert_eq!(code_of(&err), ExitCode::Usage, "{err:#}");
        let message = err.to_string();
        assert!(!message.contains('\n'), "not one line: {message}");
        message
    }

    /// A config file in a fresh temporary directory.
    struct Config {
        dir: tempfile::TempDir,
        path: PathBuf,
    }

    fn config(text: impl AsRef<[u8]>) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pullstart.yml");
        std::fs::write(&path, text).unwrap();
        Config { dir, path }
    }

    impl Config {
        fn arg(&self) -> &str {
            self.path.to_str().unwrap()
        }
        fn resolve(&self, args: &[&str]) -> Settings {
            let mut all = vec!["--config", self.arg()];
            all.extend_from_slice(args);
            resolve(&all)
        }
        fn error(&self) -> String {
            usage_error(&["--config", self.arg()])
        }
    }

    #[test]
    fn defaults() {
        let s = resolve(&[]);
        assert_eq!(
            s,
            Settings {
                command: Command::Run,
                repo: PathBuf::from("."),
                remote: None,
                branch: None,
                compose_command: vec!["docker".into(), "compose".into()],
                compose_files: vec![],
                project_name: None,
                services: None,
                rules: vec![],
                ignore: vec![],
                dependency_files: DEFAULT_DEPENDENCY_FILES
                    .iter()
                    .map(|&p| p.to_owned())
                    .collect(),
                rebuild_policy: RebuildPolicy::Rebuild,
                allow_rebuild: false,
                submodules: Submodules::Ignore,
                restart_timeout: Duration::from_secs(300),
                health_timeout: Duration::from_secs(60),
                health_settle: Duration::from_secs(2),
                rollback: false,
                hooks: Hooks::default(),
                detailed_exitcode: false,
                output: OutputFormat::Text,
                quiet: false,
                verbose: false,
                config_file: None,
                config_file_absolute: None,
                host_keys_from_file: Vec::new(),
                timeout: Duration::from_secs(270),
                splay: Duration::ZERO,
                metrics_file: None,
                ssh_key: None,
                token_file: None,
                verify_signatures: None,
                listen: None,
                webhook_secret_file: None,
                watch: None,
                entrypoint: None,
            }
        );
    }

    #[test]
    fn timeout_splay_and_metrics_file_flags() {
        let s = resolve(&[
            "--timeout",
            "2m",
            "--splay",
            "30s",
            "--metrics-file",
            "m/pullstart.prom",
        ]);
        assert_eq!(s.timeout, Duration::from_secs(120));
        assert_eq!(s.splay, Duration::from_secs(30));
        assert_eq!(s.metrics_file, Some(PathBuf::from("m/pullstart.prom")));
        assert_eq!(resolve(&["--splay", "0"]).splay, Duration::ZERO);
        // A bare number is seconds, as systemd and coreutils `timeout` read it.
        assert_eq!(
            resolve(&["--timeout", "90"]).timeout,
            Duration::from_secs(90)
        );
        assert_eq!(
            resolve(&["--health-timeout", "60"]).health_timeout,
            Duration::from_secs(60)
        );
        assert_eq!(
            resolve(&["check", "--timeout=1h 30m"]).timeout,
            Duration::from_secs(5400)
        );
        for (args, expected) in [
            (
                &["--timeout", "0s"][..],
                "--timeout: the timeout `0s` is zero",
            ),
            (
                &["--timeout", "soon"],
                "--timeout: `soon` is not a duration",
            ),
            (
                &["--timeout", "2days"],
                "--timeout: the timeout `2days` is more than a day",
            ),
            (&["--timeout", "90 apples"], "is not a duration"),
            (&["--splay", "x"], "--splay: `x` is not a duration"),
            (
                &["--splay", "25h"],
                "--splay: the splay `25h` is more than a day",
            ),
            (
                &["--metrics-file", "/var/lib/"],
                "--metrics-file: `/var/lib/` names a directory",
            ),
            (&["--metrics-file", "a/.."], "names a directory"),
            (&["--metrics-file", "/"], "names a directory"),
        ] {
            let message = usage_error(args);
            assert!(message.contains(expected), "{args:?}: {message}");
        }
    }

    #[test]
    fn timeout_splay_metrics_file_and_every_in_the_file() {
        let file =
            config("timeout: 3m\nsplay: 10s\nmetrics_file: metrics/pullstart.prom\nevery: 2m\n");
        let s = file.resolve(&[]);
        assert_eq!(s.timeout, Duration::from_secs(180));
        assert_eq!(s.splay, Duration::from_secs(10));
        // Relative to the file's directory, like `repo`.
        assert_eq!(
            s.metrics_file,
            Some(file.dir.path().join("metrics/pullstart.prom"))
        );
        assert_eq!(s.watch, None, "`every` alone does not make a run a watch");
        let s = file.resolve(&["watch"]);
        assert_eq!(s.watch, Some(Duration::from_secs(120)));
        assert_eq!(s.command, Command::Run);

        // Flags win.
        let s = file.resolve(&[
            "watch",
            "--every",
            "5s",
            "--timeout",
            "1m",
            "--splay",
            "0",
            "--metrics-file",
            "/abs.prom",
        ]);
        assert_eq!(s.watch, Some(Duration::from_secs(5)));
        assert_eq!(s.timeout, Duration::from_secs(60));
        assert_eq!(s.splay, Duration::ZERO);
        assert_eq!(s.metrics_file, Some(PathBuf::from("/abs.prom")));

        for (text, expected) in [
            ("timeout: 0\n", "line 1: `timeout`: the timeout `0` is zero"),
            (
                "repo: .\nsplay: later\n",
                "line 2: `splay`: `later` is not a duration",
            ),
            (
                "metrics_file: dir/\n",
                "line 1: `metrics_file`: `dir/` names a directory",
            ),
            (
                "metrics_file: ''\n",
                "`metrics_file`: the metrics file is empty",
            ),
            ("metrics_file: ~/m.prom\n", "`~` is not expanded here"),
            (
                "every: 100ms\n",
                "line 1: `every`: the interval `100ms` is less than 1s",
            ),
            ("timeout: [1]\n", "`timeout`: invalid type"),
        ] {
            let message = config(text).error();
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn watch_needs_an_interval_of_at_least_a_second() {
        let s = resolve(&["watch", "--every", "5m"]);
        assert_eq!(s.watch, Some(Duration::from_secs(300)));
        assert_eq!(s.command, Command::Run);
        assert_eq!(
            resolve(&["watch", "--every", "1s"]).watch,
            Some(Duration::from_secs(1))
        );
        // `watch --dry-run` repeats `check`.
        let s = resolve(&["--dry-run", "watch", "--every", "1m"]);
        assert_eq!(
            (s.command, s.watch),
            (Command::Check, Some(Duration::from_secs(60)))
        );
        assert_eq!(resolve(&["run"]).watch, None);
        assert_eq!(resolve(&["check"]).watch, None);

        let message = usage_error(&["watch"]);
        assert!(
            message.starts_with("watch: the interval is missing; give it with --every"),
            "{message}"
        );
        for (value, expected) in [
            ("999ms", "--every: the interval `999ms` is less than 1s"),
            ("0", "less than 1s"),
            ("often", "--every: `often` is not a duration"),
            ("2d", "more than a day"),
        ] {
            let message = usage_error(&["watch", "--every", value]);
            assert!(message.contains(expected), "{value}: {message}");
        }
    }

    #[test]
    fn deadline() {
        let deadline = Deadline::after(Duration::from_secs(60));
        assert!(!deadline.remaining().is_zero());
        let left = deadline.remaining();
        assert!(left > Duration::from_secs(59) && left <= Duration::from_secs(60));
        assert_eq!(deadline.min(Duration::from_secs(5)), Duration::from_secs(5));
        assert!(deadline.min(Duration::from_secs(120)) <= Duration::from_secs(60));

        let past = Deadline::after(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(past.remaining(), Duration::ZERO);
        assert_eq!(past.min(Duration::from_secs(5)), Duration::ZERO);
    }

    #[test]
    fn commands() {
        assert_eq!(resolve(&[]).command, Command::Run);
        assert_eq!(resolve(&["run"]).command, Command::Run);
        assert_eq!(resolve(&["check"]).command, Command::Check);
        assert_eq!(resolve(&["status"]).command, Command::Status);
        assert_eq!(resolve(&["--dry-run"]).command, Command::Check);
        assert_eq!(resolve(&["run", "--dry-run"]).command, Command::Check);
        assert_eq!(resolve(&["--dry-run", "check"]).command, Command::Check);
        assert_eq!(resolve(&["status", "--dry-run"]).command, Command::Status);
    }

    #[test]
    fn repo_before_and_after_the_subcommand() {
        assert_eq!(resolve(&["-C", "/srv/app"]).repo, PathBuf::from("/srv/app"));
        assert_eq!(
            resolve(&["-C", "/srv/app", "check"]).repo,
            PathBuf::from("/srv/app")
        );
        let s = resolve(&["check", "-C", "/srv/app"]);
        assert_eq!(
            (s.command, s.repo),
            (Command::Check, PathBuf::from("/srv/app"))
        );
        // Relative to the current directory: kept as given.
        assert_eq!(resolve(&["-C", "app"]).repo, PathBuf::from("app"));
    }

    #[test]
    fn every_flag() {
        let s = resolve(&[
            "check",
            "-C",
            "repo",
            "--remote",
            "upstream",
            "--branch",
            "release/1.x",
            "--compose-command",
            "podman-compose",
            "-f",
            "b.yml",
            "-f",
            "/abs/a.yml",
            "-p",
            "my_app-2",
            "--services",
            "web,worker",
            "--restart-timeout",
            "90s",
            "--rebuild-policy",
            "stop",
            "--allow-rebuild",
            "--health-timeout",
            "3m",
            "--health-settle",
            "10s",
            "--rollback",
            "--detailed-exitcode",
            "--output",
            "json",
            "-q",
            "-v",
        ]);
        assert_eq!(s.rebuild_policy, RebuildPolicy::Stop);
        assert!(s.allow_rebuild && s.rollback);
        assert_eq!(s.health_timeout, Duration::from_secs(180));
        assert_eq!(s.health_settle, Duration::from_secs(10));
        assert_eq!(s.command, Command::Check);
        assert_eq!(s.remote.as_deref(), Some("upstream"));
        assert_eq!(s.branch.as_deref(), Some("release/1.x"));
        assert_eq!(s.compose_command, ["podman-compose"]);
        assert_eq!(
            s.compose_files,
            [PathBuf::from("b.yml"), PathBuf::from("/abs/a.yml")]
        );
        assert_eq!(s.project_name.as_deref(), Some("my_app-2"));
        assert_eq!(
            s.services,
            Some(vec!["web".to_owned(), "worker".to_owned()])
        );
        assert_eq!(s.restart_timeout, Duration::from_secs(90));
        assert!(s.detailed_exitcode && s.quiet && s.verbose);
        assert_eq!(s.output, OutputFormat::Json);
    }

    #[test]
    fn compose_command_splits_like_a_shell() {
        let s = resolve(&["--compose-command", "docker compose --ansi never"]);
        assert_eq!(s.compose_command, ["docker", "compose", "--ansi", "never"]);
        let s = resolve(&["--compose-command", r#"'my compose' "x y" a\ b"#]);
        assert_eq!(s.compose_command, ["my compose", "x y", "a b"]);
        let s = resolve(&["--compose-command", "$HOME/bin/compose ~"]);
        assert_eq!(
            s.compose_command,
            ["$HOME/bin/compose", "~"],
            "no expansion"
        );
    }

    #[test]
    fn bad_compose_commands() {
        let message = usage_error(&["--compose-command", ""]);
        assert!(
            message.starts_with("--compose-command: the compose command is empty"),
            "{message}"
        );
        let message = usage_error(&["--compose-command", "   "]);
        assert!(message.contains("is empty"), "{message}");
        let message = usage_error(&["--compose-command", "'' compose"]);
        assert!(message.contains("program is an empty word"), "{message}");
        let message = usage_error(&["--compose-command", "docker 'compose"]);
        assert!(
            message.starts_with("--compose-command: cannot split `docker 'compose` into words: "),
            "{message}"
        );
    }

    #[test]
    fn timeouts() {
        assert_eq!(
            resolve(&["--restart-timeout", "2m"]).restart_timeout,
            Duration::from_secs(120)
        );
        assert_eq!(
            resolve(&["--restart-timeout", "1h 30m"]).restart_timeout,
            Duration::from_secs(5400)
        );
        for (value, expected) in [
            ("90x", "is not a duration"),
            ("soon", "is not a duration"),
            ("", "is not a duration"),
            ("0s", "is zero"),
            ("2days", "more than a day"),
            ("5M", "more than a day"),
        ] {
            let message = usage_error(&["--restart-timeout", value]);
            assert!(message.starts_with("--restart-timeout: "), "{message}");
            assert!(message.contains(expected), "{value}: {message}");
        }
    }

    #[test]
    fn bad_flag_values() {
        for (args, expected) in [
            (
                &["--services", ","][..],
                "--services: a service name is empty",
            ),
            (
                &["--services", "web,"],
                "--services: a service name is empty",
            ),
            (&["--services", ""], "--services: a service name is empty"),
            (
                &["--services=-d"],
                "--services: the service name `-d` starts with `-`",
            ),
            (
                &["--services", "web worker"],
                "contains ` ` (separate names with commas); compose",
            ),
            (&["--remote", ""], "--remote: the remote name is empty"),
            (&["--remote=-x"], "--remote: `-x` starts with `-`"),
            (&["--remote", "my origin"], "contains whitespace"),
            (&["--branch", "a..b"], "--branch: `a..b` contains `..`"),
            (&["--branch", "a\tb"], "contains whitespace"),
            (
                &["--branch", "a\u{1}b"],
                "`a\\u{1}b` contains a control character",
            ),
            (&["--branch", "main~1"], "contains `~`"),
            (&["--branch", "x.lock"], "ends with `.lock`"),
            (&["--branch", "/main"], "empty path component"),
            (
                &["-p", "MyApp"],
                "--project-name: compose would reject the project name `MyApp`",
            ),
            (&["-p", "_app"], "compose would reject"),
            (&["-p", ""], "compose would reject"),
        ] {
            let message = usage_error(args);
            assert!(message.contains(expected), "{args:?}: {message}");
        }
    }

    #[test]
    fn services_are_trimmed() {
        let s = resolve(&["--services", "web, worker"]);
        assert_eq!(
            s.services,
            Some(vec!["web".to_owned(), "worker".to_owned()])
        );
        let message = usage_error(&["--services", "web, ,worker"]);
        assert!(message.contains("a service name is empty"), "{message}");
    }

    #[test]
    fn services_are_deduplicated_in_order() {
        let s = resolve(&["--services", "worker,web,worker"]);
        assert_eq!(
            s.services,
            Some(vec!["worker".to_owned(), "web".to_owned()])
        );
        let s = resolve(&["--services", "a.b_c-1"]);
        assert_eq!(s.services, Some(vec!["a.b_c-1".to_owned()]));
    }

    #[test]
    fn output_from_flags_ignores_the_file() {
        let file = config("output: json\n");
        let parsed = cli(&["--config", file.arg()]);
        assert_eq!(output_from_flags(&parsed), OutputFormat::Text);
        assert_eq!(
            Settings::resolve(parsed).unwrap().output,
            OutputFormat::Json
        );
        assert_eq!(
            output_from_flags(&cli(&["check", "--output", "json"])),
            OutputFormat::Json
        );
    }

    #[test]
    fn every_key_of_the_file() {
        let file = config(
            "# pullstart\n\
             repo: /srv/app\n\
             remote: upstream\n\
             branch: prod\n\
             compose_command: docker compose --ansi never\n\
             compose_files: [/srv/app/compose.yml, compose.prod.yml]\n\
             project_name: app\n\
             services:\n  - web\n  - worker\n\
             restart_timeout: 2m\n\
             rebuild_policy: stop\n\
             health_timeout: 90s\n\
             health_settle: 5s\n\
             rollback: true\n\
             detailed_exitcode: true\n\
             output: json\n\
             quiet: true\n\
             verbose: true\n\
             ignore: [docs/, '*.md']\n\
             dependency_files: [requirements.txt]\n\
             hooks: {before: ./pre.sh, after_success: 'curl -fsS https://x/ok', on_failure: ./alert.sh}\n",
        );
        let s = file.resolve(&[]);
        assert_eq!(s.rebuild_policy, RebuildPolicy::Stop);
        assert!(!s.allow_rebuild, "not a config key");
        assert_eq!(s.health_timeout, Duration::from_secs(90));
        assert_eq!(s.health_settle, Duration::from_secs(5));
        assert!(s.rollback);
        assert_eq!(s.ignore, ["docs/", "*.md"]);
        assert_eq!(s.dependency_files, ["requirements.txt"]);
        assert_eq!(
            s.hooks,
            Hooks {
                before: Some("./pre.sh".into()),
                after_success: Some("curl -fsS https://x/ok".into()),
                on_failure: Some("./alert.sh".into()),
            }
        );
        assert_eq!(s.rules, []);
        assert_eq!(s.command, Command::Run);
        assert_eq!(s.repo, PathBuf::from("/srv/app"));
        assert_eq!(s.remote.as_deref(), Some("upstream"));
        assert_eq!(s.branch.as_deref(), Some("prod"));
        assert_eq!(s.compose_command, ["docker", "compose", "--ansi", "never"]);
        assert_eq!(
            s.compose_files,
            [
                PathBuf::from("/srv/app/compose.yml"),
                PathBuf::from("compose.prod.yml")
            ]
        );
        assert_eq!(s.project_name.as_deref(), Some("app"));
        assert_eq!(
            s.services,
            Some(vec!["web".to_owned(), "worker".to_owned()])
        );
        assert_eq!(s.restart_timeout, Duration::from_secs(120));
        assert!(s.detailed_exitcode && s.quiet && s.verbose);
        assert_eq!(s.output, OutputFormat::Json);
        assert_eq!(s.config_file, Some(file.path.clone()));
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file = config(
            "repo: app\nremote: upstream\nbranch: prod\ncompose_command: [podman-compose]\n\
             compose_files: [a.yml]\nproject_name: fromfile\nservices: [web]\n\
             restart_timeout: 2m\noutput: json\nrebuild_policy: stop\nhealth_timeout: 5m\n\
             health_settle: 0\n",
        );
        let s = file.resolve(&[
            "-C",
            "/other",
            "--remote",
            "origin",
            "--branch",
            "main",
            "--compose-command",
            "docker compose",
            "-f",
            "b.yml",
            "-p",
            "fromflag",
            "--services",
            "worker",
            "--restart-timeout",
            "10s",
            "--output",
            "text",
            "--rebuild-policy",
            "rebuild",
            "--health-timeout",
            "0s",
            "--health-settle",
            "3s",
        ]);
        assert_eq!(s.rebuild_policy, RebuildPolicy::Rebuild);
        assert_eq!(s.health_timeout, Duration::ZERO);
        assert_eq!(s.health_settle, Duration::from_secs(3));
        assert_eq!(s.repo, PathBuf::from("/other"));
        assert_eq!(s.remote.as_deref(), Some("origin"));
        assert_eq!(s.branch.as_deref(), Some("main"));
        assert_eq!(s.compose_command, ["docker", "compose"]);
        assert_eq!(
            s.compose_files,
            [PathBuf::from("b.yml")],
            "flags replace the file's list"
        );
        assert_eq!(s.project_name.as_deref(), Some("fromflag"));
        assert_eq!(s.services, Some(vec!["worker".to_owned()]));
        assert_eq!(s.restart_timeout, Duration::from_secs(10));
        assert_eq!(s.output, OutputFormat::Text);

        // Without flags, the file's values; unset keys keep the defaults.
        let s = file.resolve(&[]);
        assert_eq!(s.repo, file.dir.path().join("app"));
        assert_eq!(s.compose_command, ["podman-compose"]);
        assert_eq!(s.services, Some(vec!["web".to_owned()]));
        assert_eq!(s.output, OutputFormat::Json);
        assert!(!s.quiet && !s.verbose && !s.detailed_exitcode);
        assert_eq!(s.rebuild_policy, RebuildPolicy::Stop);
        assert_eq!(s.health_timeout, Duration::from_secs(300));
        assert_eq!(s.health_settle, Duration::ZERO);

        // Switches: a flag can turn one on; the file's `true` stands without the flag.
        let file = config("quiet: false\nverbose: true\n");
        let s = file.resolve(&["-q"]);
        assert!(s.quiet && s.verbose);
        let file = config("rollback: false\n");
        assert!(!file.resolve(&[]).rollback);
        assert!(file.resolve(&["--rollback"]).rollback);
        assert!(config("rollback: true\n").resolve(&[]).rollback);
    }

    #[test]
    fn a_bad_file_value_is_an_error_even_where_a_flag_overrides_it() {
        let file = config("repo: .\nremote: '-x'\n");
        let mut args = vec!["--config", file.arg(), "--remote", "origin"];
        let message = usage_error(&args);
        assert!(
            message.contains("line 2: `remote`: `-x` starts with `-`"),
            "{message}"
        );
        // And the flag's own errors come after the file's.
        args.truncate(2);
        args.push("--remote=-y");
        let message = usage_error(&args);
        assert!(message.starts_with("config `"), "{message}");
    }

    #[test]
    fn relative_repo_is_relative_to_the_file_and_compose_files_to_the_checkout() {
        let file = config("repo: ../app\ncompose_files:\n  - deploy/compose.yml\n  - /abs/x.yml\n");
        let s = file.resolve(&[]);
        assert_eq!(s.repo, file.dir.path().join("../app"));
        assert!(s.repo.is_absolute());
        assert_eq!(
            s.compose_files,
            [
                PathBuf::from("deploy/compose.yml"),
                PathBuf::from("/abs/x.yml")
            ]
        );
        // From flags: kept as given.
        let s = file.resolve(&["-C", "here", "-f", "compose.yml"]);
        assert_eq!(
            (s.repo, s.compose_files),
            (PathBuf::from("here"), vec![PathBuf::from("compose.yml")])
        );
    }

    #[test]
    fn compose_command_in_the_file() {
        let s = config("compose_command: \"'my compose' \\\"x y\\\"\"\n").resolve(&[]);
        assert_eq!(s.compose_command, ["my compose", "x y"]);
        let s = config("compose_command: [my compose, x y, 2]\n").resolve(&[]);
        assert_eq!(s.compose_command, ["my compose", "x y", "2"]);
        for (text, expected) in [
            (
                "compose_command: ''\n",
                "line 1: `compose_command`: the compose command is empty",
            ),
            (
                "compose_command: []\n",
                "line 1: `compose_command`: the compose command is empty",
            ),
            ("compose_command: ['', x]\n", "program is an empty word"),
            ("compose_command: {a: b}\n", "found a mapping"),
            ("compose_command: [[a]]\n", "found a list in it"),
            ("compose_command: \"a 'b\"\n", "cannot split"),
        ] {
            let message = config(text).error();
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn empty_files_are_empty_configs() {
        for text in ["", "\n", "# nothing yet\n", "---\n", "~\n"] {
            let s = config(text).resolve(&[]);
            assert_eq!(s.repo, PathBuf::from("."), "{text:?}");
            assert_eq!(s.compose_command, ["docker", "compose"]);
        }
        // A key with nothing after it is not set.
        assert_eq!(config("remote:\n").resolve(&[]).remote, None);
    }

    #[test]
    fn unknown_key() {
        let file = config("repo: /srv/app\n\nservics: [web]\n");
        let message = file.error();
        assert_eq!(
            message,
            format!(
                "config `{}` line 3 column 1: unknown key `servics` (did you mean `services`?); \
                 expected one of: repo, \
                 remote, branch, compose_command, compose_files, project_name, services, \
                 restart_timeout, rebuild_policy, submodules, health_timeout, health_settle, rollback, \
                 detailed_exitcode, output, quiet, verbose, ignore, dependency_files, hooks, timeout, splay, metrics_file, ssh_key, token_file, verify_signatures, every, listen, webhook_secret_file",
                file.path.display()
            )
        );
        let message = config("{repo: x, colour: red}\n").error();
        assert!(
            message.contains("line 1 column 11: unknown key `colour`"),
            "{message}"
        );
        let message = config("compose-files: [a.yml]\n").error();
        assert!(
            message.contains("unknown key `compose-files` (did you mean `compose_files`?)"),
            "{message}"
        );
        let message = config("<<: {quiet: true}\n").error();
        assert!(
            message.contains("line 1 column 1: unknown key `<<`"),
            "{message}"
        );
        // The same name as a key further up, inside a service's rule, is not the unknown key.
        let message = config("services:\n  web:\n    paths: [app/]\npaths: [docs/]\n").error();
        assert!(
            message.contains("line 4 column 1: unknown key `paths`"),
            "{message}"
        );
    }

    #[test]
    fn config_keys_match_the_struct() {
        for key in CONFIG_KEYS {
            let parsed: RawConfig = serde_yaml::from_str(&format!("{key}: null\n"))
                .unwrap_or_else(|e| panic!("{key}: {e}"));
            drop(parsed);
        }
        let err = serde_yaml::from_str::<RawConfig>("nope: 1\n")
            .unwrap_err()
            .to_string();
        let listed = err.matches('`').count() / 2 - 1;
        assert_eq!(listed, CONFIG_KEYS.len(), "{err}");
    }

    #[test]
    fn wrong_types_name_the_line_and_the_key() {
        for (text, expected) in [
            ("repo: x\nquiet: maybe\n", "line 2 column 8: `quiet`: invalid type: string \"maybe\", expected a boolean"),
            ("output: xml\n", "line 1 column 9: `output`: unknown format `xml`, expected `text` or `json`"),
            ("services: web,worker\n", "line 1 column 11: `services`: invalid type: string \"web,worker\", expected a list of services like `[web, worker]`, or a mapping of services to path rules like `{web: {paths: [\"app/**\"]}}`"),
            ("ignore: '*.md'\n", "line 1 column 9: `ignore`: invalid type: string \"*.md\", expected a sequence; write a list"),
            ("dependency_files: {a: b}\n", "line 1 column 19: `dependency_files`: invalid type: map, expected a sequence; write a list"),
            ("rollback: yes please\n", "line 1 column 11: `rollback`: invalid type: string \"yes please\", expected a boolean"),
            ("health_timeout: [1]\n", "line 1 column 17: `health_timeout`: invalid type: sequence"),
            ("compose_files: a.yml\n", "line 1 column 16: `compose_files`: invalid type: string"),
            ("services:\n  - web\n  - {a: 1}\n", "line 3 column 5: `services[1]`: invalid type: map"),
            ("repo: [a]\n", "line 1 column 7: `repo`: invalid type: sequence"),
            ("verbose: 1\n", "line 1 column 10: `verbose`: invalid type: integer `1`, expected a boolean"),
            ("quiet: true\nremote: a\nquiet: false\n", "line 3 column 1: key `quiet` is given twice"),
        ] {
            let message = config(text).error();
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn bad_values_name_the_line_and_the_key() {
        for (text, expected) in [
            (
                "# c\nrepo: .\nremote: -x\n",
                "line 3: `remote`: `-x` starts with `-`",
            ),
            ("branch: ''\n", "line 1: `branch`: the branch name is empty"),
            (
                "branch: a b\n",
                "line 1: `branch`: `a b` contains whitespace",
            ),
            ("branch: 'a..b'\n", "line 1: `branch`: `a..b` contains `..`"),
            (
                "project_name: My App\n",
                "line 1: `project_name`: compose would reject the project name `My App`",
            ),
            (
                "repo: x\nservices: [web, '']\n",
                "line 2: `services`: a service name is empty",
            ),
            (
                "services: [web, -d]\n",
                "line 1: `services`: the service name `-d` starts with `-`",
            ),
            (
                "services: []\n",
                "line 1: `services`: the list of services is empty",
            ),
            (
                "restart_timeout: 90x\n",
                "line 1: `restart_timeout`: `90x` is not a duration",
            ),
            ("restart_timeout: 0s\n", "is zero"),
            ("repo: ''\n", "line 1: `repo`: the path is empty"),
            (
                "compose_files: ['']\n",
                "line 1: `compose_files`: the compose file is empty",
            ),
            (
                "repo: ~/app\n",
                "line 1: `repo`: `~/app`: `~` is not expanded here",
            ),
            ("  remote: -x\n", "line 1: `remote`"),
            ("\"remote\": -x\n", "line 1: `remote`"),
        ] {
            let file = config(text);
            let message = file.error();
            assert!(
                message.starts_with(&format!("config `{}` line ", file.path.display())),
                "{message}"
            );
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn not_a_mapping() {
        for (text, expected) in [
            ("- a\n- b\n", "line 1: expected a mapping of keys to values (like `remote: origin`), found a list"),
            ("# c\nhello\n", "line 2: expected a mapping of keys to values (like `remote: origin`), found a string"),
            ("42\n", "found a number"),
        ] {
            let message = config(text).error();
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn junk_files() {
        let message = config(b"\x7fELF\x02\x01\x01\x00\x00\xff\xfe\x00junk").error();
        assert!(
            message.contains("line 1 column 10: not UTF-8 text (a binary file?)"),
            "{message}"
        );
        let message = config("repo: x\nquiet: tr\0ue\n").error();
        assert!(
            message.contains("line 2 column 10: contains a control character"),
            "{message}"
        );
        let message = config("repo: a\n\tquiet: true\n").error();
        assert!(
            message.contains("line 2 column 1: not valid YAML: "),
            "{message}"
        );
        assert!(
            message.contains("YAML indents with spaces, not tabs"),
            "{message}"
        );
        let message = config("repo: [a\n").error();
        assert!(message.contains("not valid YAML"), "{message}");
        let message = config("a: 1\n---\nb: 2\n").error();
        assert!(
            message.contains(
                "not valid YAML: deserializing from YAML containing more than one document"
            ),
            "{message}"
        );
        let message = config("[a]: b\n").error();
        assert!(
            message.contains("keys are names like `remote`"),
            "{message}"
        );
        // Alias bombs are stopped by serde_yaml's limits.
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
        for i in 0..9 {
            let prev = if i == 0 {
                "a".to_owned()
            } else {
                format!("a{}", i - 1)
            };
            bomb.push_str(&format!("a{i}: &a{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        let message = config(bomb).error();
        assert!(message.starts_with("config `"), "{message}");
    }

    #[test]
    fn huge_and_missing_files() {
        let file = config("# padding\n".repeat(120_000));
        let message = file.error();
        assert_eq!(
            message,
            format!(
                "config `{}` is larger than 1 MiB; a pullstart config is a short YAML file: \
                 check the --config path",
                file.path.display()
            )
        );
        let missing = file.dir.path().join("nope.yml");
        let message = usage_error(&["--config", missing.to_str().unwrap()]);
        assert_eq!(
            message,
            format!(
                "cannot read config `{}`: No such file or directory; check the --config path",
                missing.display()
            )
        );
        let message = usage_error(&["--config", file.dir.path().to_str().unwrap()]);
        assert!(message.starts_with("cannot read config `"), "{message}");
        assert!(
            message.ends_with(": Is a directory; give the path of a YAML file"),
            "{message}"
        );
    }

    fn rule(service: &str, paths: &[&str]) -> ServiceRule {
        ServiceRule {
            service: service.into(),
            paths: paths.iter().map(|&p| p.to_owned()).collect(),
        }
    }

    #[test]
    fn services_as_a_mapping_are_path_rules_in_file_order() {
        let expected = [
            rule("core", &["assistant/**", "pyproject.toml"]),
            rule("bot", &["bot/", "*.py"]),
        ];
        let block = config(
            "services:\n  core:\n    paths:\n      - assistant/**\n      - pyproject.toml\n  \
             bot:\n    paths: [bot/, '*.py']\n",
        );
        let s = block.resolve(&[]);
        assert_eq!(s.rules, expected);
        assert_eq!(s.services, None, "rules are not an explicit list");
        let flow = config(
            "services: {core: {paths: [\"assistant/**\", \"pyproject.toml\"]}, \
             bot: {paths: [bot/, \"*.py\"]}}\n",
        );
        assert_eq!(flow.resolve(&[]).rules, expected);
        // Names like --services names: trimmed and quoted keys are fine.
        let s = config("services:\n  'web.1_a-b': {paths: [x]}\n").resolve(&[]);
        assert_eq!(s.rules, [rule("web.1_a-b", &["x"])]);

        // --services wins (the lead's code gives `services` precedence); the rules are kept.
        let s = block.resolve(&["--services", "web"]);
        assert_eq!(s.services, Some(vec!["web".to_owned()]));
        assert_eq!(s.rules, expected);
    }

    #[test]
    fn services_as_a_list_keep_their_meaning() {
        let s = config("services: [web, worker]\n").resolve(&[]);
        assert_eq!(s.services, Some(vec!["web".into(), "worker".into()]));
        assert_eq!(s.rules, []);
        let s = config("services:\n  - web\n").resolve(&["--services", "bot"]);
        assert_eq!(s.services, Some(vec!["bot".into()]));
        assert_eq!(s.rules, []);
        assert_eq!(resolve(&[]).rules, []);
    }

    #[test]
    fn bad_rules_name_the_line_and_the_key() {
        for (text, expected) in [
            (
                "services: {}\n",
                "line 1: `services`: the mapping of services is empty",
            ),
            (
                "repo: .\nservices:\n  core:\n    paths: []\n",
                "line 4: `services.core.paths`: the list of paths is empty; give at least one \
                 pattern",
            ),
            (
                "services:\n  core: {paths: [a]}\n  bot: {paths: []}\n",
                "line 3: `services.bot.paths`: the list of paths is empty",
            ),
            (
                "services:\n  core:\n    paths:\n      - ok/**\n      - 'a/['\n",
                "line 5: `services.core.paths`: invalid pattern `a/[`: unclosed character class",
            ),
            (
                "services: {core: {paths: ['a/**', '[z-a]']}}\n",
                "line 1: `services.core.paths`: invalid pattern `[z-a]`: invalid range; 'z' > 'a'",
            ),
            (
                "services:\n  -d: {paths: [x]}\n",
                "line 2: `services`: the service name `-d` starts with `-`",
            ),
            (
                "services:\n  core: {paths: [x]}\n  'a b': {paths: [x]}\n",
                "line 3: `services`: the service name `a b` contains ` `",
            ),
            (
                "services:\n  core:\n    paths: [a]\n    colour: red\n",
                "line 4 column 5: `services.core`: unknown key `colour`, expected `paths`",
            ),
            (
                "services: {core: {path: [a]}}\n",
                "line 1 column 19: `services.core`: unknown key `path`, expected `paths`",
            ),
            (
                "services: {core: {}}\n",
                "line 1 column 18: `services.core`: missing key `paths`",
            ),
            (
                "services: {core: [a]}\n",
                "line 1 column 18: `services.core`: invalid type: sequence, expected a rule \
                 like `{paths: [\"app/**\"]}`",
            ),
            (
                "services: {core: {paths: [a, [b]]}}\n",
                "line 1 column 30: `services.core.paths[1]`: invalid type: sequence, expected a \
                 string",
            ),
            (
                "services:\n  core: {paths: [a]}\n  bot: {paths: [b]}\n  core: {paths: [c]}\n",
                "line 4 column 3: key `services.core` is given twice; keep one",
            ),
            (
                "services:\n  core:\n    paths: [a]\n    paths: [b]\n",
                "line 4 column 5: key `services.core.paths` is given twice",
            ),
        ] {
            let file = config(text);
            let message = file.error();
            assert!(
                message.starts_with(&format!("config `{}` line ", file.path.display())),
                "{message}"
            );
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn ignore_and_dependency_files() {
        let s = resolve(&[]);
        assert_eq!(s.ignore, Vec::<String>::new());
        assert_eq!(s.dependency_files, DEFAULT_DEPENDENCY_FILES);
        // The file's list replaces the default, even an empty one.
        let s =
            config("ignore: [docs/, tests/**, '*.md']\ndependency_files: [requirements/*.txt]\n")
                .resolve(&[]);
        assert_eq!(s.ignore, ["docs/", "tests/**", "*.md"]);
        assert_eq!(s.dependency_files, ["requirements/*.txt"]);
        let s = config("ignore: []\ndependency_files: []\n").resolve(&[]);
        assert_eq!((s.ignore.len(), s.dependency_files.len()), (0, 0));
        // Unset (null) keeps the default.
        let s = config("dependency_files:\n").resolve(&[]);
        assert_eq!(s.dependency_files, DEFAULT_DEPENDENCY_FILES);

        for (text, expected) in [
            (
                "repo: .\nignore:\n  - docs/\n  - '{a,b'\n",
                "line 4: `ignore`: invalid pattern `{a,b`: unclosed alternate group",
            ),
            ("ignore: ['']\n", "line 1: `ignore`: a pattern is empty"),
            (
                "ignore: [../x]\n",
                "line 1: `ignore`: invalid pattern `../x`: `..` leaves the checkout",
            ),
            (
                "ignore: [/]\n",
                "line 1: `ignore`: invalid pattern `/`: it names the whole checkout",
            ),
            (
                "ignore: ['a//b']\n",
                "line 1: `ignore`: invalid pattern `a//b`: it has an empty or `.` path component",
            ),
            (
                "# deps\ndependency_files:\n  - Dockerfile\n\n  - 'x/[z'\n",
                "line 5: `dependency_files`: invalid pattern `x/[z`",
            ),
            (
                "ignore: [*.md]\n",
                "line 1 column 11: not valid YAML: did not find expected alphabetic or numeric \
                 character, while scanning an alias at line 1 column 10; quote a pattern that \
                 starts with `*`, like `'*.md'`",
            ),
            (
                "ignore: [a, {b]\n",
                "quote values holding `[`, `]`, `{`, `}` or `,`",
            ),
        ] {
            let message = config(text).error();
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn verify_signatures_from_flags_and_file() {
        assert_eq!(resolve(&[]).verify_signatures, None);
        let on = resolve(&["--allowed-signers", "/etc/signers"]).verify_signatures;
        assert_eq!(
            on,
            Some(VerifySignatures {
                allowed_signers: Some(PathBuf::from("/etc/signers")),
                gpg_keyring: None,
                mode: VerifyMode::All,
            })
        );
        let file = config(
            "verify_signatures: {allowed_signers: signers, gpg_keyring: /k.asc, mode: tip}\n",
        );
        let s = file.resolve(&[]);
        let v = s.verify_signatures.expect("on");
        assert_eq!(v.allowed_signers, Some(file.dir.path().join("signers")));
        assert_eq!(v.gpg_keyring, Some(PathBuf::from("/k.asc")));
        assert_eq!(v.mode, VerifyMode::Tip);
        assert_eq!(s.host_keys_from_file, vec!["verify_signatures"]);
        // A flag's file wins over the file's, and keeps the file's mode.
        let v = file
            .resolve(&["--allowed-signers", "/other"])
            .verify_signatures
            .unwrap();
        assert_eq!(v.allowed_signers, Some(PathBuf::from("/other")));
        assert_eq!(v.mode, VerifyMode::Tip);
        assert_eq!(
            config("verify_signatures: false\n")
                .resolve(&[])
                .verify_signatures,
            None
        );
        let bare = config("verify_signatures: true\n").resolve(&[]);
        assert_eq!(
            bare.verify_signatures
                .map(|v| (v.allowed_signers, v.gpg_keyring)),
            Some((None, None)),
            "the checkout's gpg.ssh.allowedSignersFile, found once the repository is open"
        );
        for (text, expected) in [
            (
                "verify_signatures: yes please\n",
                "`true`, `false`, or a mapping",
            ),
            (
                "verify_signatures: {mode: head}\n",
                "unknown variant `head`",
            ),
        ] {
            let message = config(text).error();
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn submodules_from_flag_and_file() {
        assert_eq!(resolve(&[]).submodules, Submodules::Ignore);
        let update = config("submodules: update\n");
        assert_eq!(update.resolve(&[]).submodules, Submodules::Update);
        let s = update.resolve(&["--submodules", "ignore"]);
        assert_eq!(s.submodules, Submodules::Ignore);
        let message = config("submodules: recursive\n").error();
        assert!(
            message.contains(
                "line 1 column 13: `submodules`: unknown value `recursive`, expected `ignore` \
                 or `update`"
            ),
            "{message}"
        );
    }

    #[test]
    fn rebuild_policy_and_allow_rebuild() {
        assert_eq!(resolve(&[]).rebuild_policy, RebuildPolicy::Rebuild);
        assert_eq!(RebuildPolicy::default(), RebuildPolicy::Rebuild);
        let stop = config("rebuild_policy: stop\n");
        let s = stop.resolve(&[]);
        assert_eq!(
            (s.rebuild_policy, s.allow_rebuild),
            (RebuildPolicy::Stop, false)
        );
        let s = stop.resolve(&["--rebuild-policy", "rebuild"]);
        assert_eq!(s.rebuild_policy, RebuildPolicy::Rebuild);
        let s = stop.resolve(&["--allow-rebuild"]);
        assert_eq!(
            (s.rebuild_policy, s.allow_rebuild),
            (RebuildPolicy::Stop, true)
        );

        let message = config("rebuild_policy: never\n").error();
        assert!(
            message.contains(
                "line 1 column 17: `rebuild_policy`: unknown policy `never`, expected `rebuild` \
                 or `stop`"
            ),
            "{message}"
        );
        // The permission is the operator's, for one run: not a config key.
        let message = config("allow_rebuild: true\n").error();
        assert!(
            message.contains("line 1 column 1: unknown key `allow_rebuild`"),
            "{message}"
        );
    }

    #[test]
    fn health_timeout_and_settle() {
        let s = resolve(&[]);
        assert_eq!(s.health_timeout, DEFAULT_HEALTH_TIMEOUT);
        assert_eq!(s.health_timeout, Duration::from_secs(60));
        assert_eq!(s.health_settle, DEFAULT_HEALTH_SETTLE);
        assert_eq!(s.health_settle, Duration::from_secs(2));
        // Zero is allowed: no wait, or check once.
        for zero in ["0", "0s", " 0s "] {
            let s = resolve(&["--health-timeout", zero, "--health-settle", zero]);
            assert_eq!(
                (s.health_timeout, s.health_settle),
                (Duration::ZERO, Duration::ZERO)
            );
        }
        let s = config("health_timeout: 0\nhealth_settle: 0s\n").resolve(&[]);
        assert_eq!(
            (s.health_timeout, s.health_settle),
            (Duration::ZERO, Duration::ZERO)
        );
        // A YAML integer is seconds.
        let s = config("health_timeout: 60\nrestart_timeout: 90\n").resolve(&[]);
        assert_eq!(s.health_timeout, Duration::from_secs(60));
        assert_eq!(s.restart_timeout, Duration::from_secs(90));
        let s = config("health_timeout: 2m\nhealth_settle: 500ms\n").resolve(&[]);
        assert_eq!(s.health_timeout, Duration::from_secs(120));
        assert_eq!(s.health_settle, Duration::from_millis(500));

        for (flag, value, expected) in [
            (
                "--health-timeout",
                "soon",
                "--health-timeout: `soon` is not a duration",
            ),
            (
                "--health-timeout",
                "2days",
                "--health-timeout: the health timeout `2days` is more than a day",
            ),
            (
                "--health-settle",
                "",
                "--health-settle: `` is not a duration",
            ),
            (
                "--health-settle",
                "25h",
                "--health-settle: the health settle time `25h` is more than a day",
            ),
        ] {
            let message = usage_error(&[flag, value]);
            assert!(message.starts_with(expected), "{flag} {value}: {message}");
        }
        for (text, expected) in [
            (
                "repo: .\nhealth_timeout: 60 apples\n",
                "line 2: `health_timeout`: `60 apples` is not a duration",
            ),
            (
                "health_settle: 2 days\n",
                "line 1: `health_settle`: the health settle time `2 days` is more than a day",
            ),
        ] {
            let message = config(text).error();
            assert!(message.contains(expected), "{text:?}: {message}");
        }
        // The restart timeout still refuses zero.
        assert!(usage_error(&["--restart-timeout", "0"]).contains("is zero"));
    }

    #[test]
    fn hooks_come_from_the_file_only() {
        assert_eq!(resolve(&[]).hooks, Hooks::default());
        let s = config("hooks:\n  on_failure: |\n    echo \"$PULLSTART_RESULT\" | mail -s x ops\n")
            .resolve(&[]);
        assert_eq!(
            s.hooks,
            Hooks {
                before: None,
                after_success: None,
                on_failure: Some("echo \"$PULLSTART_RESULT\" | mail -s x ops\n".into()),
            }
        );
        assert_eq!(config("hooks: {}\n").resolve(&[]).hooks, Hooks::default());
        assert_eq!(config("hooks:\n").resolve(&[]).hooks, Hooks::default());
        for (text, expected) in [
            (
                "hooks: {before: x, after: y}\n",
                "line 1 column 20: `hooks`: unknown key `after`, expected one of `before`, \
                 `after_success`, `on_failure`",
            ),
            (
                "repo: .\nhooks:\n  before: ok\n  after_success: '  '\n",
                "line 4: `hooks.after_success`: the command is empty; give a shell command line, \
                 or leave the hook out",
            ),
            (
                "hooks:\n  on_failure: ''\n",
                "line 2: `hooks.on_failure`: the command is empty",
            ),
            (
                "hooks: [x]\n",
                "line 1 column 8: `hooks`: invalid type: sequence, expected a mapping of hooks",
            ),
            (
                "hooks: {before: [x]}\n",
                "line 1 column 17: `hooks.before`: invalid type: sequence, expected a string",
            ),
            (
                "hooks:\n  before: a\n  before: b\n",
                "line 3 column 3: key `hooks.before` is given twice; keep one",
            ),
        ] {
            let message = config(text).error();
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn config_file_absolute_is_canonical() {
        assert_eq!(resolve(&[]).config_file_absolute, None);
        let file = config("");
        let s = file.resolve(&[]);
        let canonical = std::fs::canonicalize(&file.path).unwrap();
        assert_eq!(s.config_file_absolute.as_ref(), Some(&canonical));
        assert!(canonical.is_absolute());
        // A link to a file inside a checkout counts as that file.
        let elsewhere = tempfile::tempdir().unwrap();
        let link = elsewhere.path().join("link.yml");
        std::os::unix::fs::symlink(&file.path, &link).unwrap();
        let s = resolve(&["--config", link.to_str().unwrap()]);
        assert_eq!(s.config_file_absolute, Some(canonical));
        assert_eq!(s.config_file, Some(link));
        // A relative path is made absolute: reach the file from the current directory by `..`.
        let cwd = std::env::current_dir().unwrap();
        let mut relative = PathBuf::new();
        for _ in cwd.components().skip(1) {
            relative.push("..");
        }
        relative.push(file.path.strip_prefix("/").unwrap());
        assert!(relative.is_relative());
        let s = resolve(&["--config", relative.to_str().unwrap()]);
        assert_eq!(
            s.config_file_absolute,
            Some(std::fs::canonicalize(cwd.join(&relative)).unwrap())
        );
        assert_eq!(s.config_file, Some(relative));
    }

    #[test]
    fn compile_globs_semantics() {
        fn set(patterns: &[&str]) -> GlobSet {
            compile_globs(&patterns.iter().map(|&p| p.to_owned()).collect::<Vec<_>>())
                .unwrap_or_else(|e| panic!("{patterns:?}: {e}"))
        }
        let cases: &[(&str, &[&str], &[&str])] = &[
            // No `/`: a file name, or a directory name with everything below, at any depth
            // (as in .gitignore).
            (
                "*.md",
                &["README.md", "docs/a.md", "a/b/c.md", "a.md/x"],
                &["README.mdx", "md"],
            ),
            (
                "docs",
                &["docs", "docs/x", "a/docs/b/c"],
                &["docsx/a", "a/xdocs"],
            ),
            (
                "Dockerfile",
                &["Dockerfile", "worker/Dockerfile"],
                &["Dockerfile.prod", "xDockerfile"],
            ),
            (
                "requirements*.txt",
                &["requirements.txt", "svc/requirements-dev.txt"],
                &["requirements/base.txt"],
            ),
            // With `/`: anchored at the root; `*` stays in one directory.
            (
                "docs/*.md",
                &["docs/a.md"],
                &["docs/x/a.md", "a/docs/b.md", "a.md"],
            ),
            (
                "assistant/**",
                &["assistant/x.py", "assistant/x/y.py"],
                &["x/assistant/y.py", "assistantx/y.py"],
            ),
            ("/Dockerfile", &["Dockerfile"], &["worker/Dockerfile"]),
            ("./app/*.py", &["app/a.py"], &["x/app/a.py"]),
            ("a/**/b.txt", &["a/b.txt", "a/x/y/b.txt"], &["x/a/b.txt"]),
            // A trailing `/`: everything below.
            ("docs/", &["docs/a", "docs/a/b"], &["a/docs/b", "docsx/a"]),
            ("docs/api/", &["docs/api/x.md"], &["docs/x.md"]),
            // Globs.
            (
                "*.{yml,yaml}",
                &["compose.yml", "x/compose.yaml"],
                &["compose.json"],
            ),
            ("src/?.rs", &["src/a.rs"], &["src/ab.rs", "src/x/a.rs"]),
            ("[ab].txt", &["a.txt", "d/b.txt"], &["c.txt"]),
            ("a\\*b", &["a*b"], &["axb"]),
        ];
        for (pattern, matching, other) in cases {
            let globs = set(&[pattern]);
            for path in *matching {
                assert!(globs.is_match(path), "{pattern} should match {path}");
            }
            for path in *other {
                assert!(!globs.is_match(path), "{pattern} should not match {path}");
            }
        }
        let both = set(&["docs/", "*.md"]);
        assert!(both.is_match("docs/a/b.txt") && both.is_match("web/README.md"));
        assert!(!both.is_match("web/app.py"));
        assert!(set(&[]).is_empty());

        for (pattern, expected) in [
            (
                "a/[",
                "invalid pattern `a/[`: unclosed character class; missing ']'",
            ),
            ("[z-a]", "invalid pattern `[z-a]`: invalid range; 'z' > 'a'"),
            ("{a,b", "invalid pattern `{a,b`: unclosed alternate group"),
            ("", "a pattern is empty"),
            ("../x", "invalid pattern `../x`: `..` leaves the checkout"),
            ("a/../b", "`..` leaves the checkout"),
            ("./", "it names the whole checkout"),
        ] {
            let message =
                compile_globs(&["ok/**".to_owned(), pattern.to_owned()]).expect_err(pattern);
            assert!(message.contains(expected), "{pattern:?}: {message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn default_dependency_files() {
        let globs = compile_globs(
            &DEFAULT_DEPENDENCY_FILES
                .iter()
                .map(|&p| p.to_owned())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        for path in [
            "Dockerfile",
            "worker/Dockerfile",
            "Dockerfile.prod",
            "web/app.dockerfile",
            ".dockerignore",
            "requirements.txt",
            "bot/requirements-dev.txt",
            "constraints.txt",
            "pyproject.toml",
            "poetry.lock",
            "Pipfile.lock",
            "uv.lock",
            "setup.py",
            "web/package.json",
            "web/pnpm-lock.yaml",
            "yarn.lock",
            "Cargo.lock",
            "svc/go.sum",
            "Gemfile.lock",
            "x.gemspec",
            "composer.lock",
            "pom.xml",
            "build.gradle.kts",
            "gradle/wrapper/gradle-wrapper.properties",
        ] {
            assert!(globs.is_match(path), "{path}");
        }
        for path in [
            "app/main.py",
            "README.md",
            "src/lib.rs",
            "requirements/base.txt",
            "docs/setup.md",
        ] {
            assert!(!globs.is_match(path), "{path}");
        }
    }

    #[test]
    fn key_positions_scan() {
        let text = "# remote: no\nrepo: x # remote: no\n  remote: a\n{quiet: 1, 'verbose' : 2}\n- branch: b\n";
        assert_eq!(key_positions(text, "remote"), [(3, 3)]);
        assert_eq!(key_positions(text, "verbose"), [(4, 12)]);
        assert_eq!(key_positions(text, "quiet"), [(4, 2)]);
        assert_eq!(key_positions(text, "branch"), [(5, 3)]);
        assert_eq!(key_positions(text, "repo"), [(2, 1)]);
        assert_eq!(key_positions("repository: x\n", "repo"), []);
    }
}
