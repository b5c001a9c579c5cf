//! `GET /api/v1/audit/events` (admin, contract §4.18): the audit trail of transitions and user
//! actions, newest first. Beyond the contract's item shape it adds `actor`, `type` and `id`, and
//! takes filters (`?action=`, `?user=`, `?sandbox=`, `?namespace=`, `?since=`, `?until=`) and
//! pagination (`?limit=`, and `?cursor=` set to the previous page's `next`). `events` is always an
//! array (the contract's `null` is a quirk).

use std::collections::HashMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use agenttier_actors::audit::{self, AuditQuery};
use agenttier_actors::store::EventRecord;

use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;
use crate::state::AppState;

/// The routes of this file.
pub fn router() -> Router<AppState> {
    Router::new().route("/audit/events", get(events))
}

/// The query of `GET /audit/events`.
#[derive(Deserialize, Default)]
pub struct AuditParams {
    action: Option<String>,
    user: Option<String>,
    sandbox: Option<String>,
    namespace: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// GET `/audit/events` (admin).
pub async fn events(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> ApiResult<Json<Value>> {
    if !identity.is_admin {
        return Err(ApiError::Forbidden("admin_required".into()));
    }
    let query = AuditQuery {
        action: params.action,
        user: params.user,
        sandbox: params.sandbox,
        namespace: params.namespace,
        since: params.since,
        until: params.until,
        limit: params.limit,
        cursor: params.cursor,
    };
    let page = audit::query(state.control.store.as_ref(), &query).await?;
    let emails = owner_emails(&state);
    let events: Vec<Value> = page.events.iter().map(|e| item(e, &emails)).collect();
    let mut body = json!({ "events": events });
    if let Some(next) = page.next {
        body["next"] = json!(next);
    }
    Ok(Json(body))
}

/// Subject → email of every sandbox owner the read model knows, so items can name the user's
/// email where the events only record the subject.
fn owner_emails(state: &AppState) -> HashMap<String, String> {
    state
        .control
        .list()
        .iter()
        .filter_map(|s| s.spec.created_by.clone())
        .filter_map(|c| Some((c.sub, c.email.filter(|e| !e.is_empty())?)))
        .collect()
}

/// One event in the contract's shape plus `actor`, `type` and `id`.
fn item(event: &EventRecord, emails: &HashMap<String, String>) -> Value {
    json!({
        "id": event.id,
        "timestamp": event.timestamp,
        "eventType": event.reason,
        "type": event.event_type.as_str(),
        "sandboxId": event.object_name,
        "sandboxName": event.object_name,
        "namespace": event.namespace,
        "actor": event.actor,
        "userEmail": emails.get(&event.actor).cloned().unwrap_or_default(),
        "details": { "reason": event.message },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use agenttier_actors::store::EventType;

    use super::*;

    #[test]
    fn items_have_the_contract_shape() {
        let event = EventRecord {
            id: 7,
            timestamp: "2025-01-02T03:04:05.000000000Z".into(),
            namespace: "default".into(),
            object_kind: "Sandbox".into(),
            object_name: "a".into(),
            reason: "CommandExecuted".into(),
            event_type: EventType::Normal,
            message: "Ran command: ls".into(),
            actor: "alice".into(),
        };
        let emails = HashMap::from([("alice".to_string(), "alice@example.com".to_string())]);
        assert_eq!(
            item(&event, &emails),
            json!({
                "id": 7,
                "timestamp": "2025-01-02T03:04:05.000000000Z",
                "eventType": "CommandExecuted",
                "type": "Normal",
                "sandboxId": "a",
                "sandboxName": "a",
                "namespace": "default",
                "actor": "alice",
                "userEmail": "alice@example.com",
                "details": {"reason": "Ran command: ls"},
            })
        );
    }
}
