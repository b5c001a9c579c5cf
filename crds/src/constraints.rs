//! Which harness constraints a runtime can enforce (issue: constraints that hold). A template
//! that asks for one a runtime cannot enforce is refused at validation with a message saying
//! what to use instead, never accepted and silently ignored.
//!
//! - `maxCommandTimeout` caps exec, hooks and invokes on every runtime.
//! - `maxFileSize` caps file uploads and configure files on every runtime.
//! - `restrictedPaths` are hidden inside the sandbox by the local runtime (an empty read-only
//!   mount over each); Pods cannot mask arbitrary paths, so Kubernetes refuses them.
//! - `restrictedCommands` cannot be enforced against a shell (a copy or a script runs the same
//!   code), and `allowedNetworkDests`/`deniedNetworkDests` are not how egress is governed here
//!   (`network.egressRules` is): both are refused everywhere.

use crate::SandboxTemplateSpec;
use crate::duration::parse_go_duration;
use crate::quantity::parse_bytes;

/// The problems of `spec`'s constraints on the runtime named `runtime` (`local`,
/// `kubernetes`); empty when every constraint can be enforced.
pub fn unenforceable(spec: &SandboxTemplateSpec, runtime: &str) -> Vec<String> {
    let Some(c) = spec.harness.as_ref().and_then(|h| h.constraints.as_ref()) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    if let Some(t) = &c.max_command_timeout
        && let Err(e) = parse_go_duration(t)
    {
        problems.push(format!("harness.constraints.maxCommandTimeout: {e}"));
    }
    if let Some(size) = &c.max_file_size
        && let Err(e) = parse_bytes(size)
    {
        problems.push(format!("harness.constraints.maxFileSize: {e}"));
    }
    if !c.restricted_commands.is_empty() {
        problems.push(
            "harness.constraints.restrictedCommands cannot be enforced (a shell can run any \
             program under another name); remove it, or keep the programs out of the image"
                .into(),
        );
    }
    if !c.allowed_network_dests.is_empty() || !c.denied_network_dests.is_empty() {
        problems.push(
            "harness.constraints.allowedNetworkDests/deniedNetworkDests are not enforced; \
             govern egress with network.egressRules (Kubernetes NetworkPolicy) or \
             network.allowInternet"
                .into(),
        );
    }
    for path in &c.restricted_paths {
        if !path.starts_with('/') || path.split('/').any(|p| p == "..") || path == "/" {
            problems.push(format!(
                "harness.constraints.restrictedPaths: {path:?} must be an absolute path other than /"
            ));
        }
    }
    if runtime == "kubernetes" && !c.restricted_paths.is_empty() {
        problems.push(
            "harness.constraints.restrictedPaths cannot be enforced on the kubernetes runtime \
             (a Pod cannot mask arbitrary paths); leave the files out of the image instead"
                .into(),
        );
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConstraintsSpec, HarnessSpec};

    fn with(c: ConstraintsSpec) -> SandboxTemplateSpec {
        SandboxTemplateSpec {
            harness: Some(HarnessSpec {
                constraints: Some(c),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn enforceable_constraints_pass() {
        let spec = with(ConstraintsSpec {
            max_command_timeout: Some("30s".into()),
            max_file_size: Some("1Mi".into()),
            restricted_paths: vec!["/etc/shadow".into(), "/workspace/secrets".into()],
            ..Default::default()
        });
        assert!(unenforceable(&spec, "local").is_empty());
        assert!(unenforceable(&SandboxTemplateSpec::default(), "kubernetes").is_empty());
    }

    #[test]
    fn what_cannot_hold_is_named() {
        let commands = with(ConstraintsSpec {
            restricted_commands: vec!["curl".into()],
            ..Default::default()
        });
        assert!(unenforceable(&commands, "local")[0].contains("restrictedCommands"));
        let network = with(ConstraintsSpec {
            denied_network_dests: vec!["10.0.0.0/8".into()],
            ..Default::default()
        });
        assert!(unenforceable(&network, "kubernetes")[0].contains("egressRules"));
        let paths = with(ConstraintsSpec {
            restricted_paths: vec!["/etc/shadow".into()],
            ..Default::default()
        });
        assert!(unenforceable(&paths, "kubernetes")[0].contains("kubernetes runtime"));
        let bad = with(ConstraintsSpec {
            max_command_timeout: Some("soon".into()),
            max_file_size: Some("big".into()),
            restricted_paths: vec!["relative".into(), "/".into()],
            ..Default::default()
        });
        assert_eq!(unenforceable(&bad, "local").len(), 4);
    }
}
