//! `bench_terminal` (part of `just bench`): the terminal WebSocket's keystroke echo latency
//! (p50, p99) and output throughput (MB/s of a large `cat`), beside Jupyter's terminado
//! (`.venv-tests`, see `scripts/setup-python.sh`) running the same shell (`bash -l`) in the same
//! run; then file upload, download and archive throughput through the REST API. Run as root
//! against a release build (`AGENTTIER_BIN`).
//!
//! Echo latency is the time from sending one keystroke to receiving the frame that echoes it
//! (bash's readline echoes it). Throughput is the size of a 64 MB text file divided by the time
//! from sending `cat` to seeing a marker printed after it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agenttier_integration_tests::{Server, next_before};
use futures::SinkExt;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Keystrokes timed per server.
const ECHO_SAMPLES: usize = 400;
/// Size of the file `cat` prints.
const CAT_BYTES: usize = 64_000_000;
/// One line of that file.
const LINE: &str =
    "the quick brown fox jumps over the lazy dog 0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ\n";

/// terminado on a port, with the same login shell.
const TERMINADO: &str = r#"
import sys, tornado.ioloop, tornado.web
from terminado import TermSocket, UniqueTermManager
manager = UniqueTermManager(shell_command=["/bin/bash", "-l"])
app = tornado.web.Application([(r"/websocket", TermSocket, {"term_manager": manager})])
app.listen(int(sys.argv[1]), "127.0.0.1")
print("READY", flush=True)
tornado.ioloop.IOLoop.current().start()
"#;

/// How a server frames terminal traffic.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// AgentTier's contract frames: `{"type":"input","data":…}` / `{"type":"output",…}`.
    AgentTier,
    /// terminado's arrays: `["stdin", …]` / `["stdout", …]`.
    Terminado,
}

impl Wire {
    fn input(self, data: &str) -> Message {
        let frame = match self {
            Self::AgentTier => json!({"type": "input", "data": data}),
            Self::Terminado => json!(["stdin", data]),
        };
        Message::text(frame.to_string())
    }

    fn output(self, message: &Message) -> Option<String> {
        let Message::Text(text) = message else {
            return None;
        };
        let value: Value = serde_json::from_str(text).ok()?;
        let data = match self {
            Self::AgentTier if value["type"] == "output" => &value["data"],
            Self::Terminado if value[0] == "stdout" => &value[1],
            _ => return None,
        };
        data.as_str().map(str::to_owned)
    }
}

struct Terminal {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    wire: Wire,
}

impl Terminal {
    async fn send(&mut self, data: &str) {
        self.socket.send(self.wire.input(data)).await.unwrap();
    }

    /// The next output text, or `None` after `within`.
    async fn output(&mut self, within: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let message = next_before(&mut self.socket, deadline).await?;
            if let Some(text) = self.wire.output(&message) {
                return Some(text);
            }
        }
    }

    /// Reads output until it has been quiet for `quiet`.
    async fn drain(&mut self, quiet: Duration) {
        while self.output(quiet).await.is_some() {}
    }

    /// Runs `command` and returns how long until `marker` (computed by the shell) was printed,
    /// and how many bytes of output arrived.
    async fn time_until(&mut self, command: &str, marker: &str) -> (Duration, usize) {
        let started = Instant::now();
        self.send(command).await;
        let mut tail = String::new();
        let mut bytes = 0;
        loop {
            let text = self
                .output(Duration::from_secs(120))
                .await
                .expect("no output for 2 minutes");
            bytes += text.len();
            tail.push_str(&text);
            if tail.contains(marker) {
                return (started.elapsed(), bytes);
            }
            let keep = tail.len().saturating_sub(marker.len());
            let cut = (keep..=tail.len())
                .find(|i| tail.is_char_boundary(*i))
                .unwrap_or(0);
            tail.drain(..cut);
        }
    }
}

struct Figures {
    p50: Duration,
    p99: Duration,
    mb_per_s: f64,
}

/// Echo latency and `cat` throughput of one terminal.
async fn measure(terminal: &mut Terminal, big_file: &str) -> Figures {
    terminal.drain(Duration::from_millis(500)).await;
    let mut samples = Vec::with_capacity(ECHO_SAMPLES);
    for i in 0..ECHO_SAMPLES {
        if i % 50 == 0 {
            // Clear the line (Ctrl-U) so it never wraps, outside the timed part.
            terminal.send("\u{15}").await;
            terminal.drain(Duration::from_millis(30)).await;
        }
        let key = if i % 2 == 0 { "a" } else { "b" };
        let started = Instant::now();
        terminal.send(key).await;
        loop {
            let text = terminal
                .output(Duration::from_secs(10))
                .await
                .expect("keystroke not echoed");
            if text.contains(key) {
                break;
            }
        }
        samples.push(started.elapsed());
    }
    terminal.send("\u{15}").await;
    terminal.drain(Duration::from_millis(100)).await;
    samples.sort();
    let p50 = samples[samples.len() / 2];
    let p99 = samples[samples.len() * 99 / 100];

    // Warm the page cache and the path, then time the real run.
    terminal
        .time_until(
            &format!("head -c 1000000 {big_file}; echo WARM-$((20+1))\r"),
            "WARM-21",
        )
        .await;
    let (elapsed, _) = terminal
        .time_until(
            &format!("cat {big_file}; echo DONE-$((20+22))\r"),
            "DONE-42",
        )
        .await;
    let mb_per_s = CAT_BYTES as f64 / 1e6 / elapsed.as_secs_f64();
    Figures { p50, p99, mb_per_s }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Starts terminado on a free port; returns the child and the port.
fn start_terminado(dir: &Path) -> (std::process::Child, u16) {
    let python = std::env::var_os("TERMINADO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv-tests/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup-python.sh (it installs terminado)",
        python.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = dir.join("terminado_server.py");
    std::fs::write(&script, TERMINADO).unwrap();
    let mut child = Command::new(python)
        .arg(&script)
        .arg(port.to_string())
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "READY", "terminado did not start");
    (child, port)
}

async fn throughput(label: &str, runs: usize, f: impl AsyncFn() -> u64) -> f64 {
    let mut best = 0f64;
    for _ in 0..runs {
        let started = Instant::now();
        let bytes = f().await;
        let rate = bytes as f64 / 1e6 / started.elapsed().as_secs_f64();
        best = best.max(rate);
    }
    println!("  {label:<34} {best:>8.1} MB/s (best of {runs})");
    best
}

#[tokio::main]
async fn main() {
    let server = Server::start();
    server.create_running("bench-term", "general-coding").await;
    let lines = CAT_BYTES / LINE.len() + 1;
    let make = format!(
        "yes '{}' | head -n {lines} | head -c {CAT_BYTES} > /workspace/big.txt",
        LINE.trim_end()
    );
    let (_, err, code) = server.exec("bench-term", &make).await;
    assert_eq!(code, 0, "{err}");

    let url = format!(
        "{}/ws/terminal/bench-term",
        server.url.replacen("http://", "ws://", 1)
    );
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-api-key", server.admin_key.parse().unwrap());
    let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut ours = Terminal {
        socket,
        wire: Wire::AgentTier,
    };
    let agenttier = measure(&mut ours, "/workspace/big.txt").await;

    let dir = tempfile::tempdir().unwrap();
    let host_file = dir.path().join("big.txt");
    let content: String = LINE.repeat(CAT_BYTES / LINE.len() + 1);
    std::fs::write(&host_file, &content.as_bytes()[..CAT_BYTES]).unwrap();
    let (mut terminado, port) = start_terminado(dir.path());
    let (socket, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/websocket"))
        .await
        .unwrap();
    let mut peer = Terminal {
        socket,
        wire: Wire::Terminado,
    };
    let peer_figures = measure(&mut peer, host_file.to_str().unwrap()).await;
    let _ = terminado.kill();
    let _ = terminado.wait();

    println!(
        "terminal ({ECHO_SAMPLES} keystrokes, {} MB cat, bash -l):",
        CAT_BYTES / 1_000_000
    );
    println!(
        "  {:<24} {:>10} {:>10} {:>12}",
        "", "echo p50", "echo p99", "cat MB/s"
    );
    for (name, f) in [
        ("agenttier (sandboxed)", &agenttier),
        ("terminado (host)", &peer_figures),
    ] {
        println!(
            "  {name:<24} {:>8.3}ms {:>8.3}ms {:>12.1}",
            ms(f.p50),
            ms(f.p99),
            f.mb_per_s
        );
    }
    println!(
        "  throughput ratio agenttier/terminado: {:.2}x; echo p50 goal < 2 ms: {}",
        agenttier.mb_per_s / peer_figures.mb_per_s,
        if ms(agenttier.p50) < 2.0 {
            "met"
        } else {
            "missed"
        }
    );

    println!("files (32 MiB file, 200 MB archive of incompressible data):");
    let payload = vec![0x5au8; 32 << 20];
    let put_url = server.api("/sandboxes/bench-term/files/workspace/upload.bin");
    throughput("upload (PUT /files)", 5, async || {
        let response = server
            .http
            .put(&put_url)
            .body(payload.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        payload.len() as u64
    })
    .await;
    throughput("download (GET /files)", 5, async || {
        let response = server.http.get(&put_url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap().len() as u64
    })
    .await;
    let (_, err, code) = server
        .exec(
            "bench-term",
            "mkdir -p /workspace/arch && for i in 1 2 3 4; do head -c 50000000 /dev/urandom > /workspace/arch/f$i; done",
        )
        .await;
    assert_eq!(code, 0, "{err}");
    let archive_url = server.api("/sandboxes/bench-term/archive?path=/workspace/arch");
    throughput("archive (GET /archive, zip stream)", 3, async || {
        let mut response = server.http.get(&archive_url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let mut total = 0u64;
        while let Some(chunk) = response.chunk().await.unwrap() {
            total += chunk.len() as u64;
        }
        total
    })
    .await;
}
