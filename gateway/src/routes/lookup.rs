//! Finding the sandbox a `{id}` path names, and checking the caller may touch it (contract §1.1).

use agenttier_actors::sandbox::SandboxKey;
use agenttier_crds::Sandbox;
use kube::ResourceExt;

use crate::auth::Identity;
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
