//! `Identity`: the caller as every handler sees it.

use agenttier_crds::{CreatedBy, Sandbox};

/// Who is calling. Ownership, quotas and rate limits key on `sub`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The stable subject (JWT `sub` or the API key's user id).
    pub sub: String,
    /// Email, for share matching and display.
    pub email: String,
    /// Display name (for API keys: the key's name, as the contract says).
    pub name: String,
    /// Groups (always a list on the wire, never null).
    pub groups: Vec<String>,
    /// Admins see and manage everything.
    pub is_admin: bool,
    /// The sandbox a scoped API key is bound to.
    pub sandbox_id: Option<String>,
    /// The action groups of a scoped API key.
    pub action_groups: Option<Vec<String>>,
}

impl Identity {
    /// The fixed identity of `--dev-auth` (contract §2.1).
    pub fn dev_user() -> Self {
        Self {
            sub: "dev-user".into(),
            email: "dev@agenttier.local".into(),
            name: "Dev User".into(),
            groups: vec!["agenttier-admins".into()],
            is_admin: true,
            sandbox_id: None,
            action_groups: None,
        }
    }

    /// The owner record written into a sandbox this identity creates.
    pub fn as_created_by(&self) -> CreatedBy {
        CreatedBy {
            sub: self.sub.clone(),
            email: Some(self.email.clone()).filter(|e| !e.is_empty()),
            display_name: Some(self.name.clone()).filter(|n| !n.is_empty()),
        }
    }

    /// Owner or admin (contract "owner/admin").
    pub fn owns(&self, sandbox: &Sandbox) -> bool {
        self.is_admin
            || sandbox
                .spec
                .created_by
                .as_ref()
                .is_some_and(|c| c.sub == self.sub)
    }

    /// Owner, admin, or a user/group the sandbox is shared with (GET and the terminal).
    pub fn can_view(&self, sandbox: &Sandbox) -> bool {
        if self.owns(sandbox) {
            return true;
        }
        let Some(sharing) = &sandbox.spec.sharing else {
            return false;
        };
        sharing
            .users
            .iter()
            .any(|u| u.identity == self.sub || (!self.email.is_empty() && u.identity == self.email))
            || sharing
                .groups
                .iter()
                .any(|g| self.groups.contains(&g.identity))
    }
}
