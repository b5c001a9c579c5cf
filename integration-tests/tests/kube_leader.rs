//! Lease-based leader election against a real kube-apiserver: electors in this process with short
//! leases (one leads; a crashed leader is replaced once its lease expires; a graceful one hands
//! over at once), then two real `agenttier serve` replicas (one holds `agenttier-controller-
//! leader` and publishes its URL; the other forwards the API to it, runs no sandbox actor, and
//! after `kill -9` of the leader takes over and serves directly; losing the Lease stops its
//! actors, and winning it again starts new ones in the same process).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod kube_support;

use std::time::{Duration, Instant};

use agenttier_actors::leader::{
    LEADER_URL_ANNOTATION, LEASE_NAME, LeaderElectionConfig, LeaderElector,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use kube_support::{Cluster, KubeServer, TestNamespace, client, wait_until};
use serde_json::json;

const API: Cluster = Cluster::Api;

fn config(namespace: &str, identity: &str) -> LeaderElectionConfig {
    LeaderElectionConfig {
        lease_duration: Duration::from_secs(3),
        renew_every: Duration::from_millis(500),
        ..LeaderElectionConfig::new(namespace, identity)
    }
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt(LEASE_NAME)
        .await
        .unwrap()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test]
async fn one_elector_leads_and_another_takes_over() {
    let client = client(API).await;
    let ns = TestNamespace::create(&client, API, "leader-unit").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
    let a = LeaderElector::start(client.clone(), config(&ns.name, "a"));
    wait_until(Duration::from_secs(10), "a to lead", || async {
        a.is_leader()
    })
    .await;
    let b = LeaderElector::start(client.clone(), config(&ns.name, "b"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(a.is_leader() && !b.is_leader(), "exactly one leads");
    assert_eq!(holder(&leases).await.as_deref(), Some("a"));

    // A crash (no release): b takes over once a's lease has expired, not before.
    let crashed = Instant::now();
    drop(a);
    wait_until(
        Duration::from_secs(15),
        "b to lead after a crashed",
        || async { b.is_leader() },
    )
    .await;
    assert!(
        crashed.elapsed() >= Duration::from_secs(2),
        "took over before the lease expired"
    );
    assert_eq!(holder(&leases).await.as_deref(), Some("b"));
    let transitions = leases
        .get(LEASE_NAME)
        .await
        .unwrap()
        .spec
        .unwrap()
        .lease_transitions;
    assert_eq!(transitions, Some(1));

    // A graceful shutdown releases the lease: c leads at its next round.
    let c = LeaderElector::start(client.clone(), config(&ns.name, "c"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!c.is_leader());
    let released = Instant::now();
    b.shutdown().await;
    wait_until(
        Duration::from_secs(10),
        "c to lead after b released",
        || async { c.is_leader() },
    )
    .await;
    assert!(
        released.elapsed() < Duration::from_secs(3),
        "a released lease is taken at once"
    );
}

async fn leader_url(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt(LEASE_NAME)
        .await
        .unwrap()
        .and_then(|l| l.metadata.annotations)
        .and_then(|a| a.get(LEADER_URL_ANNOTATION).cloned())
}

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

#[tokio::test]
async fn two_server_replicas_elect_one_leader_and_fail_over() {
    let client = client(API).await;
    let ns = TestNamespace::create(&client, API, "leader-serve").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
    let mut first = KubeServer::start(API, &ns.name, "replica-1", &[]);
    wait_until(Duration::from_secs(20), "replica-1 to lead", || async {
        holder(&leases).await.as_deref() == Some("replica-1")
    })
    .await;
    // The leader publishes where its API is reached.
    assert_eq!(
        leader_url(&leases).await.as_deref(),
        Some(first.url.as_str())
    );
    let second = KubeServer::start(API, &ns.name, "replica-2", &[]);
    // The first replica minted the admin key; the second uses the same store.
    let http = agenttier_integration_tests::client_with_key(first.admin_key.as_deref().unwrap());
    // Both serve the API.
    for server in [&first, &second] {
        let response = reqwest::get(format!("{}/healthz", server.url))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let response = reqwest::get(format!("{}/readyz", server.url))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert!(
        second
            .log()
            .contains("following; API requests are forwarded"),
        "{}",
        second.log()
    );

    // A create and a GET through the follower reach the leader's actors.
    let created = http
        .post(second.api("/sandboxes"))
        .json(&json!({
            "name": "via-follower",
            "templateRef": {"name": "minimal-shell", "kind": "ClusterSandboxTemplate"}
        }))
        .send()
        .await
        .unwrap();
    let (status, body) = agenttier_integration_tests::status_json(created).await;
    assert_eq!(status, 201, "{body}\n{}\n{}", second.log(), first.log());
    assert_eq!(body["name"], "via-follower");
    let fetched = http
        .get(second.api("/sandboxes/via-follower"))
        .send()
        .await
        .unwrap();
    let (status, body) = agenttier_integration_tests::status_json(fetched).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "via-follower");
    let follower_log = second.log();
    assert!(
        follower_log.contains("forwarding to the leader"),
        "{follower_log}"
    );
    // Only the leader's actors act: the follower runs no sandbox actor.
    assert!(first.log().contains("via-follower"), "{}", first.log());
    assert_eq!(
        count(&follower_log, "starting sandbox actors"),
        0,
        "{follower_log}"
    );
    assert_eq!(
        count(&follower_log, "sandbox transition"),
        0,
        "{follower_log}"
    );

    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        holder(&leases).await.as_deref(),
        Some("replica-1"),
        "the leader keeps renewing"
    );

    // kill -9: the other replica takes over after the 15 s lease and serves directly.
    first.kill();
    wait_until(
        Duration::from_secs(40),
        "replica-2 to take over",
        || async { holder(&leases).await.as_deref() == Some("replica-2") },
    )
    .await;
    assert_eq!(
        leader_url(&leases).await.as_deref(),
        Some(second.url.as_str())
    );
    wait_until(
        Duration::from_secs(20),
        "replica-2 to start its actors",
        || async { second.log().contains("leading: the actors") },
    )
    .await;
    let forwarded_before = count(&second.log(), "forwarding to the leader");
    let fetched = http
        .get(second.api("/sandboxes/via-follower"))
        .send()
        .await
        .unwrap();
    let (status, body) = agenttier_integration_tests::status_json(fetched).await;
    assert_eq!(status, 200, "{body}\n{}", second.log());
    assert_eq!(body["name"], "via-follower");
    let log = second.log();
    assert!(log.contains("leadership changed"), "{log}");
    assert!(log.contains("starting sandbox actors"), "{log}");
    assert_eq!(
        count(&log, "forwarding to the leader"),
        forwarded_before,
        "the new leader serves directly\n{log}"
    );

    // Losing the Lease stops the actors: another holder (publishing no URL, valid for an hour)
    // takes it, and replica-2 follows with no leader to forward to.
    let followed_before = count(&log, "following; API requests are forwarded");
    loop {
        let mut lease = leases.get(LEASE_NAME).await.unwrap();
        let spec = lease.spec.as_mut().unwrap();
        spec.holder_identity = Some("intruder".into());
        spec.lease_duration_seconds = Some(3600);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        if let Some(annotations) = lease.metadata.annotations.as_mut() {
            annotations.remove(LEADER_URL_ANNOTATION);
        }
        match leases
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => break,
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(e) => panic!("{e}"),
        }
    }
    wait_until(
        Duration::from_secs(20),
        "replica-2 to stop leading",
        || async {
            count(&second.log(), "following; API requests are forwarded") > followed_before
        },
    )
    .await;
    let response = http
        .get(second.api("/sandboxes/via-follower"))
        .send()
        .await
        .unwrap();
    let (status, body) = agenttier_integration_tests::status_json(response).await;
    assert_eq!(status, 503, "{body}\n{}", second.log());
    assert!(body["error"].is_string(), "{body}");

    // The Lease gone, replica-2 leads again in the same process: new actors, served directly.
    let led_before = count(&second.log(), "leading: the actors");
    leases
        .delete(LEASE_NAME, &Default::default())
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(20),
        "replica-2 to lead again",
        || async { count(&second.log(), "leading: the actors") > led_before },
    )
    .await;
    let response = http
        .get(second.api("/sandboxes/via-follower"))
        .send()
        .await
        .unwrap();
    let (status, body) = agenttier_integration_tests::status_json(response).await;
    assert_eq!(status, 200, "{body}\n{}", second.log());
}
