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

    /// Admin routes: `403 {"error":"admin_required"}` for everyone else (contract §0.1).
    pub fn require_admin(&self) -> Result<(), crate::error::ApiError> {
        if self.is_admin {
            Ok(())
        } else {
            Err(crate::error::ApiError::Forbidden("admin_required".into()))
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

    /// How much this caller may do with `sandbox`: admins and the owner everything; users and
    /// groups it is shared with what their share level allows (the highest of their shares).
    pub fn access(&self, sandbox: &Sandbox) -> Access {
        if self.owns(sandbox) {
            return Access::Owner;
        }
        let Some(sharing) = &sandbox.spec.sharing else {
            return Access::None;
        };
        let users = sharing.users.iter().filter(|u| {
            u.identity == self.sub || (!self.email.is_empty() && u.identity == self.email)
        });
        let groups = sharing
            .groups
            .iter()
            .filter(|g| self.groups.contains(&g.identity));
        users
            .chain(groups)
            .map(|entry| Access::from_level(&entry.level))
            .max()
            .unwrap_or(Access::None)
    }

    /// Owner, admin, or a user/group the sandbox is shared with (GET and the terminal).
    pub fn can_view(&self, sandbox: &Sandbox) -> bool {
        self.access(sandbox) >= Access::Viewer
    }

    /// May read the sandbox's files and watch its terminal: any share level.
    pub fn can_read(&self, sandbox: &Sandbox) -> bool {
        self.access(sandbox) >= Access::Viewer
    }

    /// May write files and type into the terminal: collaborators, the owner and admins.
    pub fn can_write(&self, sandbox: &Sandbox) -> bool {
        self.access(sandbox) >= Access::Collaborator
    }

    /// May run commands (`/exec`): collaborators, the owner and admins.
    pub fn can_exec(&self, sandbox: &Sandbox) -> bool {
        self.access(sandbox) >= Access::Collaborator
    }
}

/// A caller's rights on one sandbox, ordered from none to all. Neither share level may delete,
/// stop, resume, clone, change or reshare the sandbox: those need [`Access::Owner`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Not theirs and not shared with them (the contract's 404).
    None,
    /// `viewer`: get the sandbox, read files, watch the terminal.
    Viewer,
    /// `collaborator`: also exec, write files and type into the terminal.
    Collaborator,
    /// The owner or an admin.
    Owner,
}

/// The share level that grants read access.
pub const VIEWER: &str = "viewer";
/// The share level that also grants exec and writes.
pub const COLLABORATOR: &str = "collaborator";

impl Access {
    /// The access a stored share level grants; an unknown level grants the least.
    pub fn from_level(level: &str) -> Self {
        if level == COLLABORATOR {
            Self::Collaborator
        } else {
            Self::Viewer
        }
    }
}

#[cfg(test)]
mod tests {
    use agenttier_crds::{ShareEntry, SharingSpec};

    use super::*;

    fn user(sub: &str, email: &str, groups: &[&str]) -> Identity {
        Identity {
            sub: sub.into(),
            email: email.into(),
            name: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            is_admin: false,
            sandbox_id: None,
            action_groups: None,
        }
    }

    #[test]
    fn share_levels_grant_what_they_say() {
        let mut sandbox = Sandbox::new("s", Default::default());
        sandbox.spec.created_by = Some(CreatedBy {
            sub: "owner".into(),
            ..CreatedBy::default()
        });
        sandbox.spec.sharing = Some(SharingSpec {
            users: vec![
                ShareEntry {
                    identity: "viewer@x".into(),
                    level: VIEWER.into(),
                },
                ShareEntry {
                    identity: "collab".into(),
                    level: COLLABORATOR.into(),
                },
            ],
            groups: vec![ShareEntry {
                identity: "team".into(),
                level: COLLABORATOR.into(),
            }],
            share_links: Vec::new(),
        });
        let owner = user("owner", "", &[]);
        let viewer = user("v", "viewer@x", &[]);
        let collaborator = user("collab", "", &[]);
        let in_group = user("g", "viewer@x", &["team"]);
        let stranger = user("s", "", &["other"]);
        assert_eq!(owner.access(&sandbox), Access::Owner);
        assert_eq!(viewer.access(&sandbox), Access::Viewer);
        assert!(
            viewer.can_read(&sandbox) && !viewer.can_write(&sandbox) && !viewer.can_exec(&sandbox)
        );
        assert!(collaborator.can_exec(&sandbox) && collaborator.can_write(&sandbox));
        assert!(!collaborator.owns(&sandbox));
        assert_eq!(
            in_group.access(&sandbox),
            Access::Collaborator,
            "the highest share wins"
        );
        assert_eq!(stranger.access(&sandbox), Access::None);
        assert!(!stranger.can_view(&sandbox));
    }
}
