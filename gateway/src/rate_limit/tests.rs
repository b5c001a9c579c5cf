//! Rate limiting: the buckets on a fake clock (refill, sweep, costs, rounding), and the router
//! with `oneshot` (off by default, per-IP before auth, exempt routes, forwarded headers,
//! per-user keyed by `sub`, the 429 shape and the metric). Router tests use rates so low
//! (one token per 1000 s) that no refill can happen while they run: nothing depends on timing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode, header};
use governor::clock::FakeRelativeClock;
use serde_json::{Value, json};
use tower::ServiceExt;

use agenttier_actors::metrics::ScopeLabels;

use super::*;
use crate::GatewayConfig;
use crate::auth::test_harness::{Harness, harness};

/// One token per 1000 s: a drained bucket stays drained for the whole test.
const SLOW: f64 = 0.001;

fn peer(last: u8) -> Option<SocketAddr> {
    Some(SocketAddr::from(([192, 0, 2, last], 40000)))
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

/// One request through `router`, from `peer` (as `into_make_service_with_connect_info` would
/// record it) with `headers`.
async fn send(
    router: &Router,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    peer: Option<SocketAddr>,
) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(Body::empty()).unwrap();
    if let Some(peer) = peer {
        request.extensions_mut().insert(ConnectInfo(peer));
    }
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Answer {
        status,
        headers,
        body,
    }
}

/// A harness whose router has `config`'s limits (one router, so its buckets persist).
async fn limited(config: RateLimitConfig) -> (Harness, Router) {
    let mut h = harness().await;
    h.state.config = Arc::new(GatewayConfig {
        rate_limit: config,
        ..GatewayConfig::default()
    });
    let router = crate::app(h.state.clone());
    (h, router)
}

fn per_ip(rate: f64, trust_forwarded_headers: bool) -> RateLimitConfig {
    RateLimitConfig {
        per_ip_rate: rate,
        trust_forwarded_headers,
        ..Default::default()
    }
}

/// Asserts the contract's 429 (status, `Retry-After` ≥ 1 equal to `retryAfter`, exact body)
/// and returns N.
fn assert_rate_limited(answer: &Answer) -> u64 {
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        answer.body
    );
    let retry_after: u64 = answer
        .headers
        .get(header::RETRY_AFTER)
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After is whole seconds");
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    assert_eq!(
        answer.body,
        json!({
            "error": "rate_limited",
            "retryAfter": retry_after,
            "message": format!("too many requests; retry after {retry_after} seconds"),
        })
    );
    assert_eq!(
        answer.headers.get(header::CONTENT_TYPE).unwrap(),
        "application/json"
    );
    retry_after
}

fn rejected(h: &Harness, scope: &str) -> u64 {
    h.state
        .control
        .metrics
        .rate_limited
        .get_or_create(&ScopeLabels {
            scope: scope.into(),
        })
        .get()
}

#[tokio::test]
async fn nothing_is_limited_by_default() {
    let h = harness().await;
    assert!(!h.state.config.rate_limit.enabled());
    let router = crate::app(h.state.clone());
    for _ in 0..(PER_USER_BURST + PER_IP_BURST + 20) {
        let answer = send(
            &router,
            "GET",
            "/api/v1/user/me",
            &[("x-api-key", &h.alice)],
            peer(1),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    }
    assert_eq!(rejected(&h, "ip") + rejected(&h, "user"), 0);
}

#[tokio::test]
async fn per_ip_limit_refuses_the_request_after_the_burst_before_auth() {
    let (h, router) = limited(per_ip(SLOW, false)).await;
    // Unauthenticated: the limit runs before auth, so the burst is spent on 401s.
    for i in 0..PER_IP_BURST {
        let answer = send(&router, "GET", "/api/v1/sandboxes", &[], peer(1)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "request {i}");
    }
    let answer = send(&router, "GET", "/api/v1/sandboxes", &[], peer(1)).await;
    let retry_after = assert_rate_limited(&answer);
    // One token per 1000 s: the wait is about that, rounded up.
    assert!((990..=1000).contains(&retry_after), "{retry_after}");
    // Before route matching too, and whatever the credentials.
    assert_rate_limited(&send(&router, "GET", "/api/v1/no-such-route", &[], peer(1)).await);
    let answer = send(
        &router,
        "GET",
        "/api/v1/user/me",
        &[("x-api-key", &h.alice)],
        peer(1),
    )
    .await;
    assert_rate_limited(&answer);
    // Another address has its own bucket.
    let answer = send(
        &router,
        "GET",
        "/api/v1/user/me",
        &[("x-api-key", &h.alice)],
        peer(2),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(rejected(&h, "ip"), 3);
    assert_eq!(rejected(&h, "user"), 0);
}

#[tokio::test]
async fn probes_metrics_and_terminals_are_never_limited_per_ip() {
    let (h, router) = limited(per_ip(SLOW, false)).await;
    for path in ["/healthz", "/readyz", "/metrics", "/ws/terminal/nope"] {
        for _ in 0..(PER_IP_BURST + 10) {
            let answer = send(&router, "GET", path, &[], peer(1)).await;
            assert_ne!(answer.status, StatusCode::TOO_MANY_REQUESTS, "{path}");
        }
    }
    // …and they took no tokens: the whole burst is still there for the API.
    for _ in 0..PER_IP_BURST {
        let answer = send(
            &router,
            "GET",
            "/api/v1/user/me",
            &[("x-api-key", &h.bob)],
            peer(1),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    assert_rate_limited(&send(&router, "GET", "/api/v1/user/me", &[], peer(1)).await);
}

#[tokio::test]
async fn forwarded_headers_are_ignored_unless_trusted() {
    let (_h, router) = limited(per_ip(SLOW, false)).await;
    // Every request claims another client, but they all share the peer's bucket.
    for i in 0..PER_IP_BURST {
        let forwarded = format!("203.0.113.{i}");
        let headers = [
            ("x-forwarded-for", forwarded.as_str()),
            ("x-real-ip", forwarded.as_str()),
        ];
        let answer = send(&router, "GET", "/api/v1/sandboxes", &headers, peer(1)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    let headers = [("x-forwarded-for", "198.51.100.1")];
    assert_rate_limited(&send(&router, "GET", "/api/v1/sandboxes", &headers, peer(1)).await);
}

#[tokio::test]
async fn trusted_forwarded_headers_key_the_limit() {
    let (_h, router) = limited(per_ip(SLOW, true)).await;
    let drain = |headers: Vec<(&'static str, &'static str)>| {
        let router = router.clone();
        async move {
            for i in 0..PER_IP_BURST {
                let answer = send(&router, "GET", "/api/v1/sandboxes", &headers, peer(1)).await;
                assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{headers:?} {i}");
            }
            let answer = send(&router, "GET", "/api/v1/sandboxes", &headers, peer(1)).await;
            assert_rate_limited(&answer);
        }
    };
    // The first hop of X-Forwarded-For is the client; the proxies after it do not matter.
    drain(vec![("x-forwarded-for", "203.0.113.1, 10.0.0.1")]).await;
    assert_rate_limited(
        &send(
            &router,
            "GET",
            "/api/v1/sandboxes",
            &[("x-forwarded-for", "203.0.113.1, 10.9.9.9")],
            peer(7),
        )
        .await,
    );
    // Another client behind the same proxy (same peer) has a full bucket.
    drain(vec![("x-forwarded-for", "203.0.113.2")]).await;
    // X-Real-IP when there is no X-Forwarded-For.
    drain(vec![("x-real-ip", "203.0.113.3")]).await;
    // X-Forwarded-For wins over X-Real-IP.
    let headers = [
        ("x-forwarded-for", "203.0.113.4"),
        ("x-real-ip", "203.0.113.3"),
    ];
    let answer = send(&router, "GET", "/api/v1/sandboxes", &headers, peer(1)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    // Without (usable) headers the peer is the client, and its bucket is untouched so far.
    drain(vec![("x-forwarded-for", "unknown")]).await;
    assert_rate_limited(&send(&router, "GET", "/api/v1/sandboxes", &[], peer(1)).await);
}

#[tokio::test]
async fn per_user_limit_is_keyed_by_sub_after_auth() {
    let (h, router) = limited(RateLimitConfig {
        per_user_rate: SLOW,
        ..Default::default()
    })
    .await;
    // Many addresses do not help a user: the bucket is theirs (per-IP is off).
    for i in 0..PER_USER_BURST {
        let answer = send(
            &router,
            "GET",
            "/api/v1/user/me",
            &[("x-api-key", &h.alice)],
            peer(i as u8),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "request {i}: {}",
            answer.body
        );
    }
    let answer = send(
        &router,
        "GET",
        "/api/v1/user/me",
        &[("x-api-key", &h.alice)],
        peer(200),
    )
    .await;
    assert_rate_limited(&answer);
    // Bob, from the same address as alice's last request, is not affected.
    let answer = send(
        &router,
        "GET",
        "/api/v1/user/me",
        &[("x-api-key", &h.bob)],
        peer(200),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["sub"], "bob", "{}", answer.body);
    // Authentication runs first: without credentials it is 401, not 429.
    let answer = send(&router, "GET", "/api/v1/user/me", &[], peer(200)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    // Unknown routes never reach the per-user limit.
    let answer = send(
        &router,
        "GET",
        "/api/v1/no-such-route",
        &[("x-api-key", &h.alice)],
        peer(200),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(rejected(&h, "user"), 1);
    assert_eq!(rejected(&h, "ip"), 0);
}

#[tokio::test]
async fn per_user_limit_runs_before_scoped_key_enforcement_and_spans_a_users_keys() {
    let (h, router) = limited(RateLimitConfig {
        per_user_rate: SLOW,
        ..Default::default()
    })
    .await;
    // (`h.call` builds its own router, so these take nothing from `router`'s buckets.)
    h.create(&h.alice, "a").await;
    let (_, minted) = h
        .call(
            &h.alice,
            "POST",
            "/api/v1/user/api-keys",
            Some(json!({"sandboxId": "a", "scopes": ["stop"]})),
        )
        .await;
    let scoped = minted["key"].as_str().unwrap();
    // Routes the scoped key may not use still cost its user a token each (contract §0.1).
    for i in 0..PER_USER_BURST {
        let answer = send(
            &router,
            "GET",
            "/api/v1/sandboxes/a",
            &[("x-api-key", scoped)],
            peer(1),
        )
        .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "request {i}");
    }
    let headers = [("x-api-key", scoped)];
    assert_rate_limited(&send(&router, "GET", "/api/v1/sandboxes/a", &headers, peer(1)).await);
    // The bucket is alice's, not the key's.
    let headers = [("x-api-key", h.alice.as_str())];
    assert_rate_limited(&send(&router, "GET", "/api/v1/user/me", &headers, peer(1)).await);
}

#[tokio::test]
async fn refusals_are_counted_on_the_metrics_endpoint() {
    let (h, router) = limited(RateLimitConfig {
        per_ip_rate: SLOW,
        per_user_rate: SLOW,
        trust_forwarded_headers: false,
    })
    .await;
    for _ in 0..PER_IP_BURST {
        send(&router, "GET", "/api/v1/sandboxes", &[], peer(1)).await;
    }
    for _ in 0..2 {
        assert_rate_limited(&send(&router, "GET", "/api/v1/sandboxes", &[], peer(1)).await);
    }
    let metrics = send(&router, "GET", "/metrics", &[], peer(1)).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.body.as_str().unwrap();
    assert!(
        text.contains("agenttier_rate_limited_total{scope=\"ip\"} 2"),
        "{text}"
    );
    assert_eq!(rejected(&h, "ip"), 2);
}

#[tokio::test]
async fn requests_without_a_peer_address_are_not_limited_per_ip() {
    let (_h, router) = limited(per_ip(SLOW, false)).await;
    for _ in 0..(PER_IP_BURST + 10) {
        let answer = send(&router, "GET", "/api/v1/sandboxes", &[], None).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
}

#[test]
fn buckets_refill_at_the_rate_and_say_how_long_to_wait() {
    let clock = FakeRelativeClock::default();
    let buckets = Buckets::<&str, _>::new(0.5, 3, clock.clone()).unwrap();
    for _ in 0..3 {
        buckets.check(&"a", 1).unwrap();
    }
    let wait = buckets.check(&"a", 1).unwrap_err();
    assert_eq!(wait, Duration::from_secs(2));
    assert_eq!(retry_after_secs(wait), 2);
    buckets.check(&"b", 1).unwrap();
    clock.advance(Duration::from_millis(1500));
    assert_eq!(
        buckets.check(&"a", 1).unwrap_err(),
        Duration::from_millis(500)
    );
    clock.advance(Duration::from_millis(500));
    buckets.check(&"a", 1).unwrap();
    buckets.check(&"a", 1).unwrap_err();
}

#[test]
fn a_cost_takes_that_many_tokens_and_never_more_than_the_burst() {
    let clock = FakeRelativeClock::default();
    let buckets = Buckets::<&str, _>::new(1.0, 10, clock.clone()).unwrap();
    buckets.check(&"a", 7).unwrap();
    buckets.check(&"a", 4).unwrap_err();
    buckets.check(&"a", 3).unwrap();
    buckets.check(&"a", 1).unwrap_err();
    // Larger than the burst: waits for a full bucket, then passes and empties it.
    assert_eq!(
        buckets.check(&"b", 500).map_err(retry_after_secs),
        Ok(()),
        "a full bucket admits an oversized request"
    );
    buckets.check(&"b", 1).unwrap_err();
    // Zero costs one.
    let single = Buckets::<&str, _>::new(1.0, 1, clock).unwrap();
    single.check(&"c", 0).unwrap();
    single.check(&"c", 0).unwrap_err();
}

#[test]
fn refilled_keys_are_swept_and_drained_ones_kept() {
    let clock = FakeRelativeClock::default();
    // One token per 10 s: a drained bucket takes 300 s to fill, longer than a sweep interval.
    let buckets = Buckets::<u32, _>::new(0.1, 30, clock.clone()).unwrap();
    for key in 0..100 {
        buckets.check(&key, 1).unwrap();
    }
    assert_eq!(buckets.len(), 100);
    // Not due yet: nothing is forgotten.
    clock.advance(SWEEP_INTERVAL / 2);
    buckets.check(&1000, 1).unwrap();
    assert_eq!(buckets.len(), 101);
    // Due: every bucket has refilled, so all are forgotten; then 2000 is drained.
    clock.advance(SWEEP_INTERVAL);
    for _ in 0..30 {
        buckets.check(&2000, 1).unwrap();
    }
    assert_eq!(buckets.len(), 1);
    // The next sweep keeps the drained bucket: forgetting never grants a fresh burst.
    clock.advance(SWEEP_INTERVAL + Duration::from_secs(1));
    buckets.check(&3000, 1).unwrap();
    assert_eq!(buckets.len(), 2);
    // 61 s gave 2000 six tokens back, not a fresh burst of 30.
    for _ in 0..6 {
        buckets.check(&2000, 1).unwrap();
    }
    buckets.check(&2000, 1).unwrap_err();
}

#[test]
fn rates_that_are_not_positive_turn_a_limit_off() {
    for rate in [0.0, -1.0, f64::NAN] {
        assert!(Buckets::<u32>::new(rate, 30, DefaultClock::default()).is_none());
        let config = RateLimitConfig {
            per_ip_rate: rate,
            per_user_rate: rate,
            trust_forwarded_headers: true,
        };
        assert!(!config.enabled());
    }
    // Extremes still make working buckets.
    for rate in [1e-12, 1e12, f64::INFINITY] {
        let buckets = Buckets::<u32>::new(rate, 1, DefaultClock::default()).unwrap();
        buckets.check(&1, 1).unwrap();
    }
}

#[test]
fn retry_after_rounds_up_to_whole_seconds_of_at_least_one() {
    assert_eq!(retry_after_secs(Duration::ZERO), 1);
    assert_eq!(retry_after_secs(Duration::from_nanos(1)), 1);
    assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
    assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
    assert_eq!(retry_after_secs(Duration::from_secs(59)), 59);
}

#[test]
fn client_ip_prefers_trusted_headers_and_canonicalises() {
    let mut headers = HeaderMap::new();
    let socket = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    headers.insert(
        "x-forwarded-for",
        " 203.0.113.9:1234 , 10.0.0.1".parse().unwrap(),
    );
    assert_eq!(client_ip(&headers, socket, false), socket);
    assert_eq!(
        client_ip(&headers, socket, true),
        Some("203.0.113.9".parse().unwrap())
    );
    headers.insert("x-forwarded-for", "2001:db8::7".parse().unwrap());
    assert_eq!(
        client_ip(&headers, socket, true),
        Some("2001:db8::7".parse().unwrap())
    );
    let mapped = Some("::ffff:192.0.2.1".parse().unwrap());
    assert_eq!(client_ip(&HeaderMap::new(), mapped, false), socket);
    assert_eq!(client_ip(&HeaderMap::new(), None, true), None);
    assert!(is_exempt("/ws/terminal/x"));
    assert!(!is_exempt("/ws"));
    assert!(!is_exempt("/api/v1/healthz"));
}
