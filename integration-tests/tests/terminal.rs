//! End-to-end tests of the terminal WebSocket: the real binary, real bubblewrap sandboxes with a
//! bash on a real PTY, and a real WebSocket client (tokio-tungstenite). Needs root, bubblewrap
//! and `cargo build -p agenttier`; a missing piece fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use agenttier_integration_tests::{Server, ServerOptions, next_before};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A server whose terminals keep sessions for `window` and beat every `heartbeat`.
fn server(window: &str, heartbeat: &str) -> Server {
    Server::start_with(ServerOptions {
        args: vec![
            "--terminal-reconnect-window".into(),
            window.into(),
            "--terminal-heartbeat-interval".into(),
            heartbeat.into(),
        ],
        ..Default::default()
    })
}

/// One terminal connection and everything it received.
struct Term {
    socket: Socket,
    session: String,
    output: String,
    frames: Vec<Value>,
    pings: usize,
}

fn ws_url(server: &Server, path_and_query: &str) -> String {
    format!(
        "{}{path_and_query}",
        server.url.replacen("http://", "ws://", 1)
    )
}

async fn connect(server: &Server, sandbox: &str, query: &str) -> Result<Term, WsError> {
    let url = ws_url(server, &format!("/ws/terminal/{sandbox}{query}"));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-api-key", server.admin_key.parse().unwrap());
    let (socket, _) = tokio_tungstenite::connect_async(request).await?;
    let mut term = Term {
        socket,
        session: String::new(),
        output: String::new(),
        frames: Vec::new(),
        pings: 0,
    };
    let first = term
        .frame(Duration::from_secs(10))
        .await
        .expect("no first frame");
    assert_eq!(first["type"], "session", "{first}");
    term.session = first["sessionId"].as_str().unwrap().to_owned();
    Ok(term)
}

impl Term {
    /// The next JSON frame (output is also appended to `self.output`); `None` when the socket
    /// closed. A close frame is returned as `{"closed": code, "reason": …}`.
    async fn frame(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let message = next_before(&mut self.socket, deadline).await?;
            match message {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    if value["type"] == "output" {
                        self.output.push_str(value["data"].as_str().unwrap());
                    }
                    self.frames.push(value.clone());
                    return Some(value);
                }
                Message::Close(frame) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    return Some(json!({"closed": code, "reason": reason}));
                }
                Message::Ping(_) => self.pings += 1,
                _ => {}
            }
        }
    }

    async fn input(&mut self, data: &str) {
        let frame = json!({"type": "input", "data": data}).to_string();
        self.socket.send(Message::text(frame)).await.unwrap();
    }

    /// Reads until the output holds `needle` (which should be computed by the shell, so the
    /// terminal's echo of the command line cannot match it).
    async fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.output.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                self.frame(left).await.is_some() || self.output.contains(needle),
                "no {needle:?}; output so far: {:?}",
                self.output
            );
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in {:?}",
                self.output
            );
        }
    }
}

async fn running_bash(server: &Server, name: &str) {
    server.create_running(name, "general-coding").await;
}

#[tokio::test]
async fn keystrokes_echo_resize_changes_stty_and_ctrl_c_interrupts() {
    let server = server("30s", "30s");
    running_bash(&server, "term-basic").await;
    let mut term = connect(&server, "term-basic", "").await.unwrap();
    term.input("echo hi-$((6*7))\r").await;
    term.wait_for("hi-42").await;
    assert!(
        term.output.contains("echo hi-$((6*7))"),
        "keystrokes echo: {:?}",
        term.output
    );

    let resize = json!({"type": "resize", "cols": 100, "rows": 37}).to_string();
    term.socket.send(Message::text(resize)).await.unwrap();
    term.input("stty size | tr ' ' x\r").await;
    term.wait_for("37x100").await;

    term.input("sleep 300\r").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    term.input("\u{3}").await;
    term.input("echo status-$?-$((1+1))\r").await;
    term.wait_for("status-130-2").await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "Ctrl-C did not interrupt the sleep"
    );

    let ping = json!({"type": "ping"}).to_string();
    term.socket.send(Message::text(ping)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !term.frames.iter().any(|f| f["type"] == "pong") {
        assert!(Instant::now() < deadline, "no pong");
        term.frame(Duration::from_secs(10)).await.unwrap();
    }
}

#[tokio::test]
async fn a_client_that_drops_reconnects_to_its_shell_and_missed_output() {
    let server = server("10s", "30s");
    running_bash(&server, "term-reconnect").await;
    let mut term = connect(&server, "term-reconnect", "").await.unwrap();
    term.input("export FOO=bar-$((40+2)); sleep 600 &\r").await;
    term.input("echo ready-$((1+1))\r").await;
    term.wait_for("ready-2").await;
    // Output produced while no client is connected.
    term.input("(sleep 2; echo LATE-$((100+23))) &\r").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let session = term.session.clone();
    // Drop the connection without a close handshake, as a broken network would.
    drop(term);
    tokio::time::sleep(Duration::from_secs(4)).await;

    let mut back = connect(&server, "term-reconnect", &format!("?session={session}"))
        .await
        .unwrap();
    assert_eq!(back.session, session, "the same session");
    back.wait_for("LATE-123").await;
    back.input("echo foo=$FOO; jobs\r").await;
    back.wait_for("foo=bar-42").await;
    back.wait_for("Running").await;
    assert!(back.output.contains("sleep 600"), "{:?}", back.output);
}

#[tokio::test]
async fn after_the_window_the_session_is_gone() {
    let server = server("1s", "30s");
    running_bash(&server, "term-window").await;
    let term = connect(&server, "term-window", "").await.unwrap();
    let session = term.session.clone();
    drop(term);
    tokio::time::sleep(Duration::from_secs(3)).await;
    match connect(&server, "term-window", &format!("?session={session}")).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 404),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("the session outlived its window"),
    }
    // A fresh terminal still opens.
    connect(&server, "term-window", "").await.unwrap();
}

#[tokio::test]
async fn stopping_the_sandbox_closes_the_socket_with_the_contract_reason() {
    let server = server("30s", "1s");
    running_bash(&server, "term-stop").await;
    let mut term = connect(&server, "term-stop", "").await.unwrap();
    // Heartbeats: a ping control frame and a heartbeat message every interval.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !term.frames.iter().any(|f| f["type"] == "heartbeat") || term.pings == 0 {
        assert!(Instant::now() < deadline, "no heartbeat: {:?}", term.frames);
        term.frame(Duration::from_secs(10)).await.unwrap();
    }
    let (status, body) = server.post("/sandboxes/term-stop/stop", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let mut closed = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while closed.is_none() {
        assert!(Instant::now() < deadline, "never closed: {:?}", term.frames);
        let frame = term
            .frame(Duration::from_secs(20))
            .await
            .expect("socket ended without close");
        if frame.get("closed").is_some() {
            closed = Some(frame);
        }
    }
    assert!(
        term.frames
            .contains(&json!({"type": "close", "reason": "sandbox_stopped", "code": 4001})),
        "{:?}",
        term.frames
    );
    assert_eq!(
        closed.unwrap(),
        json!({"closed": 4001, "reason": "sandbox_stopped"})
    );
}

#[tokio::test]
async fn browsers_use_tickets_and_api_keys_never_travel_as_tokens() {
    let server = server("30s", "30s");
    running_bash(&server, "term-ticket").await;
    let (status, body) = server
        .post("/sandboxes/term-ticket/terminal-ticket", json!({}))
        .await;
    assert_eq!(status, 201, "{body}");
    let ticket = body["ticket"].as_str().unwrap();
    let url = ws_url(
        &server,
        &format!("/ws/terminal/term-ticket?ticket={ticket}"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let first = socket.next().await.unwrap().unwrap();
    assert!(first.to_text().unwrap().contains("sessionId"));
    for query in [
        format!("?ticket={ticket}"),
        format!("?token={}", server.admin_key),
        String::new(),
    ] {
        let url = ws_url(&server, &format!("/ws/terminal/term-ticket{query}"));
        match tokio_tungstenite::connect_async(&url).await {
            Err(WsError::Http(response)) => assert_eq!(response.status(), 401, "{query}"),
            other => panic!("{query}: expected 401, got {:?}", other.map(|_| ())),
        }
    }
}
