//! Router tests of the interactive routes (files, ports, preview proxy, terminal) with
//! `oneshot` on the real actors and SQLite store and the fake runtime; the terminal's connection
//! loop driven over channels; and one real WebSocket client (tokio-tungstenite) against the
//! router served on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::Message;
use axum::http::{Request, StatusCode};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tower::ServiceExt;

use agenttier_actors::sandbox::{SandboxKey, runtime_id};
use agenttier_actors::store::{EventFilter, TypedStore};
use agenttier_actors::terminal::{OpenTerminal, SessionOptions};
use agenttier_crds::{Sandbox, ShareEntry, SharingSpec};

use super::terminal::{TerminalConfig, run};
use crate::auth::test_harness::{Cred, Harness, harness, request};

/// One request through the test's router (so terminal tickets persist); the body is JSON when
/// it parses, else the text as a JSON string.
async fn call(
    h: &Harness,
    key: Option<&str>,
    method: &str,
    path: &str,
    body: Body,
) -> (StatusCode, Value) {
    let cred = key.map_or(Cred::Anonymous, Cred::Key);
    let (status, bytes) = request(h.router.clone(), cred, method, path, body).await;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

fn json_body(value: Value) -> Body {
    Body::from(value.to_string())
}

/// Alice's running sandbox `name`.
async fn sandbox(h: &Harness, name: &str) -> Sandbox {
    h.create(&h.alice, name).await;
    let key = SandboxKey::new("default", name);
    for _ in 0..200 {
        if let Some(s) = h.state.control.get(&key)
            && s.phase() == Some(agenttier_crds::SandboxPhase::Running)
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("sandbox {name} never ran");
}

/// Shares alice's sandbox with bob at `level`.
async fn share_with_bob(h: &Harness, name: &str, level: &str) {
    let updated = h
        .state
        .control
        .store
        .update_obj::<Sandbox, _>("default", name, |s| {
            s.spec.sharing = Some(SharingSpec {
                users: vec![ShareEntry {
                    identity: "bob".into(),
                    level: level.into(),
                }],
                groups: Vec::new(),
                share_links: Vec::new(),
            });
            true
        })
        .await
        .unwrap()
        .unwrap();
    h.state.control.read_model.apply(updated);
}

#[tokio::test]
async fn files_upload_list_download_and_refuse_escapes() {
    let h = harness().await;
    sandbox(&h, "f").await;
    let a = Some(h.alice.as_str());
    let (status, body) = call(
        &h,
        a,
        "PUT",
        "/api/v1/sandboxes/f/files/workspace/notes.txt",
        Body::from("hello"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body, json!({"path": "/workspace/notes.txt", "bytes": 5}));
    let (status, body) = call(
        &h,
        a,
        "GET",
        "/api/v1/sandboxes/f/files/?path=/workspace",
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["path"], "/workspace");
    assert_eq!(body["entries"][0]["name"], "notes.txt");
    assert_eq!(body["entries"][0]["size"], 5);
    assert_eq!(body["entries"][0]["isDir"], false);
    let response = h
        .router
        .clone()
        .oneshot(
            Request::get("/api/v1/sandboxes/f/files/workspace/notes.txt")
                .header("x-api-key", &h.alice)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    assert_eq!(response.headers()["content-length"], "5");
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"notes.txt\""
    );
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"hello");

    let (status, body) = call(
        &h,
        a,
        "GET",
        "/api/v1/sandboxes/f/files/workspace/missing",
        Body::empty(),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::NOT_FOUND,
            json!({"error": "file not found: /workspace/missing"})
        )
    );
    for (method, path) in [
        ("GET", "/api/v1/sandboxes/f/files/workspace/a%27b"),
        ("GET", "/api/v1/sandboxes/f/files/workspace/a%60b"),
        ("GET", "/api/v1/sandboxes/f/files/workspace/a%5Cb"),
        ("GET", "/api/v1/sandboxes/f/files/workspace/a%0Ab"),
        ("GET", "/api/v1/sandboxes/f/files/workspace/a%00b"),
        (
            "PUT",
            "/api/v1/sandboxes/f/files/workspace/..%2F..%2F..%2Fetc%2Fx",
        ),
        ("GET", "/api/v1/sandboxes/f/files/?path=/../etc"),
        ("GET", "/api/v1/sandboxes/f/archive?path=/etc"),
        ("GET", "/api/v1/sandboxes/f/archive?path=/workspace/../etc"),
    ] {
        let (status, body) = call(&h, a, method, path, Body::from("x")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }
    let long = format!("/api/v1/sandboxes/f/files/workspace/{}", "n".repeat(256));
    let (status, _) = call(&h, a, "PUT", &long, Body::from("x")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Without the trailing slash the listing route does not exist (contract §4.10).
    let (status, _) = call(&h, a, "GET", "/api/v1/sandboxes/f/files", Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Someone else's sandbox is the contract's 404.
    let (status, body) = call(
        &h,
        Some(&h.bob),
        "GET",
        "/api/v1/sandboxes/f/files/",
        Body::empty(),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::NOT_FOUND,
            json!({"error": "access denied to sandbox f"})
        )
    );
}

#[tokio::test]
async fn oversized_uploads_are_413_and_bodies_past_the_json_limit_stream() {
    let h = harness().await;
    sandbox(&h, "big").await;
    let request = Request::put("/api/v1/sandboxes/big/files/workspace/huge")
        .header("x-api-key", &h.alice)
        .header("content-length", (32u64 << 20) + 1)
        .body(Body::empty())
        .unwrap();
    let response = h.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // A chunked body over the cap is cut off while streaming.
    let chunks = futures::stream::iter(
        (0..33).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 1 << 20]))),
    );
    let (status, body) = call(
        &h,
        Some(&h.alice),
        "PUT",
        "/api/v1/sandboxes/big/files/workspace/huge",
        Body::from_stream(chunks),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": "payload exceeds 33554432 bytes"})
        )
    );
    // 2 MiB is above the 1 MiB JSON limit and still fine for files.
    let (status, body) = call(
        &h,
        Some(&h.alice),
        "PUT",
        "/api/v1/sandboxes/big/files/workspace/two",
        Body::from(vec![b'y'; 2 << 20]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["bytes"], 2 << 20);
}

#[tokio::test]
async fn share_levels_and_phase_decide_file_access() {
    let h = harness().await;
    sandbox(&h, "s").await;
    share_with_bob(&h, "s", "viewer").await;
    let b = Some(h.bob.as_str());
    let (status, _) = call(&h, b, "GET", "/api/v1/sandboxes/s/files/", Body::empty()).await;
    assert_eq!(status, StatusCode::OK, "viewers read");
    let (status, body) = call(
        &h,
        b,
        "PUT",
        "/api/v1/sandboxes/s/files/workspace/x",
        Body::from("x"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    share_with_bob(&h, "s", "collaborator").await;
    let (status, _) = call(
        &h,
        b,
        "PUT",
        "/api/v1/sandboxes/s/files/workspace/x",
        Body::from("x"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "collaborators write");
    let (status, _) = call(
        &h,
        Some(&h.alice),
        "POST",
        "/api/v1/sandboxes/s/stop",
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(
        &h,
        Some(&h.alice),
        "GET",
        "/api/v1/sandboxes/s/files/",
        Body::empty(),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::CONFLICT,
            json!({"error": "sandbox is not running"})
        )
    );
}

#[tokio::test]
async fn ports_are_listed_added_and_removed() {
    let h = harness().await;
    sandbox(&h, "p").await;
    let a = Some(h.alice.as_str());
    let (status, body) = call(&h, a, "GET", "/api/v1/sandboxes/p/ports", Body::empty()).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"ports": []})));
    let (status, body) = call(
        &h,
        a,
        "POST",
        "/api/v1/sandboxes/p/ports",
        json_body(json!({"port": 8000})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["port"], 8000);
    assert_eq!(body["protocol"], "http");
    assert!(
        body["previewUrl"]
            .as_str()
            .unwrap()
            .ends_with("/api/v1/sandboxes/p/preview/8000/")
    );
    assert_eq!(body["internalUrl"], "http://127.0.0.1:8000");
    let (_, body) = call(&h, a, "GET", "/api/v1/sandboxes/p/ports", Body::empty()).await;
    assert_eq!(body["ports"].as_array().unwrap().len(), 1);
    assert_eq!(body["ports"][0]["port"], 8000);
    for bad in [
        json!({"port": 0}),
        json!({"port": -3}),
        json!({"port": 70000}),
        json!({}),
        json!({"port": "x"}),
    ] {
        let (status, body) = call(
            &h,
            a,
            "POST",
            "/api/v1/sandboxes/p/ports",
            json_body(bad.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    for bad in ["abc", "0", "65536"] {
        let (status, body) = call(
            &h,
            a,
            "DELETE",
            &format!("/api/v1/sandboxes/p/ports/{bad}"),
            Body::empty(),
        )
        .await;
        assert_eq!(
            (status, body),
            (
                StatusCode::BAD_REQUEST,
                json!({"error": format!("invalid port: {bad}")})
            )
        );
    }
    let (status, _) = call(
        &h,
        a,
        "DELETE",
        "/api/v1/sandboxes/p/ports/8000",
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(
        &h,
        a,
        "DELETE",
        "/api/v1/sandboxes/p/ports/8000",
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "removing twice is fine");
    let (_, body) = call(&h, a, "GET", "/api/v1/sandboxes/p/ports", Body::empty()).await;
    assert_eq!(body, json!({"ports": []}));
    let events = h
        .state
        .control
        .store
        .list_events(&EventFilter {
            object_name: Some("p".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
    assert!(
        reasons.contains(&"PortForwarded") && reasons.contains(&"PortForwardRemoved"),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn the_preview_proxy_needs_credentials_a_forward_and_a_live_server() {
    let h = harness().await;
    let sb = sandbox(&h, "web").await;
    let upstream = axum::Router::new().route(
        "/hello",
        axum::routing::get(
            |uri: axum::http::Uri, headers: axum::http::HeaderMap| async move {
                let leaked = headers.contains_key("x-api-key");
                format!("hi {} leaked={leaked}", uri.query().unwrap_or_default())
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, upstream).await });
    h.fake.route_port(&runtime_id(&sb), 8080, address);

    let a = Some(h.alice.as_str());
    let (status, body) = call(
        &h,
        a,
        "GET",
        "/api/v1/sandboxes/web/preview/8080/hello",
        Body::empty(),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::NOT_FOUND,
            json!({"error": "port 8080 is not forwarded"})
        )
    );
    call(
        &h,
        a,
        "POST",
        "/api/v1/sandboxes/web/ports",
        json_body(json!({"port": 8080})),
    )
    .await;
    let (status, body) = call(
        &h,
        a,
        "GET",
        "/api/v1/sandboxes/web/preview/8080/hello?x=1",
        Body::empty(),
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!("hi x=1 leaked=false"))
    );
    let (status, _) = call(
        &h,
        None,
        "GET",
        "/api/v1/sandboxes/web/preview/8080/hello",
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(
        &h,
        Some(&h.bob),
        "GET",
        "/api/v1/sandboxes/web/preview/8080/hello",
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A forwarded port nobody listens on is a plain-text 502.
    call(
        &h,
        a,
        "POST",
        "/api/v1/sandboxes/web/ports",
        json_body(json!({"port": 9090})),
    )
    .await;
    let (status, body) = call(
        &h,
        a,
        "GET",
        "/api/v1/sandboxes/web/preview/9090/",
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.is_string(), "{body}");
}

#[tokio::test]
async fn terminal_pre_upgrade_checks_answer_in_plain_text() {
    let h = harness().await;
    sandbox(&h, "t").await;
    let cases = [
        (
            None,
            "/ws/terminal/t",
            StatusCode::UNAUTHORIZED,
            "missing authentication",
        ),
        (
            Some("atk_bogus"),
            "/ws/terminal/t",
            StatusCode::UNAUTHORIZED,
            "invalid api key",
        ),
        (
            None,
            "/ws/terminal/t?token=atk_x",
            StatusCode::UNAUTHORIZED,
            "invalid token: API keys are not accepted",
        ),
        (
            None,
            "/ws/terminal/t?ticket=att_nope",
            StatusCode::UNAUTHORIZED,
            "invalid token: the ticket",
        ),
        (
            Some(h.alice.as_str()),
            "/ws/terminal/nope",
            StatusCode::NOT_FOUND,
            "sandbox not found",
        ),
        (
            Some(h.bob.as_str()),
            "/ws/terminal/t",
            StatusCode::FORBIDDEN,
            "access denied",
        ),
        (
            Some(h.alice.as_str()),
            "/ws/terminal/t?namespace=elsewhere",
            StatusCode::NOT_FOUND,
            "sandbox not found",
        ),
    ];
    for (key, path, expected, text) in cases {
        let (status, body) = call(&h, key, "GET", path, Body::empty()).await;
        assert_eq!(status, expected, "{path}: {body}");
        assert!(
            body.as_str().is_some_and(|b| b.starts_with(text)),
            "{path}: {body}"
        );
    }
    let (status, _) = call(
        &h,
        Some(&h.alice),
        "POST",
        "/api/v1/sandboxes/t/stop",
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(&h, Some(&h.alice), "GET", "/ws/terminal/t", Body::empty()).await;
    assert_eq!(
        (status, body),
        (StatusCode::CONFLICT, json!("sandbox is not running\n"))
    );
}

#[tokio::test]
async fn tickets_are_issued_only_to_those_who_may_open_the_terminal() {
    let h = harness().await;
    sandbox(&h, "k").await;
    let (status, body) = call(
        &h,
        Some(&h.alice),
        "POST",
        "/api/v1/sandboxes/k/terminal-ticket",
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body["ticket"].as_str().unwrap().starts_with("att_"));
    assert_eq!(body["expiresIn"], 60);
    assert!(body["expiresAt"].as_str().unwrap().ends_with('Z'));
    let (status, _) = call(
        &h,
        Some(&h.bob),
        "POST",
        "/api/v1/sandboxes/k/terminal-ticket",
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(
        &h,
        None,
        "POST",
        "/api/v1/sandboxes/k/terminal-ticket",
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// A socket pair made of channels: what the server writes, and what the test sends.
fn channel_socket() -> (
    futures::channel::mpsc::UnboundedSender<Message>,
    futures::channel::mpsc::UnboundedReceiver<Message>,
    impl futures::Sink<Message> + Unpin,
    impl futures::Stream<Item = Result<Message, std::convert::Infallible>> + Unpin,
) {
    let (to_server, from_client) = futures::channel::mpsc::unbounded::<Message>();
    let (to_client, from_server) = futures::channel::mpsc::unbounded::<Message>();
    (to_server, from_server, to_client, from_client.map(Ok))
}

/// The next frame that is not a heartbeat.
async fn next_json(from_server: &mut futures::channel::mpsc::UnboundedReceiver<Message>) -> Value {
    loop {
        let value = next_frame(from_server).await;
        if value["type"] != "heartbeat" {
            return value;
        }
    }
}

async fn next_frame(from_server: &mut futures::channel::mpsc::UnboundedReceiver<Message>) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), from_server.next())
            .await
            .expect("no frame within 5s")
            .expect("server closed");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Close(frame) => {
                let frame = frame.unwrap();
                return json!({"closed": frame.code, "reason": frame.reason.as_str()});
            }
            _ => {}
        }
    }
}

fn frame(value: Value) -> Message {
    Message::Text(value.to_string().into())
}

#[tokio::test]
async fn the_connection_loop_speaks_the_contract_frames_over_channels() {
    let h = harness().await;
    let sb = sandbox(&h, "loop").await;
    let attachment = h
        .state
        .control
        .terminals
        .open(OpenTerminal {
            sandbox: sb.clone(),
            user: "alice".into(),
            can_write: true,
            cols: 120,
            rows: 40,
            options: SessionOptions::default(),
        })
        .await
        .unwrap();
    let session_id = attachment.session_id.clone();
    let (mut to_server, mut from_server, sink, stream) = channel_socket();
    let config = TerminalConfig {
        heartbeat: Duration::from_millis(200),
        ..Default::default()
    };
    let server = tokio::spawn(run(sink, stream, attachment, config));
    assert_eq!(
        next_json(&mut from_server).await,
        json!({"type": "session", "sessionId": session_id})
    );
    to_server
        .send(frame(json!({"type": "input", "data": "héllo"})))
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut from_server).await,
        json!({"type": "output", "stream": "stdout", "data": "héllo"})
    );
    to_server
        .send(frame(json!({"type": "ping"})))
        .await
        .unwrap();
    assert_eq!(next_json(&mut from_server).await, json!({"type": "pong"}));
    to_server
        .send(frame(json!({"type": "resize", "cols": 0, "rows": 99999})))
        .await
        .unwrap();
    to_server
        .send(Message::Text("not json".into()))
        .await
        .unwrap();
    to_server
        .send(frame(json!({"type": "unknown"})))
        .await
        .unwrap();
    // Binary frames are parsed as JSON too.
    to_server
        .send(Message::Binary(
            json!({"type": "input", "data": "b"}).to_string().into(),
        ))
        .await
        .unwrap();
    assert_eq!(next_json(&mut from_server).await["data"], "b");
    assert_eq!(h.fake.pty_size(&runtime_id(&sb)), Some((1, 65535)));
    // Heartbeats come every interval.
    let beat = loop {
        let value = next_frame(&mut from_server).await;
        if value["type"] == "heartbeat" {
            break value;
        }
    };
    assert!(beat["ts"].as_i64().unwrap() > 1_600_000_000_000);
    // Stopping the sandbox closes the socket with the contract's reason and code.
    let (status, _) = call(
        &h,
        Some(&h.alice),
        "POST",
        "/api/v1/sandboxes/loop/stop",
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mut seen = Vec::new();
    loop {
        let value = next_json(&mut from_server).await;
        let done = value.get("closed").is_some();
        seen.push(value);
        if done {
            break;
        }
    }
    assert!(
        seen.contains(&json!({"type": "close", "reason": "sandbox_stopped", "code": 4001})),
        "{seen:?}"
    );
    assert_eq!(
        seen.last().unwrap(),
        &json!({"closed": 4001, "reason": "sandbox_stopped"})
    );
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn viewers_watch_but_cannot_type() {
    let h = harness().await;
    let sb = sandbox(&h, "v").await;
    let owner = h
        .state
        .control
        .terminals
        .open(OpenTerminal {
            sandbox: sb.clone(),
            user: "alice".into(),
            can_write: true,
            cols: 80,
            rows: 24,
            options: SessionOptions::default(),
        })
        .await
        .unwrap();
    let key = SandboxKey::new("default", "v");
    let viewer = h
        .state
        .control
        .terminals
        .attach(&key, &owner.session_id, false)
        .await
        .unwrap();
    let (mut owner_in, mut owner_out, sink, stream) = channel_socket();
    tokio::spawn(run(sink, stream, owner, TerminalConfig::default()));
    let (mut viewer_in, mut viewer_out, sink, stream) = channel_socket();
    tokio::spawn(run(sink, stream, viewer, TerminalConfig::default()));
    next_json(&mut owner_out).await;
    next_json(&mut viewer_out).await;
    viewer_in
        .send(frame(json!({"type": "input", "data": "rm -rf /"})))
        .await
        .unwrap();
    let refused = next_json(&mut viewer_out).await;
    assert_eq!(refused["type"], "error", "{refused}");
    owner_in
        .send(frame(json!({"type": "input", "data": "ok"})))
        .await
        .unwrap();
    assert_eq!(next_json(&mut owner_out).await["data"], "ok");
    assert_eq!(
        next_json(&mut viewer_out).await["data"],
        "ok",
        "viewers see the output"
    );
}

#[tokio::test]
async fn a_real_websocket_client_opens_types_and_reconnects() {
    use tokio_tungstenite::tungstenite::Message as Ws;
    let h = harness().await;
    sandbox(&h, "ws").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = h.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await });

    let (_, ticket) = call(
        &h,
        Some(&h.alice),
        "POST",
        "/api/v1/sandboxes/ws/terminal-ticket",
        Body::empty(),
    )
    .await;
    let ticket = ticket["ticket"].as_str().unwrap().to_owned();
    let url = format!("ws://{address}/ws/terminal/ws?ticket={ticket}");
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let text = |m: Ws| -> Value { serde_json::from_str(m.to_text().unwrap()).unwrap() };
    let hello = text(socket.next().await.unwrap().unwrap());
    let session = hello["sessionId"].as_str().unwrap().to_owned();
    socket
        .send(Ws::text(
            json!({"type": "input", "data": "echo"}).to_string(),
        ))
        .await
        .unwrap();
    assert_eq!(text(socket.next().await.unwrap().unwrap())["data"], "echo");
    drop(socket);
    // The ticket was single-use.
    let again = tokio_tungstenite::connect_async(&url).await;
    assert!(again.is_err(), "a used ticket opened a second connection");
    // An API key in the header reconnects to the same session.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{address}/ws/terminal/ws?session={session}"
        ))
        .unwrap();
    request
        .headers_mut()
        .insert("x-api-key", h.alice.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let hello = text(socket.next().await.unwrap().unwrap());
    assert_eq!(hello["sessionId"], session.as_str());
    socket
        .send(Ws::text(
            json!({"type": "input", "data": "again"}).to_string(),
        ))
        .await
        .unwrap();
    // If the server had not noticed the first socket go yet, the reconnect replays the ring
    // first; either way "again" follows.
    loop {
        let frame = text(socket.next().await.unwrap().unwrap());
        if frame["data"].as_str().is_some_and(|d| d.ends_with("again")) {
            break;
        }
        assert_eq!(frame["data"], "echo", "{frame}");
    }
}
