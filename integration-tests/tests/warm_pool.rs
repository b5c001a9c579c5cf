//! The warm pool against the real server and real sandboxes: configured through
//! `PUT /warmpool/config`, a create claims a pre-started sandbox (its workspace, its processes)
//! and gets its own env and timeouts, the pool refills, pooled sandboxes stay out of lists,
//! resume never claims, a restarted server re-adopts the pool, and draining removes it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agenttier_actors::store::Store;
use agenttier_actors::store::sqlite::SqliteStore;
use agenttier_integration_tests::{Server, ServerOptions, client_with_key, status_json};
use serde_json::{Value, json};

fn scaled() -> ServerOptions {
    ServerOptions {
        args: ["--warm-pool-interval", "300ms", "--stop-grace", "200ms"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    }
}

async fn configure(server: &Server, body: Value) -> (u16, Value) {
    server.put("/warmpool/config", body).await
}

/// Polls `/warmpool/status` until the pool of `template` has `ready` ready sandboxes.
async fn wait_ready(server: &Server, template: &str, ready: u64) -> Value {
    let what = format!("pool {template} never had {ready} ready");
    let (limit, every) = (Duration::from_secs(30), Duration::from_millis(50));
    server
        .poll(&what, limit, every, async || {
            let (status, body) = server.get("/warmpool/status").await;
            assert_eq!(status, 200, "{body}");
            let pool = body["pools"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["template"] == template)
                .cloned()
                .unwrap_or(Value::Null);
            if pool["readyCount"] == ready && pool["pendingCount"] == 0 {
                Ok(body)
            } else {
                Err(body)
            }
        })
        .await
}

/// Runtime ids of pooled (or once pooled) sandboxes on disk.
fn pool_dirs(server: &Server) -> Vec<String> {
    let mut dirs: Vec<String> = std::fs::read_dir(server.data_dir().join("sandboxes"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pool-"))
        .collect();
    dirs.sort();
    dirs
}

fn is_pooled(sandbox: &Value) -> bool {
    sandbox["pvcName"]
        .as_str()
        .is_some_and(|p| p.contains("/sandboxes/pool-"))
}

#[tokio::test]
async fn a_create_claims_a_warm_sandbox_with_its_own_env_and_timeouts() {
    let mut server = Server::start_with(scaled());
    server
        .create_template(
            "envy",
            json!({"env": [{"name": "GREETING", "value": "hello"}]}),
        )
        .await;
    let (status, body) = configure(
        &server,
        json!({"pools": [{"template": "envy", "desiredCount": 2}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"status": "updated", "pools": [{"template": "envy", "desiredCount": 2}]})
    );
    let status = wait_ready(&server, "envy", 2).await;
    assert_eq!(
        status["readyCount"], 2,
        "one pool: fields repeated at the top level"
    );
    let (_, list) = server.get("/sandboxes").await;
    assert_eq!(
        list["sandboxes"],
        json!([]),
        "pooled sandboxes are not listed"
    );
    let pooled_before = pool_dirs(&server);
    assert_eq!(pooled_before.len(), 2);

    let (status, created) = server
        .post(
            "/sandboxes",
            json!({"name": "warm-a", "templateRef": {"name": "envy"}, "idleTimeout": "2s"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["status"], "Running",
        "a warm claim answers Running at once"
    );
    assert!(is_pooled(&created), "{created}");
    let (out, _, _) = server
        .exec("warm-a", "echo $GREETING; echo mine > /workspace/f")
        .await;
    assert_eq!(out, "hello\n");
    let (_, events) = server
        .get("/audit/events?sandbox=warm-a&action=Running")
        .await;
    assert!(
        events["events"][0]["details"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("Sandbox is ready from warm pool"),
        "{events}"
    );

    // The pool refills in the background.
    wait_ready(&server, "envy", 2).await;
    assert_eq!(pool_dirs(&server).len(), 3, "two ready and the claimed one");

    // The claimed sandbox's own idle timeout applies; resume keeps its workspace (no claim).
    let stopped = server
        .wait_phase_within("warm-a", "Stopped", Duration::from_secs(15))
        .await;
    assert_eq!(stopped["message"], "Idle timeout exceeded");
    let (status, _) = server.post("/sandboxes/warm-a/resume", json!({})).await;
    assert_eq!(status, 200);
    let resumed = server.wait_phase("warm-a", "Running").await;
    assert_eq!(
        resumed["pvcName"], created["pvcName"],
        "resume never claims"
    );
    assert_eq!(server.exec("warm-a", "cat /workspace/f").await.0, "mine\n");
    wait_ready(&server, "envy", 2).await;

    // A restarted server re-adopts its ready sandboxes instead of starting new ones.
    let ready_before = pool_dirs(&server);
    let key = server.admin_key.clone();
    let data = server.data_dir().to_path_buf();
    let tmp = server.keep_data();
    server.kill();
    let server = Server::start_on_with(&data, Some(key), scaled());
    wait_ready(&server, "envy", 2).await;
    assert_eq!(pool_dirs(&server), ready_before);
    let second = server.create("warm-b", "envy").await;
    assert!(is_pooled(&second));
    assert_eq!(server.exec("warm-b", "echo $GREETING").await.0, "hello\n");

    // Draining removes the ready ones and keeps the claimed ones.
    let (status, _) = configure(&server, json!({"template": "envy", "desiredCount": 0})).await;
    assert_eq!(status, 200);
    let (limit, every) = (Duration::from_secs(15), Duration::from_millis(50));
    server
        .poll("not drained", limit, every, async || {
            let dirs = pool_dirs(&server);
            if dirs.len() == 2 {
                Ok(())
            } else {
                Err(format!("{dirs:?}"))
            }
        })
        .await;
    let cold = server.create("cold-c", "envy").await;
    assert!(!is_pooled(&cold), "{cold}");
    drop(server);
    agenttier_integration_tests::stop_all_sandboxes(&data);
    drop(tmp);
}

#[tokio::test]
async fn warm_pool_config_mistakes_are_4xx() {
    let server = Server::start_with(scaled());
    for (body, message) in [
        (
            json!({"pools": [{"template": "minimal-shell", "desiredCount": 11}]}),
            "pools[0].desiredCount must be between 0 and 10",
        ),
        (
            json!({"pools": [{"desiredCount": 1}]}),
            "pools[0].template is required",
        ),
        (
            json!({"pools": [{"template": "nope", "desiredCount": 1}]}),
            "pools[0].template: ClusterSandboxTemplate \"nope\" not found",
        ),
    ] {
        let (status, answer) = configure(&server, body).await;
        assert_eq!((status, answer), (400, json!({"error": message})));
    }
    let (status, body) = server.get("/warmpool/status").await;
    assert_eq!((status, body), (200, json!({"pools": []})));

    let store = SqliteStore::open(&server.data_dir().join("state.db")).unwrap();
    let (key, record) = agenttier_gateway::auth::api_keys::mint("bob", "e2e", false);
    store.put_api_key(record).await.unwrap();
    let bob = client_with_key(&key);
    let response = bob
        .put(server.api("/warmpool/config"))
        .json(&json!({"pools": []}))
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(response).await;
    assert_eq!((status, body), (403, json!({"error": "admin_required"})));
    let (status, _) = status_json(
        bob.get(server.api("/warmpool/status"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "any user may read the pool's status");
}
