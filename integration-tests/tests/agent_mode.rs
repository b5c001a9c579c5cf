//! Agent mode's refusals against the real server: every client mistake is a 4xx in the
//! contract's JSON shape (never a 500), answered before any stream starts, and loses nothing.
//! The streaming paths themselves are proven through the published SDK (tests/sdk.rs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agenttier_integration_tests::{Server, status_json};
use serde_json::{Value, json};

async fn post_raw(server: &Server, path: &str, body: Vec<u8>) -> (u16, Value) {
    status_json(server.post_bytes(path, body).await).await
}

#[tokio::test]
async fn mistakes_are_answered_before_streaming() {
    let server = Server::start();
    server.create_running("coder", "minimal-shell").await;
    server.create_running("agent", "langgraph-agent").await;

    // A code-mode sandbox: 400 naming the mode.
    let (status, body) = server
        .post("/sandboxes/coder/configure", json!({"entrypoint": ["x"]}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with(
            r#"sandbox coder is in mode "code" — /configure is only valid for mode: agent"#
        ),
        "{body}"
    );
    let (status, body) = post_raw(&server, "/sandboxes/coder/invoke", Vec::new()).await;
    assert_eq!(status, 400, "{body}");

    // Bad configure bodies.
    for (request, expected) in [
        (
            json!({}),
            "at least one of files, installCommand or entrypoint",
        ),
        (
            json!({"files": [{"path": "x", "content": "1"}]}),
            r#"files[0].path must be absolute (got "x")"#,
        ),
        (
            json!({"files": [{"path": "/a/../b", "content": "1"}]}),
            "must not contain",
        ),
        (
            json!({"files": [{"path": "/a", "contentBase64": "%%%"}]}),
            "not valid base64",
        ),
        (json!({"files": [{"path": "/a"}]}), "exactly one of content"),
    ] {
        let (status, body) = server.post("/sandboxes/agent/configure", request).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].as_str().unwrap().contains(expected), "{body}");
    }
    let (status, body) =
        post_raw(&server, "/sandboxes/agent/configure", b"{not json".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    let too_many: Vec<Value> = (0..201)
        .map(|i| json!({"path": format!("/tmp/f{i}"), "content": "x"}))
        .collect();
    let (status, body) = server
        .post("/sandboxes/agent/configure", json!({"files": too_many}))
        .await;
    assert_eq!(status, 403, "the file cap is 403: {body}");

    // Invoke before any configure: 424; no install log yet: 404.
    let (status, body) = post_raw(&server, "/sandboxes/agent/invoke", b"hi".to_vec()).await;
    assert_eq!(status, 424, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("call POST /configure first")
    );
    let (status, body) = server.get("/sandboxes/agent/configure/install-log").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "no install log available for this sandbox");

    // An invoke body over 16 MiB: 413.
    let (status, body) = post_raw(
        &server,
        "/sandboxes/agent/invoke",
        vec![b'x'; (16 << 20) + 1],
    )
    .await;
    assert_eq!(status, 413, "{body}");

    // Cancel: the id is required, and an unknown one is not in flight.
    let (status, body) = server
        .post("/sandboxes/agent/invoke/cancel", json!({}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invokeId is required in request body");
    let (status, body) = server
        .post(
            "/sandboxes/agent/invoke/cancel",
            json!({"invokeId": "inv-nope"}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "invoke inv-nope not in flight");

    // Unknown sandboxes are 404; a stopped one is 409.
    let (status, _) = server
        .post("/sandboxes/ghost/configure", json!({"entrypoint": ["x"]}))
        .await;
    assert_eq!(status, 404);
    let (status, _) = server.post("/sandboxes/agent/stop", json!({})).await;
    assert_eq!(status, 200);
    let (status, body) = server
        .post("/sandboxes/agent/configure", json!({"entrypoint": ["x"]}))
        .await;
    assert_eq!(status, 409, "{body}");

    // Nothing was lost: the sandbox resumes and configures normally.
    let (status, _) = server.post("/sandboxes/agent/resume", json!({})).await;
    assert_eq!(status, 200);
    server.wait_phase("agent", "Running").await;
    let (status, body) = post_raw(
        &server,
        "/sandboxes/agent/configure",
        json!({"entrypoint": ["cat"]}).to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let text = body.as_str().unwrap_or_default();
    assert!(text.contains("event: result"), "{body}");

    // An install log belongs to its sandbox: one re-created under the same name has none.
    let (status, body) = post_raw(
        &server,
        "/sandboxes/agent/configure",
        json!({"installCommand": ["echo", "installed"]})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.get("/sandboxes/agent/configure/install-log").await;
    assert_eq!(
        (status, body["log"].as_str()),
        (200, Some("installed\n")),
        "{body}"
    );
    assert_eq!(server.delete("/sandboxes/agent").await, 204);
    server.create_running("agent", "langgraph-agent").await;
    let (status, body) = server.get("/sandboxes/agent/configure/install-log").await;
    assert_eq!(status, 404, "the old sandbox's log: {body}");
}
