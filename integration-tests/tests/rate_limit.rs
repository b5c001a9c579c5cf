//! Rate limiting against the real server (contract §0.2): with `--ratelimit-per-ip-rate 1` a
//! client that fires requests back to back gets its burst of 30 and then 429 with
//! `Retry-After`, the refusal is counted in `/metrics`, and the probes stay open. The server
//! keys the limit on the real socket peer (connect info), which only a served router has.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use agenttier_integration_tests::{Server, ServerOptions};

#[tokio::test]
async fn the_31st_rapid_request_from_one_address_gets_429_with_retry_after() {
    let server = Server::start_with(ServerOptions {
        args: ["--ratelimit-per-ip-rate", "1"].map(String::from).to_vec(),
        ..Default::default()
    });
    let start = Instant::now();
    let mut refused = None;
    let mut first_31_took = None;
    // One token per second: the burst of 30 passes; the next request is refused unless a
    // token came back meanwhile (only if the first 31 took over a second: then a few more).
    for i in 0..60 {
        let response = server
            .http
            .get(server.api("/user/me"))
            .send()
            .await
            .unwrap();
        if i == 30 {
            first_31_took = Some(start.elapsed());
        }
        if response.status().as_u16() == 429 {
            refused = Some((i, response));
            break;
        }
        assert_eq!(response.status().as_u16(), 200, "request {}", i + 1);
    }
    let (index, response) = refused.expect("no request was refused");
    assert!(
        index >= 30,
        "refused request {} within the burst",
        index + 1
    );
    if first_31_took.is_some_and(|t| t < Duration::from_secs(1)) {
        assert_eq!(index, 30, "the 31st request was not refused");
    }
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "{:?}",
        response.headers()
    );
    // At most a second until the next token: rounded up, that is 1.
    let retry_after = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(retry_after, "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "error": "rate_limited",
            "retryAfter": 1,
            "message": "too many requests; retry after 1 seconds",
        })
    );

    // Probes and the scrape are exempt, and the scrape shows the refusal.
    let health = reqwest::get(format!("{}/healthz", server.url))
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let text = server.metrics().await;
    let refusals: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("agenttier_rate_limited_total{scope=\"ip\"} "))
        .unwrap_or_else(|| panic!("no per-IP refusals counted:\n{text}"))
        .trim()
        .parse()
        .unwrap();
    assert!(refusals >= 1.0, "{refusals}");
}

#[tokio::test]
async fn nothing_is_limited_without_the_flags() {
    let server = Server::start();
    for i in 0..40 {
        let (status, body) = server.get("/user/me").await;
        assert_eq!(status, 200, "request {}: {body}", i + 1);
    }
}
