//! Sandbox-scoped API keys (contract §2.4): the eight action groups, the route → action map,
//! and default-deny enforcement. A scoped key may use only the mapped routes, only on its own
//! sandbox, and only with the matching action group; every other route (including ones added
//! later, which the map does not know) answers 403. The terminal WebSocket, which lives outside
//! `/api/v1`, calls [`authorize_sandbox_action`] itself: there the contract had no check at all.

use axum::http::Method;

use super::Identity;
use crate::error::ApiError;

/// Run a command (`POST /sandboxes/{id}/exec`, and the terminal).
pub const RUN_COMMAND: &str = "run-command";
/// Read files (`GET …/files/…`, `GET …/archive`).
pub const FILES_READ: &str = "files:read";
/// Write files (`PUT …/files/…`).
pub const FILES_WRITE: &str = "files:write";
/// List, add and remove port forwards.
pub const PORTS: &str = "ports";
/// Configure an agent sandbox.
pub const AGENT_CONFIGURE: &str = "agent:configure";
/// Invoke (and cancel) an agent.
pub const AGENT_INVOKE: &str = "agent:invoke";
/// Resume the sandbox.
pub const RESUME: &str = "resume";
/// Stop the sandbox.
pub const STOP: &str = "stop";

/// Every valid action group, in the contract's order; also a new scoped key's default set.
pub const ACTION_GROUPS: [&str; 8] = [
    RUN_COMMAND,
    FILES_READ,
    FILES_WRITE,
    PORTS,
    AGENT_CONFIGURE,
    AGENT_INVOKE,
    RESUME,
    STOP,
];

/// The action group a terminal session needs: typing into a shell is running commands.
pub const TERMINAL_ACTION: &str = RUN_COMMAND;

/// Whether `group` is one of the eight.
pub fn is_action_group(group: &str) -> bool {
    ACTION_GROUPS.contains(&group)
}

/// Lets `identity` perform `action` on sandbox `sandbox_id`: always for unscoped identities;
/// for a scoped key only on its own sandbox and only with the action in its groups. The error
/// is the contract's 403. Ownership is still checked by the caller afterwards.
pub fn authorize_sandbox_action(
    identity: &Identity,
    sandbox_id: &str,
    action: &str,
) -> Result<(), ApiError> {
    let Some(bound) = identity.sandbox_id.as_deref() else {
        return Ok(());
    };
    if bound != sandbox_id {
        return Err(ApiError::Forbidden(
            "scoped key is not bound to this sandbox".into(),
        ));
    }
    let allowed = identity
        .action_groups
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|g| g == action);
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "scoped key lacks the {action:?} action group"
        )))
    }
}

/// What a route needs from a scoped key.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteScope<'a> {
    /// The route acts on sandbox `id` with `action`.
    Sandbox {
        /// The `{id}` of the request path.
        id: &'a str,
        /// The action group it needs.
        action: &'static str,
    },
    /// A bulk route (its own 403 message in the contract).
    Bulk,
    /// Any other route: scoped keys are refused.
    Denied,
}

/// Classifies a request by its matched route pattern (`/sandboxes/{id}/exec`, with or without
/// the `/api/v1` prefix) and the concrete path it was matched from.
pub fn route_scope<'a>(method: &Method, pattern: &str, path: &'a str) -> RouteScope<'a> {
    let pattern = pattern.strip_prefix("/api/v1").unwrap_or(pattern);
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    let pattern: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    let path: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if pattern.first() != Some(&"sandboxes") {
        return RouteScope::Denied;
    }
    if matches!(pattern.get(1), Some(&"bulk" | &"bulk-action")) && pattern.len() == 2 {
        return RouteScope::Bulk;
    }
    let is_param = |s: Option<&&str>| s.is_some_and(|s| s.starts_with('{'));
    if !is_param(pattern.get(1)) || path.len() < 3 {
        return RouteScope::Denied;
    }
    let id = path[1];
    let rest = &pattern[2..];
    let action = match (method.as_str(), rest) {
        ("POST", ["exec"]) => RUN_COMMAND,
        ("GET", ["files", ..]) | ("GET", ["archive"]) => FILES_READ,
        ("PUT", ["files", file, ..]) if !file.is_empty() => FILES_WRITE,
        // Beyond the contract's map: the multi-file upload writes files, and a terminal ticket
        // opens a shell (the same group the terminal WebSocket itself needs).
        ("POST", ["files-upload"]) => FILES_WRITE,
        ("POST", ["terminal-ticket"]) => TERMINAL_ACTION,
        ("GET" | "POST", ["ports"]) | ("DELETE", ["ports", _]) => PORTS,
        ("POST", ["configure"]) | ("GET", ["configure", "install-log"]) => AGENT_CONFIGURE,
        ("POST", ["invoke"]) | ("POST", ["invoke", "cancel"]) => AGENT_INVOKE,
        ("POST", ["resume"]) => RESUME,
        ("POST", ["stop"]) => STOP,
        _ => return RouteScope::Denied,
    };
    RouteScope::Sandbox { id, action }
}

/// The default-deny check the auth middleware runs for every `/api/v1` request.
pub fn enforce(
    identity: &Identity,
    method: &Method,
    pattern: &str,
    path: &str,
) -> Result<(), ApiError> {
    if identity.sandbox_id.is_none() {
        return Ok(());
    }
    match route_scope(method, pattern, path) {
        RouteScope::Sandbox { id, action } => authorize_sandbox_action(identity, id, action),
        RouteScope::Bulk => Err(ApiError::Forbidden(
            "sandbox-scoped keys may not perform bulk operations".into(),
        )),
        RouteScope::Denied => Err(ApiError::Forbidden(
            "scoped key not permitted for this route".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scoped(groups: &[&str]) -> Identity {
        Identity {
            sandbox_id: Some("box".into()),
            action_groups: Some(groups.iter().map(|g| g.to_string()).collect()),
            ..Identity::dev_user()
        }
    }

    #[test]
    fn routes_map_to_the_contract_actions() {
        let cases = [
            (
                "POST",
                "/sandboxes/{id}/exec",
                "/sandboxes/b/exec",
                RUN_COMMAND,
            ),
            (
                "GET",
                "/sandboxes/{id}/files/",
                "/sandboxes/b/files/",
                FILES_READ,
            ),
            (
                "GET",
                "/sandboxes/{id}/files/{*path}",
                "/sandboxes/b/files/a/b",
                FILES_READ,
            ),
            (
                "PUT",
                "/sandboxes/{id}/files/{*path}",
                "/sandboxes/b/files/a",
                FILES_WRITE,
            ),
            (
                "GET",
                "/sandboxes/{id}/archive",
                "/sandboxes/b/archive",
                FILES_READ,
            ),
            ("POST", "/sandboxes/{id}/ports", "/sandboxes/b/ports", PORTS),
            (
                "DELETE",
                "/sandboxes/{id}/ports/{port}",
                "/sandboxes/b/ports/80",
                PORTS,
            ),
            (
                "GET",
                "/api/v1/sandboxes/{id}/configure/install-log",
                "/api/v1/sandboxes/b/configure/install-log",
                AGENT_CONFIGURE,
            ),
            (
                "POST",
                "/sandboxes/{id}/invoke/cancel",
                "/sandboxes/b/invoke/cancel",
                AGENT_INVOKE,
            ),
            (
                "POST",
                "/sandboxes/{id}/resume",
                "/sandboxes/b/resume",
                RESUME,
            ),
            ("POST", "/sandboxes/{id}/stop", "/sandboxes/b/stop", STOP),
        ];
        for (method, pattern, path, action) in cases {
            let method: Method = method.parse().unwrap_or(Method::GET);
            assert_eq!(
                route_scope(&method, pattern, path),
                RouteScope::Sandbox { id: "b", action },
                "{pattern}"
            );
        }
        for (method, pattern) in [
            ("GET", "/sandboxes/{id}"),
            ("DELETE", "/sandboxes/{id}"),
            ("PATCH", "/sandboxes/{id}"),
            ("POST", "/sandboxes/{id}/clone"),
            ("GET", "/sandboxes/{id}/share"),
            ("GET", "/sandboxes"),
            ("GET", "/user/me"),
            ("PUT", "/sandboxes/{id}/files/"),
        ] {
            let method: Method = method.parse().unwrap_or(Method::GET);
            let path = pattern.replace("{id}", "b");
            assert_eq!(
                route_scope(&method, pattern, &path),
                RouteScope::Denied,
                "{pattern}"
            );
        }
        assert_eq!(
            route_scope(&Method::POST, "/sandboxes/bulk", "/sandboxes/bulk"),
            RouteScope::Bulk
        );
    }

    #[test]
    fn scoped_keys_get_the_contract_403s() {
        let key = scoped(&[RUN_COMMAND]);
        assert!(
            enforce(
                &key,
                &Method::POST,
                "/sandboxes/{id}/exec",
                "/sandboxes/box/exec"
            )
            .is_ok()
        );
        let message = |r: Result<(), ApiError>| r.err().map(|e| e.to_string());
        assert_eq!(
            message(enforce(
                &key,
                &Method::POST,
                "/sandboxes/{id}/exec",
                "/sandboxes/x/exec"
            )),
            Some("scoped key is not bound to this sandbox".into())
        );
        assert_eq!(
            message(enforce(
                &key,
                &Method::POST,
                "/sandboxes/{id}/stop",
                "/sandboxes/box/stop"
            )),
            Some("scoped key lacks the \"stop\" action group".into())
        );
        assert_eq!(
            message(enforce(
                &key,
                &Method::GET,
                "/sandboxes/{id}",
                "/sandboxes/box"
            )),
            Some("scoped key not permitted for this route".into())
        );
        assert_eq!(
            message(enforce(
                &key,
                &Method::POST,
                "/sandboxes/bulk",
                "/sandboxes/bulk"
            )),
            Some("sandbox-scoped keys may not perform bulk operations".into())
        );
        let unscoped = Identity::dev_user();
        assert!(enforce(&unscoped, &Method::GET, "/sandboxes/{id}", "/sandboxes/x").is_ok());
        assert!(authorize_sandbox_action(&key, "box", TERMINAL_ACTION).is_ok());
        assert!(authorize_sandbox_action(&key, "other", TERMINAL_ACTION).is_err());
        assert!(authorize_sandbox_action(&scoped(&[STOP]), "box", TERMINAL_ACTION).is_err());
    }
}

#[cfg(test)]
mod beyond_contract_tests {
    use super::*;

    #[test]
    fn uploads_and_terminal_tickets_have_action_groups() {
        let post = Method::POST;
        assert_eq!(
            route_scope(
                &post,
                "/api/v1/sandboxes/{id}/files-upload",
                "/api/v1/sandboxes/a/files-upload"
            ),
            RouteScope::Sandbox {
                id: "a",
                action: FILES_WRITE
            }
        );
        assert_eq!(
            route_scope(
                &post,
                "/api/v1/sandboxes/{id}/terminal-ticket",
                "/api/v1/sandboxes/a/terminal-ticket"
            ),
            RouteScope::Sandbox {
                id: "a",
                action: RUN_COMMAND
            }
        );
    }
}
