//! `just bench`: create→Running and exec round trip through the REST API of the real server,
//! beside floors measured in the same run on the same machine (bare bubblewrap, bubblewrap with a
//! process that reports ready, fork+exec of `true`). Prints medians, p95 and ratios.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agenttier_integration_tests::Server;
use serde_json::json;

const SANDBOX_UID: u32 = 61000;

fn bwrap() -> Command {
    let mut command = Command::new("bwrap");
    command
        .args([
            "--unshare-all",
            "--die-with-parent",
            "--uid",
            "1000",
            "--gid",
            "1000",
        ])
        .args(["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"])
        .args([
            "--symlink",
            "usr/lib",
            "/lib",
            "--symlink",
            "usr/lib64",
            "/lib64",
        ])
        .args([
            "--symlink",
            "usr/bin",
            "/bin",
            "--symlink",
            "usr/sbin",
            "/sbin",
        ])
        .args([
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
            "--cap-drop",
            "ALL",
        ])
        .uid(SANDBOX_UID)
        .gid(SANDBOX_UID);
    command
}

fn time_n(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect()
}

fn percentile(samples: &[Duration], p: f64) -> f64 {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let index = ((ms.len() as f64 - 1.0) * p).round() as usize;
    ms[index]
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let fork_exec = time_n(runs * 5, || {
        Command::new("true").status().unwrap();
    });
    let bwrap_true = time_n(runs, || {
        let status = bwrap().arg("true").status().unwrap();
        assert!(
            status.success(),
            "bwrap failed: is bubblewrap installed and are we root?"
        );
    });
    let bwrap_ready = time_n(runs, || {
        let mut child = bwrap()
            .args(["/bin/sh", "-c", "echo ready; exec sleep 30"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n");
        child.kill().unwrap();
        child.wait().unwrap();
    });

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (create, exec, invoke) = runtime.block_on(async {
        let server = Server::start();
        let mut create = Vec::new();
        for i in 0..runs {
            create.push(create_timed(&server, format!("bench-{i}")).await.0);
        }
        let mut exec = Vec::new();
        for _ in 0..runs * 5 {
            let start = Instant::now();
            let (status, body) = server
                .post("/sandboxes/bench-0/exec", json!({"command": "true"}))
                .await;
            exec.push(start.elapsed());
            assert_eq!((status, body["exitCode"].as_i64()), (200, Some(0)));
        }
        // Agent mode: an invoke of `true` to its `exit` event, beside exec of the same command.
        server
            .create_running("bench-agent", "langgraph-agent")
            .await;
        let configured = server
            .post_sse(
                "/sandboxes/bench-agent/configure",
                json!({"entrypoint": ["true"]}).to_string().into_bytes(),
            )
            .await;
        assert!(configured.contains("event: result"), "{configured}");
        let mut invoke = Vec::new();
        for _ in 0..runs * 5 {
            let start = Instant::now();
            let text = server
                .post_sse("/sandboxes/bench-agent/invoke", Vec::new())
                .await;
            invoke.push(start.elapsed());
            assert!(text.contains("event: exit"), "{text}");
        }
        for i in 0..runs {
            assert_eq!(server.delete(&format!("/sandboxes/bench-{i}")).await, 204);
        }
        (create, exec, invoke)
    });
    let (warm, drained, get) = runtime.block_on(warm_vs_drained(runs));

    let floor_ready = percentile(&bwrap_ready, 0.5);
    let fork = percentile(&fork_exec, 0.5);
    println!("| measurement | p50 (ms) | p95 (ms) | p50 ratio |");
    println!("|---|---|---|---|");
    let row = |name: &str, samples: &[Duration], floor: Option<(f64, &str)>| {
        let ratio = floor
            .map(|(f, what)| format!("{:.2}× {what}", percentile(samples, 0.5) / f))
            .unwrap_or_else(|| "floor".into());
        println!(
            "| {name} | {:.2} | {:.2} | {ratio} |",
            percentile(samples, 0.5),
            percentile(samples, 0.95)
        );
    };
    row("fork+exec `true`", &fork_exec, None);
    row("bwrap --unshare-all … true", &bwrap_true, None);
    row("bwrap + process reporting ready", &bwrap_ready, None);
    row(
        "REST create → Running",
        &create,
        Some((floor_ready, "bwrap+ready")),
    );
    row(
        "REST exec `true` round trip",
        &exec,
        Some((fork, "fork+exec")),
    );
    row(
        "REST invoke `true` → exit event (SSE)",
        &invoke,
        Some((percentile(&exec, 0.5), "exec")),
    );
    row("REST GET /sandboxes/{id} (the REST floor)", &get, None);
    row(
        "REST create → Running, warm pool (claim)",
        &warm,
        Some((percentile(&drained, 0.5), "drained")),
    );
    row(
        "REST create → Running, pool drained (cold)",
        &drained,
        Some((percentile(&warm, 0.5), "warm")),
    );
    println!();
    let (warm_p50, drained_p50) = (percentile(&warm, 0.5), percentile(&drained, 0.5));
    println!(
        "warm pool: claim p50 {warm_p50:.2} ms, cold p50 {drained_p50:.2} ms, cold/warm {:.1}×; goals: \
         warm p50 < 5 ms ({}), ≥ 10× faster than cold ({})",
        drained_p50 / warm_p50,
        if warm_p50 < 5.0 { "met" } else { "NOT met" },
        if drained_p50 >= 10.0 * warm_p50 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "runs={runs}; goals: create→Running p50 ≤ 3× bwrap+ready ({}), exec p50 < 5 ms ({})",
        if percentile(&create, 0.5) <= 3.0 * floor_ready {
            "met"
        } else {
            "NOT met"
        },
        if percentile(&exec, 0.5) < 5.0 {
            "met"
        } else {
            "NOT met"
        }
    );
}

/// Creates a `minimal-shell` sandbox and waits until it is Running: how long that took, and
/// the create's answer.
async fn create_timed(server: &Server, name: String) -> (Duration, serde_json::Value) {
    let start = Instant::now();
    let body = server.create(&name, "minimal-shell").await;
    if body["status"] != "Running" {
        server.wait_phase(&name, "Running").await;
    }
    (start.elapsed(), body)
}

/// PUTs the warm pool config for `minimal-shell`.
async fn set_pool(server: &Server, desired: u32) {
    let (status, body) = server
        .put(
            "/warmpool/config",
            json!({"pools": [{"template": "minimal-shell", "desiredCount": desired}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Waits (unmeasured) until the pool holds `ready` started sandboxes and starts none.
async fn wait_pool(server: &Server, ready: u64) {
    let what = format!("pool never reached {ready}");
    let (limit, every) = (Duration::from_secs(60), Duration::from_millis(5));
    server
        .poll(&what, limit, every, async || {
            let (_, status) = server.get("/warmpool/status").await;
            if status["readyCount"].as_u64().unwrap_or(0) == ready
                && status["pendingCount"].as_u64().unwrap_or(0) == 0
            {
                Ok(())
            } else {
                Err(status)
            }
        })
        .await
}

/// create→Running through REST with the pool warm (each create claims; the pool is topped up,
/// unmeasured, before the next), then with the pool drained, on one server in one run; and the
/// REST floor beside them (a GET answered from the read model: HTTP, auth and routing only).
async fn warm_vs_drained(runs: usize) -> (Vec<Duration>, Vec<Duration>, Vec<Duration>) {
    const POOL: u32 = 10;
    let server = Server::start();
    set_pool(&server, POOL).await;
    let mut warm = Vec::new();
    for i in 0..runs {
        wait_pool(&server, u64::from(POOL)).await;
        let (elapsed, body) = create_timed(&server, format!("warm-{i}")).await;
        assert!(
            body["pvcName"]
                .as_str()
                .is_some_and(|p| p.contains("/pool-")),
            "not claimed from the pool: {body}"
        );
        warm.push(elapsed);
    }
    let mut get = Vec::new();
    for _ in 0..runs * 5 {
        let start = Instant::now();
        let (status, _) = server.get("/sandboxes/warm-0").await;
        get.push(start.elapsed());
        assert_eq!(status, 200);
    }
    set_pool(&server, 0).await;
    wait_pool(&server, 0).await;
    let mut drained = Vec::new();
    for i in 0..runs {
        let (elapsed, body) = create_timed(&server, format!("cold-{i}")).await;
        assert!(!body["pvcName"].as_str().unwrap_or("").contains("/pool-"));
        drained.push(elapsed);
    }
    for i in 0..runs {
        for name in [format!("warm-{i}"), format!("cold-{i}")] {
            assert_eq!(server.delete(&format!("/sandboxes/{name}")).await, 204);
        }
    }
    (warm, drained, get)
}
