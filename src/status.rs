//! `status`: what the checkout looks like and how changes map to services, without fetching
//! and without changing anything.

use anyhow::Context;
use gix::bstr::ByteSlice;

use crate::checkout::Checkout;
use crate::report::{self, Outcome, Success};
use crate::settings::Settings;
use crate::{compose, fetch, guard, plan, record, restart, run};

/// `status`: what the checkout looks like, without fetching.
pub fn show(settings: &Settings, checkout: &Checkout, outcome: &mut Outcome) -> anyhow::Result<()> {
    let repo = &checkout.repo;
    let tracking = fetch::tracking_ref_name(repo, &checkout.remote, &checkout.remote_branch)?;
    let tip = run::read_ref(repo, tracking.as_bstr())?;
    let deployed = record::deployed(repo)?;
    outcome.deployed = deployed;
    outcome.deployed_before = deployed;
    let mut lines = vec![
        format!(
            "branch:   {} (following {})",
            checkout.branch_name(),
            tracking.as_bstr()
        ),
        format!("HEAD:     {}", run::hex_or(checkout.head, "unborn")),
        format!(
            "remote:   {} (as of the last fetch)",
            run::hex_or(tip, "not fetched yet")
        ),
        format!(
            "deployed: {}",
            run::hex_or(deployed, "not recorded yet (a run records HEAD)")
        ),
    ];
    if let Some(tip) = tip {
        let relation = plan::relation(repo, checkout.head, tip, None)?;
        let remote_ref = format!("{}/{}", checkout.remote, checkout.remote_branch);
        if let Some(refusal) = plan::refusal(relation, &checkout.branch_name(), &remote_ref) {
            lines.push(format!("pending:  {}", refusal.message));
        } else {
            let plan = run::make_plan(settings, checkout, tip, deployed.or(checkout.head))?;
            let index = repo.index_or_empty().context("failed to read the index")?;
            let blocked = guard::blocked_paths(repo, &index, &plan.changes)?;
            outcome.local_changes = blocked
                .iter()
                .map(|b| b.path.to_str_lossy().into_owned())
                .collect();
            outcome.to = Some(tip);
            outcome.changes = plan.changes.clone();
            outcome.changed_paths = plan.changed_paths.clone();
            outcome.services = plan.services.clone();
            if plan.is_up_to_date() {
                lines.push("pending:  nothing, up to date".into());
            } else {
                outcome.success = Success::WouldUpdate;
                lines.push(format!("pending:  {} changed paths", plan.changes.len()));
                lines.extend(
                    report::service_lines(&plan.services)
                        .into_iter()
                        .map(|l| format!("  {l}")),
                );
                if !blocked.is_empty() {
                    lines.push(format!("blocked:  {}", guard::refusal(&blocked).message));
                }
                if plan.moves_head() {
                    if let Some(verdict) = signature_verdict(settings, checkout, tip) {
                        lines.push(format!("signed:   {verdict}"));
                    }
                }
            }
        }
    }
    let dirty = repo
        .is_dirty()
        .context("failed to compare the worktree with HEAD")?;
    lines.push(format!(
        "local:    {}",
        if dirty {
            "tracked files differ from HEAD (see `git status`)"
        } else {
            "no changes to tracked files"
        }
    ));
    lines.extend(mapping_lines(settings, checkout));
    outcome.status_lines = lines;
    Ok(())
}

/// How changed paths map to services: the path rules, `--services`, or what the compose project
/// declares (so an operator can see why a service would restart).
fn mapping_lines(settings: &Settings, checkout: &Checkout) -> Vec<String> {
    if let Some(names) = &settings.services {
        return vec![format!(
            "mapping:  any change restarts {} (--services)",
            names.join(" ")
        )];
    }
    let mut lines = Vec::new();
    if !settings.rules.is_empty() {
        lines.push("mapping:  path rules from the config".to_string());
        for rule in &settings.rules {
            lines.push(format!("  {}: {}", rule.service, rule.paths.join(", ")));
        }
    }
    match compose::read(
        &restart::prefix(settings),
        &checkout.workdir,
        checkout.deadline.min(crate::run::COMPOSE_CONFIG_TIMEOUT),
    ) {
        Err(err) => lines.push(format!(
            "compose:  could not read the project ({err:#}); a run restarts all services"
        )),
        Ok(project) => {
            let files: Vec<String> = project
                .definition_files
                .iter()
                .map(|f| f.to_str_lossy().into_owned())
                .collect();
            lines.push(if files.is_empty() {
                "compose:  defined outside the checkout (no change here recreates a service)"
                    .to_string()
            } else {
                format!(
                    "compose:  defined by {} (a change recreates every service)",
                    files.join(", ")
                )
            });
            for service in &project.services {
                lines.push(format!("  {}: {}", service.name, describe(service)));
            }
        }
    }
    lines
}

fn describe(service: &compose::Service) -> String {
    let dir = |p: &gix::bstr::BString| {
        if p.is_empty() {
            ".".to_string()
        } else {
            p.to_str_lossy().into_owned()
        }
    };
    let mut parts = Vec::new();
    if !service.watch.is_empty() {
        for watch in &service.watch {
            parts.push(format!(
                "watch {} ({})",
                dir(&watch.path),
                watch.action.as_str()
            ));
        }
    }
    for bind in &service.binds {
        parts.push(format!(
            "bind {} -> {} (restart)",
            dir(&bind.source),
            bind.target
        ));
    }
    if let Some(build) = &service.build {
        parts.push(format!(
            "build {} with {} (rebuild on dependency files)",
            dir(&build.context),
            dir(&build.dockerfile)
        ));
    }
    for env in &service.env_files {
        parts.push(format!("env {} (recreate)", dir(env)));
    }
    if parts.is_empty() {
        "nothing in the checkout".into()
    } else {
        parts.join("; ")
    }
}

/// With `verify_signatures`: whether a run would trust the pending commits, in words.
fn signature_verdict(
    settings: &Settings,
    checkout: &Checkout,
    tip: gix::ObjectId,
) -> Option<String> {
    settings.verify_signatures.as_ref()?;
    Some(match run::verify_signatures(settings, checkout, tip) {
        Ok(()) => "every pending commit is signed by a trusted key".into(),
        Err(err) => {
            crate::exit::failure_of(&err).map_or_else(|| format!("{err:#}"), |f| f.message.clone())
        }
    })
}
