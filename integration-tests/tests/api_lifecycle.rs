//! The core life cycle over plain HTTP against the real server and real sandboxes:
//! create → Running → exec → write a file → stop → resume → the file is there → clone → the clone
//! sees it → delete both → gone, data removed from disk.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agenttier_integration_tests::Server;
use serde_json::json;

#[tokio::test]
async fn create_exec_stop_resume_clone_delete() {
    let server = Server::start();
    let created = server.create_running("life", "minimal-shell").await;
    assert_eq!(created["sandboxId"], "life");
    assert_eq!(created["templateRef"], "minimal-shell");
    let workspace = created["pvcName"].as_str().unwrap().to_string();
    assert!(
        std::path::Path::new(&workspace).is_dir(),
        "workspace {workspace} exists on disk"
    );

    let (out, _, code) = server
        .exec(
            "life",
            "echo persisted > /workspace/note.txt && cat /workspace/note.txt",
        )
        .await;
    assert_eq!((out.as_str(), code), ("persisted\n", 0));

    let (status, body) = server.post("/sandboxes/life/stop", json!({})).await;
    assert_eq!(status, 200, "{body}");
    server.wait_phase("life", "Stopped").await;
    let (status, _) = server
        .post("/sandboxes/life/exec", json!({"command": "true"}))
        .await;
    assert_eq!(status, 409, "exec on a stopped sandbox is a conflict");
    let (status, body) = server.post("/sandboxes/life/stop", json!({})).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (409, "cannot stop sandbox in phase Stopped")
    );

    let (status, body) = server.post("/sandboxes/life/resume", json!({})).await;
    assert_eq!(status, 200, "{body}");
    server.wait_phase("life", "Running").await;
    let (out, _, _) = server.exec("life", "cat /workspace/note.txt").await;
    assert_eq!(out, "persisted\n", "the workspace survived stop and resume");

    let (status, body) = server
        .post("/sandboxes/life/clone", json!({"name": "life-copy"}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (body["name"].as_str(), body["namespace"].as_str()),
        (Some("life-copy"), Some("default"))
    );
    let clone = server.wait_phase("life-copy", "Running").await;
    let (out, _, _) = server.exec("life-copy", "cat /workspace/note.txt").await;
    assert_eq!(out, "persisted\n", "the clone sees the source's files");
    server
        .exec("life-copy", "echo clone-only > /workspace/note.txt")
        .await;
    let (out, _, _) = server.exec("life", "cat /workspace/note.txt").await;
    assert_eq!(
        out, "persisted\n",
        "the clone's writes do not reach the source"
    );
    let clone_workspace = clone["pvcName"].as_str().unwrap().to_string();

    let (status, list) = server.get("/sandboxes").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["life", "life-copy"]);

    for id in ["life", "life-copy"] {
        assert_eq!(server.delete(&format!("/sandboxes/{id}")).await, 204);
        let (status, _) = server.get(&format!("/sandboxes/{id}")).await;
        assert_eq!(status, 404);
    }
    assert!(
        !std::path::Path::new(&workspace).exists(),
        "source workspace removed from disk"
    );
    assert!(
        !std::path::Path::new(&clone_workspace).exists(),
        "clone workspace removed from disk"
    );
    let (_, list) = server.get("/sandboxes").await;
    assert_eq!(list["sandboxes"], json!([]), "an empty list is [] not null");
}

#[tokio::test]
async fn sdk_facing_reads_have_the_contract_shape() {
    let server = Server::start();
    let (status, me) = server.get("/user/me").await;
    assert_eq!(status, 200);
    assert_eq!(me["groups"], json!([]), "groups is a list, never null");
    assert_eq!(me["isAdmin"], true);
    let (status, templates) = server.get("/templates").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = templates["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for expected in ["general-coding", "minimal-shell"] {
        assert!(
            names.contains(&expected),
            "default template {expected} exists: {names:?}"
        );
    }
    let (status, template) = server.get("/templates/general-coding").await;
    assert_eq!(status, 200);
    assert!(template["spec"].is_object() && template["resourceVersion"].is_string());
    let response = reqwest::get(format!("{}/healthz", server.url))
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "ok");
    let response = reqwest::get(format!("{}/readyz", server.url))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn bad_input_gets_a_json_4xx_and_loses_nothing() {
    let server = Server::start();
    server.create_running("keep", "minimal-shell").await;
    server.exec("keep", "echo safe > /workspace/f").await;
    let raw = |method: reqwest::Method, path: &str, body: &'static str| {
        server
            .http
            .request(method, server.api(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let cases: Vec<(reqwest::Method, &str, &'static str, u16)> = vec![
        (reqwest::Method::POST, "/sandboxes", "{not json", 400),
        (reqwest::Method::POST, "/sandboxes", "", 400),
        (reqwest::Method::POST, "/sandboxes", "[]", 400),
        (
            reqwest::Method::POST,
            "/sandboxes",
            r#"{"name": 5, "templateRef": {"name": "minimal-shell"}}"#,
            400,
        ),
        (
            reqwest::Method::POST,
            "/sandboxes",
            r#"{"templateRef": {"name": "minimal-shell"}}"#,
            400,
        ),
        (reqwest::Method::POST, "/sandboxes", r#"{"name": "x"}"#, 400),
        (
            reqwest::Method::POST,
            "/sandboxes",
            r#"{"name": "Bad_Name", "templateRef": {"name": "minimal-shell"}}"#,
            400,
        ),
        (
            reqwest::Method::POST,
            "/sandboxes",
            r#"{"name": "ok", "templateRef": {"name": "no-such-template"}}"#,
            400,
        ),
        (
            reqwest::Method::POST,
            "/sandboxes",
            r#"{"name": "ok", "templateRef": {"name": "minimal-shell"}, "timeout": "soon"}"#,
            400,
        ),
        (
            reqwest::Method::POST,
            "/sandboxes",
            r#"{"name": "ok", "templateRef": {"name": "minimal-shell"}, "idleTimeout": "-5m"}"#,
            400,
        ),
        (
            reqwest::Method::POST,
            "/sandboxes",
            r#"{"name": "keep", "templateRef": {"name": "minimal-shell"}}"#,
            409,
        ),
        (
            reqwest::Method::POST,
            "/sandboxes/keep/exec",
            r#"{"command": ["ls"]}"#,
            400,
        ),
        (
            reqwest::Method::POST,
            "/sandboxes/keep/exec",
            r#"{"command": ""}"#,
            400,
        ),
        (
            reqwest::Method::POST,
            "/sandboxes/keep/exec",
            r#"{"command": "true", "timeout": "ten"}"#,
            400,
        ),
        (
            reqwest::Method::POST,
            "/sandboxes/keep/exec",
            r#"{"command": "true", "timeout": -1}"#,
            400,
        ),
        (
            reqwest::Method::POST,
            "/sandboxes/missing/exec",
            r#"{"command": "true"}"#,
            404,
        ),
        (reqwest::Method::POST, "/sandboxes/missing/stop", "", 404),
        (reqwest::Method::DELETE, "/sandboxes/missing", "", 404),
        (reqwest::Method::POST, "/sandboxes/keep/resume", "", 409),
        (
            reqwest::Method::POST,
            "/sandboxes/keep/clone",
            r#"{"name": "UPPER"}"#,
            400,
        ),
        (
            reqwest::Method::POST,
            "/sandboxes/keep/clone",
            r#"{"name": "keep"}"#,
            409,
        ),
        (reqwest::Method::GET, "/no/such/route", "", 404),
        (reqwest::Method::PATCH, "/user/me", "", 405),
    ];
    for (method, path, body, expected) in cases {
        let response = raw(method.clone(), path, body).await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let text = response.text().await.unwrap();
        assert_eq!(
            status, expected,
            "{method} {path} {body:?} → {status} {text}"
        );
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "{method} {path}: {text}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{method} {path}: {text}"
        );
    }
    let oversized = format!(
        r#"{{"name": "big", "templateRef": {{"name": "minimal-shell"}}, "pad": "{}"}}"#,
        "x".repeat(2 << 20)
    );
    let response = server
        .http
        .post(server.api("/sandboxes"))
        .body(oversized)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let json: serde_json::Value = response.json().await.unwrap();
    assert!(json["error"].is_string());

    let unauthenticated = reqwest::Client::new()
        .get(server.api("/sandboxes"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status().as_u16(), 401);
    assert_eq!(
        unauthenticated.json::<serde_json::Value>().await.unwrap()["error"],
        "missing_authorization"
    );
    let bad_key = agenttier_integration_tests::client_with_key("atk_nope")
        .get(server.api("/sandboxes"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_key.status().as_u16(), 401);

    let (out, _, _) = server.exec("keep", "cat /workspace/f").await;
    assert_eq!(out, "safe\n", "nothing was lost");
    let (_, list) = server.get("/sandboxes").await;
    assert_eq!(
        list["sandboxes"].as_array().unwrap().len(),
        1,
        "no half-created sandboxes: {list}"
    );
}

#[tokio::test]
async fn exec_reports_exit_codes_stderr_and_enforces_timeouts() {
    let server = Server::start();
    server.create_running("ex", "minimal-shell").await;
    let (out, err, code) = server.exec("ex", "echo out; echo err >&2; exit 3").await;
    assert_eq!((out.as_str(), err.as_str(), code), ("out\n", "err\n", 3));
    let (status, body) = server
        .post(
            "/sandboxes/ex/exec",
            json!({"command": "sleep 30", "timeout": 1}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["exitCode"], 124, "timed-out command is killed: {body}");
    let (out, _, _) = server.exec("ex", "pwd").await;
    assert_eq!(out, "/workspace\n");
}
