//! Automatic stops: `spec.idleTimeout` (no real activity for that long) and `spec.timeout` (max
//! runtime since Running was entered), both already defaulted from the template.
//!
//! The actor keeps one deadline timer. It fires `stop_grace` before the earlier of the two
//! deadlines: the actor broadcasts [`SandboxNotice::StopPending`] (terminal sessions warn their
//! users) and records `StopPending`; at the deadline it stops the sandbox, keeping the workspace
//! (`IdleTimeout` / `MaxRuntimeReached`). Activity during an idle stop's grace window postpones
//! the stop (`StopPostponed`); nothing postpones the max runtime. Activity before any warning
//! only moves the idle deadline, which the timer notices when it fires.

use std::time::{Duration, Instant};

use agenttier_crds::duration::parse_go_duration;
use agenttier_crds::{SandboxPhase, SandboxSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::Result;
use crate::store::EventType;

use super::actor::SandboxState;
use super::harness::Hook;
use super::messages::SandboxMsg;
use super::status::CONTROLLER;
use super::timings::human;
use super::{SandboxNotice, StopReason, runtime_id};

/// The automatic-stop limits of one run; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunLimits {
    /// Stop after this long without activity.
    pub idle: Option<Duration>,
    /// Stop after this long Running.
    pub max_runtime: Option<Duration>,
}

impl RunLimits {
    /// The limits of an effective spec; absent or zero is unlimited (contract §7.1).
    pub fn from_spec(spec: &SandboxSpec) -> std::result::Result<Self, String> {
        let parse = |field: &str, value: &Option<String>| {
            value
                .as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| parse_go_duration(v).map_err(|e| format!("{field}: {e}")))
                .transpose()
                .map(|d| d.filter(|d| !d.is_zero()))
        };
        Ok(Self {
            idle: parse("idleTimeout", &spec.idle_timeout)?,
            max_runtime: parse("timeout", &spec.timeout)?,
        })
    }
}

/// An announced automatic stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingStop {
    /// Idle timeout or max runtime.
    pub reason: StopReason,
    /// When listeners were warned; activity after this postpones an idle stop.
    pub announced_at: Instant,
    /// When the sandbox stops unless postponed.
    pub stop_at: Instant,
}

/// How long ago a stored time was (zero for a time in the future).
pub fn elapsed_since(time: &Time) -> Duration {
    let millis = Timestamp::now().as_millisecond() - time.0.as_millisecond();
    Duration::from_millis(millis.max(0) as u64)
}

/// The instant a stored time corresponds to, for timers that must survive a server restart.
pub fn instant_of(time: Option<&Time>) -> Option<Instant> {
    let now = Instant::now();
    Some(now.checked_sub(elapsed_since(time?)).unwrap_or(now))
}

impl SandboxState {
    /// The earlier of the idle and max-runtime deadlines of the current run.
    fn next_deadline(&self) -> Option<(Instant, StopReason)> {
        let max = self
            .limits
            .max_runtime
            .map(|m| (self.running_since + m, StopReason::MaxRuntime));
        let idle = self
            .limits
            .idle
            .map(|i| (self.last_activity + i, StopReason::IdleTimeout));
        match (max, idle) {
            (Some(m), Some(i)) => Some(if m.0 <= i.0 { m } else { i }),
            (m, i) => m.or(i),
        }
    }

    /// (Re)arms the deadline timer: at the pending stop, or at the next warning.
    pub(super) fn arm_deadline(&mut self) {
        if let Some(timer) = self.timers.deadline.take() {
            timer.abort();
        }
        let now = Instant::now();
        let wake = match (&self.pending_stop, self.next_deadline()) {
            (Some(pending), _) => pending.stop_at,
            (None, Some((at, _))) => at.checked_sub(self.deps.timings.stop_grace).unwrap_or(now),
            (None, None) => return,
        };
        let run = self.run;
        self.timers.deadline = Some(
            self.myself
                .send_after(wake.saturating_duration_since(now), move || {
                    SandboxMsg::Deadline { run }
                }),
        );
    }

    /// The deadline timer fired: warn, postpone, stop, or (activity moved the deadline) wait.
    pub(super) async fn deadline(&mut self, run: u64) -> Result<()> {
        if run != self.run || self.phase() != Some(SandboxPhase::Running) {
            return Ok(());
        }
        self.timers.deadline = None;
        let now = Instant::now();
        if let Some(pending) = self.pending_stop {
            if now < pending.stop_at {
                self.arm_deadline();
                return Ok(());
            }
            if pending.reason == StopReason::IdleTimeout
                && self.last_activity > pending.announced_at
            {
                self.pending_stop = None;
                self.event(
                    "StopPostponed",
                    EventType::Normal,
                    "Activity during the grace window postponed the idle stop",
                    CONTROLLER,
                )
                .await?;
                self.arm_deadline();
                return Ok(());
            }
            return self.auto_stop(pending.reason).await;
        }
        let Some((at, reason)) = self.next_deadline() else {
            return Ok(());
        };
        if now + self.deps.timings.stop_grace >= at {
            let grace = at.saturating_duration_since(now);
            self.pending_stop = Some(PendingStop {
                reason,
                announced_at: now,
                stop_at: at,
            });
            let _ = self.deps.notices.send(SandboxNotice::StopPending {
                key: self.key.clone(),
                reason,
                grace,
            });
            let what = match reason {
                StopReason::MaxRuntime => "Max runtime reached",
                _ => "Idle timeout",
            };
            let message = match reason {
                StopReason::IdleTimeout => {
                    format!(
                        "{what}: stopping in {} unless there is activity",
                        human(grace)
                    )
                }
                _ => format!("{what}: stopping in {}", human(grace)),
            };
            self.event("StopPending", EventType::Normal, message, CONTROLLER)
                .await?;
        }
        self.arm_deadline();
        Ok(())
    }

    /// Stops the sandbox for `reason`, keeping its workspace.
    async fn auto_stop(&mut self, reason: StopReason) -> Result<()> {
        let now = Instant::now();
        let (event_reason, message, detail) = match reason {
            StopReason::MaxRuntime => (
                "MaxRuntimeReached",
                "Max runtime exceeded",
                format!(
                    "Running for {}",
                    human(round(now.duration_since(self.running_since)))
                ),
            ),
            _ => (
                "IdleTimeout",
                "Idle timeout exceeded",
                format!(
                    "Idle for {}",
                    human(round(now.duration_since(self.last_activity)))
                ),
            ),
        };
        self.leave_running();
        let setup = self.setup.clone();
        if reason == StopReason::IdleTimeout {
            self.run_hook(&setup, Hook::Idle).await?;
        }
        self.run_hook(&setup, Hook::Stop).await?;
        self.deps.runtime.stop(&runtime_id(&self.sandbox)).await?;
        let event = (event_reason, EventType::Normal, detail);
        self.transition(SandboxPhase::Stopped, message, event, CONTROLLER, |s| {
            s.pod_name = None;
            s.started_at = None;
        })
        .await?;
        let _ = self.deps.notices.send(SandboxNotice::Stopped {
            key: self.key.clone(),
            reason,
        });
        Ok(())
    }
}

/// Whole seconds above a second, whole milliseconds below: event text, not a measurement.
fn round(d: Duration) -> Duration {
    if d >= Duration::from_secs(1) {
        Duration::from_secs(d.as_secs())
    } else {
        Duration::from_millis(d.as_millis() as u64)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_from_the_spec() {
        let spec = SandboxSpec {
            idle_timeout: Some("30m".into()),
            timeout: Some("0s".into()),
            ..Default::default()
        };
        assert_eq!(
            RunLimits::from_spec(&spec),
            Ok(RunLimits {
                idle: Some(Duration::from_secs(1800)),
                max_runtime: None,
            })
        );
        let bad = SandboxSpec {
            timeout: Some("soon".into()),
            ..Default::default()
        };
        assert!(
            RunLimits::from_spec(&bad)
                .unwrap_err()
                .starts_with("timeout:")
        );
        assert_eq!(
            RunLimits::from_spec(&SandboxSpec::default()),
            Ok(RunLimits::default())
        );
    }
}
