//! Templates that set agents up, against the real `agenttier serve` and real bubblewrap
//! sandboxes: a three-level `inheritsFrom` chain whose embedded files, init scripts, system
//! prompt, skills, tools and hooks all arrive with the merged values; hooks at each transition
//! with their output in the events; a failing init script that leaves the sandbox in Error with
//! its output in the condition; and each constraint holding (or refused at validation).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agenttier_integration_tests::Server;
use serde_json::{Value, json};

fn condition<'a>(sandbox: &'a Value, kind: &str) -> Option<&'a Value> {
    sandbox["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

async fn cat(server: &Server, sandbox: &str, path: &str) -> String {
    let (stdout, stderr, code) = server.exec(sandbox, &format!("cat {path}")).await;
    assert_eq!(code, 0, "cat {path}: {stderr}");
    stdout
}

#[tokio::test]
async fn a_three_level_chain_sets_up_everything_and_hooks_run_at_each_transition() {
    let server = Server::start();
    server
        .create_template(
            "agent-base",
            json!({
                "files": [
                    {"path": "/workspace/base.txt", "content": "from base"},
                    {"path": "/workspace/shared.txt", "content": "from base"}
                ],
                "initScripts": ["echo base >> /workspace/init.log"],
                "harness": {
                    "shell": "/bin/sh",
                    "systemPrompt": {"content": "base prompt"},
                    "skills": [{"name": "search", "content": {"content": "search from base"}}],
                    "tools": [{
                        "name": "marker",
                        "version": "1.0",
                        "installCommand": "echo installed > /workspace/.marker",
                        "verifyCommand": "test -f /workspace/.marker"
                    }],
                    "hooks": {"onStart": "echo started >> /workspace/hooks.log; echo start-output"},
                    "constraints": {"maxCommandTimeout": "2s"}
                }
            }),
        )
        .await;
    server
        .create_template(
            "agent-middle",
            json!({
                "inheritsFrom": {"name": "agent-base", "kind": "ClusterSandboxTemplate"},
                "files": [{"path": "/workspace/shared.txt", "content": "from middle"}],
                "initScripts": ["echo middle >> /workspace/init.log"],
                "harness": {
                    "skills": [{"name": "git", "content": {"content": "git from middle"}}],
                    "hooks": {
                        "onStop": "echo stopping >> /workspace/hooks.log",
                        "onResume": "echo resumed >> /workspace/hooks.log"
                    }
                }
            }),
        )
        .await;
    server
        .create_template(
            "agent-leaf",
            json!({
                "inheritsFrom": {"name": "agent-middle", "kind": "ClusterSandboxTemplate"},
                "initScripts": ["echo leaf >> /workspace/init.log"],
                "harness": {
                    "systemPrompt": {"content": "leaf prompt"},
                    "skills": [{"name": "search", "content": {"content": "search from leaf"}}],
                    "constraints": {
                        "restrictedPaths": ["/workspace/secret", "/etc/hostname"],
                        "maxFileSize": "1Ki"
                    }
                }
            }),
        )
        .await;

    let sandbox = server.create_running("chain", "agent-leaf").await;
    // Embedded files: merged by path, the middle's version of shared.txt.
    assert_eq!(
        cat(&server, "chain", "/workspace/base.txt").await,
        "from base"
    );
    assert_eq!(
        cat(&server, "chain", "/workspace/shared.txt").await,
        "from middle"
    );
    // Init scripts: the parent's lines first.
    assert_eq!(
        cat(&server, "chain", "/workspace/init.log").await,
        "base\nmiddle\nleaf\n"
    );
    // System prompt and skills: the leaf's prompt, skills merged by name.
    let agent_dir = "/workspace/.agenttier";
    assert_eq!(
        cat(&server, "chain", &format!("{agent_dir}/system-prompt.md")).await,
        "leaf prompt"
    );
    assert_eq!(
        cat(&server, "chain", &format!("{agent_dir}/skills/search.md")).await,
        "search from leaf"
    );
    assert_eq!(
        cat(&server, "chain", &format!("{agent_dir}/skills/git.md")).await,
        "git from middle"
    );
    // Tools: installed, verified and recorded.
    assert_eq!(
        cat(&server, "chain", "/workspace/.marker").await,
        "installed\n"
    );
    let tools = condition(&sandbox, "ToolsReady").expect("ToolsReady condition");
    assert_eq!(tools["status"], "True", "{tools}");
    assert!(tools["message"].as_str().unwrap().contains("marker 1.0"));
    // The onStart hook ran, its output in the event.
    assert_eq!(
        cat(&server, "chain", "/workspace/hooks.log").await,
        "started\n"
    );
    server
        .wait_event(
            "chain",
            "HookSucceeded",
            "onStart hook succeeded: start-output",
        )
        .await;
    let (_, body) = server.get("/sandboxes/chain").await;
    assert_eq!(
        condition(&body, "OnStartHookSucceeded").unwrap()["status"],
        "True"
    );

    // maxCommandTimeout caps exec.
    let (_, _, code) = server.exec("chain", "sleep 10").await;
    assert_eq!(code, 124, "exec is killed at the template's 2s cap");
    // restrictedPaths are not reachable.
    let (out, _, code) = server.exec("chain", "ls -A /workspace/secret").await;
    assert_eq!(
        (out.as_str(), code),
        ("", 0),
        "the restricted directory is empty"
    );
    let (_, _, code) = server.exec("chain", "touch /workspace/secret/x").await;
    assert_ne!(
        code, 0,
        "nothing can be written into a restricted directory"
    );
    let (out, _, _) = server.exec("chain", "cat /etc/hostname").await;
    assert_eq!(out, "", "a restricted file reads as empty");
    // maxFileSize caps uploads.
    let http = reqwest::Client::new();
    let upload = |bytes: usize| {
        http.put(server.api("/sandboxes/chain/files/workspace/up.bin"))
            .header("x-api-key", &server.admin_key)
            .body(vec![b'x'; bytes])
            .send()
    };
    assert_eq!(upload(512).await.unwrap().status().as_u16(), 201);
    assert_eq!(upload(2048).await.unwrap().status().as_u16(), 413);

    // Seeded files are the user's from now on; tools are not installed again.
    server
        .exec(
            "chain",
            "echo mine > /workspace/base.txt; rm /workspace/.marker",
        )
        .await;
    let (status, body) = server.post("/sandboxes/chain/stop", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.post("/sandboxes/chain/resume", json!({})).await;
    assert_eq!(status, 200, "{body}");
    server.wait_phase("chain", "Running").await;
    assert_eq!(cat(&server, "chain", "/workspace/base.txt").await, "mine\n");
    let (_, _, code) = server.exec("chain", "test -e /workspace/.marker").await;
    assert_eq!(code, 1, "tools run once per tool set");
    assert_eq!(
        cat(&server, "chain", "/workspace/hooks.log").await,
        "started\nstopping\nresumed\n",
        "onStop before the stop, onResume after the resume"
    );
    assert_eq!(
        cat(&server, "chain", "/workspace/init.log").await,
        "base\nmiddle\nleaf\nbase\nmiddle\nleaf\n",
        "init scripts run before every start"
    );
    server
        .wait_event("chain", "HookSucceeded", "onResume hook succeeded")
        .await;
}

#[tokio::test]
async fn a_failing_init_script_is_an_error_with_its_output() {
    let server = Server::start();
    server
        .create_template(
        "broken-init",
        json!({"initScripts": ["echo preparing", "echo no such tool >&2; exit 3", "echo never"]}),
    )
    .await;
    let (status, body) = server
        .post(
            "/sandboxes",
            json!({"name": "broken", "templateRef": {"name": "broken-init"}}),
        )
        .await;
    assert!(status == 201 || status == 200, "{body}");
    let sandbox = server.wait_phase("broken", "Error").await;
    let message = sandbox["message"].as_str().unwrap();
    assert!(
        message.contains("Init script failed (exit 3)") && message.contains("no such tool"),
        "{message}"
    );
    let ready = condition(&sandbox, "Ready").unwrap();
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "InitScriptFailed");
    assert!(ready["message"].as_str().unwrap().contains("preparing"));
}

#[tokio::test]
async fn a_failing_on_start_hook_is_a_condition_not_a_silent_success() {
    let server = Server::start();
    server
        .create_template(
            "bad-hook",
            json!({"harness": {"hooks": {"onStart": "echo hook broke >&2; exit 2"}}}),
        )
        .await;
    server.create_running("hooked", "bad-hook").await;
    server
        .wait_event(
            "hooked",
            "HookFailed",
            "onStart hook failed (exit 2): hook broke",
        )
        .await;
    let (_, sandbox) = server.get("/sandboxes/hooked").await;
    let hook = condition(&sandbox, "OnStartHookSucceeded").unwrap();
    assert_eq!(
        (hook["status"].as_str(), hook["reason"].as_str()),
        (Some("False"), Some("HookFailed"))
    );
    assert_eq!(
        sandbox["status"], "Running",
        "a hook failure does not stop the sandbox"
    );
}

#[tokio::test]
async fn constraints_that_cannot_hold_are_refused_at_validation() {
    let server = Server::start();
    for (constraints, expected) in [
        (
            json!({"restrictedCommands": ["curl"]}),
            "restrictedCommands",
        ),
        (
            json!({"allowedNetworkDests": ["example.com"]}),
            "egressRules",
        ),
        (json!({"maxCommandTimeout": "soon"}), "maxCommandTimeout"),
    ] {
        let (status, body) = server
            .post(
                "/templates",
                json!({"name": "unenforceable", "spec": {"harness": {"constraints": constraints}}}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].as_str().unwrap().contains(expected), "{body}");
    }
}

/// The idle timeout runs `onIdle`, then `onStop`, before the sandbox stops; both outputs are in
/// the events and their effects in the workspace.
#[tokio::test]
async fn an_idle_stop_runs_on_idle_then_on_stop() {
    let server = Server::start_with(agenttier_integration_tests::ServerOptions {
        args: ["--stop-grace", "200ms"].map(String::from).to_vec(),
        ..Default::default()
    });
    server
        .create_template(
            "idle-hooks",
            json!({"harness": {"hooks": {
                "onIdle": "echo idle >> /workspace/hooks.log; echo idle-output",
                "onStop": "echo stop >> /workspace/hooks.log"
            }}}),
        )
        .await;
    let (status, body) = server
        .post(
            "/sandboxes",
            json!({"name": "idler", "templateRef": {"name": "idle-hooks"}, "idleTimeout": "1s"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    server.wait_phase("idler", "Running").await;
    server
        .wait_phase_within("idler", "Stopped", Duration::from_secs(20))
        .await;
    server
        .wait_event(
            "idler",
            "HookSucceeded",
            "onIdle hook succeeded: idle-output",
        )
        .await;
    server
        .wait_event("idler", "HookSucceeded", "onStop hook succeeded")
        .await;
    let (status, _) = server.post("/sandboxes/idler/resume", json!({})).await;
    assert_eq!(status, 200);
    server.wait_phase("idler", "Running").await;
    assert_eq!(
        cat(&server, "idler", "/workspace/hooks.log").await,
        "idle\nstop\n"
    );
}
