//! Building blocks of status writes: conditions, events and the time formats.

use agenttier_crds::{SandboxPhase, SandboxStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::store::{EventRecord, EventType};

/// The identity recorded on events the controller causes by itself.
pub const CONTROLLER: &str = "agenttier-controller";

/// The condition type that says whether the sandbox serves exec and terminals.
pub const READY: &str = "Ready";

/// Now, as a Kubernetes `Time`.
pub fn now() -> Time {
    Time(Timestamp::now())
}

/// RFC 3339 with exactly nine fractional digits, the format of event timestamps: fixed width,
/// so the store's string comparisons (audit time ranges, retention) order them correctly.
pub fn now_rfc3339_nanos() -> String {
    format!("{:.9}", Timestamp::now())
}

/// Sets (or replaces) a condition; `lastTransitionTime` moves only when the status flips.
pub fn set_condition(
    status: &mut SandboxStatus,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let value = if ok { "True" } else { "False" };
    let existing = status.conditions.iter().position(|c| c.type_ == type_);
    let last_transition_time = match existing.map(|i| &status.conditions[i]) {
        Some(c) if c.status == value => c.last_transition_time.clone(),
        _ => now(),
    };
    let condition = Condition {
        type_: type_.to_string(),
        status: value.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        last_transition_time,
        observed_generation: generation,
    };
    match existing {
        Some(i) => status.conditions[i] = condition,
        None => status.conditions.push(condition),
    }
}

/// The Ready condition's reason for a phase.
pub fn ready_reason(phase: SandboxPhase) -> &'static str {
    match phase {
        SandboxPhase::Creating => "Starting",
        SandboxPhase::Running => "Running",
        SandboxPhase::Stopped => "Stopped",
        SandboxPhase::Error => "Failed",
        SandboxPhase::Deleting => "Deleting",
    }
}

/// An event about a sandbox.
pub fn sandbox_event(
    namespace: &str,
    name: &str,
    reason: &str,
    event_type: EventType,
    message: impl Into<String>,
    actor: &str,
) -> EventRecord {
    EventRecord {
        id: 0,
        timestamp: now_rfc3339_nanos(),
        namespace: namespace.to_string(),
        object_kind: "Sandbox".to_string(),
        object_name: name.to_string(),
        reason: reason.to_string(),
        event_type,
        message: message.into(),
        actor: actor.to_string(),
    }
}
