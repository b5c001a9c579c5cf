//! The life cycle through the published Python SDK `agenttier==0.8.1`, installed from PyPI by
//! `scripts/test.sh` into `.venv-tests`. The test fails (never skips) when the SDK is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use agenttier_integration_tests::{Server, python};

/// Runs `python/<script>` against `server` and checks it printed `ok_line`.
fn run_sdk_script(server: &Server, script: &str, ok_line: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    let output = std::process::Command::new(python())
        .arg(script)
        .env("AGENTTIER_API_URL", &server.url)
        .env("AGENTTIER_API_KEY", &server.admin_key)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(ok_line),
        "SDK run failed:\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}",
        server.log()
    );
}

#[test]
fn published_sdk_life_cycle() {
    let server = Server::start();
    run_sdk_script(&server, "sdk_lifecycle.py", "SDK life cycle OK");
}

/// Agent mode (configure, invoke, invoke_stream, cancel, the concurrency limit) through the
/// SDK's `sandbox.agent` API.
#[test]
fn published_sdk_agent_mode() {
    let server = Server::start();
    run_sdk_script(&server, "sdk_agent.py", "SDK agent mode OK");
}

/// `examples/langgraph-agent` as a user runs it: its template created through the REST API,
/// then `run.py` configuring and invoking a sandbox through the SDK.
#[tokio::test]
async fn langgraph_example_runs() {
    let server = Server::start();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/langgraph-agent");
    let yaml = std::fs::read_to_string(example.join("template.yaml")).unwrap();
    let template: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    let name = template["metadata"]["name"].as_str().unwrap();
    server.create_template(name, template["spec"].clone()).await;
    let output = std::process::Command::new(python())
        .arg(example.join("run.py"))
        .env("AGENTTIER_API_URL", &server.url)
        .env("AGENTTIER_API_KEY", &server.admin_key)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success()
            && stdout.contains("example OK")
            && stdout.contains("[stdout] {\"answer\": \"Answer to 'Which sandboxes survive a restart?' after 3 steps.\", \"persona\": true}")
            && stdout.contains("[stderr] plan: 3 steps"),
        "example failed:\nstdout:\n{stdout}\nstderr:\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.log()
    );
}
