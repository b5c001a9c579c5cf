//! Automatic stops against the real server and real sandboxes, with a short grace window: an
//! idle sandbox is warned and stopped, activity in the grace window postpones the stop, steady
//! activity keeps it away, the max runtime stops a busy sandbox, and the workspace survives
//! each. (The terminal's notice frame is the terminal's; the notice itself is tested at the
//! actor level, and its `StopPending` event is checked here.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use agenttier_integration_tests::{Server, ServerOptions};
use serde_json::json;

fn scaled(grace: &str) -> ServerOptions {
    ServerOptions {
        args: [
            "--stop-grace",
            grace,
            "--activity-persist-interval",
            "100ms",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    }
}

async fn create(server: &Server, name: &str, timeouts: serde_json::Value) {
    let mut body = json!({"name": name, "templateRef": {"name": "minimal-shell"}});
    for (k, v) in timeouts.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, answer) = server.post("/sandboxes", body).await;
    assert_eq!(status, 201, "{answer}");
    server.wait_phase(name, "Running").await;
}

async fn resume_and_read(server: &Server, name: &str) -> String {
    let (status, body) = server
        .post(&format!("/sandboxes/{name}/resume"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    server.wait_phase(name, "Running").await;
    server.exec(name, "cat /workspace/f").await.0
}

#[tokio::test]
async fn an_idle_sandbox_is_warned_stopped_and_keeps_its_workspace() {
    let server = Server::start_with(scaled("500ms"));
    create(&server, "idle", json!({"idleTimeout": "2s"})).await;
    server.exec("idle", "echo kept > /workspace/f").await;
    let begun = Instant::now();
    let stopped = server
        .wait_phase_within("idle", "Stopped", Duration::from_secs(15))
        .await;
    assert!(begun.elapsed() >= Duration::from_millis(1900));
    assert_eq!(stopped["message"], "Idle timeout exceeded");
    assert_eq!(stopped["podName"], "");
    let reasons = server.reasons("idle").await;
    let tail = &reasons[reasons.len() - 2..];
    assert_eq!(tail, ["StopPending", "IdleTimeout"], "{reasons:?}");
    assert_eq!(resume_and_read(&server, "idle").await, "kept\n");
}

#[tokio::test]
async fn activity_in_the_grace_window_postpones_the_stop() {
    let server = Server::start_with(scaled("1500ms"));
    create(&server, "busy-late", json!({"idleTimeout": "3s"})).await;
    server.exec("busy-late", "echo kept > /workspace/f").await;
    // Wait for the warning, then act inside the grace window.
    server.wait_event("busy-late", "StopPending", "").await;
    server.exec("busy-late", "true").await;
    server.wait_event("busy-late", "StopPostponed", "").await;
    let (_, body) = server.get("/sandboxes/busy-late").await;
    assert_eq!(body["status"], "Running", "postponed, not stopped");
    // Left alone it stops after a whole new idle period.
    server
        .wait_phase_within("busy-late", "Stopped", Duration::from_secs(15))
        .await;
    let reasons = server.reasons("busy-late").await;
    let stops: Vec<&String> = reasons
        .iter()
        .filter(|r| r.starts_with("Stop") || *r == "IdleTimeout")
        .collect();
    assert_eq!(
        stops,
        ["StopPending", "StopPostponed", "StopPending", "IdleTimeout"]
    );
    assert_eq!(resume_and_read(&server, "busy-late").await, "kept\n");
}

#[tokio::test]
async fn steady_exec_keeps_an_idle_sandbox_running() {
    let server = Server::start_with(scaled("300ms"));
    create(&server, "steady", json!({"idleTimeout": "1500ms"})).await;
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        server.exec("steady", "true").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (_, body) = server.get("/sandboxes/steady").await;
    assert_eq!(body["status"], "Running");
    assert!(body["lastActivityAt"].as_str().is_some());
    assert!(
        !server
            .reasons("steady")
            .await
            .contains(&"StopPending".to_string())
    );
}

#[tokio::test]
async fn max_runtime_stops_a_busy_sandbox() {
    let server = Server::start_with(scaled("500ms"));
    create(&server, "capped", json!({"timeout": "3s"})).await;
    server.exec("capped", "echo kept > /workspace/f").await;
    let begun = Instant::now();
    let deadline = begun + Duration::from_secs(15);
    loop {
        let (status, body) = server
            .post("/sandboxes/capped/exec", json!({"command": "true"}))
            .await;
        if status == 409 {
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(Instant::now() < deadline, "max runtime never stopped it");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stopped = server
        .wait_phase_within("capped", "Stopped", Duration::from_secs(5))
        .await;
    assert!(begun.elapsed() >= Duration::from_millis(2500));
    assert_eq!(stopped["message"], "Max runtime exceeded");
    let reasons = server.reasons("capped").await;
    assert_eq!(
        reasons.last().map(String::as_str),
        Some("MaxRuntimeReached")
    );
    assert!(reasons.contains(&"StopPending".to_string()));
    assert!(!reasons.contains(&"StopPostponed".to_string()));
    assert_eq!(resume_and_read(&server, "capped").await, "kept\n");
}
