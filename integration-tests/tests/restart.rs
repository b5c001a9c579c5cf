//! Restart safety: `kill -9` the server while sandboxes run and others are stopped, start it on
//! the same data directory, and every sandbox comes back with its phase and its workspace.
//! Running sandboxes whose processes survived are re-adopted (same process); ones whose
//! processes died meanwhile are restarted on the same workspace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agenttier_integration_tests::Server;
use serde_json::json;

#[tokio::test]
async fn kill_dash_nine_and_restart_keeps_every_sandbox() {
    let mut server = Server::start();
    for name in ["run-a", "run-b", "stop-c"] {
        server.create_running(name, "minimal-shell").await;
        server
            .exec(name, &format!("echo {name} > /workspace/id"))
            .await;
    }
    server.exec("run-a", "sleep 1000 >/dev/null 2>&1 &").await;
    let (status, _) = server.post("/sandboxes/stop-c/stop", json!({})).await;
    assert_eq!(status, 200);
    let pod_a = server.wait_phase("run-a", "Running").await["podName"].clone();
    let pod_b = server.wait_phase("run-b", "Running").await["podName"].clone();
    let key = server.admin_key.clone();
    let data = server.data_dir().to_path_buf();
    let tmp = server.keep_data();
    server.kill();

    // While the server is down, run-b's processes die (as after a crash or OOM).
    let pid: i32 = pod_b
        .as_str()
        .unwrap()
        .trim_start_matches("local-")
        .parse()
        .unwrap();
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();

    let server = Server::start_on(&data, Some(key));
    let a = server.wait_phase("run-a", "Running").await;
    assert_eq!(a["podName"], pod_a, "run-a was re-adopted, not restarted");
    let (out, _, _) = server
        .exec("run-a", "cat /workspace/id; pgrep -x sleep | wc -l")
        .await;
    assert_eq!(
        out, "run-a\n1\n",
        "run-a kept its workspace and its background process"
    );
    // The stored phase says Running until the re-adoption notices the processes are gone, so
    // wait for a Running run-b under a new process tree.
    server
        .poll(
            "run-b restarted under a new pod",
            Duration::from_secs(15),
            Duration::from_millis(20),
            async || {
                let (_, b) = server.get("/sandboxes/run-b").await;
                if b["status"] == "Running" && b["podName"] != pod_b {
                    Ok(())
                } else {
                    Err(b)
                }
            },
        )
        .await;
    assert_eq!(server.exec("run-b", "cat /workspace/id").await.0, "run-b\n");
    server.wait_phase("stop-c", "Stopped").await;
    let (status, _) = server.post("/sandboxes/stop-c/resume", json!({})).await;
    assert_eq!(status, 200);
    server.wait_phase("stop-c", "Running").await;
    assert_eq!(
        server.exec("stop-c", "cat /workspace/id").await.0,
        "stop-c\n"
    );
    let (_, me) = server.get("/user/me").await;
    assert_eq!(
        me["sub"], "admin",
        "the admin key still works and was not minted again"
    );
    assert!(
        !server.printed_admin_key,
        "no second admin key is minted on restart"
    );
    drop(server);
    agenttier_integration_tests::stop_all_sandboxes(&data);
    drop(tmp);
}
