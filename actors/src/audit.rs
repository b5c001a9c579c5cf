//! The audit trail: every user action on a sandbox (create, stop, resume, clone, delete, exec,
//! terminal sessions, port forwards, credential use, sharing, backups) becomes an event in the
//! store beside the transitions the sandbox actors record, with who did it, when, a reason and a
//! message. This module owns the names of those actions, the helper every component records them
//! with, the query behind `GET /api/v1/audit/events`, and the retention pruner.
//!
//! Timestamps are written as RFC 3339 UTC with exactly nine fractional digits, so the store can
//! compare them as strings and time-range filters are exact.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::sandbox::SandboxKey;
use crate::store::{EventFilter, EventRecord, EventType, Store};
use crate::{Error, Result};

/// The largest page `query` returns.
pub const MAX_PAGE: usize = 1000;
/// The page size when the caller names none.
pub const DEFAULT_PAGE: usize = 100;
/// The longest command text kept in an `exec` audit message.
const MAX_COMMAND_CHARS: usize = 512;

/// A user action, with the event reason it is recorded under. `?action=` of the audit API takes
/// the action's name (`create`, `terminal-open`, …) or any event reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// A sandbox was created (REST or CLI).
    Create,
    /// A user stopped a sandbox.
    Stop,
    /// A user resumed a sandbox.
    Resume,
    /// A sandbox was cloned (recorded on the clone).
    Clone,
    /// A sandbox was restored from a backup (recorded on the new sandbox).
    Restore,
    /// A user deleted a sandbox.
    Delete,
    /// A command ran through exec.
    Exec,
    /// A terminal session was opened.
    TerminalOpen,
    /// A terminal session was closed.
    TerminalClose,
    /// A port was forwarded.
    PortForward,
    /// A port forward was removed.
    PortUnforward,
    /// A credential was handed to a sandbox session.
    CredentialUse,
    /// The sandbox was shared with a user, a group or a link.
    Share,
    /// A share was revoked.
    Unshare,
    /// A backup (point-in-time copy of the workspace) was taken.
    Backup,
    /// A backup was deleted.
    BackupDelete,
}

impl AuditAction {
    /// Every action, for listings and validation.
    pub const ALL: [Self; 16] = [
        Self::Create,
        Self::Stop,
        Self::Resume,
        Self::Clone,
        Self::Restore,
        Self::Delete,
        Self::Exec,
        Self::TerminalOpen,
        Self::TerminalClose,
        Self::PortForward,
        Self::PortUnforward,
        Self::CredentialUse,
        Self::Share,
        Self::Unshare,
        Self::Backup,
        Self::BackupDelete,
    ];

    /// The event reason the action is stored under. Stop, resume and delete keep the reasons
    /// their transitions always had (`Stopped`, `Resuming`, `Deleting`); backups and sharing use
    /// the contract's (§8.6).
    pub fn reason(self) -> &'static str {
        match self {
            Self::Create => "Created",
            Self::Stop => "Stopped",
            Self::Resume => "Resuming",
            Self::Clone => "Cloned",
            Self::Restore => "Restored",
            Self::Delete => "Deleting",
            Self::Exec => "CommandExecuted",
            Self::TerminalOpen => "TerminalOpened",
            Self::TerminalClose => "TerminalClosed",
            Self::PortForward => "PortForwarded",
            Self::PortUnforward => "PortForwardRemoved",
            Self::CredentialUse => "CredentialUsed",
            Self::Share => "ShareGranted",
            Self::Unshare => "ShareRevoked",
            Self::Backup => "BackupCreated",
            Self::BackupDelete => "BackupPruned",
        }
    }

    /// The name `?action=` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Stop => "stop",
            Self::Resume => "resume",
            Self::Clone => "clone",
            Self::Restore => "restore",
            Self::Delete => "delete",
            Self::Exec => "exec",
            Self::TerminalOpen => "terminal-open",
            Self::TerminalClose => "terminal-close",
            Self::PortForward => "port-forward",
            Self::PortUnforward => "port-unforward",
            Self::CredentialUse => "credential-use",
            Self::Share => "share",
            Self::Unshare => "unshare",
            Self::Backup => "backup",
            Self::BackupDelete => "backup-delete",
        }
    }

    /// The action called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// Now in the audit trail's fixed-width format.
pub fn timestamp_now() -> String {
    format_timestamp(Timestamp::now())
}

/// A time in the audit trail's format: RFC 3339 UTC with nine fractional digits.
pub fn format_timestamp(t: Timestamp) -> String {
    format!("{t:.9}")
}

/// Parses an RFC 3339 time from a client (any offset, any precision) into the stored format.
pub fn parse_time(field: &str, value: &str) -> Result<String> {
    value
        .parse::<Timestamp>()
        .map(format_timestamp)
        .map_err(|e| {
            Error::Invalid(format!(
                "invalid {field} {value:?}: not an RFC 3339 time: {e}"
            ))
        })
}

/// Records `action` on a sandbox, done by `actor` (a user's subject). The message says what
/// happened in words (`Opened terminal session 3f…`, `Forwarded port 8080`).
pub async fn record(
    store: &dyn Store,
    sandbox: &SandboxKey,
    action: AuditAction,
    actor: &str,
    message: impl Into<String>,
) -> Result<()> {
    store
        .append_event(event(sandbox, action, actor, message))
        .await
        .map_err(Error::from)
}

/// The event [`record`] stores, for callers that batch or defer the write.
pub fn event(
    sandbox: &SandboxKey,
    action: AuditAction,
    actor: &str,
    message: impl Into<String>,
) -> EventRecord {
    EventRecord {
        id: 0,
        timestamp: timestamp_now(),
        namespace: sandbox.namespace.clone(),
        object_kind: "Sandbox".to_string(),
        object_name: sandbox.name.clone(),
        reason: action.reason().to_string(),
        event_type: EventType::Normal,
        message: message.into(),
        actor: if actor.is_empty() {
            "unknown".to_string()
        } else {
            actor.to_string()
        },
    }
}

/// The message of an exec audit event: the command, cut to a readable length.
pub fn exec_message(command: &str) -> String {
    let mut text: String = command.chars().take(MAX_COMMAND_CHARS).collect();
    if text.len() < command.len() {
        text.push('…');
    }
    format!("Ran command: {text}")
}

/// The filters of `GET /api/v1/audit/events`; every one optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// An action name ([`AuditAction::name`]) or an event reason.
    pub action: Option<String>,
    /// The subject of whoever acted (`agenttier-controller` for the controller).
    pub user: Option<String>,
    /// The sandbox's name.
    pub sandbox: Option<String>,
    /// The sandbox's namespace.
    pub namespace: Option<String>,
    /// RFC 3339: only events at or after this time.
    pub since: Option<String>,
    /// RFC 3339: only events before this time.
    pub until: Option<String>,
    /// Page size (default 100, at most 1000).
    pub limit: Option<usize>,
    /// The `next` value of the previous page.
    pub cursor: Option<String>,
}

/// One page of audit events, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditPage {
    /// The events.
    pub events: Vec<EventRecord>,
    /// Pass as `cursor` to get the next (older) page; `None` on the last page.
    pub next: Option<String>,
}

impl AuditQuery {
    /// The store filter this query means; a malformed value is `Error::Invalid`.
    pub fn to_filter(&self) -> Result<EventFilter> {
        let non_empty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let reason = non_empty(&self.action).map(|a| match AuditAction::from_name(&a) {
            Some(action) => action.reason().to_string(),
            None => a,
        });
        if let Some(reason) = &reason
            && !reason
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(Error::Invalid(format!(
                "invalid action {reason:?}: use an action name such as create or terminal-open, \
                 or an event reason such as AutoRestarted"
            )));
        }
        let since = non_empty(&self.since)
            .map(|v| parse_time("since", &v))
            .transpose()?;
        let until = non_empty(&self.until)
            .map(|v| parse_time("until", &v))
            .transpose()?;
        if let (Some(since), Some(until)) = (&since, &until)
            && since > until
        {
            return Err(Error::Invalid("since must not be after until".into()));
        }
        let limit = match self.limit {
            None => DEFAULT_PAGE,
            Some(0) => return Err(Error::Invalid("limit must be at least 1".into())),
            Some(n) if n > MAX_PAGE => {
                return Err(Error::Invalid(format!("limit must be at most {MAX_PAGE}")));
            }
            Some(n) => n,
        };
        let before_id = non_empty(&self.cursor)
            .map(|c| {
                c.parse::<i64>()
                    .ok()
                    .filter(|id| *id > 0)
                    .ok_or_else(|| Error::Invalid(format!("invalid cursor {c:?}")))
            })
            .transpose()?;
        Ok(EventFilter {
            namespace: non_empty(&self.namespace),
            object_name: non_empty(&self.sandbox),
            reason,
            actor: non_empty(&self.user),
            since,
            until,
            before_id,
            limit: Some(limit),
        })
    }
}

/// Runs an audit query against the store.
pub async fn query(store: &dyn Store, query: &AuditQuery) -> Result<AuditPage> {
    let filter = query.to_filter()?;
    let limit = filter.limit.unwrap_or(DEFAULT_PAGE);
    let events = store.list_events(&filter).await?;
    let next = (events.len() == limit)
        .then(|| events.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(AuditPage { events, next })
}

/// Deletes events older than `retention`; returns how many went.
pub async fn prune(store: &dyn Store, retention: Duration) -> Result<u64> {
    let retention = k8s_openapi::jiff::SignedDuration::try_from(retention)
        .map_err(|e| Error::Invalid(format!("retention out of range: {e}")))?;
    let cutoff = Timestamp::now()
        .checked_sub(retention)
        .unwrap_or(Timestamp::MIN);
    Ok(store.prune_events(&format_timestamp(cutoff)).await?)
}

/// Prunes every `interval`, first right away, until the task is aborted. Failures are logged and
/// retried at the next tick: losing a prune only keeps events longer.
pub fn spawn_pruner(
    store: Arc<dyn Store>,
    retention: Duration,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match prune(store.as_ref(), retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(pruned = n, "audit events past retention deleted"),
                Err(e) => tracing::warn!(error = %e, "audit retention prune failed"),
            }
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    fn key(name: &str) -> SandboxKey {
        SandboxKey::new("default", name)
    }

    #[test]
    fn action_names_round_trip_and_reasons_are_distinct() {
        let mut reasons = std::collections::HashSet::new();
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::from_name(action.name()), Some(action));
            assert!(reasons.insert(action.reason()), "{action:?}");
        }
        assert_eq!(AuditAction::from_name("nope"), None);
    }

    #[test]
    fn times_are_fixed_width_and_compare_as_strings() {
        let a = parse_time("since", "2025-01-02T03:04:05Z").unwrap();
        let b = parse_time("since", "2025-01-02T04:04:05.5+01:00").unwrap();
        assert_eq!(a, "2025-01-02T03:04:05.000000000Z");
        assert_eq!(b, "2025-01-02T03:04:05.500000000Z");
        assert!(a < b);
        assert_eq!(timestamp_now().len(), a.len());
        assert!(matches!(
            parse_time("since", "yesterday"),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn queries_validate_their_input() {
        let bad = [
            AuditQuery {
                limit: Some(0),
                ..Default::default()
            },
            AuditQuery {
                limit: Some(MAX_PAGE + 1),
                ..Default::default()
            },
            AuditQuery {
                cursor: Some("abc".into()),
                ..Default::default()
            },
            AuditQuery {
                action: Some("x'; drop".into()),
                ..Default::default()
            },
            AuditQuery {
                since: Some("2025-01-02T00:00:00Z".into()),
                until: Some("2025-01-01T00:00:00Z".into()),
                ..Default::default()
            },
        ];
        for query in bad {
            assert!(
                matches!(query.to_filter(), Err(Error::Invalid(_))),
                "{query:?}"
            );
        }
        let filter = AuditQuery {
            action: Some("terminal-open".into()),
            ..Default::default()
        }
        .to_filter()
        .unwrap();
        assert_eq!(filter.reason.as_deref(), Some("TerminalOpened"));
        let filter = AuditQuery {
            action: Some("AutoRestarted".into()),
            ..Default::default()
        }
        .to_filter()
        .unwrap();
        assert_eq!(filter.reason.as_deref(), Some("AutoRestarted"));
    }

    #[tokio::test]
    async fn filters_paginate_and_prune() {
        let store = SqliteStore::in_memory().unwrap();
        record(&store, &key("a"), AuditAction::Create, "alice", "created")
            .await
            .unwrap();
        record(&store, &key("b"), AuditAction::Create, "bob", "created")
            .await
            .unwrap();
        let middle = timestamp_now();
        for i in 0..3 {
            record(
                &store,
                &key("a"),
                AuditAction::Exec,
                "alice",
                exec_message(&format!("echo {i}")),
            )
            .await
            .unwrap();
        }
        let names = |page: &AuditPage| -> Vec<(String, String)> {
            page.events
                .iter()
                .map(|e| (e.object_name.clone(), e.reason.clone()))
                .collect()
        };
        let creates = query(
            &store,
            &AuditQuery {
                action: Some("create".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            names(&creates),
            [
                ("b".into(), "Created".into()),
                ("a".into(), "Created".into())
            ]
        );
        let bob = query(
            &store,
            &AuditQuery {
                user: Some("bob".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(bob.events.len(), 1);
        let before = query(
            &store,
            &AuditQuery {
                until: Some(middle.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(before.events.len(), 2);
        let after = query(
            &store,
            &AuditQuery {
                since: Some(middle),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(after.events.len(), 3);

        let first = query(
            &store,
            &AuditQuery {
                limit: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(first.events.len(), 2);
        let second = query(
            &store,
            &AuditQuery {
                limit: Some(2),
                cursor: first.next.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let third = query(
            &store,
            &AuditQuery {
                limit: Some(2),
                cursor: second.next.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!((second.events.len(), third.events.len()), (2, 1));
        assert_eq!(third.next, None);
        let mut ids: Vec<i64> = [&first, &second, &third]
            .iter()
            .flat_map(|p| p.events.iter().map(|e| e.id))
            .collect();
        ids.dedup();
        assert_eq!(ids.len(), 5, "pages neither overlap nor skip");

        assert_eq!(prune(&store, Duration::from_secs(3600)).await.unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(prune(&store, Duration::from_millis(10)).await.unwrap(), 5);
        let left = query(&store, &AuditQuery::default()).await.unwrap();
        assert!(left.events.is_empty());
    }
}
