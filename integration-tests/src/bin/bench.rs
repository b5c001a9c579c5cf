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
    let (create, exec) = runtime.block_on(async {
        let server = Server::start();
        let mut create = Vec::new();
        for i in 0..runs {
            let name = format!("bench-{i}");
            let start = Instant::now();
            let (status, body) = server
                .post(
                    "/sandboxes",
                    json!({"name": name, "templateRef": {"name": "minimal-shell"}}),
                )
                .await;
            assert_eq!(status, 201, "{body}");
            if body["status"] != "Running" {
                server.wait_phase(&name, "Running").await;
            }
            create.push(start.elapsed());
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
        for i in 0..runs {
            assert_eq!(server.delete(&format!("/sandboxes/bench-{i}")).await, 204);
        }
        (create, exec)
    });

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
    println!();
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
