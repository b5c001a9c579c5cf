//! The harness the end-to-end tests share: start the real `agenttier` binary on a free port with
//! its own data directory, talk to it over HTTP, and clean up every sandbox it leaves behind.
//! A test that needs the binary fails (never skips) when it has not been built.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `agenttier` binary under test: `$AGENTTIER_BIN`, else `target/debug/agenttier`.
pub fn agenttier_bin() -> PathBuf {
    let path = std::env::var_os("AGENTTIER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/agenttier"));
    assert!(
        path.exists(),
        "the agenttier binary is missing at {}: run `cargo build -p agenttier` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Extra `serve` arguments and environment for a test server.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// Extra arguments after `serve`.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
}

/// A running `agenttier serve` with its own data directory.
pub struct Server {
    child: Option<Child>,
    data: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The admin key printed on first start.
    pub admin_key: String,
    /// An HTTP client with the admin key set.
    pub http: reqwest::Client,
    /// Whether this start printed a (new) admin key.
    pub printed_admin_key: bool,
}

impl Server {
    /// Starts a server on a fresh data directory.
    pub fn start() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("agenttier-it-")
            .tempdir()
            .expect("tempdir");
        let data = tmp.path().join("data");
        let mut server = Self::start_on(&data, None);
        server._tmp = Some(tmp);
        server
    }

    /// Starts a server on a fresh data directory with extra arguments and environment.
    pub fn start_with(options: ServerOptions) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("agenttier-it-")
            .tempdir()
            .expect("tempdir");
        let data = tmp.path().join("data");
        let mut server = Self::start_on_with(&data, None, options);
        server._tmp = Some(tmp);
        server
    }

    /// Starts a server on `data`; `admin_key` is the key of an earlier start on the same data.
    pub fn start_on(data: &Path, admin_key: Option<String>) -> Self {
        Self::start_on_with(data, admin_key, ServerOptions::default())
    }

    /// [`Self::start_on`] with extra arguments and environment.
    pub fn start_on_with(data: &Path, admin_key: Option<String>, options: ServerOptions) -> Self {
        let mut child = Command::new(agenttier_bin())
            .args(["serve", "--listen-addr", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(&options.args)
            .env("RUST_LOG", "info")
            .envs(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log_path(data))
                    .unwrap_or_else(|_| {
                        std::fs::create_dir_all(data).unwrap();
                        std::fs::File::create(log_path(data)).unwrap()
                    }),
            ))
            .spawn()
            .expect("spawn agenttier serve");
        let stdout = child.stdout.take().unwrap();
        let mut url = None;
        let mut key = admin_key;
        let mut printed_admin_key = false;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut lines = BufReader::new(stdout).lines();
        while Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(rest) = line.trim().strip_prefix("API:") {
                url = Some(rest.trim().trim_end_matches("/api/v1").to_string());
            }
            if let Some(found) = line.split_whitespace().find(|w| w.starts_with("atk_")) {
                printed_admin_key = true;
                key.get_or_insert_with(|| found.to_string());
            }
            if line.contains("Log in") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let url = url.unwrap_or_else(|| {
            panic!(
                "server did not start; log:\n{}",
                std::fs::read_to_string(log_path(data)).unwrap_or_default()
            )
        });
        let admin_key = key.expect("no admin key printed and none given");
        let http = client_with_key(&admin_key);
        Self {
            child: Some(child),
            data: data.to_path_buf(),
            _tmp: None,
            url,
            admin_key,
            http,
            printed_admin_key,
        }
    }

    /// The server's process id (for reading its memory use from `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// `<url>/api/v1<path>`.
    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.url)
    }

    /// `kill -9` the server (its sandboxes keep running), keeping the data directory.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Takes the temp dir out so it outlives this server (for restart tests).
    pub fn keep_data(&mut self) -> Option<tempfile::TempDir> {
        self._tmp.take()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(log_path(&self.data)).unwrap_or_default()
    }

    /// POST a JSON body, returning status and JSON.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.api(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        status_json(response).await
    }

    /// GET, returning status and JSON.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        status_json(self.http.get(self.api(path)).send().await.unwrap()).await
    }

    /// PUT a JSON body, returning status and JSON.
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .put(self.api(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        status_json(response).await
    }

    /// POST a raw body (no JSON content type), as agent mode's `/configure` and `/invoke` take
    /// it, returning the response unread (their answers are SSE streams).
    pub async fn post_bytes(&self, path: &str, body: Vec<u8>) -> reqwest::Response {
        self.http
            .post(self.api(path))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// [`Self::post_bytes`] and the whole answer as text: an SSE stream read to its end.
    pub async fn post_sse(&self, path: &str, body: Vec<u8>) -> String {
        self.post_bytes(path, body).await.text().await.unwrap()
    }

    /// The Prometheus text exposition at `/metrics`.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// DELETE, returning the status.
    pub async fn delete(&self, path: &str) -> u16 {
        self.http
            .delete(self.api(path))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Runs a command in a sandbox and returns (stdout, stderr, exitCode); panics on non-200.
    pub async fn exec(&self, id: &str, command: &str) -> (String, String, i64) {
        let (status, body) = self
            .post(
                &format!("/sandboxes/{id}/exec"),
                serde_json::json!({"command": command, "timeout": 30}),
            )
            .await;
        assert_eq!(status, 200, "exec {command:?} failed: {body}");
        (
            body["stdout"].as_str().unwrap().to_string(),
            body["stderr"].as_str().unwrap().to_string(),
            body["exitCode"].as_i64().unwrap(),
        )
    }

    /// Creates a cluster template `name` with `spec` and asserts it was created.
    pub async fn create_template(&self, name: &str, spec: Value) {
        let (status, body) = self
            .post(
                "/templates",
                serde_json::json!({"name": name, "spec": spec}),
            )
            .await;
        assert_eq!(status, 201, "template {name}: {body}");
    }

    /// Creates a sandbox from a template and asserts it was created (it may still be starting),
    /// returning it.
    pub async fn create(&self, name: &str, template: &str) -> Value {
        let (status, body) = self
            .post(
                "/sandboxes",
                serde_json::json!({"name": name, "templateRef": {"name": template}}),
            )
            .await;
        assert_eq!(status, 201, "create {name}: {body}");
        body
    }

    /// Creates a sandbox from a template and asserts it is Running.
    pub async fn create_running(&self, name: &str, template: &str) -> Value {
        self.create(name, template).await;
        self.wait_phase(name, "Running").await
    }

    /// Polls GET until the sandbox reaches `phase` (10 s), returning it.
    pub async fn wait_phase(&self, id: &str, phase: &str) -> Value {
        self.wait_phase_within(id, phase, Duration::from_secs(10))
            .await
    }

    /// [`Self::wait_phase`] for up to `limit`.
    pub async fn wait_phase_within(&self, id: &str, phase: &str, limit: Duration) -> Value {
        let what = format!("sandbox {id} never reached {phase}");
        self.poll(&what, limit, Duration::from_millis(20), async || {
            let (status, body) = self.get(&format!("/sandboxes/{id}")).await;
            if status == 200 && body["status"] == phase {
                Ok(body)
            } else {
                Err(format!("{status} {body}"))
            }
        })
        .await
    }

    /// The sandbox's audit events as (reason, message), oldest first (the last 1000).
    pub async fn events(&self, sandbox: &str) -> Vec<(String, String)> {
        let (status, body) = self
            .get(&format!("/audit/events?sandbox={sandbox}&limit=1000"))
            .await;
        assert_eq!(status, 200, "{body}");
        body["events"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .map(|e| {
                (
                    e["eventType"].as_str().unwrap().to_string(),
                    e["details"]["reason"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// The reasons of the sandbox's audit events, oldest first.
    pub async fn reasons(&self, sandbox: &str) -> Vec<String> {
        self.events(sandbox)
            .await
            .into_iter()
            .map(|(reason, _)| reason)
            .collect()
    }

    /// Waits (15 s) until the sandbox has an event with `reason` whose message contains `text`
    /// (any message when `text` is empty).
    pub async fn wait_event(&self, sandbox: &str, reason: &str, text: &str) {
        let what = format!("no {reason} event with {text:?}");
        self.poll(
            &what,
            Duration::from_secs(15),
            Duration::from_millis(50),
            async || {
                let events = self.events(sandbox).await;
                if events.iter().any(|(r, m)| r == reason && m.contains(text)) {
                    Ok(())
                } else {
                    Err(format!("{events:?}"))
                }
            },
        )
        .await
    }

    /// Calls `attempt` every `every` until it returns `Ok`, for up to `limit`; then fails the
    /// test with `what`, the last `Err` (what was seen instead) and the server's log.
    pub async fn poll<T, E: std::fmt::Display>(
        &self,
        what: &str,
        limit: Duration,
        every: Duration,
        mut attempt: impl AsyncFnMut() -> Result<T, E>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            match attempt().await {
                Ok(done) => return done,
                Err(seen) => assert!(
                    Instant::now() < deadline,
                    "{what} within {limit:?}: {seen}\n{}",
                    self.log()
                ),
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// The Python with the published `agenttier==0.8.1` SDK: `$AGENTTIER_TEST_PYTHON`, else
/// `.venv-tests/bin/python` (which `scripts/setup-python.sh` creates).
pub fn python() -> PathBuf {
    let path = std::env::var_os("AGENTTIER_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv-tests/bin/python"));
    assert!(
        path.exists(),
        "no Python with the agenttier==0.8.1 SDK at {}: run scripts/test.sh (or scripts/setup-python.sh)",
        path.display()
    );
    path
}

/// The next item of `stream` (a WebSocket, say) before `deadline`; `None` at the deadline, at the
/// end of the stream, or on an error.
pub async fn next_before<T, E>(
    stream: &mut (impl futures::Stream<Item = Result<T, E>> + Unpin),
    deadline: tokio::time::Instant,
) -> Option<T> {
    use futures::StreamExt;
    tokio::time::timeout_at(deadline, stream.next())
        .await
        .ok()??
        .ok()
}

/// A reqwest client that sends `X-API-Key`.
pub fn client_with_key(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", key.parse().unwrap());
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// Status and body (JSON, or the text as a JSON string) of a response.
pub async fn status_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, json)
}

fn log_path(data: &Path) -> PathBuf {
    data.with_extension("log")
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if self._tmp.is_some() {
            stop_all_sandboxes(&self.data);
        }
    }
}

/// Stops every sandbox under a data directory (they outlive the server by design).
pub fn stop_all_sandboxes(data: &Path) {
    let data = data.to_path_buf();
    // Drop may run inside a test's tokio runtime; use a thread with its own.
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            use agenttier_actors::runtime::local::{LocalRuntime, LocalRuntimeConfig};
            use agenttier_actors::runtime::{Runtime, SandboxId};
            let Ok(runtime) = LocalRuntime::new(LocalRuntimeConfig::new(&data, agenttier_bin()))
            else {
                return;
            };
            let Ok(entries) = std::fs::read_dir(data.join("sandboxes")) else {
                return;
            };
            for entry in entries.flatten() {
                let id = SandboxId(entry.file_name().to_string_lossy().into_owned());
                let _ = runtime.stop(&id).await;
            }
        });
    })
    .join();
}
