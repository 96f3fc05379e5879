//! Record: the state pullstart keeps in refs of the checkout.
//!
//! - `refs/pullstart/deployed`: the commit the services last restarted with. It moves only after
//!   a successful restart, so a failed restart is retried by the next run.
//! - `refs/pullstart/rejected`: a remote tip that failed its health check and was rolled back
//!   (with `--rollback`); later runs skip exactly that tip until the remote moves on.

use anyhow::Context;
use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};
use gix::refs::Target;
use gix::ObjectId;

pub const DEPLOYED_REF: &str = "refs/pullstart/deployed";
pub const REJECTED_REF: &str = "refs/pullstart/rejected";

/// The deployed commit, if the ref exists.
pub fn deployed(repo: &gix::Repository) -> anyhow::Result<Option<ObjectId>> {
    read(repo, DEPLOYED_REF)
}

/// The rejected remote tip, if any.
pub fn rejected(repo: &gix::Repository) -> anyhow::Result<Option<ObjectId>> {
    read(repo, REJECTED_REF)
}

fn read(repo: &gix::Repository, name: &str) -> anyhow::Result<Option<ObjectId>> {
    let Some(mut reference) = repo
        .try_find_reference(name)
        .with_context(|| format!("failed to read `{name}`"))?
    else {
        return Ok(None);
    };
    let id = reference
        .peel_to_id()
        .with_context(|| format!("failed to read `{name}`"))?;
    Ok(Some(id.detach()))
}

/// Move (or create) the deployed ref from `previous` to `to`; the edit fails if another
/// process moved it in between.
pub fn set_deployed(
    repo: &gix::Repository,
    previous: Option<ObjectId>,
    to: ObjectId,
    message: &str,
) -> anyhow::Result<()> {
    set(repo, DEPLOYED_REF, Some(previous), to, message)
}

/// Point the rejected ref at `tip`, wherever it was.
pub fn set_rejected(repo: &gix::Repository, tip: ObjectId) -> anyhow::Result<()> {
    set(
        repo,
        REJECTED_REF,
        None,
        tip,
        "pullstart: rejected after a failed health check",
    )
}

/// `expected`: `None` to overwrite whatever is there, `Some(None)` for "must not exist",
/// `Some(Some(id))` for "must point at id".
fn set(
    repo: &gix::Repository,
    name: &str,
    expected: Option<Option<ObjectId>>,
    to: ObjectId,
    message: &str,
) -> anyhow::Result<()> {
    let expected = match expected {
        None => PreviousValue::Any,
        Some(None) => PreviousValue::MustNotExist,
        Some(Some(id)) => PreviousValue::MustExistAndMatch(Target::Object(id)),
    };
    repo.edit_reference(RefEdit {
        change: Change::Update {
            // Refs outside heads/remotes/notes get a reflog only when forced to.
            log: LogChange {
                mode: RefLog::AndReference,
                force_create_reflog: true,
                message: message.into(),
            },
            expected,
            new: Target::Object(to),
        },
        name: name.try_into().expect("valid ref name"),
        deref: false,
    })
    .with_context(|| format!("failed to move `{name}` to {to}"))?;
    Ok(())
}
