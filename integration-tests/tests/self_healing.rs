//! Self-healing against the real server and real sandboxes, with the timers scaled down by
//! hidden `serve` flags (probe every 100 ms, backoff 200/400/800/1600/3200 ms): a sandbox whose
//! processes are killed comes back on the same workspace with the backoff visible in its events;
//! a sandbox that can never start stops retrying.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

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

/// Polls until the sandbox is Running under a pod other than `old`.
async fn wait_restarted(server: &Server, id: &str, old: &Value) -> Value {
    let what = format!("{id} did not come back");
    let every = Duration::from_millis(50);
    server
        .poll(&what, Duration::from_secs(20), every, async || {
            let (_, body) = server.get(&format!("/sandboxes/{id}")).await;
            if body["status"] == "Running" && body["podName"] != *old {
                Ok(body)
            } else {
                Err(body)
            }
        })
        .await
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

    let events = server.events("heal").await;
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
    server
        .create_template(
            "broken-rootfs",
            json!({"image": {"repository": "/nonexistent/rootfs"}}),
        )
        .await;
    server.create("doomed", "broken-rootfs").await;
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
    assert_eq!(
        server.reasons("doomed").await,
        ["Created", "Creating", "InvalidConfig"]
    );
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
    server
        .create_template("empty-rootfs", json!({"image": {"repository": rootfs}}))
        .await;
    server.create("flaky", "empty-rootfs").await;
    let limit = Duration::from_secs(30);
    let every = Duration::from_millis(100);
    let body = server
        .poll(
            "the restart limit was never reached",
            limit,
            every,
            async || {
                let (_, body) = server.get("/sandboxes/flaky").await;
                if body["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("Restart limit exceeded (5 attempts)"))
                {
                    Ok(body)
                } else {
                    Err(body)
                }
            },
        )
        .await;
    assert_eq!(body["status"], "Error");
    let events = server.events("flaky").await;
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
        server.events("flaky").await.len(),
        events.len(),
        "no further attempts"
    );
}
