//! The audit trail against the real server: two users act on sandboxes, and
//! `GET /api/v1/audit/events` filtered by action, user, sandbox and time range returns exactly
//! their records, paginates without gaps, refuses non-admins and bad filters, and answers the
//! same after the server was killed and started again on the same data.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agenttier_actors::store::Store;
use agenttier_actors::store::sqlite::SqliteStore;
use agenttier_integration_tests::{Server, client_with_key, status_json};
use serde_json::{Value, json};

/// Mints an API key for a new non-admin user straight into the server's store.
async fn user_key(server: &Server, user: &str, email: &str) -> String {
    let store = SqliteStore::open(&server.data_dir().join("state.db")).unwrap();
    let (key, mut record) = agenttier_gateway::auth::api_keys::mint(user, "e2e", false);
    record.email = email.to_string();
    store.put_api_key(record).await.unwrap();
    key
}

/// Now, in the audit trail's own format.
fn now() -> String {
    agenttier_actors::audit::timestamp_now()
}

/// `(sandbox, eventType, actor)` of a query's events, newest first.
async fn query(server: &Server, params: &str) -> Vec<(String, String, String)> {
    let (status, body) = server.get(&format!("/audit/events?{params}")).await;
    assert_eq!(status, 200, "{params}: {body}");
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["sandboxId"].as_str().unwrap().to_string(),
                e["eventType"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn triple(sandbox: &str, reason: &str, actor: &str) -> (String, String, String) {
    (sandbox.into(), reason.into(), actor.into())
}

/// Every query the test checks, with its expected answer.
async fn check_queries(server: &Server, window: (&str, &str)) {
    assert_eq!(
        query(server, "action=create").await,
        [
            triple("aud-b", "Created", "bob"),
            triple("aud-a", "Created", "admin")
        ]
    );
    assert_eq!(
        query(server, "user=bob").await,
        [
            triple("aud-b", "Stopped", "bob"),
            triple("aud-b", "Created", "bob")
        ]
    );
    assert_eq!(
        query(server, "action=exec&user=admin&sandbox=aud-a").await,
        [triple("aud-a", "CommandExecuted", "admin")]
    );
    let (since, until) = window;
    assert_eq!(
        query(server, &format!("since={since}&until={until}")).await,
        [
            triple("aud-b", "Stopped", "bob"),
            triple("aud-a", "CommandExecuted", "admin")
        ],
        "only what happened inside the window"
    );
    assert_eq!(
        query(
            server,
            &format!("until={since}&namespace=default&action=Running")
        )
        .await,
        [
            triple("aud-b", "Running", "agenttier-controller"),
            triple("aud-a", "Running", "agenttier-controller")
        ]
    );
    assert!(query(server, "namespace=elsewhere").await.is_empty());
}

#[tokio::test]
async fn audit_queries_return_exactly_the_expected_records_across_a_restart() {
    let mut server = Server::start();
    let bob_key = user_key(&server, "bob", "bob@example.com").await;
    let bob = client_with_key(&bob_key);

    server.create_running("aud-a", "minimal-shell").await;
    let response = bob
        .post(server.api("/sandboxes"))
        .json(&json!({"name": "aud-b", "templateRef": {"name": "minimal-shell"}}))
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(response).await;
    assert_eq!(status, 201, "{body}");
    server.wait_phase("aud-b", "Running").await;

    tokio::time::sleep(Duration::from_millis(20)).await;
    let since = now();
    server.exec("aud-a", "echo audited").await;
    let response = bob
        .post(server.api("/sandboxes/aud-b/stop"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let until = now();
    tokio::time::sleep(Duration::from_millis(20)).await;

    check_queries(&server, (&since, &until)).await;

    // The item shape: the contract's fields plus actor, type and id.
    let (_, body) = server.get("/audit/events?user=bob&action=stop").await;
    let item = &body["events"][0];
    assert_eq!(item["sandboxName"], "aud-b");
    assert_eq!(item["namespace"], "default");
    assert_eq!(item["userEmail"], "bob@example.com");
    assert_eq!(item["type"], "Normal");
    assert_eq!(item["details"]["reason"], "User requested stop");
    assert!(item["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(body.get("next").is_none(), "one page only");

    // Pagination: pages of two, chained through `next`, add up to the whole list.
    let (_, all) = server.get("/audit/events?limit=1000").await;
    let all_ids: Vec<i64> = ids(&all);
    assert_eq!(all_ids.len(), 8, "{all}");
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/audit/events?limit=2&cursor={c}"),
            None => "/audit/events?limit=2".to_string(),
        };
        let (status, page) = server.get(&path).await;
        assert_eq!(status, 200);
        paged.extend(ids(&page));
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(paged, all_ids);

    // Client mistakes are JSON 4xx; non-admins are refused.
    for bad in [
        "since=yesterday",
        "limit=0",
        "limit=abc",
        "cursor=x",
        "since=2030-01-01T00:00:00Z&until=2020-01-01T00:00:00Z",
    ] {
        let (status, body) = server.get(&format!("/audit/events?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }
    let (status, body) =
        status_json(bob.get(server.api("/audit/events")).send().await.unwrap()).await;
    assert_eq!((status, body), (403, json!({"error": "admin_required"})));

    // Nothing is lost when the server is killed and started again.
    let key = server.admin_key.clone();
    let data = server.data_dir().to_path_buf();
    let tmp = server.keep_data();
    server.kill();
    let server = Server::start_on(&data, Some(key));
    check_queries(&server, (&since, &until)).await;
    let (_, after) = server.get("/audit/events?limit=1000").await;
    let after_ids = ids(&after);
    assert!(
        after_ids.ends_with(&all_ids),
        "every earlier event is still there"
    );
    drop(server);
    agenttier_integration_tests::stop_all_sandboxes(&data);
    drop(tmp);
}

fn ids(page: &Value) -> Vec<i64> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect()
}
