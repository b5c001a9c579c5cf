//! Self-healing against the real server and real sandboxes, with the timers scaled down by
//! hidden `serve` flags (probe every 100 ms, backoff 200/400/800/1600/3200 ms): a sandbox whose
//! processes are killed comes back on the same workspace with the backoff visible in its events;
//! a sandbox that can never start stops retrying.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use agenttier_integration_tests::{Server, ServerOptions};
use serde_json::{Value, json};

fn scaled() -> ServerOptions {
    ServerOptions {
        args: [
            "--health-interval",
            "100ms",
            "--restart-backoff-base",
            "200ms",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    }
}

/// The sandbox's events (reason, message), oldest first.
async fn events(server: &Server, sandbox: &str) -> Vec<(String, String)> {
    let (status, body) = server
        .get(&format!("/audit/events?sandbox={sandbox}&limit=1000"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            (
                e["eventType"].as_str().unwrap().to_string(),
                e["details"]["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Polls until the sandbox is Running under a pod other than `old`.
async fn wait_restarted(server: &Server, id: &str, old: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = server.get(&format!("/sandboxes/{id}")).await;
        if body["status"] == "Running" && body["podName"] != *old {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{id} did not come back: {body}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn killed_processes_come_back_on_the_same_workspace_with_backoff() {
    let server = Server::start_with(scaled());
    let first = server.create_running("heal", "minimal-shell").await;
    server.exec("heal", "echo kept > /workspace/f").await;

    // A crash from outside: the sandbox's bubblewrap process is killed.
    let pid = first["podName"]
        .as_str()
        .unwrap()
        .trim_start_matches("local-")
        .to_string();
    let status = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let second = wait_restarted(&server, "heal", &first["podName"]).await;
    assert_eq!(second["pvcName"], first["pvcName"], "same workspace");
    assert_eq!(server.exec("heal", "cat /workspace/f").await.0, "kept\n");

    // A crash from inside: the sandbox's agent is killed by one of its own processes.
    server
        .exec("heal", "(sleep 0.2; kill -9 $PPID) >/dev/null 2>&1 &")
        .await;
    let third = wait_restarted(&server, "heal", &second["podName"]).await;
    assert_eq!(third["pvcName"], first["pvcName"]);
    assert_eq!(server.exec("heal", "cat /workspace/f").await.0, "kept\n");

    let events = events(&server, "heal").await;
    let healing: Vec<&(String, String)> = events
        .iter()
        .filter(|(r, _)| r == "AutoRestarted" || r == "Restarting" || r == "Running")
        .collect();
    let reasons: Vec<&str> = healing.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "Running",
            "AutoRestarted",
            "Restarting",
            "Running",
            "AutoRestarted",
            "Restarting",
            "Running"
        ],
        "{events:?}"
    );
    assert!(
        healing[1]
            .1
            .ends_with("waiting 200ms before restart attempt 1/5"),
        "{}",
        healing[1].1
    );
    assert!(healing[2].1.starts_with("Backoff window elapsed (200ms)"));
    assert!(
        healing[4]
            .1
            .ends_with("waiting 400ms before restart attempt 2/5"),
        "{}",
        healing[4].1
    );
    assert!(healing[5].1.starts_with("Backoff window elapsed (400ms)"));
}

#[tokio::test]
async fn a_template_whose_rootfs_is_missing_fails_for_good() {
    let server = Server::start_with(scaled());
    let (status, body) = server
        .post(
            "/templates",
            json!({"name": "broken-rootfs", "spec": {"image": {"repository": "/nonexistent/rootfs"}}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server
        .post(
            "/sandboxes",
            json!({"name": "doomed", "templateRef": {"name": "broken-rootfs"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let failed = server.wait_phase("doomed", "Error").await;
    let message = failed["message"].as_str().unwrap();
    assert!(
        message.contains("/nonexistent/rootfs") && message.contains("does not exist"),
        "{message}"
    );
    // Several backoff periods later nothing has been retried.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, still) = server.get("/sandboxes/doomed").await;
    assert_eq!(still["status"], "Error");
    let reasons: Vec<String> = events(&server, "doomed")
        .await
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert_eq!(reasons, ["Created", "Creating", "InvalidConfig"]);
}

#[tokio::test]
async fn a_sandbox_that_keeps_failing_stops_after_five_attempts() {
    let server = Server::start_with(ServerOptions {
        args: [
            "--health-interval",
            "100ms",
            "--restart-backoff-base",
            "100ms",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    });
    // An image directory that exists but holds nothing the agent can run: every start fails
    // the same transient way, so only the restart limit ends the loop.
    let rootfs = server.data_dir().with_file_name("empty-rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::set_permissions(&rootfs, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (status, body) = server
        .post(
            "/templates",
            json!({"name": "empty-rootfs", "spec": {"image": {"repository": rootfs}}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server
        .post(
            "/sandboxes",
            json!({"name": "flaky", "templateRef": {"name": "empty-rootfs"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (_, body) = server.get("/sandboxes/flaky").await;
        if body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Restart limit exceeded (5 attempts)"))
        {
            break body;
        }
        assert!(Instant::now() < deadline, "{body}\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body["status"], "Error");
    let events = events(&server, "flaky").await;
    let count = |reason: &str| events.iter().filter(|(r, _)| r == reason).count();
    assert_eq!(
        (
            count("AutoRestarted"),
            count("Restarting"),
            count("RestartLimitExceeded")
        ),
        (5, 5, 1),
        "{events:?}"
    );
    let waits: Vec<&str> = events
        .iter()
        .filter(|(r, _)| r == "AutoRestarted")
        .map(|(_, m)| m.split("waiting ").nth(1).unwrap())
        .collect();
    assert_eq!(
        waits,
        [
            "100ms before restart attempt 1/5",
            "200ms before restart attempt 2/5",
            "400ms before restart attempt 3/5",
            "800ms before restart attempt 4/5",
            "1.6s before restart attempt 5/5"
        ]
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        events_len(&server).await,
        events.len(),
        "no further attempts"
    );
}

async fn events_len(server: &Server) -> usize {
    events(server, "flaky").await.len()
}
