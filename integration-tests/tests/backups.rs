//! Backups against the real server and real sandboxes: take a point-in-time copy of a
//! workspace, list it, restore it into a new sandbox (which passes governance), delete it, and
//! get the contract's errors for what is not there or not yours.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agenttier_actors::store::Store;
use agenttier_actors::store::sqlite::SqliteStore;
use agenttier_integration_tests::{Server, client_with_key, status_json};
use serde_json::json;

#[tokio::test]
async fn backups_are_taken_listed_restored_and_deleted() {
    let server = Server::start();
    server.create_running("bk", "minimal-shell").await;
    server
        .exec("bk", "mkdir -p /workspace/d && echo v1 > /workspace/d/f")
        .await;

    let (status, empty) = server.get("/sandboxes/bk/backups").await;
    assert_eq!((status, empty), (200, json!({"backups": []})));
    let (status, backup) = server.post("/sandboxes/bk/backups", json!({})).await;
    assert_eq!(status, 201, "{backup}");
    let name = backup["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("bk-backup-"), "{name}");
    assert_eq!(backup["kind"], "scheduled-backup");
    assert_eq!(backup["readyToUse"], true);
    assert_eq!(backup["restoreSize"], "3");
    assert!(backup["createdAt"].as_str().unwrap().ends_with('Z'));

    server.exec("bk", "echo v2 > /workspace/d/f").await;
    let (_, list) = server.get("/sandboxes/bk/backups").await;
    assert_eq!(list["backups"], json!([backup.clone()]));

    let (status, restored) = server
        .post(
            &format!("/sandboxes/bk/backups/{name}/restore"),
            json!({"name": "bk-restored"}),
        )
        .await;
    assert_eq!(status, 202, "{restored}");
    assert_eq!(restored["name"], "bk-restored");
    assert_eq!(restored["restoredFrom"], "bk");
    assert_eq!(restored["snapshot"], name.as_str());
    server.wait_phase("bk-restored", "Running").await;
    assert_eq!(
        server.exec("bk-restored", "cat /workspace/d/f").await.0,
        "v1\n"
    );
    assert_eq!(server.exec("bk", "cat /workspace/d/f").await.0, "v2\n");
    let (_, events) = server
        .get("/audit/events?sandbox=bk-restored&action=restore")
        .await;
    assert_eq!(events["events"].as_array().unwrap().len(), 1, "{events}");

    // Restore passes governance like a create.
    let (status, body) = server
        .put(
            "/governance/policies",
            json!({"allowedTemplates": ["general-coding"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, denied) = server
        .post(
            &format!("/sandboxes/bk/backups/{name}/restore"),
            json!({"name": "bk-denied"}),
        )
        .await;
    assert_eq!(status, 403, "{denied}");
    assert_eq!(denied["error"], "policy_violation");
    assert_eq!(denied["violations"][0]["code"], "template_not_allowed");
    let (status, _) = server.put("/governance/policies", json!({})).await;
    assert_eq!(status, 200);

    // Client mistakes.
    let (status, body) = server
        .post(
            &format!("/sandboxes/bk/backups/{name}/restore"),
            json!({"name": "Not_A_Name"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = server
        .post(
            &format!("/sandboxes/bk/backups/{name}/restore"),
            json!({"name": "bk-restored"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = server
        .post("/sandboxes/bk/backups/bk-backup-1/restore", json!({}))
        .await;
    assert_eq!(
        (status, body),
        (
            404,
            json!({"error": "snapshot not found (it may have been pruned)"})
        )
    );

    // Someone else's sandbox: its backups are not theirs to see.
    let store = SqliteStore::open(&server.data_dir().join("state.db")).unwrap();
    let (key, record) = agenttier_gateway::auth::api_keys::mint("mallory", "e2e", false);
    store.put_api_key(record).await.unwrap();
    let mallory = client_with_key(&key);
    let (status, _) = status_json(
        mallory
            .get(server.api("/sandboxes/bk/backups"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);

    let response = server
        .http
        .delete(server.api(&format!("/sandboxes/bk/backups/{name}")))
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(response).await;
    assert_eq!(
        (status, body),
        (200, json!({"status": "deleted", "name": name}))
    );
    let (_, list) = server.get("/sandboxes/bk/backups").await;
    assert_eq!(list, json!({"backups": []}));
    assert_eq!(
        server
            .delete(&format!("/sandboxes/bk/backups/{name}"))
            .await,
        404
    );
    let (status, _) = server
        .post(&format!("/sandboxes/bk/backups/{name}/restore"), json!({}))
        .await;
    assert_eq!(status, 404);
    let (_, events) = server.get("/audit/events?sandbox=bk&limit=100").await;
    let reasons: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["eventType"].as_str())
        .filter(|r| r.starts_with("Backup"))
        .collect();
    assert_eq!(reasons, ["BackupPruned", "BackupCreated"]);
}
