//! The life cycle through the `agenttier` CLI's client commands, configured like the SDK
//! (`AGENTTIER_API_URL`, `AGENTTIER_API_KEY`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;

use agenttier_integration_tests::{Server, agenttier_bin};
use serde_json::Value;

fn cli(server: &Server, args: &[&str]) -> Output {
    std::process::Command::new(agenttier_bin())
        .args(args)
        .env("AGENTTIER_API_URL", &server.url)
        .env("AGENTTIER_API_KEY", &server.admin_key)
        .output()
        .unwrap()
}

fn ok(server: &Server, args: &[&str]) -> String {
    let output = cli(server, args);
    assert!(
        output.status.success(),
        "agenttier {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn json(server: &Server, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    serde_json::from_str(&ok(server, &all)).unwrap()
}

#[test]
fn cli_life_cycle() {
    let server = Server::start();
    let templates = ok(&server, &["template", "list"]);
    assert!(
        templates.starts_with("NAME") && templates.contains("minimal-shell"),
        "{templates}"
    );
    assert_eq!(
        json(&server, &["template", "get", "minimal-shell"])["name"],
        "minimal-shell"
    );

    let created = json(
        &server,
        &[
            "sandbox",
            "create",
            "cli-life",
            "--template",
            "minimal-shell",
        ],
    );
    assert_eq!(created["name"], "cli-life");
    server_wait(&server, "cli-life", "Running");

    let out = ok(
        &server,
        &[
            "sandbox",
            "exec",
            "cli-life",
            "--",
            "sh",
            "-c",
            "echo 'from cli' > /workspace/f; cat /workspace/f",
        ],
    );
    assert_eq!(out, "from cli\n");
    let failing = cli(
        &server,
        &["sandbox", "exec", "cli-life", "--", "sh", "-c", "exit 4"],
    );
    assert_eq!(
        failing.status.code(),
        Some(4),
        "exec exits with the command's code"
    );

    ok(&server, &["sandbox", "stop", "cli-life"]);
    assert_eq!(
        json(&server, &["sandbox", "get", "cli-life"])["status"],
        "Stopped"
    );
    let refused = cli(&server, &["sandbox", "stop", "cli-life"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("409"),
        "a clear error"
    );

    ok(&server, &["sandbox", "resume", "cli-life"]);
    server_wait(&server, "cli-life", "Running");
    assert_eq!(
        ok(
            &server,
            &["sandbox", "exec", "cli-life", "--", "cat", "/workspace/f"]
        ),
        "from cli\n"
    );

    let cloned = json(
        &server,
        &["sandbox", "clone", "cli-life", "--name", "cli-copy"],
    );
    assert_eq!(cloned["name"], "cli-copy");
    server_wait(&server, "cli-copy", "Running");
    assert_eq!(
        ok(
            &server,
            &["sandbox", "exec", "cli-copy", "--", "cat", "/workspace/f"]
        ),
        "from cli\n"
    );

    let table = ok(&server, &["sandbox", "list"]);
    assert!(
        table.contains("cli-life") && table.contains("cli-copy") && table.contains("Running"),
        "{table}"
    );
    let listed = json(&server, &["sandbox", "list"]);
    assert_eq!(listed["sandboxes"].as_array().unwrap().len(), 2);

    ok(&server, &["sandbox", "delete", "cli-life"]);
    ok(&server, &["sandbox", "delete", "cli-copy"]);
    assert_eq!(
        json(&server, &["sandbox", "list"])["sandboxes"],
        serde_json::json!([])
    );
    let missing = cli(&server, &["sandbox", "get", "cli-life"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
}

#[test]
fn cli_without_a_key_says_how_to_log_in() {
    let server = Server::start();
    let output = std::process::Command::new(agenttier_bin())
        .args(["sandbox", "list"])
        .env("AGENTTIER_API_URL", &server.url)
        .env_remove("AGENTTIER_API_KEY")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("AGENTTIER_API_KEY"));
}

fn server_wait(server: &Server, id: &str, phase: &str) {
    for _ in 0..500 {
        if json(server, &["sandbox", "get", id])["status"] == phase {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("{id} never reached {phase}");
}
