//! Agent mode and the template harness on the real single-node Kubernetes 1.20 (kubelet,
//! containerd) started by `scripts/kube-env.sh start node`: the real `agenttier serve --runtime
//! kubernetes` driven through the REST API (and the published Python SDK), one namespace per
//! test. Configure streams its log and result and keeps the install log in the contract's
//! ConfigMap; invoke streams lines and the exit, and a timeout, a cancel or a closed connection
//! really ends the process in the Pod; the concurrency limit answers 429; a three-level template
//! chain's files, init scripts, harness files and hooks arrive in the Pod; a failing init script
//! is phase Error with its output; constraints the runtime cannot enforce are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod kube_support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::{Client, ResourceExt};
use kube_support::{
    Cluster, KubeServer, TestNamespace, apply_node_template, client, kubectl, wait_until,
};
use serde_json::{Value, json};

const NODE: Cluster = Cluster::Node;
const START: Duration = Duration::from_secs(90);
/// How long a test waits for the next event of a stream before it gives up (a guard against a
/// hang, not a timing assertion).
const EVENT_WAIT: Duration = Duration::from_secs(120);

/// A stand-in agent: `--prompt=sleep-<n>` prints a line and sleeps n seconds (a unique n marks
/// the process in `ps`); otherwise it echoes its arguments and stdin, writes to stderr and
/// exits 4.
const AGENT: &str = r#"#!/bin/sh
for arg in "$@"; do
  case "$arg" in
    --prompt=sleep-*) n=${arg#--prompt=sleep-}; echo "sleeping $n"; sleep "$n"; exit 0 ;;
  esac
done
payload=$(cat)
echo "args: $*"
echo "payload: $payload"
echo "working on it" >&2
printf 'no newline at the end'
exit 4
"#;

async fn node() -> Client {
    let client = client(NODE).await;
    kube_support::ensure_crds(&client).await;
    client
}

/// One server-sent event.
#[derive(Debug, Clone)]
struct SseEvent {
    event: String,
    data: Value,
}

/// An SSE response read event by event.
struct SseStream {
    response: reqwest::Response,
    buffer: String,
    what: String,
}

impl SseStream {
    /// The next event (keepalive comments skipped); `None` at the end of the stream.
    async fn next(&mut self) -> Option<SseEvent> {
        let deadline = Instant::now() + EVENT_WAIT;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut data) = (String::new(), Vec::new());
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event: ") {
                        event = name.to_string();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push(d.to_string());
                    }
                }
                if event.is_empty() && data.is_empty() {
                    continue; // a comment
                }
                let data = data.join("\n");
                let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                return Some(SseEvent { event, data });
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(remaining, self.response.chunk())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no event from {} in {EVENT_WAIT:?}; buffered: {:?}",
                        self.what, self.buffer
                    )
                })
                .unwrap_or_else(|e| panic!("reading {}: {e}", self.what));
            match chunk {
                Some(bytes) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                None => return None,
            }
        }
    }

    /// Every event up to the end of the stream.
    async fn rest(&mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }

    /// Reads events until one named `name`; returns it with the events before it.
    async fn until(&mut self, name: &str) -> (SseEvent, Vec<SseEvent>) {
        let mut before = Vec::new();
        loop {
            let Some(event) = self.next().await else {
                panic!("{} ended without a {name} event; saw {before:?}", self.what)
            };
            if event.event == name {
                return (event, before);
            }
            before.push(event);
        }
    }
}

/// POSTs and returns the SSE stream, or the status and JSON body of a refusal.
async fn post_sse(
    server: &KubeServer,
    path: &str,
    body: reqwest::Body,
) -> Result<SseStream, (u16, reqwest::header::HeaderMap, Value)> {
    let response = server
        .http
        .post(server.api(path))
        .body(body)
        .send()
        .await
        .unwrap();
    if response.status().as_u16() != 200 {
        let headers = response.headers().clone();
        let (status, body) = agenttier_integration_tests::status_json(response).await;
        return Err((status, headers, body));
    }
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{path}: {content_type}"
    );
    Ok(SseStream {
        response,
        buffer: String::new(),
        what: path.to_string(),
    })
}

async fn configure(server: &KubeServer, sandbox: &str, body: Value) -> SseStream {
    post_sse(
        server,
        &format!("/sandboxes/{sandbox}/configure"),
        body.to_string().into(),
    )
    .await
    .unwrap_or_else(|(status, _, body)| panic!("configure: {status} {body}\n{}", server.log()))
}

async fn invoke(server: &KubeServer, sandbox: &str, query: &str, body: &str) -> SseStream {
    post_sse(
        server,
        &format!("/sandboxes/{sandbox}/invoke{query}"),
        body.to_string().into(),
    )
    .await
    .unwrap_or_else(|(status, _, body)| panic!("invoke: {status} {body}\n{}", server.log()))
}

/// The log lines of events as (stream, line).
fn lines(events: &[SseEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e.event == "log")
        .map(|e| {
            (
                e.data["stream"].as_str().unwrap().to_string(),
                e.data["data"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The sandbox container's processes, one `pid args` line each (the command that lists them
/// excluded).
async fn processes(server: &KubeServer, sandbox: &str) -> Vec<String> {
    let (out, err, code) = server.exec(sandbox, "ps -o pid,args").await;
    assert_eq!(code, 0, "ps: {err}");
    out.lines()
        .filter(|l| !l.contains("ps -o pid,args"))
        .map(str::to_string)
        .collect()
}

/// Waits until a process whose command line contains `marker` runs in the sandbox's Pod.
async fn wait_running(server: &KubeServer, sandbox: &str, marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = processes(server, sandbox).await;
        if seen.iter().any(|l| l.contains(marker)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{marker:?} never ran in the Pod: {seen:?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until no process with `marker` is left in the Pod.
async fn wait_gone(server: &KubeServer, sandbox: &str, marker: &str, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left: Vec<String> = processes(server, sandbox)
            .await
            .into_iter()
            .filter(|l| l.contains(marker))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{why}: the process is still in the Pod: {left:?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The sandbox's audit events as (reason, message), oldest first.
async fn events(server: &KubeServer, sandbox: &str) -> Vec<(String, String)> {
    let (status, body) = server
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
                e["eventType"].as_str().unwrap_or_default().to_string(),
                e["details"]["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// Waits until an audit event with `reason` whose message contains `text` was recorded.
async fn wait_event(server: &KubeServer, sandbox: &str, reason: &str, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = events(server, sandbox).await;
        if seen.iter().any(|(r, m)| r == reason && m.contains(text)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {reason} event with {text:?}: {seen:?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn condition<'a>(sandbox: &'a Value, kind: &str) -> Option<&'a Value> {
    sandbox["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

async fn cat(server: &KubeServer, sandbox: &str, path: &str) -> String {
    let (stdout, stderr, code) = server.exec(sandbox, &format!("cat {path}")).await;
    assert_eq!(code, 0, "cat {path}: {stderr}");
    stdout
}

/// An agent-mode ClusterSandboxTemplate on the node's image, two invokes at a time.
fn apply_agent_template(name: &str) {
    apply_node_template(
        NODE,
        name,
        "  mode: agent\n  harness:\n    agent: {maxConcurrentInvokes: 2}\n",
    );
}

/// The cluster-scoped templates a test makes, deleted (best effort) when the test ends, passed
/// or failed: they outlive the test's namespace.
struct ClusterTemplates(Vec<String>);

impl ClusterTemplates {
    fn new(names: &[&String]) -> Self {
        Self(names.iter().map(|n| n.to_string()).collect())
    }
}

impl Drop for ClusterTemplates {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = kubectl(
                NODE,
                &[
                    "delete",
                    "clustersandboxtemplate",
                    name,
                    "--ignore-not-found",
                    "--wait=false",
                ],
                None,
            );
        }
    }
}

/// Creates an agent-mode sandbox and waits for it to run.
async fn running_agent(server: &KubeServer, name: &str, template: &str) -> Value {
    let (status, body) = server
        .post(
            "/sandboxes",
            json!({"name": name, "templateRef": {"name": template, "kind": "ClusterSandboxTemplate"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}\n{}", server.log());
    server.wait_phase(name, "Running", START).await
}

/// The configure every invoke test starts from.
fn agent_configuration() -> Value {
    json!({
        "files": [
            {"path": "/workspace/agent.sh", "content": AGENT},
            {"path": "/workspace/data.bin", "contentBase64": "AAH/"}
        ],
        "installCommand": ["sh", "-c", "echo installing deps; echo a warning >&2; printf partial"],
        "entrypoint": ["sh", "/workspace/agent.sh"]
    })
}

#[tokio::test]
async fn configure_streams_its_install_keeps_the_log_and_skips_a_repeat() {
    let client = node().await;
    let ns = TestNamespace::create(&client, NODE, "agent-cfg").await;
    let template = format!("{}-agent", ns.name);
    let _templates = ClusterTemplates::new(&[&template]);
    apply_agent_template(&template);
    let server = KubeServer::start(NODE, &ns.name, "agent-cfg", &["--dev-auth"]);
    let sandbox = running_agent(&server, "box", &template).await;
    assert_eq!(sandbox["podName"], "box-pod");

    // Files, then the install's progress and its output line by line (the partial last line
    // flushed), then the result.
    let mut stream = configure(&server, "box", agent_configuration()).await;
    let (result, before) = stream.until("result").await;
    assert!(stream.rest().await.is_empty(), "result is the last event");
    let logged = lines(&before);
    let expected_progress = [
        ("stdout", "[configure] uploading /workspace/agent.sh"),
        ("stdout", "[configure] uploading /workspace/data.bin"),
        (
            "stdout",
            "[configure] running install: sh -c echo installing deps; echo a warning >&2; printf partial",
        ),
    ]
    .map(|(s, l)| (s.to_string(), l.to_string()));
    assert_eq!(logged[..3], expected_progress, "{before:?}");
    let mut output = logged[3..].to_vec();
    output.sort();
    assert_eq!(
        output,
        [
            ("stderr".to_string(), "a warning".to_string()),
            ("stdout".to_string(), "installing deps".to_string()),
            ("stdout".to_string(), "partial".to_string()),
        ],
        "{before:?}"
    );
    assert_eq!(result.data["installExitCode"], 0, "{result:?}");
    assert_eq!(result.data["skipped"], false);
    assert_eq!(
        result.data["entrypoint"],
        json!(["sh", "/workspace/agent.sh"])
    );
    let hash = result.data["installCommandHash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(hash.len(), 64);
    assert!(result.data["lastConfiguredAt"].as_str().is_some());

    // The files are in the Pod (the binary one byte for byte).
    assert_eq!(cat(&server, "box", "/workspace/agent.sh").await, AGENT);
    let (bytes, _, _) = server.exec("box", "od -An -tx1 /workspace/data.bin").await;
    assert_eq!(
        bytes.split_whitespace().collect::<Vec<_>>(),
        ["00", "01", "ff"]
    );

    // The install log: through the API and in the contract's ConfigMap, owned by the Sandbox.
    let (status, body) = server.get("/sandboxes/box/configure/install-log").await;
    assert_eq!(status, 200, "{body}");
    let log = body["log"].as_str().unwrap().to_string();
    for text in ["installing deps", "a warning", "partial"] {
        assert!(log.contains(text), "{log:?}");
    }
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let map = maps.get("box-install-log").await.unwrap();
    assert_eq!(map.labels()["agenttier.io/sandbox"], "box");
    assert_eq!(map.labels()["agenttier.io/kind"], "install-log");
    assert_eq!(map.data.as_ref().unwrap()["log"], log);
    let sandboxes: Api<agenttier_crds::Sandbox> = Api::namespaced(client.clone(), &ns.name);
    let object = sandboxes.get("box").await.unwrap();
    let owner = &map.owner_references()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.name.as_str(),
            Some(owner.uid.as_str())
        ),
        ("Sandbox", "box", object.uid().as_deref())
    );
    let recorded = object
        .status
        .as_ref()
        .unwrap()
        .agent_configure
        .clone()
        .expect("status.agentConfigure");
    assert_eq!(
        recorded.install_command_hash.as_deref(),
        Some(hash.as_str())
    );
    assert_eq!(recorded.entrypoint, ["sh", "/workspace/agent.sh"]);
    assert_eq!(recorded.max_concurrent_invokes, Some(2));
    assert_eq!(
        recorded.install_log_config_map_ref.map(|r| r.name),
        Some("box-install-log".to_string())
    );

    // The same configure again is skipped: nothing written or run, the same hash.
    server
        .exec("box", "echo changed > /workspace/agent.sh")
        .await;
    let mut again = configure(&server, "box", agent_configuration()).await;
    let replay = again.rest().await;
    assert_eq!(replay.len(), 1, "only a result: {replay:?}");
    assert_eq!(replay[0].event, "result");
    assert_eq!(replay[0].data["skipped"], true);
    assert_eq!(replay[0].data["installCommandHash"], hash.as_str());
    assert_eq!(
        cat(&server, "box", "/workspace/agent.sh").await,
        "changed\n",
        "a skipped configure writes nothing"
    );
    wait_event(&server, "box", "AgentConfigured", "skipped=true").await;

    assert_eq!(server.delete("/sandboxes/box").await, 204);
    wait_until(START, "the install log to go with its Sandbox", || async {
        maps.get_opt("box-install-log").await.unwrap().is_none()
    })
    .await;
}

#[tokio::test]
async fn invokes_stream_time_out_cancel_and_are_limited_with_the_process_gone() {
    let client = node().await;
    let ns = TestNamespace::create(&client, NODE, "agent-inv").await;
    let template = format!("{}-agent", ns.name);
    let _templates = ClusterTemplates::new(&[&template]);
    apply_agent_template(&template);
    let server = KubeServer::start(NODE, &ns.name, "agent-inv", &["--dev-auth"]);
    running_agent(&server, "box", &template).await;

    // Before a configure there is nothing to invoke.
    let refused = post_sse(&server, "/sandboxes/box/invoke", "".into()).await;
    assert!(matches!(&refused, Err((424, _, _))), "{:?}", refused.err());
    let mut stream = configure(&server, "box", agent_configuration()).await;
    let (result, _) = stream.until("result").await;
    assert_eq!(result.data["installExitCode"], 0, "{result:?}");

    // A completed invoke: the body on stdin, the prompt as an argument, stdout and stderr lines
    // (the partial last one too), the exit code.
    let mut stream = invoke(&server, "box", "?prompt=hello%20world", r#"{"task":"sum"}"#).await;
    let events = stream.rest().await;
    assert_eq!(events[0].event, "start", "{events:?}");
    let invoke_id = events[0].data["invokeId"].as_str().unwrap().to_string();
    assert!(invoke_id.starts_with("inv-") && invoke_id.len() == 28);
    assert!(events[0].data["startedAt"].as_i64().is_some());
    let exit = events.last().unwrap();
    assert_eq!(exit.event, "exit", "{events:?}");
    assert_eq!(
        (
            &exit.data["invokeId"],
            &exit.data["exitCode"],
            &exit.data["reason"]
        ),
        (&json!(invoke_id), &json!(4), &json!("completed")),
        "{exit:?}"
    );
    assert!(exit.data["durationMs"].as_i64().is_some());
    let logged = lines(&events);
    let stdout: Vec<&str> = logged
        .iter()
        .filter(|(s, _)| s == "stdout")
        .map(|(_, l)| l.as_str())
        .collect();
    let stderr: Vec<&str> = logged
        .iter()
        .filter(|(s, _)| s == "stderr")
        .map(|(_, l)| l.as_str())
        .collect();
    assert_eq!(
        stdout,
        [
            "args: --prompt=hello world",
            r#"payload: {"task":"sum"}"#,
            "no newline at the end"
        ]
    );
    assert_eq!(stderr, ["working on it"]);

    // A timeout below the limit ends the invoke with reason `timeout`, and the agent and what it
    // started are gone from the Pod.
    let mut stream = invoke(&server, "box", "?prompt=sleep-3021&timeout=1s", "").await;
    let (exit, before) = stream.until("exit").await;
    assert_eq!(before[0].event, "start", "{before:?}");
    assert_eq!(
        (&exit.data["reason"], &exit.data["exitCode"]),
        (&json!("timeout"), &json!(-1)),
        "{exit:?}"
    );
    wait_gone(&server, "box", "sleep 3021", "after a timeout").await;
    wait_gone(&server, "box", "--prompt=sleep-3021", "after a timeout").await;
    wait_event(&server, "box", "AgentInvokeFailed", "reason=timeout").await;

    // So does a plain exec's timeout (hooks and tools run that way too).
    let (status, body) = server
        .post(
            "/sandboxes/box/exec",
            json!({"command": "sleep 3025; echo never", "timeout": 1}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["exitCode"], 124, "{body}");
    wait_gone(&server, "box", "sleep 3025", "after an exec's timeout").await;

    // A cancel with the id from the start event: reason `canceled`, the process gone.
    let mut stream = invoke(&server, "box", "?prompt=sleep-3022", "").await;
    let (start, _) = stream.until("start").await;
    let (sleeping, _) = stream.until("log").await;
    assert_eq!(sleeping.data["data"], "sleeping 3022");
    wait_running(&server, "box", "sleep 3022").await;
    let (status, body) = server
        .post(
            "/sandboxes/box/invoke/cancel",
            json!({"invokeId": start.data["invokeId"]}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (exit, _) = stream.until("exit").await;
    assert_eq!(
        (&exit.data["reason"], &exit.data["exitCode"]),
        (&json!("canceled"), &json!(-1)),
        "{exit:?}"
    );
    wait_gone(&server, "box", "sleep 3022", "after a cancel").await;
    let (status, _) = server
        .post(
            "/sandboxes/box/invoke/cancel",
            json!({"invokeId": start.data["invokeId"]}),
        )
        .await;
    assert_eq!(status, 404, "a finished invoke is not in flight");

    // Two invokes fill the template's limit of 2; a third gets 429.
    let mut first = invoke(&server, "box", "?prompt=sleep-3023", "").await;
    let (first_start, _) = first.until("start").await;
    let mut second = invoke(&server, "box", "?prompt=sleep-3024", "").await;
    second.until("start").await;
    let third = post_sse(&server, "/sandboxes/box/invoke?prompt=third", "".into()).await;
    let Err((status, headers, body)) = third else {
        panic!("a third concurrent invoke over the limit of 2 must be refused");
    };
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers["retry-after"], "5");
    assert_eq!(
        (&body["error"], &body["limit"], &body["inflight"]),
        (&json!("concurrency_exceeded"), &json!(2), &json!(2)),
        "{body}"
    );

    // Closing a stream is a cancel too: the process goes and the place is freed.
    second.until("log").await;
    wait_running(&server, "box", "sleep 3024").await;
    drop(second);
    wait_gone(&server, "box", "sleep 3024", "after the client went away").await;
    let (status, _) = server
        .post(
            "/sandboxes/box/invoke/cancel",
            json!({"invokeId": first_start.data["invokeId"]}),
        )
        .await;
    assert_eq!(status, 204);
    let (exit, _) = first.until("exit").await;
    assert_eq!(exit.data["reason"], "canceled");
    wait_gone(&server, "box", "sleep 3023", "after a cancel").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        match post_sse(&server, "/sandboxes/box/invoke?prompt=after", "".into()).await {
            Ok(mut stream) => break stream.until("exit").await.0,
            Err((429, _, _)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err((status, _, body)) => panic!("after the cancels: {status} {body}"),
        }
    };
    assert_eq!(
        (&done.data["reason"], &done.data["exitCode"]),
        (&json!("completed"), &json!(4))
    );

    assert_eq!(server.delete("/sandboxes/box").await, 204);
}

#[tokio::test]
async fn a_three_level_template_chain_sets_the_pod_up_and_a_failing_init_script_is_an_error() {
    let client = node().await;
    let ns = TestNamespace::create(&client, NODE, "agent-chain").await;
    let server = KubeServer::start(NODE, &ns.name, "agent-chain", &["--dev-auth"]);
    let [base, middle, leaf, broken] =
        ["base", "middle", "leaf", "broken"].map(|t| format!("{}-{t}", ns.name));
    let _templates = ClusterTemplates::new(&[&broken, &leaf, &middle, &base]);
    let create = |name: &str, spec: Value| {
        let name = name.to_string();
        let server = &server;
        async move {
            let (status, body) = server
                .post("/templates", json!({"name": name, "spec": spec}))
                .await;
            assert_eq!(status, 201, "template {name}: {body}");
        }
    };
    create(
        &base,
        json!({
            "image": {"repository": "localhost/sandbox:dev", "pullPolicy": "Never"},
            "storage": {"size": "1Gi"},
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
                "constraints": {"maxCommandTimeout": "2s"},
                "agent": {"maxConcurrentInvokes": 2}
            }
        }),
    )
    .await;
    create(
        &middle,
        json!({
            "inheritsFrom": {"name": base, "kind": "ClusterSandboxTemplate"},
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
    create(
        &leaf,
        json!({
            "inheritsFrom": {"name": middle, "kind": "ClusterSandboxTemplate"},
            // A sandbox takes its mode from the template it names (contract §4.2).
            "mode": "agent",
            "initScripts": ["echo leaf >> /workspace/init.log"],
            "harness": {
                "systemPrompt": {"content": "leaf prompt"},
                "skills": [{"name": "search", "content": {"content": "search from leaf"}}]
            }
        }),
    )
    .await;

    let sandbox = running_agent(&server, "chain", &leaf).await;
    assert_eq!(sandbox["mode"], "agent", "{sandbox}");
    // The files and init scripts ran in the Pod's init containers: files merged by path, init
    // script lines the parent's first.
    assert_eq!(
        cat(&server, "chain", "/workspace/base.txt").await,
        "from base"
    );
    assert_eq!(
        cat(&server, "chain", "/workspace/shared.txt").await,
        "from middle"
    );
    assert_eq!(
        cat(&server, "chain", "/workspace/init.log").await,
        "base\nmiddle\nleaf\n"
    );
    // The harness files under <workspace>/.agenttier: the leaf's prompt, skills merged by name.
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
    // The onStart hook ran in the Pod, its output in the audit trail.
    wait_event(
        &server,
        "chain",
        "HookSucceeded",
        "onStart hook succeeded: start-output",
    )
    .await;
    assert_eq!(
        cat(&server, "chain", "/workspace/hooks.log").await,
        "started\n"
    );
    let (_, body) = server.get("/sandboxes/chain").await;
    assert_eq!(
        condition(&body, "OnStartHookSucceeded").unwrap()["status"],
        "True"
    );
    // maxCommandTimeout caps exec.
    let (_, _, code) = server.exec("chain", "sleep 10").await;
    assert_eq!(code, 124, "exec is killed at the template's 2s cap");

    // A stop and a resume: onStop before the Pod goes, onResume on the new Pod; seeded files are
    // the user's, init scripts run again, tools are not installed again.
    server
        .exec(
            "chain",
            "echo mine > /workspace/base.txt; rm /workspace/.marker",
        )
        .await;
    let (status, body) = server.post("/sandboxes/chain/stop", json!({})).await;
    assert_eq!(status, 200, "{body}");
    server.wait_phase("chain", "Stopped", START).await;
    let (status, body) = server.post("/sandboxes/chain/resume", json!({})).await;
    assert_eq!(status, 200, "{body}");
    server.wait_phase("chain", "Running", START).await;
    wait_event(&server, "chain", "HookSucceeded", "onResume hook succeeded").await;
    assert_eq!(cat(&server, "chain", "/workspace/base.txt").await, "mine\n");
    let (_, _, code) = server.exec("chain", "test -e /workspace/.marker").await;
    assert_eq!(code, 1, "tools run once per tool set");
    assert_eq!(
        cat(&server, "chain", "/workspace/hooks.log").await,
        "started\nstopping\nresumed\n"
    );
    assert_eq!(
        cat(&server, "chain", "/workspace/init.log").await,
        "base\nmiddle\nleaf\nbase\nmiddle\nleaf\n"
    );

    // A failing init script: phase Error, its output in the message and the Ready condition,
    // and no Pod left running.
    create(
        &broken,
        json!({
            "inheritsFrom": {"name": base, "kind": "ClusterSandboxTemplate"},
            "initScripts": ["echo preparing", "echo no such tool >&2; exit 3", "echo never"]
        }),
    )
    .await;
    let (status, body) = server
        .post(
            "/sandboxes",
            json!({"name": "broken", "templateRef": {"name": broken, "kind": "ClusterSandboxTemplate"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let failed = server.wait_phase("broken", "Error", START).await;
    let message = failed["message"].as_str().unwrap();
    assert!(
        message.contains("Init script failed (exit 3)") && message.contains("no such tool"),
        "{message}\n{}",
        server.log()
    );
    assert!(!message.contains("never"), "{message}");
    let ready = condition(&failed, "Ready").expect("a Ready condition");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "InitScriptFailed");
    assert!(
        ready["message"].as_str().unwrap().contains("preparing"),
        "{ready}"
    );
    wait_until(Duration::from_secs(60), "the failed Pod to go", || async {
        kube_support::pods_with(&client, &ns.name, "agenttier.io/sandbox=broken")
            .await
            .iter()
            .all(|p| p.metadata.deletion_timestamp.is_some())
    })
    .await;

    for name in ["chain", "broken"] {
        assert_eq!(server.delete(&format!("/sandboxes/{name}")).await, 204);
    }
}

#[tokio::test]
async fn constraints_kubernetes_cannot_enforce_are_refused() {
    let client = node().await;
    let ns = TestNamespace::create(&client, NODE, "agent-cons").await;
    let server = KubeServer::start(NODE, &ns.name, "agent-cons", &["--dev-auth"]);
    let name = format!("{}-restricted", ns.name);
    let _templates = ClusterTemplates::new(&[&name]);
    let restricted = json!({
        "image": {"repository": "localhost/sandbox:dev", "pullPolicy": "Never"},
        "harness": {"constraints": {"restrictedPaths": ["/workspace/secret"]}}
    });
    let (status, body) = server
        .post("/templates", json!({"name": name, "spec": restricted}))
        .await;
    assert_eq!(status, 400, "{body}");
    let error = body.to_string();
    assert!(
        error.contains("restrictedPaths") && error.contains("kubernetes"),
        "{error}"
    );
    let (status, _) = server.get(&format!("/templates/{name}")).await;
    assert_eq!(status, 404, "nothing was created");

    // Nor can an existing template be changed to one.
    let (status, body) = server
        .post(
            "/templates",
            json!({"name": name, "spec": {"image": {"repository": "localhost/sandbox:dev"}}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let response = server
        .http
        .put(server.api(&format!("/templates/{name}")))
        .json(&json!({"spec": restricted}))
        .send()
        .await
        .unwrap();
    let (status, body) = agenttier_integration_tests::status_json(response).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(server.delete(&format!("/templates/{name}")).await, 204);
}

/// `integration-tests/python/sdk_agent.py` against Kubernetes: configure, invoke,
/// invoke_stream, a timeout, a cancel and the concurrency limit through the published SDK's
/// `sandbox.agent`, with the test's own agent template and namespace.
#[tokio::test]
async fn the_published_sdk_drives_agent_mode_on_kubernetes() {
    let client = node().await;
    let ns = TestNamespace::create(&client, NODE, "agent-sdk").await;
    let template = format!("{}-agent", ns.name);
    let _templates = ClusterTemplates::new(&[&template]);
    apply_agent_template(&template);
    let server = KubeServer::start(NODE, &ns.name, "agent-sdk", &[]);
    let key = server
        .admin_key
        .clone()
        .expect("a fresh install namespace prints an admin key");
    let python = std::env::var_os("AGENTTIER_TEST_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| kube_support::repo_root().join(".venv-tests/bin/python"));
    assert!(
        python.exists(),
        "no Python with agenttier==0.8.1 at {}: run scripts/setup-python.sh",
        python.display()
    );
    let script = kube_support::repo_root().join("integration-tests/python/sdk_agent.py");
    let output = std::process::Command::new(python)
        .arg(script)
        .env("AGENTTIER_API_URL", &server.url)
        .env("AGENTTIER_API_KEY", &key)
        .env("AGENTTIER_TEST_TEMPLATE", &template)
        .env("AGENTTIER_TEST_NAMESPACE", &ns.name)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("SDK agent mode OK"),
        "SDK run failed:\nstdout:\n{stdout}\nstderr:\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.log()
    );
    let sandboxes: Api<agenttier_crds::Sandbox> = Api::namespaced(client.clone(), &ns.name);
    wait_until(START, "sdk-agent to be deleted", || async {
        sandboxes.get_opt("sdk-agent").await.unwrap().is_none()
    })
    .await;
}
