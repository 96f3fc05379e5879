//! The command line as the user typed it: clap's raw flags, before any validation of our own.
//!
//! Every option is an `Option` (or an empty `Vec`, or `false` for a switch) so that
//! [`crate::settings`] can tell "not given" from "given" when it lays the flags over the config
//! file: flags win. All options are global: they may stand before or after the subcommand
//! (`pullstart -C /srv/app check` and `pullstart check -C /srv/app` are the same), except
//! `watch`'s own `--every`, which belongs after `watch`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::exit::ExitCode;
use crate::settings::{OutputFormat, RebuildPolicy, Submodules};

/// Keep a Docker Compose checkout up to date: fetch the followed branch, fast-forward the
/// checkout safely, and restart the services whose code changed.
///
/// Meant to be started by cron every few minutes: silent when nothing changed, one line when it
/// updated, one line naming the cause and the remedy when it could not, and an exit code that says
/// which (see below).
#[derive(Parser, Debug, Clone, PartialEq, Eq)]
#[command(
    name = "pullstart",
    version,
    subcommand_required = false,
    args_override_self = true,
    after_help = after_help(),
    max_term_width = 100
)]
pub struct Cli {
    /// What to do; `run` when no subcommand is given.
    #[command(subcommand)]
    pub command: Option<CliCommand>,

    #[command(flatten)]
    pub options: Options,

    /// Print the man page or a shell's completions to stdout and exit; for packagers, hence
    /// hidden (see contrib/generate.sh)
    #[arg(long, value_name = "WHAT", hide = true, exclusive = true)]
    pub generate: Option<Generate>,
}

/// What `--generate` prints, made from these clap definitions by [`crate::generate`].
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generate {
    /// The man page, roff source (`man -l -` reads it)
    Man,
    /// Completions for bash
    CompleteBash,
    /// Completions for zsh
    CompleteZsh,
    /// Completions for fish
    CompleteFish,
}

/// The subcommands. `pullstart [OPTIONS]` is `pullstart run [OPTIONS]`.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum CliCommand {
    /// Fetch, fast-forward the checkout and restart the services whose code changed (the default)
    #[command(after_help = after_help())]
    Run,
    /// Fetch and report what a run would do, changing no worktree, index, branch or container
    ///
    /// Exits with the code the run would exit with (4, 5 or 8 where a run would refuse; 10 with
    /// --detailed-exitcode when an update is pending). It may update remote-tracking refs and takes
    /// the lock like a run.
    #[command(after_help = after_help())]
    Check,
    /// Show the branch, HEAD, the remote-tracking tip, the deployed commit, local changes and the
    /// services a pending update would restart, without fetching
    #[command(after_help = after_help())]
    Status,
    /// Run again and again, every --every, for a sidecar container: each run is reported like
    /// one started by cron, a failed run never stops the loop, and SIGTERM, SIGINT, SIGHUP or
    /// SIGQUIT ends it (exit 0): between runs at once, during a run once that run is over
    ///
    /// With --output json, one JSON object per run, one per line. --splay applies before each
    /// run, --timeout to each run, and the lock is taken by each run, so a cron job on the same
    /// checkout is skipped (exit 7) rather than run at the same time.
    #[command(after_help = after_help())]
    Watch(WatchArgs),
    /// For a container image that holds no code: clone --url into --dir when it is missing or
    /// empty, else fast-forward the checkout there with the same safe engine as `run` (acting
    /// on no service: the app is not started yet), then exec CMD, which replaces pullstart
    ///
    /// The app always starts when there is code to start it on: when the remote cannot be
    /// reached, or the update is refused (local changes, diverged), one warning line goes to
    /// stderr and CMD starts on the checkout as it is. With an empty --dir and a failed clone,
    /// the exit code is 3 and CMD does not start. The checkout's followed branch is --branch
    /// (default: the remote's HEAD on a clone, the checkout's upstream afterwards).
    #[command(after_help = ENTRYPOINT_HELP)]
    Entrypoint(EntrypointArgs),
}

/// The text after `pullstart entrypoint --help`.
const ENTRYPOINT_HELP: &str = "\
Example (a Dockerfile; see contrib/entrypoint/Dockerfile):
  ENTRYPOINT [\"pullstart\", \"entrypoint\", \"--url\", \"https://git.example.com/app.git\", \"--dir\", \"/app\", \"--\"]
  CMD [\"python\", \"/app/main.py\"]

Exit codes (CMD's own once it started):
  2   usage error: no CMD after `--`, no --url or PULLSTART_URL, --dir is not empty and not a git
      checkout, CMD not found, a token file or ssh key that cannot be read (for the clone into an
      empty --dir), -C/--repo or --dry-run (--dir is the checkout; the entrypoint always acts)
  3   --dir was empty and the clone failed; nothing was started";

/// The options only `entrypoint` takes, and the command it execs.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct EntrypointArgs {
    /// The repository to clone when --dir is missing or empty (for a checkout, its own remote is
    /// fetched); required, here or in the environment variable PULLSTART_URL
    #[arg(long, value_name = "URL", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub url: Option<String>,

    /// Where the code lives: cloned into when missing or empty, fast-forwarded otherwise
    #[arg(long, value_name = "DIR", required = true, value_parser = clap::value_parser!(PathBuf))]
    pub dir: Option<PathBuf>,

    /// The app's command and its arguments, after `--`; exec'd once the code is in place
    #[arg(value_name = "CMD", last = true, required = true, num_args = 1.., value_parser = clap::value_parser!(std::ffi::OsString))]
    pub cmd: Vec<std::ffi::OsString>,
}

/// The options only `watch` takes.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchArgs {
    /// How often to run, from the start of one run to the start of the next, e.g. `5m`; at least
    /// 1s; required, here or in the config [config: every]
    #[arg(long, value_name = "DURATION")]
    pub every: Option<String>,

    /// Also serve HTTP on ADDR:PORT: push webhooks (POST, any path; GitHub, Gitea, Forgejo,
    /// Gogs, GitLab or a generic HMAC-SHA256 signature) start a run at once, `GET /healthz`
    /// tells whether the loop is alive and how the last run ended, `GET /metrics` gives the
    /// metrics [config: listen]
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,

    /// The webhooks' shared secret, read from FILE (surrounding whitespace ignored); without
    /// it every webhook is refused [config: webhook_secret_file]
    #[arg(long, value_name = "FILE")]
    pub webhook_secret_file: Option<PathBuf>,
}

/// The options, accepted before and after the subcommand. Each one can also be set in the
/// `--config` file under the key named in its help (flags win over the file).
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// The checkout to keep up to date [default: the current directory] [config: repo]
    #[arg(short = 'C', long = "repo", value_name = "DIR", global = true)]
    pub repo: Option<PathBuf>,

    /// The remote to fetch from [default: the current branch's upstream remote, else `origin`]
    /// [config: remote]
    #[arg(long, value_name = "NAME", global = true)]
    pub remote: Option<String>,

    /// The remote branch to follow [default: the current branch's upstream branch, else the
    /// current branch's own name]; the checked-out local branch is the one fast-forwarded
    /// [config: branch]
    #[arg(long, value_name = "NAME", global = true)]
    pub branch: Option<String>,

    /// The compose command, split into words like a shell does (quotes and backslashes, no
    /// expansion) [default: "docker compose"] [config: compose_command]
    #[arg(long, value_name = "CMD ...", global = true)]
    pub compose_command: Option<String>,

    /// A compose file, passed to compose as `-f FILE` (relative to the checkout); repeatable,
    /// order kept [config: compose_files]
    #[arg(short = 'f', long = "compose-file", value_name = "FILE", global = true)]
    pub compose_files: Vec<PathBuf>,

    /// The compose project name, passed to compose as `-p NAME` [config: project_name]
    #[arg(short = 'p', long, value_name = "NAME", global = true)]
    pub project_name: Option<String>,

    /// The services to restart when anything changed, comma-separated, in this order [default:
    /// the config's path rules; else the services the compose project maps the changed paths to;
    /// all services where the project cannot be read] [config: services, as a list]
    #[arg(long, value_name = "A,B", value_delimiter = ',', global = true)]
    pub services: Option<Vec<String>>,

    /// The time limit for the compose command, e.g. `90s`, `2m`, `90` (seconds) [default: 5m]
    /// [config: restart_timeout]
    #[arg(long, value_name = "DURATION", global = true)]
    pub restart_timeout: Option<String>,

    /// What a run does when a Dockerfile or a dependency manifest changed: `rebuild` rebuilds and
    /// recreates the services; `stop` applies nothing and exits 8, naming the files and the
    /// command to run [default: rebuild] [config: rebuild_policy]
    #[arg(long, value_name = "POLICY", global = true)]
    pub rebuild_policy: Option<RebuildPolicy>,

    /// What the update does with a submodule whose recorded commit moves: `ignore` moves only the
    /// gitlink, as `git merge` does; `update` also brings each initialised submodule's checkout to
    /// that commit, guarded like the checkout (local changes in it refuse, exit 4)
    /// [default: ignore] [config: submodules]
    #[arg(long, value_name = "MODE", global = true)]
    pub submodules: Option<Submodules>,

    /// Allow this run to rebuild although the rebuild policy is `stop`: the operator's one-off
    /// permission (a flag only, not a config key)
    #[arg(long, global = true)]
    pub allow_rebuild: bool,

    /// How long to wait after the action for the touched services' containers to be running and,
    /// where they have a healthcheck, healthy, e.g. `90s`, `2m`; `0` skips the wait [default: 60s]
    /// [config: health_timeout]
    #[arg(long, value_name = "DURATION", global = true)]
    pub health_timeout: Option<String>,

    /// How long a restarted container must stay up to count as started, e.g. `5s`; `0` checks
    /// once [default: 2s] [config: health_settle]
    #[arg(long, value_name = "DURATION", global = true)]
    pub health_settle: Option<String>,

    /// When the health check fails, move the checkout back to the deployed commit, restart again,
    /// and skip the rejected remote tip until the remote moves on [config: rollback]
    #[arg(long, global = true)]
    pub rollback: bool,

    /// A YAML file holding any of these options under the keys named in [config: ...]; a
    /// relative repo, metrics_file, ssh_key or token_file in it is relative to the file's
    /// directory, compose_files to the checkout
    ///
    /// Only the file can hold: path rules, `services: {NAME: {paths: [GLOB, ...]}, ...}` (a change
    /// restarts the services whose patterns match it, and no service when none does); `ignore:
    /// [GLOB, ...]` (changes that concern no service, like docs and tests); `dependency_files:
    /// [GLOB, ...]` (changes that need a rebuild; replaces the default list of Dockerfiles,
    /// manifests and lock files); `hooks: {before: CMD, after_success: CMD, on_failure: CMD}`
    /// (shell command lines run with `sh -c`; refused from a config file inside the checkout).
    /// A GLOB without `/` matches a file or directory name at any depth (`*.md`, `Dockerfile`); one with `/` is
    /// anchored at the checkout root (`app/**`, `docs/*.md`); a trailing `/` means everything
    /// below (`docs/`); `*` stays within a directory, `**` crosses directories.
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Do not act: the same as the `check` subcommand
    #[arg(long, global = true)]
    pub dry_run: bool,

    /// Exit 10 instead of 0 when a run applied an update (for `check` and `status`: when one is
    /// pending)
    /// [config: detailed_exitcode]
    #[arg(long, global = true)]
    pub detailed_exitcode: bool,

    /// The output format; json prints exactly one JSON object on stdout [default: text]
    /// [config: output]
    #[arg(long, value_name = "FORMAT", global = true)]
    pub output: Option<OutputFormat>,

    /// Print nothing on success [config: quiet]
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Print more detail on stderr: cause chains and steps [config: verbose]
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// The time limit for the whole run, e.g. `4m`: a fetch or compose command still running then
    /// is killed with its child processes, and the run exits with the code of that step (a run
    /// still blocked 2 s later is ended, its lock freed); keep it under the cron interval
    /// [default: 4m30s] [config: timeout]
    #[arg(long, value_name = "DURATION", global = true)]
    pub timeout: Option<String>,

    /// Before a run or check, sleep a random time between 0 and DURATION, so that a fleet of hosts
    /// does not reach the git host in the same second, e.g. `30s`; the sleep holds no lock and
    /// comes before --timeout starts counting, so keep both together under the cron interval
    /// [default: 0] [config: splay]
    #[arg(long, value_name = "DURATION", global = true)]
    pub splay: Option<String>,

    /// After each run or check, whatever its exit code, write Prometheus metrics to FILE,
    /// replaced atomically, for node_exporter's textfile collector (which reads `*.prom` files
    /// only) [config: metrics_file]
    #[arg(long, value_name = "FILE", global = true)]
    pub metrics_file: Option<PathBuf>,

    /// The private key for ssh remotes (a deploy key), passed to ssh as `-i FILE -o
    /// IdentitiesOnly=yes` [config: ssh_key]
    #[arg(long, value_name = "FILE", global = true)]
    pub ssh_key: Option<PathBuf>,

    /// A file holding the token for https remotes (never the token itself on the command line,
    /// where `ps` shows it; the environment variable PULLSTART_TOKEN also works) [config:
    /// token_file]
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,

    /// Deploy only commits signed by an SSH key that FILE lists (git's allowed-signers format,
    /// as gpg.ssh.allowedSignersFile); any other commit exits 9 and nothing is touched [config:
    /// verify_signatures.allowed_signers]
    #[arg(long, value_name = "FILE", global = true)]
    pub allowed_signers: Option<PathBuf>,

    /// Deploy only commits signed by an OpenPGP key in FILE (a keyring or armored public keys,
    /// checked by gpg in a temporary home, never your keyring); any other commit exits 9
    /// [config: verify_signatures.gpg_keyring]
    #[arg(long, value_name = "FILE", global = true)]
    pub gpg_keyring: Option<PathBuf>,
}

/// The text after `--help`: the exit-code table of the contract and a few examples.
fn after_help() -> String {
    format!("{table}\n\nExamples:\n{EXAMPLES}", table = ExitCode::TABLE)
}

/// The examples of `--help`, also the man page's EXAMPLES section.
pub const EXAMPLES: &str = "  pullstart -C /srv/app                  fetch, fast-forward, restart what changed
  pullstart check -C /srv/app            show what a run would do, change nothing
  pullstart --config /etc/pullstart.yml --detailed-exitcode
  pullstart watch --every 5m            the same run every 5 minutes (a sidecar container)

In a crontab (silent unless something changed or failed):
  */5 * * * * pullstart -C /srv/app   (cron mails the one line an update or failure prints; see crontab.example)";

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        let mut argv = vec!["pullstart"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_subcommand_and_no_flags() {
        let cli = parse(&[]);
        assert_eq!(cli.command, None);
        assert_eq!(cli.options, Options::default());
    }

    #[test]
    fn subcommands() {
        assert_eq!(parse(&["run"]).command, Some(CliCommand::Run));
        assert_eq!(parse(&["check"]).command, Some(CliCommand::Check));
        assert_eq!(parse(&["status"]).command, Some(CliCommand::Status));
        assert_eq!(
            parse(&["watch", "--every", "5m"]).command,
            Some(CliCommand::Watch(WatchArgs {
                every: Some("5m".into()),
                ..WatchArgs::default()
            }))
        );
        assert_eq!(
            parse(&["watch"]).command,
            Some(CliCommand::Watch(WatchArgs::default()))
        );
        assert!(Cli::try_parse_from(["pullstart", "deploy"]).is_err());
    }

    #[test]
    fn options_before_and_after_the_subcommand() {
        for args in [
            &["-C", "/srv/app", "check"][..],
            &["check", "-C", "/srv/app"],
            &["--repo", "/srv/app", "check"],
            &["check", "--repo=/srv/app"],
        ] {
            let cli = parse(args);
            assert_eq!(cli.command, Some(CliCommand::Check), "{args:?}");
            assert_eq!(
                cli.options.repo,
                Some(PathBuf::from("/srv/app")),
                "{args:?}"
            );
        }
        let cli = parse(&["-C", "x"]);
        assert_eq!(cli.command, None);
        assert_eq!(cli.options.repo, Some(PathBuf::from("x")));

        let cli = parse(&[
            "--remote", "up", "status", "--branch", "prod", "-q", "--output", "json",
        ]);
        assert_eq!(cli.command, Some(CliCommand::Status));
        assert_eq!(cli.options.remote.as_deref(), Some("up"));
        assert_eq!(cli.options.branch.as_deref(), Some("prod"));
        assert!(cli.options.quiet);
        assert_eq!(cli.options.output, Some(OutputFormat::Json));
    }

    #[test]
    fn every_option() {
        let cli = parse(&[
            "-C",
            "repo",
            "--remote",
            "origin",
            "--branch",
            "main",
            "--compose-command",
            "docker compose --ansi never",
            "-f",
            "a.yml",
            "--compose-file",
            "b.yml",
            "-p",
            "app",
            "--services",
            "web,worker",
            "--restart-timeout",
            "90s",
            "--rebuild-policy",
            "stop",
            "--allow-rebuild",
            "--health-timeout",
            "0",
            "--health-settle",
            "5s",
            "--rollback",
            "--config",
            "p.yml",
            "--dry-run",
            "--detailed-exitcode",
            "--output",
            "text",
            "-q",
            "-v",
            "--timeout",
            "4m",
            "--splay",
            "30s",
            "--metrics-file",
            "/m/p.prom",
        ]);
        let o = cli.options;
        assert_eq!(o.timeout.as_deref(), Some("4m"));
        assert_eq!(o.splay.as_deref(), Some("30s"));
        assert_eq!(o.metrics_file, Some(PathBuf::from("/m/p.prom")));
        assert_eq!(o.repo, Some(PathBuf::from("repo")));
        assert_eq!(o.remote.as_deref(), Some("origin"));
        assert_eq!(o.branch.as_deref(), Some("main"));
        assert_eq!(
            o.compose_command.as_deref(),
            Some("docker compose --ansi never")
        );
        assert_eq!(
            o.compose_files,
            [PathBuf::from("a.yml"), PathBuf::from("b.yml")]
        );
        assert_eq!(o.project_name.as_deref(), Some("app"));
        assert_eq!(
            o.services,
            Some(vec!["web".to_owned(), "worker".to_owned()])
        );
        assert_eq!(o.restart_timeout.as_deref(), Some("90s"));
        assert_eq!(o.rebuild_policy, Some(RebuildPolicy::Stop));
        assert!(o.allow_rebuild && o.rollback);
        assert_eq!(o.health_timeout.as_deref(), Some("0"));
        assert_eq!(o.health_settle.as_deref(), Some("5s"));
        assert_eq!(o.config, Some(PathBuf::from("p.yml")));
        assert!(o.dry_run && o.detailed_exitcode && o.quiet && o.verbose);
        assert_eq!(o.output, Some(OutputFormat::Text));
    }

    #[test]
    fn compose_files_keep_their_order_around_the_subcommand() {
        let cli = parse(&["-f", "a.yml", "-f", "b.yml", "run"]);
        assert_eq!(
            cli.options.compose_files,
            [PathBuf::from("a.yml"), PathBuf::from("b.yml")]
        );
        let cli = parse(&["run", "-f", "a.yml", "-f", "b.yml"]);
        assert_eq!(
            cli.options.compose_files,
            [PathBuf::from("a.yml"), PathBuf::from("b.yml")]
        );
    }

    #[test]
    fn services_split_on_commas_and_repeat() {
        let cli = parse(&["--services", "web,worker", "--services", "bot"]);
        assert_eq!(
            cli.options.services,
            Some(vec!["web".into(), "worker".into(), "bot".into()])
        );
        // Empty names get through clap; settings rejects them.
        let cli = parse(&["--services", ","]);
        assert_eq!(
            cli.options.services,
            Some(vec![String::new(), String::new()])
        );
    }

    #[test]
    fn repeated_options_the_last_wins() {
        let cli = parse(&["-v", "-v", "-q", "--quiet"]);
        assert!(cli.options.verbose && cli.options.quiet);
        let cli = parse(&[
            "--remote", "a", "check", "--remote", "b", "--output", "json", "--output", "text",
        ]);
        assert_eq!(cli.options.remote.as_deref(), Some("b"));
        assert_eq!(cli.options.output, Some(OutputFormat::Text));
        // Lists add up.
        let cli = parse(&[
            "-f",
            "a.yml",
            "-f",
            "b.yml",
            "--services",
            "a",
            "--services",
            "b",
        ]);
        assert_eq!(
            cli.options.compose_files,
            [PathBuf::from("a.yml"), PathBuf::from("b.yml")]
        );
        assert_eq!(cli.options.services, Some(vec!["a".into(), "b".into()]));
    }

    #[test]
    fn clap_rejects_what_it_can() {
        for args in [
            &["--output", "xml"][..],
            &["--no-such-flag"],
            &["--remote"],
            &["run", "check"],
            &["-C", ""],
            &["--config", ""],
            &["-f", ""],
            &["--rebuild-policy", "never"],
            &["--rebuild-policy"],
            &["--rollback=yes"],
            &["--allow-rebuild=true"],
            // `--every` belongs to `watch`.
            &["--every", "5m"],
            &["run", "--every", "5m"],
            &["--every", "5m", "watch"],
            &["watch", "--every"],
            &["--metrics-file", ""],
        ] {
            let mut argv = vec!["pullstart"];
            argv.extend_from_slice(args);
            let err = Cli::try_parse_from(argv).expect_err(&format!("{args:?} should fail"));
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn help_shows_the_exit_codes_and_an_example() {
        let help = Cli::command().render_help().to_string();
        assert!(help.contains(ExitCode::TABLE), "{help}");
        assert!(help.contains("pullstart check -C /srv/app"), "{help}");
        for flag in [
            "--repo",
            "--remote",
            "--branch",
            "--compose-command",
            "--compose-file",
            "--project-name",
            "--services",
            "--restart-timeout",
            "--rebuild-policy",
            "--allow-rebuild",
            "--health-timeout",
            "--health-settle",
            "--rollback",
            "--config",
            "--dry-run",
            "--detailed-exitcode",
            "--output",
            "--quiet",
            "--verbose",
            "--timeout",
            "--splay",
            "--metrics-file",
            "--version",
        ] {
            assert!(help.contains(flag), "{flag} missing from\n{help}");
        }
        // What `pullstart check --help` prints: the global options and the table too.
        let err = Cli::try_parse_from(["pullstart", "check", "--help"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
        let help = err.to_string();
        assert!(help.contains("Usage: pullstart check [OPTIONS]"), "{help}");
        assert!(
            help.contains(ExitCode::TABLE) && help.contains("--repo"),
            "{help}"
        );
    }

    #[test]
    fn new_options_before_and_after_the_subcommand() {
        let cli = parse(&[
            "--rebuild-policy",
            "stop",
            "check",
            "--allow-rebuild",
            "--rollback",
        ]);
        assert_eq!(cli.command, Some(CliCommand::Check));
        assert_eq!(cli.options.rebuild_policy, Some(RebuildPolicy::Stop));
        assert!(cli.options.allow_rebuild && cli.options.rollback);
        let cli = parse(&["run", "--rebuild-policy=rebuild", "--health-timeout=2m"]);
        assert_eq!(cli.options.rebuild_policy, Some(RebuildPolicy::Rebuild));
        assert_eq!(cli.options.health_timeout.as_deref(), Some("2m"));
        // Durations are checked by settings, not clap.
        assert_eq!(
            parse(&["--health-settle", "soon"])
                .options
                .health_settle
                .as_deref(),
            Some("soon")
        );
    }

    #[test]
    fn help_names_the_defaults_and_config_keys_of_the_new_options() {
        let help = Cli::command().render_long_help().to_string();
        for text in [
            "[default: rebuild] [config: rebuild_policy]",
            "[default: 60s] [config: health_timeout]",
            "[default: 2s] [config: health_settle]",
            "[config: rollback]",
            "not a config key",
            "[config: services, as a list]",
            "services: {NAME: {paths: [GLOB, ...]}, ...}",
            "dependency_files:",
            "hooks: {before: CMD, after_success: CMD, on_failure: CMD}",
            "a trailing `/` means everything below",
            "[default: 4m30s] [config: timeout]",
            "[default: 0] [config: splay]",
            "[config: metrics_file]",
            "[config: verify_signatures.allowed_signers]",
            "[config: verify_signatures.gpg_keyring]",
        ] {
            let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(flat.contains(text), "{text} missing from\n{help}");
        }
    }

    #[test]
    fn watch_takes_every_after_it_and_every_global_option() {
        let cli = parse(&[
            "-C", "/srv/app", "watch", "--every", "1m", "--splay", "5s", "-q",
        ]);
        assert_eq!(
            cli.command,
            Some(CliCommand::Watch(WatchArgs {
                every: Some("1m".into()),
                ..WatchArgs::default()
            }))
        );
        assert_eq!(cli.options.repo, Some(PathBuf::from("/srv/app")));
        assert_eq!(cli.options.splay.as_deref(), Some("5s"));
        assert!(cli.options.quiet);

        let err = Cli::try_parse_from(["pullstart", "watch", "--help"]).unwrap_err();
        let help = err.to_string();
        assert!(help.contains("Usage: pullstart watch [OPTIONS]"), "{help}");
        let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains("--every <DURATION>"), "{help}");
        assert!(
            flat.contains("at least 1s; required, here or in the config [config: every]"),
            "{help}"
        );
        assert!(help.contains(ExitCode::TABLE), "{help}");
        let help = Cli::command().render_help().to_string();
        assert!(help.contains("pullstart watch --every 5m"), "{help}");
    }

    #[test]
    fn version() {
        let err = Cli::try_parse_from(["pullstart", "--version"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion);
        assert!(err.to_string().contains(env!("CARGO_PKG_VERSION")));
    }
}
