//! `SandboxTimings`: every delay a sandbox actor waits on, in one place, so `agenttier serve`
//! flags and tests can scale them (tests run the 10 s restart backoff in milliseconds).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// The timers of a sandbox actor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxTimings {
    /// How often a Running sandbox's processes are probed; a failed probe is a crash.
    pub health_interval: Duration,
    /// The first self-healing delay; each further attempt doubles it (10/20/40/80/160 s).
    pub restart_backoff_base: Duration,
    /// Restart attempts before the sandbox is given up (Error `Restart limit exceeded`).
    pub max_restarts: u32,
    /// How long a restarted sandbox must stay up before its restart count goes back to 0.
    pub stable_period: Duration,
    /// How long before an automatic stop (idle or max runtime) listeners are warned.
    pub stop_grace: Duration,
    /// `lastActivityTimestamp` is written to the store at most this often; the actor keeps the
    /// exact time in memory.
    pub activity_persist_interval: Duration,
}

impl Default for SandboxTimings {
    /// The production values of the contract (§8.2): probe every 2 s, backoff 10 s doubling,
    /// 5 attempts, reset after 5 minutes up, warn 60 s before an automatic stop.
    fn default() -> Self {
        Self {
            health_interval: Duration::from_secs(2),
            restart_backoff_base: Duration::from_secs(10),
            max_restarts: 5,
            stable_period: Duration::from_secs(300),
            stop_grace: Duration::from_secs(60),
            activity_persist_interval: Duration::from_secs(10),
        }
    }
}

impl SandboxTimings {
    /// The self-healing schedule: `base, 2·base, 4·base, …`, one delay per allowed attempt.
    /// Built with `backon`'s exponential builder (no jitter, so the sequence users see in
    /// events is exactly the documented one).
    pub fn restart_schedule(&self) -> Vec<Duration> {
        let base = self.restart_backoff_base;
        let cap = base.saturating_mul(1 << self.max_restarts.saturating_sub(1).min(16));
        ExponentialBuilder::default()
            .with_min_delay(base)
            .with_factor(2.0)
            .with_max_delay(cap)
            .with_max_times(self.max_restarts as usize)
            .build()
            .map(round_to_millis)
            .collect()
    }

    /// The delay before restart attempt `attempt` (1-based); `None` past the limit.
    pub fn restart_delay(&self, attempt: u32) -> Option<Duration> {
        let index = attempt.checked_sub(1)? as usize;
        self.restart_schedule().get(index).copied()
    }
}

/// `backon` multiplies in `f32`; rounding to whole milliseconds keeps `20ms` from showing up as
/// `19.999999ms` in event messages.
fn round_to_millis(d: Duration) -> Duration {
    Duration::from_millis((d.as_secs_f64() * 1000.0).round() as u64)
}

/// A duration as people read it in event messages: `10s`, `2m40s`, `150ms`.
pub fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    if d.subsec_millis() != 0 {
        let seconds = format!("{:.3}", d.as_secs_f64());
        return format!("{}s", seconds.trim_end_matches('0'));
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_is_the_contracts() {
        let secs: Vec<u64> = SandboxTimings::default()
            .restart_schedule()
            .iter()
            .map(Duration::as_secs)
            .collect();
        assert_eq!(secs, [10, 20, 40, 80, 160]);
    }

    #[test]
    fn a_scaled_schedule_keeps_its_shape() {
        let timings = SandboxTimings {
            restart_backoff_base: Duration::from_millis(10),
            ..Default::default()
        };
        let millis: Vec<u128> = timings
            .restart_schedule()
            .iter()
            .map(Duration::as_millis)
            .collect();
        assert_eq!(millis, [10, 20, 40, 80, 160]);
        assert_eq!(timings.restart_delay(0), None);
        assert_eq!(timings.restart_delay(5), Some(Duration::from_millis(160)));
        assert_eq!(timings.restart_delay(6), None);
    }

    #[test]
    fn durations_read_like_go() {
        assert_eq!(human(Duration::from_secs(10)), "10s");
        assert_eq!(human(Duration::from_secs(160)), "2m40s");
        assert_eq!(human(Duration::from_secs(300)), "5m");
        assert_eq!(human(Duration::from_millis(150)), "150ms");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_secs(3600)), "1h");
    }
}
