//! End-to-end tests of forwarded ports and the preview proxy (contract §4.11) against the real
//! binary: an HTTP server, a streaming server and a WebSocket echo server run inside a real
//! bubblewrap sandbox (Python from the host's read-only /usr) and are reached through the
//! authenticated proxy, while the sandbox's own network stays closed. Needs root, bubblewrap,
//! python3 and `cargo build -p agenttier`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use agenttier_integration_tests::{Server, status_json};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A WebSocket echo server written against the RFC with the standard library only (Python's
/// stdlib has no WebSocket server): handshake, unmasking, text and binary echo, close.
const WS_ECHO: &str = r#"
import asyncio, base64, hashlib, struct
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
async def handle(reader, writer):
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    key = [l.split(":", 1)[1].strip() for l in head.split("\r\n") if l.lower().startswith("sec-websocket-key:")][0]
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    writer.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
    await writer.drain()
    while True:
        b1, b2 = await reader.readexactly(2)
        opcode, n = b1 & 0x0F, b2 & 0x7F
        if n == 126:
            n = struct.unpack(">H", await reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", await reader.readexactly(8))[0]
        mask = await reader.readexactly(4) if b2 & 0x80 else b"\0\0\0\0"
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(await reader.readexactly(n)))
        if opcode == 8:
            writer.write(b"\x88\x00")
            await writer.drain()
            break
        if opcode in (1, 2):
            head = bytes([0x80 | opcode])
            if len(data) < 126:
                head += bytes([len(data)])
            elif len(data) < 65536:
                head += bytes([126]) + struct.pack(">H", len(data))
            else:
                head += bytes([127]) + struct.pack(">Q", len(data))
            writer.write(head + data)
            await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 8765)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"#;

/// Sends one line, then waits for /workspace/go before sending the second: a response that is
/// only complete if the proxy passes the first part on before the server finished.
const STREAMER: &str = r#"
import http.server, os, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"first\n")
        self.wfile.flush()
        while not os.path.exists("/workspace/go"):
            time.sleep(0.05)
        self.wfile.write(b"second\n")
http.server.HTTPServer(("127.0.0.1", 8001), H).serve_forever()
"#;

async fn put(server: &Server, sandbox: &str, path: &str, body: &str) {
    let url = server.api(&format!("/sandboxes/{sandbox}/files/{path}"));
    let (status, body) = status_json(
        server
            .http
            .put(url)
            .body(body.to_owned())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// Polls `path` through the proxy until it answers 200.
async fn wait_ready(server: &Server, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = server.http.get(server.api(path)).send().await.unwrap();
        if response.status() == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never came up: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn http_streaming_and_websocket_servers_are_reached_through_the_proxy() {
    let server = Server::start();
    server.create_running("web", "minimal-shell").await;
    put(
        &server,
        "web",
        "workspace/site/hello.txt",
        "hello from the sandbox\n",
    )
    .await;
    put(&server, "web", "workspace/ws.py", WS_ECHO).await;
    put(&server, "web", "workspace/stream.py", STREAMER).await;
    let start = "cd /workspace && \
        (nohup python3 -m http.server 8000 --bind 127.0.0.1 --directory site >/tmp/http.log 2>&1 &) && \
        (nohup python3 ws.py >/tmp/ws.log 2>&1 &) && \
        (nohup python3 stream.py >/tmp/stream.log 2>&1 &)";
    assert_eq!(server.exec("web", start).await.2, 0);
    for port in [8000, 8765, 8001] {
        let (status, body) = server
            .post("/sandboxes/web/ports", json!({"port": port}))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (_, ports) = server.get("/sandboxes/web/ports").await;
    assert_eq!(ports["ports"].as_array().unwrap().len(), 3);

    wait_ready(&server, "/sandboxes/web/preview/8000/hello.txt").await;
    let response = server
        .http
        .get(server.api("/sandboxes/web/preview/8000/hello.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "hello from the sandbox\n");
    // Without credentials the proxy answers 401.
    let anonymous = reqwest::Client::new();
    let response = anonymous
        .get(server.api("/sandboxes/web/preview/8000/hello.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // The response streams: its first part arrives while the server still waits to finish.
    let mut response = server
        .http
        .get(server.api("/sandboxes/web/preview/8001/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(20), response.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first\n");
    put(&server, "web", "workspace/go", "").await;
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"second\n");

    // A WebSocket through the proxy, upgraded end to end.
    let url = server
        .api("/sandboxes/web/preview/8765/echo")
        .replacen("http://", "ws://", 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut socket = loop {
        let mut request = url.as_str().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("x-api-key", server.admin_key.parse().unwrap());
        match tokio_tungstenite::connect_async(request).await {
            Ok((socket, _)) => break socket,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "websocket echo never came up: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    socket.send(Message::text("hello over ws")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("hello over ws")
    );
    let big = "x".repeat(100_000);
    socket.send(Message::text(big.clone())).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap(), Message::text(big));
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().remove("x-api-key");
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("an anonymous upgrade got {:?}", other.map(|_| ())),
    }

    // The sandbox's network stays closed: it cannot reach the server's own port on loopback.
    let port = server.url.rsplit(':').next().unwrap();
    let probe = format!(
        "python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 2)\" 2>/dev/null && echo reached || echo closed"
    );
    assert_eq!(server.exec("web", &probe).await.0.trim(), "closed");

    // A removed forward is no longer proxied.
    assert_eq!(server.delete("/sandboxes/web/ports/8000").await, 204);
    let (status, body) = server.get("/sandboxes/web/preview/8000/hello.txt").await;
    assert_eq!(
        (status, body),
        (404, json!({"error": "port 8000 is not forwarded"}))
    );
}

#[tokio::test]
async fn bad_ports_are_client_errors_and_dead_ports_are_502() {
    let server = Server::start();
    server.create_running("ports-bad", "minimal-shell").await;
    for port in [
        json!(0),
        json!(-1),
        json!(65536),
        json!(1_000_000),
        json!("80"),
    ] {
        let (status, body) = server
            .post("/sandboxes/ports-bad/ports", json!({"port": port}))
            .await;
        assert_eq!(status, 400, "{port}: {body}");
    }
    let (status, body) = server.get("/sandboxes/ports-bad/ports").await;
    assert_eq!((status, body), (200, json!({"ports": []})));
    assert_eq!(server.delete("/sandboxes/ports-bad/ports/abc").await, 400);
    let (status, _) = server
        .post("/sandboxes/ports-bad/ports", json!({"port": 9999}))
        .await;
    assert_eq!(status, 201);
    let response = server
        .http
        .get(server.api("/sandboxes/ports-bad/preview/9999/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
}
