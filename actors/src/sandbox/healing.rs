//! Self-healing: a Running sandbox is probed every `health_interval`; when its processes are
//! gone (killed, OOM, a dead agent) or a start fails transiently, the sandbox goes to Error with
//! `AutoRestarted` and is started again on the same workspace after 10/20/40/80/160 s
//! ([`super::SandboxTimings::restart_schedule`]). After `max_restarts` attempts it stays in Error
//! (`RestartLimitExceeded`); after `stable_period` up, the count goes back to 0. Messages keep
//! the contract's wording (`waiting <d> before restart attempt n/5`) so clients that parse it
//! still work.

use std::time::Duration;

use agenttier_crds::SandboxPhase;

use crate::Result;
use crate::runtime::Liveness;
use crate::store::EventType;

use super::actor::SandboxState;
use super::messages::SandboxMsg;
use super::status::{CONTROLLER, READY};
use super::timings::human;
use super::{SandboxNotice, StopReason, runtime_id};

/// The condition reason (and event reason) of a sandbox waiting out a restart backoff.
pub const AUTO_RESTARTED: &str = "AutoRestarted";

impl SandboxState {
    /// Arms the next health probe of the current run.
    pub(super) fn arm_health(&mut self) {
        let run = self.run;
        self.timers.health = Some(
            self.myself
                .send_after(self.deps.timings.health_interval, move || {
                    SandboxMsg::HealthCheck { run }
                }),
        );
    }

    /// Probes the runtime from a task (a probe may wait on a silent agent); the answer comes back
    /// as [`SandboxMsg::Probed`].
    pub(super) fn health_check(&mut self, run: u64) {
        if run != self.run || self.probing || self.phase() != Some(SandboxPhase::Running) {
            return;
        }
        self.probing = true;
        let runtime = self.deps.runtime.clone();
        let id = runtime_id(&self.sandbox);
        let myself = self.myself.clone();
        tokio::spawn(async move {
            let outcome = runtime.probe(&id).await.map_err(|e| e.to_string());
            let _ = myself.cast(SandboxMsg::Probed { run, outcome });
        });
    }

    /// Acts on a probe: alive arms the next one, gone is a crash. A probe that failed proves
    /// nothing, so it is retried at the next interval.
    pub(super) async fn probed(
        &mut self,
        run: u64,
        outcome: std::result::Result<Liveness, String>,
    ) -> Result<()> {
        if run != self.run || self.phase() != Some(SandboxPhase::Running) {
            return Ok(());
        }
        self.probing = false;
        match outcome {
            Ok(Liveness::Alive(_)) => {
                self.arm_health();
                Ok(())
            }
            Ok(Liveness::Gone) => {
                self.crashed("its processes exited or its agent stopped answering")
                    .await
            }
            Err(e) => {
                tracing::warn!(sandbox = %self.key, error = %e, "health probe failed; retrying");
                self.arm_health();
                Ok(())
            }
        }
    }

    /// A transient failure: clean up what is left, then either schedule the next restart
    /// attempt or, past the limit, give up.
    pub(super) async fn crashed(&mut self, detail: &str) -> Result<()> {
        let was_running = self.phase() == Some(SandboxPhase::Running);
        self.leave_running();
        if let Err(e) = self.deps.runtime.stop(&runtime_id(&self.sandbox)).await {
            tracing::warn!(sandbox = %self.key, error = %e, "cleaning up after a crash failed");
        }
        let attempt = self.restart_count() + 1;
        let max = self.deps.timings.max_restarts;
        match self.deps.timings.restart_delay(attempt) {
            None => {
                let message = format!("Restart limit exceeded ({max} attempts): {detail}");
                let event = ("RestartLimitExceeded", EventType::Warning, message.clone());
                self.transition(SandboxPhase::Error, &message, event, CONTROLLER, |s| {
                    s.pod_name = None;
                    s.started_at = None;
                })
                .await?;
            }
            Some(delay) => {
                let message = format!(
                    "Sandbox failed ({detail}), waiting {} before restart attempt {attempt}/{max}",
                    human(delay)
                );
                let event = (AUTO_RESTARTED, EventType::Warning, message.clone());
                self.transition(SandboxPhase::Error, &message, event, CONTROLLER, |s| {
                    s.restart_count = Some(attempt as i32);
                    s.pod_name = None;
                    s.started_at = None;
                })
                .await?;
                self.arm_restart(delay);
            }
        }
        if was_running {
            let _ = self.deps.notices.send(SandboxNotice::Stopped {
                key: self.key.clone(),
                reason: StopReason::Failure,
            });
        }
        Ok(())
    }

    fn arm_restart(&mut self, delay: Duration) {
        if let Some(timer) = self.timers.restart.take() {
            timer.abort();
        }
        let run = self.run;
        self.timers.restart = Some(
            self.myself
                .send_after(delay, move || SandboxMsg::RestartAttempt { run }),
        );
    }

    /// The backoff elapsed: start again on the same workspace.
    pub(super) async fn restart_attempt(&mut self, run: u64) -> Result<()> {
        if run != self.run || self.phase() != Some(SandboxPhase::Error) {
            return Ok(());
        }
        self.timers.restart = None;
        let attempt = self.restart_count();
        let delay = self.deps.timings.restart_delay(attempt).unwrap_or_default();
        let event = (
            "Restarting",
            EventType::Normal,
            format!(
                "Backoff window elapsed ({}); restarting on the same workspace (attempt {attempt}/{})",
                human(delay),
                self.deps.timings.max_restarts
            ),
        );
        self.transition(
            SandboxPhase::Creating,
            "Restarting",
            event,
            CONTROLLER,
            |_| {},
        )
        .await?;
        self.start_again().await
    }

    /// The sandbox stayed up for the stable period: earlier crashes no longer count.
    pub(super) async fn stable_run(&mut self, run: u64) -> Result<()> {
        if run != self.run || self.phase() != Some(SandboxPhase::Running) {
            return Ok(());
        }
        self.timers.stable = None;
        let count = self.restart_count();
        if count == 0 {
            return Ok(());
        }
        self.save(|sandbox| {
            if let Some(status) = sandbox.status.as_mut() {
                status.restart_count = None;
            }
        })
        .await?;
        let message = format!(
            "Sandbox stayed up for {}; restart count {count} reset",
            human(self.deps.timings.stable_period)
        );
        self.event("RestartCountReset", EventType::Normal, message, CONTROLLER)
            .await
    }

    /// After a control-plane restart, a sandbox that was waiting out a backoff gets its restart
    /// timer back, for what was left of the wait.
    pub(super) fn resume_backoff(&mut self) {
        let Some(status) = self.sandbox.status.as_ref() else {
            return;
        };
        let Some(condition) = status
            .conditions
            .iter()
            .find(|c| c.type_ == READY && c.reason == AUTO_RESTARTED)
        else {
            return;
        };
        let Some(delay) = self.deps.timings.restart_delay(self.restart_count()) else {
            return;
        };
        let since = super::timeouts::elapsed_since(&condition.last_transition_time);
        self.arm_restart(delay.saturating_sub(since));
    }
}
