//! Per-session credentials: the secrets a sandbox (or its template chain) names in
//! `credentials: [{secretName, mountAs, mountPath, envPrefix}]`, handed to one exec or terminal
//! session when it opens and gone when it ends. They are never written into the workspace, the
//! template or the sandbox object.
//!
//! - `mountAs: env` (the default): every key of the Secret becomes `<envPrefix><KEY>` in the
//!   session's environment. Keys that are not valid variable names are skipped.
//! - `mountAs: file`: every key becomes a file `<mountPath>/<key>` (mode 0600, directory 0700).
//!   On the local runtime the path must lie under `/tmp/`, the sandbox's private tmpfs, so the
//!   secret never reaches a disk; the default is `/tmp/agenttier-credentials/<secretName>`. The
//!   files are written by a preamble of the session's shell and removed when it exits.
//!
//! Secrets are Kubernetes-shaped `Secret` objects in the sandbox's namespace, kept in the store
//! and written by admins through `/api/v1/secrets` (see `routes::secrets`).

use std::collections::BTreeMap;

use agenttier_actors::ControlPlane;
use agenttier_actors::runtime::ExecRequest;
use agenttier_actors::store::TypedStore;
use agenttier_crds::resolve::effective_sandbox_spec;
use agenttier_crds::{CredentialSpec, Sandbox};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use crate::error::ApiError;

/// Where file credentials go when the credential names no `mountPath`.
pub const DEFAULT_FILE_ROOT: &str = "/tmp/agenttier-credentials";
/// The tmpfs file credentials must live under on the local runtime.
pub const TMPFS_ROOT: &str = "/tmp/";
/// The environment variable prefix that carries file contents into the preamble.
const FILE_VAR_PREFIX: &str = "__AGENTTIER_CREDENTIAL_FILE_";

/// A file a session gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialFile {
    /// Absolute path under the tmpfs.
    pub path: String,
    /// The content (text: it travels through the environment).
    pub content: String,
}

/// What one session is handed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionCredentials {
    /// Variables added to the session's environment.
    pub env: BTreeMap<String, String>,
    /// Files created for the session and removed when it ends.
    pub files: Vec<CredentialFile>,
}

impl SessionCredentials {
    /// True when the sandbox names no credentials.
    pub fn is_empty(&self) -> bool {
        self.env.is_empty() && self.files.is_empty()
    }

    /// What is handed, for the audit trail: variable names and file paths, never values.
    pub fn names(&self) -> Vec<String> {
        self.env
            .keys()
            .cloned()
            .chain(self.files.iter().map(|f| f.path.clone()))
            .collect()
    }

    /// Hands the credentials to an exec: the variables join its environment, and the command is
    /// wrapped by [`Self::wrap_command`] when there are files.
    pub fn apply(&self, request: &mut ExecRequest) {
        for (name, value) in &self.env {
            request.env.insert(name.clone(), value.clone());
        }
        let (command, env) = self.wrap_command(&request.command);
        request.command = command;
        request.env.extend(env);
    }

    /// A `/bin/sh -c` script that writes the files (umask 077), forgets the variables that
    /// carried them, removes the files when the shell exits, then runs `command`; plus the
    /// variables the script reads. Without files the command is returned unchanged. A terminal
    /// session wraps its shell command the same way.
    pub fn wrap_command(&self, command: &str) -> (String, BTreeMap<String, String>) {
        if self.files.is_empty() {
            return (command.to_string(), BTreeMap::new());
        }
        let mut env = BTreeMap::new();
        let mut script = String::from("umask 077\n");
        let mut cleanup = Vec::new();
        let mut dirs: Vec<&str> = Vec::new();
        for (index, file) in self.files.iter().enumerate() {
            let variable = format!("{FILE_VAR_PREFIX}{index}");
            let dir = file.path.rsplit_once('/').map_or("/", |(d, _)| d);
            script.push_str(&format!(
                "mkdir -p {dir} && printf '%s' \"${variable}\" > {path} || exit 125\nunset {variable}\n",
                dir = quote(dir),
                path = quote(&file.path),
            ));
            env.insert(variable, file.content.clone());
            cleanup.push(format!("rm -f {}", quote(&file.path)));
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        for dir in dirs {
            cleanup.push(format!("rmdir {} 2>/dev/null", quote(dir)));
        }
        script.push_str(&format!("trap {} EXIT\n", quote(&cleanup.join("; "))));
        script.push_str(command);
        (script, env)
    }
}

/// Single-quotes a string for `/bin/sh`.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// Whether `name` is a usable environment variable name.
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `key` is a valid Secret data key (Kubernetes' rule: `[-._a-zA-Z0-9]+`, not `.`/`..`).
pub fn is_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key != "."
        && key != ".."
        && key.len() <= 253
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// The directory a file credential is mounted at, checked to be a tmpfs path the preamble can
/// quote safely.
fn file_root(credential: &CredentialSpec) -> Result<String, ApiError> {
    let root = credential
        .mount_path
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(|p| p.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("{DEFAULT_FILE_ROOT}/{}", credential.secret_name));
    let safe = root
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '.' | '_'));
    let under_tmpfs = root.starts_with(TMPFS_ROOT)
        && root.len() > TMPFS_ROOT.len()
        && !root.split('/').any(|part| part == "..");
    if safe && under_tmpfs {
        Ok(root)
    } else {
        Err(ApiError::BadRequest(format!(
            "credential {:?}: mountPath {root:?} must be a directory under {TMPFS_ROOT} (the sandbox's tmpfs) on this runtime",
            credential.secret_name
        )))
    }
}

/// The Secret's data as text, `stringData` over `data`. Values that are not UTF-8 are skipped:
/// sessions receive them through the environment, which carries text.
fn secret_values(secret: &Secret) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    for (key, bytes) in secret.data.iter().flatten() {
        match String::from_utf8(bytes.0.clone()) {
            Ok(text) if !text.contains('\0') => {
                values.insert(key.clone(), text);
            }
            _ => tracing::warn!(
                secret = %secret.name_any(),
                key,
                "credential value is not text; it is not handed to sessions"
            ),
        }
    }
    for (key, text) in secret.string_data.iter().flatten() {
        values.insert(key.clone(), text.clone());
    }
    values
}

/// The credentials a new session of `sandbox` gets: its own `credentials` merged over its
/// template chain's, each Secret read from the sandbox's namespace. A missing Secret fails the
/// session (409): running without a credential the template promised would fail later and
/// less clearly.
pub async fn for_sandbox(
    control: &ControlPlane,
    sandbox: &Sandbox,
) -> Result<SessionCredentials, ApiError> {
    let store = control.store.as_ref();
    let namespace = sandbox.namespace().unwrap_or_default();
    let mut credentials = sandbox.spec.credentials.clone();
    // The cached templates: every exec passes here, so no store round trip for them.
    if let Some(template) = control.resolved_template(sandbox).await? {
        credentials = effective_sandbox_spec(&sandbox.spec, &template).credentials;
    }
    let mut session = SessionCredentials::default();
    for credential in &credentials {
        let secret = store
            .get_obj::<Secret>(&namespace, &credential.secret_name)
            .await?
            .ok_or_else(|| {
                ApiError::Conflict(format!(
                    "credential secret {:?} not found in namespace {namespace}",
                    credential.secret_name
                ))
            })?;
        let values = secret_values(&secret);
        match credential.mount_as.as_deref().unwrap_or("env") {
            "file" => {
                let root = file_root(credential)?;
                for (key, content) in values {
                    if is_secret_key(&key) {
                        session.files.push(CredentialFile {
                            path: format!("{root}/{key}"),
                            content,
                        });
                    }
                }
            }
            "env" => {
                let prefix = credential.env_prefix.as_deref().unwrap_or_default();
                for (key, value) in values {
                    let name = format!("{prefix}{key}");
                    if is_env_name(&name) {
                        session.env.insert(name, value);
                    } else {
                        tracing::warn!(secret = %credential.secret_name, name, "credential key is not a valid variable name; skipped");
                    }
                }
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "credential {:?}: mountAs must be env or file, got {other:?}",
                    credential.secret_name
                )));
            }
        }
    }
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths_are_checked() {
        assert!(is_env_name("API_KEY") && is_env_name("_x1"));
        assert!(!is_env_name("1X") && !is_env_name("a-b") && !is_env_name(""));
        assert!(is_secret_key("token.json") && !is_secret_key("..") && !is_secret_key("a/b"));
        let file = |path: Option<&str>| CredentialSpec {
            secret_name: "gh".into(),
            mount_as: Some("file".into()),
            mount_path: path.map(Into::into),
            env_prefix: None,
        };
        assert_eq!(
            file_root(&file(None)).ok().as_deref(),
            Some("/tmp/agenttier-credentials/gh")
        );
        assert_eq!(
            file_root(&file(Some("/tmp/gh/"))).ok().as_deref(),
            Some("/tmp/gh")
        );
        for bad in [
            "/workspace/gh",
            "/etc/secrets",
            "/tmp",
            "/tmp/../etc",
            "/tmp/a b",
            "/tmp/$(x)",
        ] {
            assert!(file_root(&file(Some(bad))).is_err(), "{bad}");
        }
    }

    #[test]
    fn files_are_written_by_a_preamble_and_removed_on_exit() {
        let session = SessionCredentials {
            env: BTreeMap::new(),
            files: vec![CredentialFile {
                path: "/tmp/gh/token".into(),
                content: "s3cr'et".into(),
            }],
        };
        let (script, env) = session.wrap_command("cat /tmp/gh/token");
        assert_eq!(
            env.get("__AGENTTIER_CREDENTIAL_FILE_0").map(String::as_str),
            Some("s3cr'et")
        );
        assert!(script.starts_with("umask 077\n"));
        assert!(script.contains("unset __AGENTTIER_CREDENTIAL_FILE_0"));
        assert!(script.contains(
            "trap 'rm -f '\\''/tmp/gh/token'\\''; rmdir '\\''/tmp/gh'\\'' 2>/dev/null' EXIT"
        ));
        assert!(script.ends_with("\ncat /tmp/gh/token"));
        assert!(
            !script.contains("s3cr"),
            "the secret travels in the environment, not the script"
        );
        let (unchanged, none) = SessionCredentials::default().wrap_command("true");
        assert_eq!((unchanged.as_str(), none.len()), ("true", 0));
    }
}
