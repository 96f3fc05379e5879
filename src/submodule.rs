//! Submodules (`submodules: update`): every initialised submodule whose checkout is not at the
//! commit the new tip records for it is brought there, with the same guard, journal and apply as
//! the checkout itself, on a second [`Checkout`] opened on the submodule.
//!
//! The order keeps "nothing was touched" true for everything that can be known in advance:
//! [`prepare`] runs before the checkout's own update and fetches each recorded commit that is
//! missing, then checks the submodule for local changes, so that a fetch failure (exit 3) or
//! local work in a submodule (exit 4) stops the run before anything is written. [`update`] runs
//! after the checkout's fast-forward. Nothing is remembered between runs: a submodule whose HEAD
//! is not its gitlink (an earlier run stopped after the checkout moved) is simply updated by the
//! next run, as is one that was updated while the setting was `ignore`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::Context;
use gix::bstr::{BStr, BString, ByteSlice};
use gix::objs::tree::EntryKind;
use gix::ObjectId;

use crate::checkout::{self, Checkout};
use crate::exit::{self, ExitCode, Failure};
use crate::fetch::{self, FetchOptions};
use crate::plan::{self, Plan};
use crate::select::Services;
use crate::settings::{Command, Settings, Submodules};
use crate::{guard, recover, run};

/// The reflog message of a submodule's HEAD when pullstart moves it.
const REFLOG_MESSAGE: &str = "pullstart: submodule update";

/// One submodule to move: its path in the checkout, the checkout opened on it, and its plan
/// (its HEAD to the recorded commit).
pub struct Pending {
    pub path: BString,
    checkout: Checkout,
    plan: Plan,
}

/// What [`prepare`] found.
#[derive(Default)]
pub struct Prepared {
    /// The submodules to move, in path order; nothing moves them before [`update`].
    pub pending: Vec<Pending>,
    /// What the submodules' updates write, as paths of the checkout (`lib/sub/x.py`), for
    /// output.
    pub changes: Vec<plan::Change>,
    /// The paths inside submodules whose content the services see change, as paths of the
    /// checkout: the submodules' own changes, for service selection.
    pub changed_paths: Vec<BString>,
}

/// A gitlink of the new tip: the submodule at `path` is to be at `commit`.
struct Gitlink {
    path: BString,
    commit: ObjectId,
}

/// With `submodules: update`, find the submodules that are not at the commit `plan.tip` records
/// for them (and, inside those, their own submodules), fetch what they lack and check them for
/// local changes. Writes nothing but fetched objects (and, in a run, finishes a submodule update
/// that a killed run left half done).
pub fn prepare(settings: &Settings, checkout: &Checkout, plan: &Plan) -> anyhow::Result<Prepared> {
    let mut prepared = Prepared::default();
    if settings.submodules != Submodules::Update {
        return Ok(prepared);
    }
    let top = Level {
        checkout,
        tip: plan.tip,
        head: plan.head,
        deployed: plan.deployed,
        prefix: BString::default(),
    };
    collect(settings, &top, &mut prepared)?;
    prepared.changed_paths.sort();
    prepared.changed_paths.dedup();
    Ok(prepared)
}

/// A repository whose submodules are looked at: the checkout, or a submodule for its own.
struct Level<'a> {
    checkout: &'a Checkout,
    /// The commit it is about to be at, whose tree records the gitlinks.
    tip: ObjectId,
    /// Where it is now.
    head: Option<ObjectId>,
    /// The commit the services last acted on (for a submodule: what its parent's deployed
    /// commit recorded for it, else where it is now).
    deployed: Option<ObjectId>,
    /// Its path in the checkout, with a trailing `/`; empty for the checkout itself.
    prefix: BString,
}

/// Add the submodules of `level` to `prepared`, each before its own submodules (the order in
/// which they are moved: a nested submodule's gitlink is written by its parent's update).
fn collect(settings: &Settings, level: &Level<'_>, prepared: &mut Prepared) -> anyhow::Result<()> {
    let repo = &level.checkout.repo;
    let deployed_tree = checkout::tree_of(repo, level.deployed)?;
    for gitlink in gitlinks(repo, checkout::tree_of(repo, Some(level.tip))?)? {
        let dir = level.checkout.workdir.join(as_path(gitlink.path.as_bstr()));
        let shown = joined(&level.prefix, &gitlink.path);
        let Some(mut sub) = open(
            level.checkout,
            gitlink.path.as_bstr(),
            shown.as_bstr(),
            &dir,
        )?
        else {
            warn_uninitialised(settings, level, &gitlink, shown.as_bstr())?;
            continue;
        };
        let planned = (|| {
            if settings.command == Command::Run {
                finish_interrupted(&mut sub, gitlink.commit)?;
            }
            plan_for(settings, &gitlink, shown.as_bstr(), &mut sub)
        })()
        .map_err(|err| before_update(err, shown.as_bstr()))?;
        // The services last acted on the deployed commit's submodule: what changed since then
        // counts too (a restart that failed after the submodule moved is retried).
        let deployed = gitlink_at(repo, deployed_tree, gitlink.path.as_bstr())?;
        let deployed = deployed.filter(|id| sub.repo.has_object(*id)).or(sub.head);
        if let Some(deployed) = deployed.filter(|id| *id != gitlink.commit) {
            let changes = plan::changes(
                &sub.repo,
                checkout::tree_of(&sub.repo, Some(deployed))?,
                checkout::tree_of(&sub.repo, Some(gitlink.commit))?,
            )?;
            prepared
                .changed_paths
                .extend(inside(shown.as_bstr(), &changes));
        }
        let mut prefix = shown.clone();
        prefix.push(b'/');
        let mut nested = Prepared::default();
        collect(
            settings,
            &Level {
                checkout: &sub,
                tip: gitlink.commit,
                head: sub.head,
                deployed: Some(deployed.unwrap_or(gitlink.commit)),
                prefix,
            },
            &mut nested,
        )?;
        if let Some(plan) = planned {
            prepared
                .changed_paths
                .extend(inside(shown.as_bstr(), &plan.changes));
            prepared
                .changes
                .extend(plan.changes.iter().map(|c| plan::Change {
                    path: joined(&shown, &c.path),
                    ..c.clone()
                }));
            prepared.pending.push(Pending {
                path: shown,
                checkout: sub,
                plan,
            });
        }
        prepared.pending.append(&mut nested.pending);
        prepared.changes.append(&mut nested.changes);
        prepared.changed_paths.append(&mut nested.changed_paths);
    }
    Ok(())
}

/// After the checkout's fast-forward: move each prepared submodule, guarded again under its own
/// `index.lock`. A failure here leaves the checkout on the new commit and that submodule (and
/// those after it) where they were; the next run sees them behind their gitlinks and retries.
pub fn update(settings: &Settings, pending: &[Pending]) -> anyhow::Result<()> {
    for sub in pending {
        run::fast_forward(&sub.checkout, &sub.plan, REFLOG_MESSAGE)
            .map_err(|err| after_update(err, sub.path.as_bstr()))?;
        if settings.verbose {
            eprintln!(
                "pullstart: updated submodule `{}` to {} ({} paths)",
                sub.path,
                sub.plan.tip,
                sub.plan.changes.len()
            );
        }
    }
    Ok(())
}

/// The gitlinks of `tree` that `.gitmodules` names, in path order. A gitlink that `.gitmodules`
/// does not name has nowhere to be fetched from: git leaves it alone too.
fn gitlinks(repo: &gix::Repository, tree: ObjectId) -> anyhow::Result<Vec<Gitlink>> {
    let tree = repo
        .find_tree(tree)
        .with_context(|| format!("failed to read tree {tree}"))?;
    let Some(entry) = tree.find_entry(".gitmodules") else {
        return Ok(Vec::new());
    };
    if entry.mode().kind() != EntryKind::Blob {
        return Ok(Vec::new());
    }
    let blob = repo
        .find_blob(entry.object_id())
        .context("failed to read `.gitmodules`")?;
    let no_overrides = gix::config::File::new(gix::config::file::Metadata::api());
    let modules =
        gix::submodule::File::from_bytes(&blob.data, None, &no_overrides).map_err(|err| {
            Failure::usage(format!(
                "`.gitmodules` of {} is not valid: {err}; fix it on the remote branch",
                tree.id
            ))
        })?;
    let mut found = Vec::new();
    for name in modules.names() {
        // A section without a valid path is skipped, as git skips it.
        let Ok(path) = modules.path(name) else {
            continue;
        };
        if let Some(commit) = gitlink_at(repo, tree.id, path.as_bstr())? {
            found.push(Gitlink { path, commit });
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found.dedup_by(|a, b| a.path == b.path);
    Ok(found)
}

/// The commit that `tree` records at `path`, if it has a gitlink there.
fn gitlink_at(
    repo: &gix::Repository,
    tree: ObjectId,
    path: &BStr,
) -> anyhow::Result<Option<ObjectId>> {
    let tree = repo
        .find_tree(tree)
        .with_context(|| format!("failed to read tree {tree}"))?;
    let entry = tree
        .lookup_entry_by_path(as_path(path))
        .with_context(|| format!("failed to look up `{path}` in tree {}", tree.id))?;
    Ok(entry
        .filter(|e| e.mode().kind() == EntryKind::Commit)
        .map(|e| e.object_id()))
}

/// The submodule's own checkout, or `None` when it was never initialised (no `.git` in its
/// directory). Its HEAD must be detached, as `git submodule update` leaves it: a branch checked
/// out there is someone's work, and moving it would be a `git reset`.
fn open(
    checkout: &Checkout,
    path: &BStr,
    shown: &BStr,
    dir: &Path,
) -> anyhow::Result<Option<Checkout>> {
    if std::fs::symlink_metadata(dir.join(".git")).is_err() {
        return Ok(None);
    }
    let mut repo = gix::open(dir).map_err(|err| {
        anyhow::Error::new(err).context(Failure::usage(format!(
            "submodule `{shown}` is not a git checkout that pullstart can open; check it with `git -C {shown} status`, or set `submodules: ignore`"
        )))
    })?;
    if repo.workdir() != Some(dir) || repo.git_dir() == checkout.git_dir() {
        return Err(Failure::usage(format!(
            "submodule `{shown}` has no working tree of its own; check it with `git -C {shown} status`, or set `submodules: ignore`"
        ))
        .into());
    }
    // Its repository must be the one `git submodule update --init` made in the checkout's own
    // git directory: a directory on the way swapped for a symlink (from a container sharing
    // the checkout) must not lead pullstart to update some other repository on the host.
    if !git_dir_is_in_modules(&repo, checkout) {
        return Err(Failure::usage(format!(
            "submodule `{shown}` keeps its repository outside `{}`; run `git submodule absorbgitdirs` once, or set `submodules: ignore`",
            checkout.git_dir().join("modules").display()
        ))
        .into());
    }
    checkout::install_fallback_committer(&mut repo)?;
    let head = repo.head().context("failed to read HEAD")?;
    let head_id = match head.kind {
        gix::head::Kind::Detached { target, .. } => target,
        gix::head::Kind::Symbolic(reference) => {
            return Err(Failure::new(
                ExitCode::RefusedLocalChanges,
                format!(
                    "refused: submodule `{shown}` has branch `{}` checked out, which the update would move; nothing was touched; detach it (`git -C {shown} checkout --detach`), as `git submodule update` leaves it",
                    reference.name.shorten()
                ),
            )
            .into())
        }
        gix::head::Kind::Unborn(_) => {
            return Err(Failure::usage(format!(
                "submodule `{shown}` has no commit checked out; run `git submodule update {shown}` once"
            ))
            .into())
        }
    };
    let remote = repo
        .remote_default_name(gix::remote::Direction::Fetch)
        .map_or_else(
            || "origin".to_string(),
            |name| name.to_str_lossy().into_owned(),
        );
    Ok(Some(Checkout {
        repo,
        workdir: dir.to_path_buf(),
        branch: "HEAD".try_into().expect("a valid ref name"),
        head: Some(head_id),
        remote,
        remote_branch: String::new(),
        deadline: checkout.deadline,
        anchor: checkout.anchor.submodule(&checkout.workdir, path),
    }))
}

fn git_dir_is_in_modules(sub: &gix::Repository, checkout: &Checkout) -> bool {
    let modules = checkout.git_dir().join("modules").canonicalize();
    let git_dir = sub.git_dir().canonicalize();
    matches!((modules, git_dir), (Ok(modules), Ok(git_dir)) if git_dir.starts_with(&modules))
}

/// A journal in the submodule's git directory: a run was killed while it moved the submodule.
/// Finished (or, when it cannot be, replaced by the move to `commit`) as for the checkout.
fn finish_interrupted(sub: &mut Checkout, commit: ObjectId) -> anyhow::Result<()> {
    match recover::recover(sub)? {
        recover::Recovered::Nothing | recover::Recovered::Finished(_) => Ok(()),
        recover::Recovered::Unfinished(stuck) => {
            recover::supersede(sub, stuck, commit)?;
            sub.head = run::read_ref(&sub.repo, "HEAD".into())?;
            Ok(())
        }
    }
}

/// The plan that moves the submodule to the gitlink's commit, fetched first where it is
/// missing and checked for local changes; `None` when the submodule is there already.
fn plan_for(
    settings: &Settings,
    gitlink: &Gitlink,
    shown: &BStr,
    sub: &mut Checkout,
) -> anyhow::Result<Option<Plan>> {
    if sub.head == Some(gitlink.commit) {
        return Ok(None);
    }
    if !sub.repo.has_object(gitlink.commit) {
        let options = FetchOptions {
            timeout: sub.deadline.min(run::FETCH_TIMEOUT),
            ssh_key: settings.ssh_key.clone(),
            token_file: settings.token_file.clone(),
        };
        fetch::fetch_commit(&sub.repo, &sub.remote, gitlink.commit, &options)?;
        sub.reopen()?;
    }
    let repo = &sub.repo;
    let changes = plan::changes(
        repo,
        checkout::tree_of(repo, sub.head)?,
        checkout::tree_of(repo, Some(gitlink.commit))?,
    )?;
    let index = run::read_index(repo)?;
    // The refusal names the paths as the checkout's, like any other local change.
    let blocked = guard::blocked_paths(repo, &index, &changes)?;
    if !blocked.is_empty() {
        let blocked: Vec<guard::Blocked> = blocked
            .into_iter()
            .map(|b| guard::Blocked {
                path: joined(shown, &b.path),
                ..b
            })
            .collect();
        return Err(guard::refusal(&blocked).into());
    }
    guard::check(repo, &index, &changes)?;
    Ok(Some(Plan {
        head: sub.head,
        tip: gitlink.commit,
        deployed: None,
        changed_paths: plan::paths(&changes),
        changes,
        services: Services::nothing("a submodule's own update acts on no service"),
    }))
}

/// A submodule that was never initialised is left alone, as `git submodule update` without
/// `--init` leaves it; when this update moves its gitlink, a warning says how to start.
fn warn_uninitialised(
    settings: &Settings,
    level: &Level<'_>,
    gitlink: &Gitlink,
    shown: &BStr,
) -> anyhow::Result<()> {
    let repo = &level.checkout.repo;
    let head_tree = checkout::tree_of(repo, level.head)?;
    let moved = gitlink_at(repo, head_tree, gitlink.path.as_bstr())? != Some(gitlink.commit);
    if moved && !settings.quiet {
        eprintln!(
            "pullstart: warning: submodule `{shown}` is not initialised, so only its gitlink moves; run `git submodule update --init --recursive` once to have pullstart update it"
        );
    }
    Ok(())
}

/// An error while preparing a submodule, before anything was written: a refusal that already
/// names the submodule (local changes to `lib/sub/x.py`, a branch checked out in `lib/sub`)
/// reads as for the checkout itself; any other is prefixed with the submodule. The exit code is
/// the cause's.
fn before_update(err: anyhow::Error, path: &BStr) -> anyhow::Error {
    const UNTOUCHED: &str = "nothing was touched";
    let message = message_of(&err);
    let names_it = message.contains(&format!(" {path}/")) || message.contains(&format!("`{path}`"));
    if exit::code_of(&err) == ExitCode::RefusedLocalChanges && names_it {
        return err;
    }
    let message = if message.contains(UNTOUCHED) {
        format!("submodule `{path}`: {message}")
    } else {
        format!("submodule `{path}`: {message}; {UNTOUCHED}")
    };
    with_message(err, message)
}

/// An error while moving a submodule, after the checkout itself moved: the message says so.
fn after_update(err: anyhow::Error, path: &BStr) -> anyhow::Error {
    let message = format!(
        "submodule `{path}`: {}; the checkout itself is updated and this submodule is not; the next run retries it",
        message_of(&err)
    );
    with_message(err, message)
}

fn message_of(err: &anyhow::Error) -> String {
    exit::failure_of(err).map_or_else(|| format!("{err:#}"), |f| f.message.clone())
}

fn with_message(err: anyhow::Error, message: String) -> anyhow::Error {
    let code = exit::code_of(&err);
    err.context(Failure::new(code, message))
}

/// The changed paths of a submodule at `shown`, as paths of the checkout.
fn inside(shown: &BStr, changes: &[plan::Change]) -> Vec<BString> {
    changes.iter().map(|c| joined(shown, &c.path)).collect()
}

/// `path` below `dir` (`dir` empty, or ending in `/` or not).
fn joined(dir: &[u8], path: &[u8]) -> BString {
    let mut joined = BString::from(dir);
    if !joined.is_empty() && !joined.ends_with(b"/") {
        joined.push(b'/');
    }
    joined.extend_from_slice(path);
    joined
}

/// A path of the tree as a path of this system (Unix: the bytes as they are).
fn as_path(path: &BStr) -> &Path {
    Path::new(OsStr::from_bytes(path))
}
