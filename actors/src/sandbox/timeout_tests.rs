//! Actor tests of idle and max-runtime stops, the grace-window notice and activity, with the
//! `FakeRuntime` and scaled timers (a 100 ms grace window).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use agenttier_crds::{Sandbox, SandboxPhase};
use tokio::sync::broadcast::Receiver;

use crate::runtime::fake::FakeRuntime;

use super::test_support::{
    WAIT, events_of, exec, fast_timings, phase_of, reasons_of, sandbox, start_with, started,
    stdout_of, store_with_template, wait_phase,
};
use super::{SandboxKey, SandboxNotice, SandboxTimings, StopReason, runtime_id};

fn with_timeouts(name: &str, idle: Option<&str>, max: Option<&str>) -> Sandbox {
    let mut sandbox = sandbox(name, "shell");
    sandbox.spec.idle_timeout = idle.map(str::to_owned);
    sandbox.spec.timeout = max.map(str::to_owned);
    sandbox
}

/// The next notice about `name` within `limit`.
async fn next_notice(
    notices: &mut Receiver<SandboxNotice>,
    name: &str,
    limit: Duration,
) -> SandboxNotice {
    tokio::time::timeout(limit, async {
        loop {
            let notice = notices.recv().await.unwrap();
            let key = match &notice {
                SandboxNotice::StopPending { key, .. }
                | SandboxNotice::Stopped { key, .. }
                | SandboxNotice::Deleted { key } => key,
            };
            if key.name == name {
                return notice;
            }
        }
    })
    .await
    .expect("no notice in time")
}

#[tokio::test]
async fn an_idle_sandbox_is_warned_then_stopped_and_keeps_its_workspace() {
    let (store, runtime, system) = started(fast_timings()).await;
    let cp = system.control.clone();
    let key = SandboxKey::new("default", "a");
    let mut notices = cp.subscribe_notices();
    let begun = Instant::now();
    cp.create(with_timeouts("a", Some("400ms"), None), WAIT)
        .await
        .unwrap();
    cp.exec(&key, exec("echo kept > /workspace/f"))
        .await
        .unwrap();

    let pending = next_notice(&mut notices, "a", WAIT).await;
    let SandboxNotice::StopPending { reason, grace, .. } = pending else {
        panic!("expected a warning first, got {pending:?}");
    };
    assert_eq!(reason, StopReason::IdleTimeout);
    assert!(grace <= Duration::from_millis(100), "{grace:?}");
    assert!(begun.elapsed() >= Duration::from_millis(300));
    assert_eq!(phase_of(&cp, &key), Some(SandboxPhase::Running));

    let stopped = next_notice(&mut notices, "a", WAIT).await;
    assert!(
        matches!(
            stopped,
            SandboxNotice::Stopped {
                reason: StopReason::IdleTimeout,
                ..
            }
        ),
        "{stopped:?}"
    );
    let sandbox = cp.get(&key).unwrap();
    assert_eq!(sandbox.phase(), Some(SandboxPhase::Stopped));
    assert_eq!(
        sandbox.status.unwrap().message.as_deref(),
        Some("Idle timeout exceeded")
    );
    let id = runtime_id(&cp.get(&key).unwrap());
    assert!(!runtime.is_running(&id));
    assert!(runtime.has_workspace(&id));
    let events = events_of(&store, "a").await;
    let tail: Vec<&str> = events
        .iter()
        .rev()
        .take(2)
        .rev()
        .map(|(r, _)| r.as_str())
        .collect();
    assert_eq!(tail, ["StopPending", "IdleTimeout"]);
    assert!(events.last().unwrap().1.starts_with("Idle for "));

    cp.resume(&key, "alice").await.unwrap();
    assert_eq!(stdout_of(&cp, &key, "cat /workspace/f").await, "kept\n");
    system.shutdown().await;
}

#[tokio::test]
async fn activity_in_the_grace_window_postpones_the_idle_stop() {
    let timings = SandboxTimings {
        stop_grace: Duration::from_millis(200),
        ..fast_timings()
    };
    let (store, _runtime, system) = started(timings).await;
    let cp = system.control.clone();
    let key = SandboxKey::new("default", "a");
    let mut notices = cp.subscribe_notices();
    cp.create(with_timeouts("a", Some("500ms"), None), WAIT)
        .await
        .unwrap();

    let first = next_notice(&mut notices, "a", WAIT).await;
    assert!(
        matches!(first, SandboxNotice::StopPending { .. }),
        "{first:?}"
    );
    cp.record_activity(&key);
    // The second warning comes only after a whole new idle period minus the grace window.
    let postponed_at = Instant::now();
    let second = next_notice(&mut notices, "a", WAIT).await;
    assert!(
        matches!(second, SandboxNotice::StopPending { .. }),
        "{second:?}"
    );
    assert!(postponed_at.elapsed() >= Duration::from_millis(250));
    let stopped = next_notice(&mut notices, "a", WAIT).await;
    assert!(matches!(
        stopped,
        SandboxNotice::Stopped {
            reason: StopReason::IdleTimeout,
            ..
        }
    ));
    let mut reasons = reasons_of(&store, "a").await;
    reasons.retain(|r| r.starts_with("Stop") || r == "IdleTimeout");
    assert_eq!(
        reasons,
        ["StopPending", "StopPostponed", "StopPending", "IdleTimeout"]
    );
    assert_eq!(phase_of(&cp, &key), Some(SandboxPhase::Stopped));
    system.shutdown().await;
}

#[tokio::test]
async fn steady_activity_keeps_an_idle_timeout_away() {
    let (store, _runtime, system) = started(fast_timings()).await;
    let cp = system.control.clone();
    let key = SandboxKey::new("default", "a");
    cp.create(with_timeouts("a", Some("400ms"), None), WAIT)
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_millis(1200);
    while Instant::now() < until {
        cp.exec(&key, exec("true")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(phase_of(&cp, &key), Some(SandboxPhase::Running));
    assert!(
        !events_of(&store, "a")
            .await
            .iter()
            .any(|(r, _)| r == "StopPending"),
        "activity never let the sandbox get near its idle timeout"
    );
    wait_phase(&cp, &key, SandboxPhase::Stopped, "stopped once idle").await;
    system.shutdown().await;
}

#[tokio::test]
async fn max_runtime_stops_a_busy_sandbox() {
    let (store, _runtime, system) = started(fast_timings()).await;
    let cp = system.control.clone();
    let key = SandboxKey::new("default", "a");
    let mut notices = cp.subscribe_notices();
    let begun = Instant::now();
    cp.create(with_timeouts("a", Some("1h"), Some("500ms")), WAIT)
        .await
        .unwrap();
    cp.exec(&key, exec("echo kept > /workspace/f"))
        .await
        .unwrap();
    let busy = {
        let cp = cp.clone();
        let key = key.clone();
        tokio::spawn(async move {
            loop {
                cp.record_activity(&key);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let pending = next_notice(&mut notices, "a", WAIT).await;
    assert!(
        matches!(
            pending,
            SandboxNotice::StopPending {
                reason: StopReason::MaxRuntime,
                ..
            }
        ),
        "{pending:?}"
    );
    let stopped = next_notice(&mut notices, "a", WAIT).await;
    busy.abort();
    assert!(matches!(
        stopped,
        SandboxNotice::Stopped {
            reason: StopReason::MaxRuntime,
            ..
        }
    ));
    assert!(begun.elapsed() >= Duration::from_millis(500));
    let sandbox = cp.get(&key).unwrap();
    assert_eq!(sandbox.phase(), Some(SandboxPhase::Stopped));
    assert_eq!(
        sandbox.status.unwrap().message.as_deref(),
        Some("Max runtime exceeded")
    );
    let events = events_of(&store, "a").await;
    let last = events.last().unwrap();
    assert_eq!(last.0, "MaxRuntimeReached");
    assert!(last.1.starts_with("Running for "), "{}", last.1);
    assert!(!events.iter().any(|(r, _)| r == "StopPostponed"));
    cp.resume(&key, "alice").await.unwrap();
    assert_eq!(stdout_of(&cp, &key, "cat /workspace/f").await, "kept\n");
    system.shutdown().await;
}

#[tokio::test]
async fn timeouts_come_from_the_template_and_survive_a_control_plane_restart() {
    let store = store_with_template().await;
    crate::store::TypedStore::update_obj::<agenttier_crds::ClusterSandboxTemplate, _>(
        store.as_ref(),
        "",
        "shell",
        |t| {
            t.spec.0.idle_timeout = Some("700ms".into());
            true
        },
    )
    .await
    .unwrap();
    let runtime = Arc::new(FakeRuntime::default());
    let system = start_with(store.clone(), runtime.clone(), fast_timings()).await;
    let key = SandboxKey::new("default", "a");
    system
        .control
        .create(sandbox("a", "shell"), WAIT)
        .await
        .unwrap();
    system.shutdown().await;

    let system = start_with(store.clone(), runtime.clone(), fast_timings()).await;
    let cp = system.control.clone();
    assert_eq!(phase_of(&cp, &key), Some(SandboxPhase::Running));
    wait_phase(
        &cp,
        &key,
        SandboxPhase::Stopped,
        "idle stop after the restart",
    )
    .await;
    assert_eq!(runtime.starts(), 1, "re-adopted, not restarted");
    system.shutdown().await;
}
