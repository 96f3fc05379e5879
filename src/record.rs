//! Record: `refs/pullstart/deployed`, the commit the services last restarted with. It moves
//! only after a successful restart, so a failed restart is retried by the next run.

use anyhow::Context;
use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};
use gix::refs::Target;
use gix::ObjectId;

pub const DEPLOYED_REF: &str = "refs/pullstart/deployed";

/// The deployed commit, if the ref exists.
pub fn deployed(repo: &gix::Repository) -> anyhow::Result<Option<ObjectId>> {
    let Some(mut reference) = repo
        .try_find_reference(DEPLOYED_REF)
        .context("failed to read `refs/pullstart/deployed`")?
    else {
        return Ok(None);
    };
    let id = reference
        .peel_to_id()
        .context("failed to read `refs/pullstart/deployed`")?;
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
    let expected = previous.map_or(PreviousValue::MustNotExist, |p| {
        PreviousValue::MustExistAndMatch(Target::Object(p))
    });
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
        name: DEPLOYED_REF.try_into().expect("valid ref name"),
        deref: false,
    })
    .with_context(|| format!("failed to move `{DEPLOYED_REF}` to {to}"))?;
    Ok(())
}
