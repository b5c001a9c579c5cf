//! The audit trail as core/v1 Events (contract §8.6), so `kubectl describe sandbox` tells the
//! story and the Go control plane's webhook delivery reads the same objects. Each Event is named
//! with `generateName: <object>.`, count 1, first = last timestamp; the exact RFC 3339 time and
//! the actor (a user's sub or `agenttier-controller`) ride along as annotations because core
//! Events keep only whole seconds and a component name.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use crate::store::{EventFilter, EventRecord, EventType};
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use super::objects::{self, map_error};
use super::{KubernetesStore, PAGE_SIZE, events};
use crate::store::{Result, Store, StoreError};

/// Annotation with the event's RFC 3339 time at nanosecond precision.
pub const TIMESTAMP_ANNOTATION: &str = "agenttier.io/timestamp";
/// Annotation with the identity that caused the event.
pub const ACTOR_ANNOTATION: &str = "agenttier.io/actor";
/// The controller's identity and `source.component` (contract §8.6).
pub const CONTROLLER_COMPONENT: &str = "agenttier-controller";
/// `source.component` of events caused by API users (contract §8.6).
pub const ROUTER_COMPONENT: &str = "agenttier-router";
/// The API group of every kind events are about.
const GROUP_VERSION: &str = "agenttier.io/v1alpha1";

/// The core/v1 Event for a record. `uid` is the involved object's uid (what `kubectl describe`
/// matches on); cluster-scoped objects get their events in `default`, as the API requires.
pub fn to_event(record: &EventRecord, uid: Option<String>) -> Event {
    let time = record
        .timestamp
        .parse::<Timestamp>()
        .unwrap_or_else(|_| Timestamp::now());
    let namespace = if record.namespace.is_empty() {
        "default".to_string()
    } else {
        record.namespace.clone()
    };
    let component = if record.actor == CONTROLLER_COMPONENT {
        CONTROLLER_COMPONENT
    } else {
        ROUTER_COMPONENT
    };
    let annotations = BTreeMap::from([
        (TIMESTAMP_ANNOTATION.to_string(), record.timestamp.clone()),
        (ACTOR_ANNOTATION.to_string(), record.actor.clone()),
    ]);
    Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", record.object_name)),
            namespace: Some(namespace),
            annotations: Some(annotations),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some(GROUP_VERSION.to_string()),
            kind: Some(record.object_kind.clone()),
            name: Some(record.object_name.clone()),
            namespace: (!record.namespace.is_empty()).then(|| record.namespace.clone()),
            uid,
            ..Default::default()
        },
        reason: Some(record.reason.clone()),
        message: Some(record.message.clone()),
        type_: Some(record.event_type.as_str().to_string()),
        count: Some(1),
        first_timestamp: Some(Time(time)),
        last_timestamp: Some(Time(time)),
        source: Some(EventSource {
            component: Some(component.to_string()),
            host: None,
        }),
        reporting_component: Some(component.to_string()),
        ..Default::default()
    }
}

/// The record of an Event, or `None` for events about other objects (Pods, Nodes, …). Events
/// written by the Go control plane (no annotations) read as they are: the time from
/// `lastTimestamp`, the actor from `source.component`; the id is the resourceVersion, which
/// grows with every write.
pub fn from_event(event: &Event) -> Option<EventRecord> {
    let involved = &event.involved_object;
    let from_agenttier = involved
        .api_version
        .as_deref()
        .is_some_and(|v| v.starts_with("agenttier.io/"));
    if !from_agenttier {
        return None;
    }
    let annotations = event.metadata.annotations.clone().unwrap_or_default();
    let timestamp = annotations
        .get(TIMESTAMP_ANNOTATION)
        .cloned()
        .or_else(|| {
            event
                .last_timestamp
                .as_ref()
                .or(event.first_timestamp.as_ref())
                .map(|t| t.0.to_string())
        })
        .or_else(|| event.event_time.as_ref().map(|t| t.0.to_string()))
        .unwrap_or_default();
    let actor = annotations
        .get(ACTOR_ANNOTATION)
        .cloned()
        .or_else(|| event.source.as_ref().and_then(|s| s.component.clone()))
        .or_else(|| event.reporting_component.clone())
        .unwrap_or_default();
    let event_type = match event.type_.as_deref() {
        Some("Warning") => EventType::Warning,
        _ => EventType::Normal,
    };
    Some(EventRecord {
        id: event
            .metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        timestamp,
        namespace: involved.namespace.clone().unwrap_or_default(),
        object_kind: involved.kind.clone().unwrap_or_default(),
        object_name: involved.name.clone().unwrap_or_default(),
        reason: event.reason.clone().unwrap_or_default(),
        event_type,
        message: event.message.clone().unwrap_or_default(),
        actor,
    })
}

/// The field selector the API can apply for a filter (name and reason); the rest is filtered by
/// [`matches`].
pub fn field_selector(filter: &EventFilter) -> String {
    let mut parts = Vec::new();
    if let Some(name) = &filter.object_name {
        parts.push(format!("involvedObject.name={name}"));
    }
    if let Some(reason) = &filter.reason {
        parts.push(format!("reason={reason}"));
    }
    parts.join(",")
}

/// Whether a record passes the parts of a filter the API cannot apply.
pub fn matches(record: &EventRecord, filter: &EventFilter) -> bool {
    let time = record.timestamp.parse::<Timestamp>().ok();
    let bound = |s: &Option<String>| s.as_deref().and_then(|s| s.parse::<Timestamp>().ok());
    filter.actor.as_ref().is_none_or(|a| &record.actor == a)
        && filter
            .object_name
            .as_ref()
            .is_none_or(|n| &record.object_name == n)
        && filter.reason.as_ref().is_none_or(|r| &record.reason == r)
        && filter
            .namespace
            .as_ref()
            .is_none_or(|n| &record.namespace == n)
        && bound(&filter.since).is_none_or(|since| time.is_some_and(|t| t >= since))
        && bound(&filter.until).is_none_or(|until| time.is_some_and(|t| t < until))
        && filter.before_id.is_none_or(|before| record.id < before)
}

/// Newest first, as the SQLite store lists them; ties broken by id.
pub fn sort_newest_first(records: &mut [EventRecord]) {
    records.sort_by(|a, b| {
        let ta = a.timestamp.parse::<Timestamp>().ok();
        let tb = b.timestamp.parse::<Timestamp>().ok();
        tb.cmp(&ta).then(b.id.cmp(&a.id))
    });
}

impl KubernetesStore {
    pub(super) async fn append_core_event(&self, event: EventRecord) -> Result<()> {
        let uid = match self.directory.uid_of(&event.namespace, &event.object_name) {
            Some(uid) => Some(uid),
            None if event.object_kind == "Sandbox" && !event.namespace.is_empty() => self
                .get("Sandbox", &event.namespace, &event.object_name)
                .await
                .ok()
                .flatten()
                .and_then(|v| v["metadata"]["uid"].as_str().map(str::to_string)),
            None => None,
        };
        let object = events::to_event(&event, uid);
        let namespace = object.metadata.namespace.clone().unwrap_or_default();
        Api::<Event>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &object)
            .await
            .map_err(|e| map_error(e, "Event", &event.object_name, None))?;
        Ok(())
    }

    pub(super) async fn list_core_events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>> {
        let api: Api<Event> = match &filter.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let mut params = ListParams::default().limit(PAGE_SIZE);
        let selector = events::field_selector(filter);
        if !selector.is_empty() {
            params = params.fields(&selector);
        }
        let mut records = Vec::new();
        loop {
            let page = api
                .list(&params)
                .await
                .map_err(|e| map_error(e, "Event", "", None))?;
            records.extend(
                page.items
                    .iter()
                    .filter_map(events::from_event)
                    .filter(|r| events::matches(r, filter)),
            );
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        events::sort_newest_first(&mut records);
        records.truncate(filter.limit.unwrap_or(100));
        Ok(records)
    }

    /// Deletes AgentTier's Events older than `before` (the apiserver's own `--event-ttl`, one
    /// hour by default, usually removes them first).
    pub(super) async fn prune_core_events(&self, before: &str) -> Result<u64> {
        let Ok(cutoff) = before.parse::<k8s_openapi::jiff::Timestamp>() else {
            return Err(StoreError::Invalid(format!(
                "{before:?} is not an RFC 3339 time"
            )));
        };
        let api: Api<Event> = Api::all(self.client.clone());
        let mut params = ListParams::default().limit(PAGE_SIZE);
        let mut deleted = 0;
        loop {
            let page = api
                .list(&params)
                .await
                .map_err(|e| map_error(e, "Event", "", None))?;
            for event in &page.items {
                let old = events::from_event(event).is_some_and(|r| {
                    r.timestamp
                        .parse::<k8s_openapi::jiff::Timestamp>()
                        .is_ok_and(|t| t < cutoff)
                });
                let (Some(ns), Some(name)) = (&event.metadata.namespace, &event.metadata.name)
                else {
                    continue;
                };
                if !old {
                    continue;
                }
                match Api::<Event>::namespaced(self.client.clone(), ns)
                    .delete(name, &DeleteParams::default())
                    .await
                {
                    Ok(_) => deleted += 1,
                    Err(e) if objects::is_not_found(&e) => {}
                    Err(e) => return Err(map_error(e, "Event", name, None)),
                }
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(actor: &str) -> EventRecord {
        EventRecord {
            id: 0,
            timestamp: "2025-01-02T03:04:05.123456789Z".into(),
            namespace: "team".into(),
            object_kind: "Sandbox".into(),
            object_name: "box".into(),
            reason: "Running".into(),
            event_type: EventType::Normal,
            message: "Sandbox is ready".into(),
            actor: actor.into(),
        }
    }

    #[test]
    fn records_round_trip_through_core_events() {
        let event = to_event(&record("alice"), Some("uid-1".into()));
        assert_eq!(event.metadata.generate_name.as_deref(), Some("box."));
        assert_eq!(event.metadata.namespace.as_deref(), Some("team"));
        assert_eq!(event.involved_object.uid.as_deref(), Some("uid-1"));
        assert_eq!(event.count, Some(1));
        assert_eq!(event.first_timestamp, event.last_timestamp);
        assert_eq!(
            event.source.as_ref().unwrap().component.as_deref(),
            Some(ROUTER_COMPONENT)
        );
        let mut stored = event.clone();
        stored.metadata.resource_version = Some("42".into());
        let back = from_event(&stored).unwrap();
        assert_eq!(
            back,
            EventRecord {
                id: 42,
                ..record("alice")
            }
        );
        let controller = to_event(&record(CONTROLLER_COMPONENT), None);
        assert_eq!(
            controller.source.unwrap().component.as_deref(),
            Some(CONTROLLER_COMPONENT)
        );
    }

    #[test]
    fn go_events_without_annotations_are_read() {
        // Through JSON, as the apiserver hands it out: core Event times have whole seconds.
        let mut event: Event =
            serde_json::from_value(serde_json::to_value(to_event(&record("x"), None)).unwrap())
                .unwrap();
        event.metadata.annotations = None;
        event.source = Some(EventSource {
            component: Some(CONTROLLER_COMPONENT.into()),
            host: None,
        });
        let back = from_event(&event).unwrap();
        assert_eq!(back.actor, CONTROLLER_COMPONENT);
        assert_eq!(back.timestamp, "2025-01-02T03:04:05Z");
        event.involved_object.api_version = Some("v1".into());
        assert!(from_event(&event).is_none(), "pod events are not ours");
    }

    #[test]
    fn cluster_scoped_objects_get_events_in_default() {
        let mut r = record("x");
        r.namespace.clear();
        r.object_kind = "ClusterSandboxTemplate".into();
        let event = to_event(&r, None);
        assert_eq!(event.metadata.namespace.as_deref(), Some("default"));
        assert!(event.involved_object.namespace.is_none());
    }

    #[test]
    fn filters_apply_client_side_parts() {
        let mut r = record("alice");
        r.id = 10;
        let f = |filter: EventFilter| matches(&r, &filter);
        assert!(f(EventFilter::default()));
        assert!(f(EventFilter {
            actor: Some("alice".into()),
            ..Default::default()
        }));
        assert!(!f(EventFilter {
            actor: Some("bob".into()),
            ..Default::default()
        }));
        assert!(f(EventFilter {
            since: Some("2025-01-02T03:04:05Z".into()),
            ..Default::default()
        }));
        assert!(!f(EventFilter {
            since: Some("2025-01-02T03:04:06Z".into()),
            ..Default::default()
        }));
        assert!(!f(EventFilter {
            until: Some("2025-01-02T03:04:05Z".into()),
            ..Default::default()
        }));
        assert!(!f(EventFilter {
            before_id: Some(10),
            ..Default::default()
        }));
        assert!(f(EventFilter {
            before_id: Some(11),
            ..Default::default()
        }));
        assert_eq!(
            field_selector(&EventFilter {
                object_name: Some("box".into()),
                reason: Some("Running".into()),
                ..Default::default()
            }),
            "involvedObject.name=box,reason=Running"
        );
    }
}
