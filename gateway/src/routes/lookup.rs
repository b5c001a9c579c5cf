//! Finding the sandbox a `{id}` path names, and checking the caller may touch it (contract §1.1).

use agenttier_actors::sandbox::SandboxKey;
use agenttier_crds::Sandbox;
use kube::ResourceExt;

use crate::auth::{Access, Identity};
use crate::error::ApiError;
use crate::state::AppState;

/// The sandbox `{id}` names: the default namespace first, then a unique match anywhere.
pub fn find(state: &AppState, id: &str) -> Result<Sandbox, ApiError> {
    let key = SandboxKey::new(state.config.default_namespace.clone(), id);
    if let Some(sandbox) = state.control.get(&key) {
        return Ok(sandbox);
    }
    let mut matches = state.control.read_model.find_by_name(id);
    match matches.len() {
        0 => Err(ApiError::NotFound(format!("sandbox {id} not found"))),
        1 => Ok(matches.remove(0)),
        _ => Err(ApiError::NotFound(format!(
            "sandbox {id} exists in multiple namespaces; specify ?namespace=<ns>"
        ))),
    }
}

/// The sandbox, if the caller is its owner or an admin; others get the contract's 404.
pub fn owned(
    state: &AppState,
    identity: &Identity,
    id: &str,
) -> Result<(SandboxKey, Sandbox), ApiError> {
    let sandbox = find(state, id)?;
    if !identity.owns(&sandbox) {
        return Err(ApiError::NotFound(format!("access denied to sandbox {id}")));
    }
    Ok((SandboxKey::of(&sandbox), sandbox))
}

/// The sandbox, if the caller may view it (owner, admin or shared).
pub fn viewable(state: &AppState, identity: &Identity, id: &str) -> Result<Sandbox, ApiError> {
    let sandbox = find(state, id)?;
    if !identity.can_view(&sandbox) {
        return Err(ApiError::NotFound(format!(
            "access denied to sandbox {}",
            sandbox.name_any()
        )));
    }
    Ok(sandbox)
}

/// The sandbox, if the caller has at least `needed` access (owner, admin, or a share level).
/// Callers with no access get the contract's 404; callers who can see the sandbox through a
/// share but lack the level get a 403 that says what their share allows.
pub fn with_access(
    state: &AppState,
    identity: &Identity,
    id: &str,
    needed: Access,
) -> Result<(SandboxKey, Sandbox), ApiError> {
    let sandbox = find(state, id)?;
    let access = identity.access(&sandbox);
    if access >= needed {
        return Ok((SandboxKey::of(&sandbox), sandbox));
    }
    match access {
        Access::None => Err(ApiError::NotFound(format!("access denied to sandbox {id}"))),
        Access::Viewer => Err(ApiError::Forbidden(format!(
            "viewer access to sandbox {id} does not allow this"
        ))),
        Access::Collaborator | Access::Owner => Err(ApiError::Forbidden(format!(
            "only the owner of sandbox {id} may do this"
        ))),
    }
}
