//! One invocation as a pipeline of steps:
//! open -> lock -> fetch -> plan -> guard -> apply -> restart -> record.
//! Each step adds what it learned to the [`Outcome`], which `report` turns into output.

use std::time::Duration;

use anyhow::Context;
use gix::bstr::{BString, ByteSlice};
use gix::ObjectId;

use crate::checkout::{self, Checkout};
use crate::exit::{self, fail, ExitCode, Failure};
use crate::hooks::{self, Facts, Hook};
use crate::journal::{self, Journal, Phase};
use crate::plan::{self, Plan};
use crate::report::{Outcome, Success};
use crate::select::{self, Action, Inputs, Rule, ServiceAction, Services};
use crate::settings::{compile_globs, RebuildPolicy};
use crate::settings::{Command, Deadline, Settings};
use crate::watchdog::{self, Step};
use crate::{
    apply, compose, failpoint, fetch, guard, health, lock, record, recover, restart, submodule,
    verify,
};

/// How long `compose config` may take to describe the project.
pub(crate) const COMPOSE_CONFIG_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a fetch may take before it counts as failed (exit 3).
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// Carry out `settings.command`, recording what happened in `outcome`.
pub fn execute(settings: &Settings, outcome: &mut Outcome) -> anyhow::Result<()> {
    // Not for the entrypoint: its app starts whatever happened to the update.
    let _watchdog = settings
        .entrypoint
        .is_none()
        .then(|| watchdog::start(settings, Deadline::after(settings.timeout)));
    let mut checkout = checkout::open(settings)?;
    outcome.branch = Some(checkout.branch_name());
    outcome.from = checkout.head;
    outcome.to = checkout.head;
    hooks::refuse_host_keys_inside_checkout(settings, &checkout.workdir)?;
    if settings.command == Command::Status {
        return crate::status::show(settings, &checkout, outcome);
    }

    let _lock = lock::acquire(checkout.git_dir())?;
    step(
        settings,
        format_args!(
            "locked {}",
            checkout.git_dir().join("pullstart.lock").display()
        ),
    );
    // A run killed while it moved a ref (the fetch's tracking ref, the branch, the deployed
    // ref) leaves that ref's lock behind; the run marker says whose it is.
    let tracking =
        fetch::tracking_ref_name(&checkout.repo, &checkout.remote, &checkout.remote_branch)?;
    recover::clear_interrupted_run(&checkout, &tracking)?;
    let marker = recover::run_marker(&checkout)?;
    let mut unfinished = None;
    if settings.command == Command::Run {
        watchdog::enter(Step::Updating);
        let recovered = recover::recover(&mut checkout)?;
        watchdog::enter(Step::Preparing);
        match recovered {
            recover::Recovered::Finished(journal) => {
                step(
                    settings,
                    format_args!("finished the interrupted update to {}", journal.new),
                );
                outcome.from = checkout.head;
                outcome.to = checkout.head;
            }
            recover::Recovered::Unfinished(stuck) => unfinished = Some(stuck),
            recover::Recovered::Nothing => {}
        }
    }
    let result = pipeline(settings, &mut checkout, &tracking, outcome, unfinished);
    drop(marker);
    if let (Err(err), Command::Run) = (&result, settings.command) {
        on_failure_hook(settings, &checkout, outcome, err);
    }
    result
}

/// fetch -> plan -> (check: guard) | (run: guard, apply, act, record).
fn pipeline(
    settings: &Settings,
    checkout: &mut Checkout,
    tracking: &gix::refs::FullName,
    outcome: &mut Outcome,
    mut unfinished: Option<recover::Unfinished>,
) -> anyhow::Result<()> {
    let deployed = deployed_or_head(settings, checkout)?;
    // Output shows the ref as it stands: `check` only assumes HEAD where the ref is missing.
    outcome.deployed = match settings.command {
        Command::Run => deployed,
        _ => record::deployed(&checkout.repo)?,
    };
    outcome.deployed_before = deployed;
    if let Some(config) = &settings.verify_signatures {
        verify::check_keys(&checkout.repo, config)?;
    }

    let previous_tip = read_ref(&checkout.repo, tracking.as_bstr())?;
    watchdog::enter(Step::Fetching);
    let fetched = fetch::fetch_with(
        &checkout.repo,
        &checkout.remote,
        &checkout.remote_branch,
        &fetch::FetchOptions {
            timeout: checkout.deadline.min(FETCH_TIMEOUT),
            ssh_key: settings.ssh_key.clone(),
            token_file: settings.token_file.clone(),
        },
    );
    let fetched = match (fetched, unfinished) {
        (Ok(fetched), unfinished_still) => {
            unfinished = unfinished_still;
            fetched
        }
        (Err(err), None) => return Err(err),
        // The checkout being mid-update is what monitoring must see (exit 11), not the fetch.
        (Err(err), Some(stuck)) => return Err(recover::unfinished_despite_fetch(stuck, &err)),
    };
    step(
        settings,
        format_args!(
            "fetched `{}` from {} into `{}`: {}",
            checkout.remote_branch,
            fetched.url,
            fetched.tracking_ref.as_bstr(),
            fetched
                .tip
                .map_or_else(|| "no such branch".to_string(), |id| id.to_string())
        ),
    );
    failpoint::hit("after-fetch");
    watchdog::enter(Step::Preparing);
    if fetched.tip != previous_tip {
        // Completing the thin pack read objects all over the old packs; the plan reads others.
        checkout.reopen()?;
    }
    // The plan's tree diff and the LFS check read the same directory trees: with a cache the
    // second read is a lookup, not another inflate (12% of a 1,000-file update, callgrind).
    // It goes with this handle, which is reopened before the apply step.
    checkout.repo.object_cache_size_if_unset(PLAN_OBJECT_CACHE);
    let Some(tip) = fetched.tip else {
        if checkout.head.is_none() {
            // Cloned from an empty remote that still has no commits: nothing to follow yet.
            return Ok(());
        }
        return fail(
            ExitCode::Usage,
            format!(
                "branch `{}` does not exist on remote `{}` ({}); pass --branch or set the upstream with `git branch --set-upstream-to`",
                checkout.remote_branch, checkout.remote, fetched.url
            ),
        );
    };

    if let Some(stuck) = unfinished {
        // An update that cannot be finished: a newer remote tip replaces it, else it fails again.
        // It writes the worktree: the watchdog must not cut it short.
        watchdog::enter(Step::Updating);
        recover::supersede(checkout, stuck, tip)?;
        watchdog::enter(Step::Preparing);
    }
    let remote_ref = format!("{}/{}", checkout.remote, checkout.remote_branch);
    refuse_rejected_tip(checkout, tip, &remote_ref)?;
    let relation = plan::relation(&checkout.repo, checkout.head, tip, previous_tip)?;
    if let Some(refusal) = plan::refusal(relation, &checkout.branch_name(), &remote_ref) {
        return Err(refusal.into());
    }
    let mut plan = make_plan(settings, checkout, tip, deployed)?;
    let submodules = submodule::prepare(settings, checkout, &plan)?;
    if !submodules.changed_paths.is_empty() {
        // Files inside submodules concern services like any other path.
        plan.changed_paths
            .extend(submodules.changed_paths.iter().cloned());
        plan.changed_paths.sort();
        plan.changed_paths.dedup();
        plan.services = select_services(settings, checkout, &plan.changed_paths)?;
    }
    outcome.changes = plan.changes.clone();
    outcome.changes.extend(submodules.changes.iter().cloned());
    outcome.changed_paths = plan.changed_paths.clone();
    outcome.services = plan.services.clone();
    if plan.is_up_to_date() && submodules.pending.is_empty() {
        return Ok(());
    }
    if plan.moves_head() {
        verify_signatures(settings, checkout, tip)?;
    }
    refuse_unsafe_paths(&plan)?;
    crate::lfs::refuse_unconfigured_lfs(
        &checkout.repo,
        &plan.changes,
        checkout::tree_of(&checkout.repo, Some(tip))?,
    )?;
    refuse_unallowed_rebuild(settings, &plan)?;
    // What follows reads the index and writes the new files: the old packs are done with.
    checkout.reopen()?;
    let checkout = &*checkout;

    match settings.command {
        Command::Check => {
            let index = read_index(&checkout.repo)?;
            guard::check(&checkout.repo, &index, &plan.changes)?;
            outcome.to = Some(tip);
            outcome.success = Success::WouldUpdate;
            Ok(())
        }
        Command::Run => update_and_act(settings, checkout, &plan, &submodules.pending, outcome),
        Command::Status => unreachable!("handled by execute"),
    }
}

/// `verify_signatures`: the commits that would move HEAD are signed by a trusted key, or the
/// run stops here with exit 9, before anything is written.
pub(crate) fn verify_signatures(
    settings: &Settings,
    checkout: &Checkout,
    tip: ObjectId,
) -> anyhow::Result<()> {
    let Some(config) = &settings.verify_signatures else {
        return Ok(());
    };
    let trust = verify::Trust::resolve(&checkout.repo, config)?;
    let verified = trust.verify_update(&checkout.repo, checkout.head, tip)?;
    step(
        settings,
        format_args!("verified the signatures of {verified} commits up to {tip}"),
    );
    Ok(())
}

/// The run's side: guard and apply (when HEAD moves), then act and record.
fn update_and_act(
    settings: &Settings,
    checkout: &Checkout,
    plan: &Plan,
    submodules: &[submodule::Pending],
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    if plan.moves_head() {
        fast_forward(checkout, plan, apply::FAST_FORWARD)?;
        step(
            settings,
            format_args!(
                "fast-forwarded to {} ({} paths)",
                plan.tip,
                plan.changes.len()
            ),
        );
    } else {
        watchdog::enter(Step::Acting);
        outcome.retried_restart = !plan.services.is_nothing() && submodules.is_empty();
    }
    submodule::update(settings, submodules)?;
    outcome.to = Some(plan.tip);
    outcome.success = Success::Updated;
    let reselected;
    let plan = if recreates_from_project(settings, plan) {
        // The plan read the compose project before the update, from the old compose files: a
        // service the update adds would never start and one it removes would make compose fail.
        reselected = Plan {
            services: select_services(settings, checkout, &plan.changed_paths)?,
            ..plan.clone()
        };
        outcome.services = reselected.services.clone();
        &reselected
    } else {
        plan
    };

    if !plan.services.is_nothing() {
        hooks::run(
            settings,
            &checkout.workdir,
            checkout.deadline.min(settings.restart_timeout),
            Hook::Before,
            &facts(outcome, "updating", None),
        )?;
    }
    failpoint::hit("before-restart");
    let acted = act(settings, checkout, &plan.services, outcome)?;
    failpoint::hit("after-restart");
    if let Err(unhealthy) = wait_healthy(settings, checkout, &acted) {
        if settings.rollback && plan.moves_head() && plan.deployed.is_some() {
            return roll_back(settings, checkout, plan, outcome, unhealthy);
        }
        return Err(unhealthy);
    }
    record::set_deployed(
        &checkout.repo,
        plan.deployed,
        plan.tip,
        "pullstart: deployed",
    )?;
    failpoint::hit("after-record");
    outcome.deployed = Some(plan.tip);
    if let Err(err) = hooks::run(
        settings,
        &checkout.workdir,
        checkout.deadline.min(settings.restart_timeout),
        Hook::AfterSuccess,
        &facts(outcome, "updated", None),
    ) {
        // The update and the restart stand; the operator's own follow-up failed.
        eprintln!(
            "pullstart: warning: {}",
            crate::redact::redact(&format!("{err:#}"))
        );
    }
    Ok(())
}

/// Whether the plan recreates services from what the compose project declared (a compose or env
/// file changed), so that the project must be read again once the new files are in place.
fn recreates_from_project(settings: &Settings, plan: &Plan) -> bool {
    settings.services.is_none()
        && plan.moves_head()
        && plan
            .services
            .actions()
            .iter()
            .any(|a| a.action == Action::Recreate)
}

/// Guard, then apply `plan` to the worktree, index and branch, under git's `index.lock`.
pub(crate) fn fast_forward(checkout: &Checkout, plan: &Plan, message: &str) -> anyhow::Result<()> {
    let repo = &checkout.repo;
    let git_dir = checkout.git_dir();
    // The journal comes first, so that a run killed at any later point leaves one that says
    // which `index.lock` is its own (see `recover`).
    let mut journal = Journal {
        old: plan.head,
        new: plan.tip,
        pid: std::process::id(),
        phase: Phase::Guarding,
        lock_identity: None,
    };
    journal::write(git_dir, &journal)?;
    let guarded = (|| {
        // Taken before the guard, so that no git command changes the index between the check
        // and the write (git's own `index.lock`; a crashed git leaves it behind).
        let index_lock = lock_index(repo)?;
        journal.lock_identity = recover::lock_identity(&recover::index_lock_path(repo));
        journal::write(git_dir, &journal)?;
        let index = read_index(repo)?;
        guard::check(repo, &index, &plan.changes)?;
        interrupted_check()?;
        Ok((index, index_lock))
    })();
    let (index, index_lock) = match guarded {
        Ok(locked) => locked,
        Err(err) => {
            // Nothing was touched: the journal has nothing to finish.
            let _ = journal::remove(git_dir);
            return Err(err);
        }
    };
    journal.phase = Phase::Applying;
    journal::write(git_dir, &journal)?;
    watchdog::enter(Step::Updating);
    let applied = apply::apply(checkout, plan, index, index_lock, message);
    watchdog::enter(Step::Acting);
    applied
}

/// `--rollback`: the new code failed its health check, so move the checkout back to the
/// deployed commit with the same safe engine, act again, and remember the bad tip so that later
/// runs skip it until the remote moves on.
fn roll_back(
    settings: &Settings,
    checkout: &Checkout,
    forward: &Plan,
    outcome: &mut Outcome,
    unhealthy: anyhow::Error,
) -> anyhow::Result<()> {
    let back_to = forward.deployed.expect("checked by the caller");
    let repo = &checkout.repo;
    let changes = plan::changes(
        repo,
        checkout::tree_of(repo, Some(forward.tip))?,
        checkout::tree_of(repo, Some(back_to))?,
    )?;
    let back = Plan {
        head: Some(forward.tip),
        tip: back_to,
        deployed: forward.deployed,
        changed_paths: plan::paths(&changes),
        changes,
        services: forward.services.clone(),
    };
    let cause = exit::failure_of(&unhealthy)
        .map_or_else(|| format!("{unhealthy:#}"), |f| f.message.clone());
    let rolled_back = fast_forward(checkout, &back, apply::ROLLBACK)
        .and_then(|()| submodule::prepare(settings, checkout, &back))
        .and_then(|submodules| submodule::update(settings, &submodules.pending))
        .and_then(|()| run_commands(settings, checkout, &back.services))
        .and_then(|()| wait_healthy(settings, checkout, &back.services));
    if let Err(err) = rolled_back {
        return Err(err.context(Failure::new(
            ExitCode::RestartFailed,
            format!(
                "{cause}; the rollback to {} failed too; fix it by hand (see `pullstart status`)",
                short(back_to)
            ),
        )));
    }
    record::set_rejected(repo, forward.tip)?;
    outcome.to = Some(back_to);
    Err(unhealthy.context(Failure::new(
        ExitCode::RestartFailed,
        format!(
            "{}; rolled back to {}; {} is skipped until the remote moves on",
            cause.trim_end_matches("; the next run retries"),
            short(back_to),
            short(forward.tip)
        ),
    )))
}

/// A tip that `--rollback` rejected is not tried again (exit 6, saying so) until the remote
/// branch moves on or the operator removes `refs/pullstart/rejected`.
fn refuse_rejected_tip(checkout: &Checkout, tip: ObjectId, remote_ref: &str) -> anyhow::Result<()> {
    if record::rejected(&checkout.repo)? != Some(tip) || checkout.head == Some(tip) {
        return Ok(());
    }
    fail(
        ExitCode::RestartFailed,
        format!(
            "skipped: `{remote_ref}` is still at {}, which failed its health check and was rolled back; push a fix, or `git update-ref -d {}` to try it again",
            short(tip),
            record::REJECTED_REF
        ),
    )
}

/// Run the compose commands. When the restart fails and some of its services turn out to have
/// no container, restart again without those: `docker compose restart` refuses the whole call
/// for one such service before touching any. Asking only after a failure keeps the usual run
/// at one compose call. Returns the services acted on.
fn act(
    settings: &Settings,
    checkout: &Checkout,
    services: &Services,
    outcome: &mut Outcome,
) -> anyhow::Result<Services> {
    let is_restart = |action: Action| action == Action::Restart;
    run_commands(settings, checkout, &filtered(services, |a| !is_restart(a)))?;
    let Err(failed) = run_commands(settings, checkout, &filtered(services, is_restart)) else {
        return Ok(services.clone());
    };
    let Some((acted, left_alone)) = without_missing_containers(settings, checkout, services) else {
        return Err(failed);
    };
    outcome.services = acted.clone();
    outcome.left_alone = left_alone;
    step(
        settings,
        format_args!(
            "restart failed; again without the services that have no container ({})",
            outcome.left_alone.join(" ")
        ),
    );
    run_commands(settings, checkout, &filtered(&acted, is_restart))?;
    Ok(acted)
}

/// The named services of `services` whose action passes `keep` (`All` counts as a restart).
fn filtered(services: &Services, keep: impl Fn(Action) -> bool) -> Services {
    match services {
        Services::Named(actions) => {
            let kept: Vec<ServiceAction> =
                actions.iter().filter(|a| keep(a.action)).cloned().collect();
            if kept.is_empty() {
                Services::nothing("no service with that action")
            } else {
                Services::Named(kept)
            }
        }
        Services::All { .. } if keep(Action::Restart) => services.clone(),
        _ => Services::nothing("no service with that action"),
    }
}

/// `services` less those to restart that have no container (never started, `compose rm`,
/// scaled to 0): `docker compose restart` cannot create one and fails as a whole when asked
/// to, so they are left alone: the services to act on and the names left alone, or `None` when
/// none is to be left alone (or compose cannot tell). Recreate and rebuild run `up`, which
/// creates the container, as `docker compose up` would for a service the update adds.
fn without_missing_containers(
    settings: &Settings,
    checkout: &Checkout,
    services: &Services,
) -> Option<(Services, Vec<String>)> {
    let Services::Named(actions) = services else {
        return None;
    };
    let prefix = restart::prefix(settings);
    let timeout = checkout.deadline.min(settings.restart_timeout);
    let existing = health::services_with_containers(&prefix, &checkout.workdir, timeout)?;
    // A name the project does not declare (a typo in `--services`) is an error to report, not
    // a service to leave alone.
    let declared = health::declared_services(&prefix, &checkout.workdir, timeout)?;
    let (kept, left): (Vec<_>, Vec<_>) = actions.iter().cloned().partition(|a| {
        a.action != Action::Restart || existing.contains(&a.name) || !declared.contains(&a.name)
    });
    if left.is_empty() {
        return None;
    }
    let acted = if kept.is_empty() {
        Services::nothing("no container to restart")
    } else {
        Services::Named(kept)
    };
    Some((acted, left.into_iter().map(|a| a.name).collect()))
}

/// Run the compose commands for the services (rebuild, recreate, restart).
fn run_commands(
    settings: &Settings,
    checkout: &Checkout,
    services: &Services,
) -> anyhow::Result<()> {
    for words in restart::commands(settings, services) {
        step(
            settings,
            format_args!("running `{}`", shell_words::join(&words)),
        );
        restart::run(
            &words,
            &checkout.workdir,
            checkout.deadline.min(settings.restart_timeout),
        )?;
    }
    Ok(())
}

/// Wait until the acted-on services run (and are healthy), unless `--health-timeout 0`.
fn wait_healthy(
    settings: &Settings,
    checkout: &Checkout,
    services: &Services,
) -> anyhow::Result<()> {
    if settings.health_timeout.is_zero() || services.is_nothing() {
        return Ok(());
    }
    let names = services.names();
    step(
        settings,
        format_args!(
            "waiting up to {:?} for {} to be healthy",
            settings.health_timeout,
            services_or_all(&names)
        ),
    );
    let waited = health::wait(
        &restart::prefix(settings),
        &checkout.workdir,
        &names,
        checkout.deadline.min(settings.health_timeout),
        settings.health_settle,
    )?;
    if let health::Waited::Skipped(why) = waited {
        // The compose command cannot show its containers: that proves nothing either way.
        eprintln!(
            "pullstart: warning: health wait skipped: {why}; put `docker` on PATH or use a \
             compose command that lists its containers, or set --health-timeout 0"
        );
    }
    Ok(())
}

fn on_failure_hook(
    settings: &Settings,
    checkout: &Checkout,
    outcome: &Outcome,
    err: &anyhow::Error,
) {
    let code = exit::code_of(err);
    let message = exit::failure_of(err).map_or_else(|| format!("{err:#}"), |f| f.message.clone());
    let facts = Facts {
        exit_code: code.code(),
        ..facts(outcome, code.failure_result(), Some(message))
    };
    if let Err(hook_err) = hooks::run(
        settings,
        &checkout.workdir,
        checkout.deadline.min(settings.restart_timeout),
        Hook::OnFailure,
        &facts,
    ) {
        eprintln!(
            "pullstart: warning: {}",
            crate::redact::redact(&format!("{hook_err:#}"))
        );
    }
}

fn facts(outcome: &Outcome, result: &str, error: Option<String>) -> Facts {
    Facts {
        result: result.into(),
        exit_code: 0,
        branch: outcome.branch.clone().unwrap_or_default(),
        from: outcome.from,
        to: outcome.to,
        deployed: outcome.deployed,
        services: outcome.services.names(),
        error: error.map(|e| crate::redact::redact(&e).into_owned()),
    }
}

pub(crate) fn short(id: ObjectId) -> String {
    id.to_hex_with_len(7).to_string()
}

fn services_or_all(names: &[String]) -> String {
    if names.is_empty() {
        "all services".into()
    } else {
        names.join(" ")
    }
}

/// The most decoded objects the plan step keeps (trees, mostly): a few megabytes hold every
/// directory a 1,000-file update touches in a 100,000-file repository.
const PLAN_OBJECT_CACHE: usize = 4 * 1024 * 1024;

/// Compute the plan for moving HEAD to `tip`.
pub(crate) fn make_plan(
    settings: &Settings,
    checkout: &Checkout,
    tip: ObjectId,
    deployed: Option<ObjectId>,
) -> anyhow::Result<Plan> {
    let repo = &checkout.repo;
    let tip_tree = checkout::tree_of(repo, Some(tip))?;
    let head_tree = checkout::tree_of(repo, checkout.head)?;
    let changes = plan::changes(repo, head_tree, tip_tree)?;
    let changed_paths = if deployed == checkout.head {
        plan::paths(&changes)
    } else {
        // The services were last acted on with HEAD's code, and that action may have failed
        // half-way: what deployed..HEAD changed must be acted on again, even where HEAD..tip
        // reverts it (a fix that reverts a bad push must still restart the broken service).
        let deployed_tree = checkout::tree_of(repo, deployed)?;
        let mut paths = plan::paths(&plan::changes(repo, deployed_tree, head_tree)?);
        paths.extend(plan::paths(&changes));
        paths.sort();
        paths.dedup();
        paths
    };
    let services = if deployed == Some(tip) {
        Services::nothing("the services already run this code")
    } else {
        select_services(settings, checkout, &changed_paths)?
    };
    Ok(Plan {
        head: checkout.head,
        tip,
        deployed,
        changes,
        changed_paths,
        services,
    })
}

/// Which services the changed paths concern, from `--services`, the path rules or the compose
/// project (read with `compose config`, which only reads).
pub(crate) fn select_services(
    settings: &Settings,
    checkout: &Checkout,
    changed_paths: &[BString],
) -> anyhow::Result<Services> {
    if settings.entrypoint.is_some() {
        // `entrypoint`: the app starts after the update; no compose project to read or act on.
        return Ok(Services::nothing("the app starts next"));
    }
    let globs = |key: &str, patterns: &[String]| {
        compile_globs(patterns).map_err(|e| anyhow::anyhow!("failed to compile `{key}`: {e}"))
    };
    let ignore = globs("ignore", &settings.ignore)?;
    let dependency_files = globs("dependency_files", &settings.dependency_files)?;
    let rules = settings
        .rules
        .iter()
        .map(|rule| {
            Ok(Rule {
                service: rule.service.clone(),
                globs: globs("services", &rule.paths)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let needs_project = settings.services.is_none() && !changed_paths.is_empty();
    let project = if needs_project {
        compose::read(
            &restart::prefix(settings),
            &checkout.workdir,
            checkout.deadline.min(COMPOSE_CONFIG_TIMEOUT),
        )
        .map_err(|e| format!("{e:#}"))
    } else {
        Err("not read".to_string())
    };
    Ok(select::select(&Inputs {
        changed: changed_paths,
        explicit: settings.services.as_deref(),
        rules: &rules,
        ignore: &ignore,
        dependency_files: &dependency_files,
        project: project.as_ref().map_err(String::as_str),
    }))
}

/// With `rebuild_policy: stop`, a plan that needs an image rebuild is refused (exit 8) before
/// anything is touched, until the operator allows it once with `--allow-rebuild`.
fn refuse_unallowed_rebuild(settings: &Settings, plan: &Plan) -> anyhow::Result<()> {
    if settings.rebuild_policy != RebuildPolicy::Stop || settings.allow_rebuild {
        return Ok(());
    }
    let rebuilds: Vec<&ServiceAction> = plan
        .services
        .actions()
        .iter()
        .filter(|a| a.action == Action::Rebuild)
        .collect();
    if rebuilds.is_empty() {
        return Ok(());
    }
    let what: Vec<String> = rebuilds
        .iter()
        .map(|a| {
            format!(
                "`{}` ({})",
                a.name,
                a.paths
                    .iter()
                    .take(3)
                    .map(|p| crate::report::quote_path(p.as_ref()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect();
    fail(
        ExitCode::RebuildRequired,
        format!(
            "rebuild required: image files changed for {}; nothing was touched; run `pullstart --allow-rebuild` to update and rebuild (`{}`)",
            what.join(", "),
            rebuild_commands(settings, plan)
        ),
    )
}

/// The rebuild invocations a run would make (`... up -d --build --no-deps [-V] A`), `; `-joined.
fn rebuild_commands(settings: &Settings, plan: &Plan) -> String {
    restart::commands(settings, &plan.services)
        .iter()
        .filter(|words| words.iter().any(|w| w == "--build"))
        .map(|words| words.join(" "))
        .collect::<Vec<_>>()
        .join("; ")
}

fn refuse_unsafe_paths(plan: &Plan) -> anyhow::Result<()> {
    let unsafe_paths: Vec<String> = plan
        .changes
        .iter()
        .filter_map(|c| {
            c.new
                .and_then(|new| plan::unsafe_path(c.path.as_bstr(), new.kind))
        })
        .collect();
    if unsafe_paths.is_empty() {
        return Ok(());
    }
    fail(
        ExitCode::Usage,
        format!(
            "refused: the remote tree {} contains unsafe paths that git would never check out: {}; nothing was touched; fix the remote branch",
            plan.tip,
            unsafe_paths.join(", ")
        ),
    )
}

/// The deployed commit. A run creates the ref at HEAD when it is missing (the containers are
/// assumed to run HEAD's code); `check` only assumes it.
fn deployed_or_head(settings: &Settings, checkout: &Checkout) -> anyhow::Result<Option<ObjectId>> {
    if let Some(id) = record::deployed(&checkout.repo)? {
        return Ok(Some(id));
    }
    if let (Command::Run, Some(head)) = (settings.command, checkout.head) {
        record::set_deployed(
            &checkout.repo,
            None,
            head,
            "pullstart: assume HEAD is deployed",
        )?;
    }
    Ok(checkout.head)
}

pub(crate) fn read_ref(
    repo: &gix::Repository,
    name: &gix::bstr::BStr,
) -> anyhow::Result<Option<ObjectId>> {
    let name = name.to_str_lossy();
    match repo
        .try_find_reference(name.as_ref())
        .with_context(|| format!("failed to read `{name}`"))?
    {
        None => Ok(None),
        Some(mut r) => Ok(r.peel_to_id().ok().map(|id| id.detach())),
    }
}

pub(crate) fn lock_index(repo: &gix::Repository) -> anyhow::Result<gix::lock::File> {
    let path = repo.index_path();
    gix::lock::File::acquire_to_update_resource(&path, gix::lock::acquire::Fail::Immediately, None, 0).map_err(|err| {
        let lock = format!("{}.lock", path.display());
        let age = std::fs::metadata(&lock)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .map_or_else(String::new, |age| format!(" (created {}s ago)", age.as_secs()));
        anyhow::Error::new(err).context(Failure::new(
            ExitCode::Locked,
            format!(
                "skipped: `{lock}` exists{age}: another git command is using the checkout, or one crashed; if no git process is running, remove that file"
            ),
        ))
    })
}

/// The index as a file we can write back. Only a missing index (an unborn branch) is empty: an
/// unreadable one is an error, since the guard must never judge against a made-up index.
pub(crate) fn read_index(repo: &gix::Repository) -> anyhow::Result<gix::index::File> {
    let path = repo.index_path();
    if !path.exists() {
        return Ok(gix::index::File::from_state(
            gix::index::State::new(repo.object_hash()),
            path,
        ));
    }
    // Without verifying the trailing checksum, as git itself reads the index (only `git fsck`
    // verifies it): hashing a 100,000-entry index was a large share of a small update's cost.
    // The entries are still decoded and checked for structure.
    let skip_checksum = true;
    // One thread: decoding in parallel makes one list of entries per thread and then appends
    // them into one, which holds about twice the entries' memory at the run's peak (+1.6 MiB in
    // a 20,000-file checkout, +8 MiB with 100,000 files), to save a few milliseconds.
    let options = gix::index::decode::Options {
        thread_limit: Some(1),
        ..Default::default()
    };
    gix::index::File::at(&path, repo.object_hash(), skip_checksum, options).with_context(|| {
        format!(
            "failed to read the index `{}`; `git status` shows whether git can",
            path.display()
        )
    })
}

fn interrupted_check() -> anyhow::Result<()> {
    if gix::interrupt::is_triggered() {
        return fail(
            ExitCode::Internal,
            "interrupted before the update started; nothing was touched",
        );
    }
    Ok(())
}

fn step(settings: &Settings, what: std::fmt::Arguments<'_>) {
    if settings.verbose {
        eprintln!("pullstart: {}", crate::redact::redact(&what.to_string()));
    }
}

pub(crate) fn hex_or(id: Option<ObjectId>, missing: &str) -> String {
    id.map_or_else(|| missing.to_string(), |id| id.to_string())
}
