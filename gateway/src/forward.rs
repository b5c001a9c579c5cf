//! Every replica serves the API; only the leader runs the actors. `Replica::router` answers
//! with the local app while this replica leads (it is swapped in and out as leadership
//! changes), and otherwise forwards every request to the leader's published URL (a reverse
//! proxy like the preview one: bodies stream both ways, SSE passes through, WebSocket upgrades
//! are joined byte for byte). `/healthz`, `/readyz` and `/metrics` stay local. While no leader
//! is known a follower answers 503 with a JSON error.

use std::sync::{Arc, RwLock};

use crate::hop_by_hop::{HOP_BY_HOP, strip};
use agenttier_actors::leader::LeaderView;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::error::ApiError;

/// The header a follower marks forwarded requests with (its identity), so a request is never
/// forwarded twice (two replicas that each believe the other leads answer 503 instead).
pub const FORWARDED_BY: &str = "x-agenttier-forwarded-by";

/// This replica's view of the cluster: the local app while it leads, the leader's URL.
#[derive(Clone)]
pub struct Replica {
    local: Arc<RwLock<Option<Router>>>,
    view: watch::Receiver<LeaderView>,
    identity: Arc<str>,
}

impl Replica {
    /// A replica that forwards to the leader `view` names until `lead` installs a local app.
    pub fn new(identity: &str, view: watch::Receiver<LeaderView>) -> Self {
        Self {
            local: Arc::new(RwLock::new(None)),
            view,
            identity: identity.into(),
        }
    }

    /// Serve with `app` (this replica leads).
    pub fn lead(&self, app: Router) {
        if let Ok(mut local) = self.local.write() {
            *local = Some(app);
        }
    }

    /// Forward from now on (leadership lost).
    pub fn follow(&self) {
        if let Ok(mut local) = self.local.write() {
            *local = None;
        }
    }

    fn local(&self) -> Option<Router> {
        self.local.read().ok().and_then(|local| local.clone())
    }

    /// The whole HTTP surface of a replica.
    pub fn router(self) -> Router {
        Router::new().fallback(handle).with_state(self)
    }
}

async fn handle(State(replica): State<Replica>, request: Request) -> Response {
    if let Some(app) = replica.local() {
        return match app.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
    }
    match request.uri().path() {
        "/healthz" => return "ok".into_response(),
        // A follower is ready: it forwards, or answers 503 per request while no leader is known.
        "/readyz" => return "ok".into_response(),
        "/metrics" => {
            return (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                "# this replica follows; the leader serves the actors' metrics\n",
            )
                .into_response();
        }
        _ => {}
    }
    if request.headers().contains_key(FORWARDED_BY) {
        return no_leader("the replica this request was forwarded to does not lead either");
    }
    let leader = replica.view.borrow().leader_url.clone();
    let Some(leader) = leader else {
        return no_leader("no leader is known yet; retry shortly");
    };
    match forward(&replica, &leader, request).await {
        Ok(response) => response,
        Err(message) => {
            tracing::info!(error = %message, %leader, "forwarding to the leader failed");
            no_leader(&format!("the leader at {leader} did not answer: {message}"))
        }
    }
}

fn no_leader(message: &str) -> Response {
    let mut response = ApiError::Unavailable(message.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// `host:port` of an `http://` URL.
fn authority(url: &str) -> Result<String, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("invalid leader URL {url}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("the leader URL {url} is not http://"));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("the leader URL {url} has no host"))?;
    Ok(format!("{host}:{}", uri.port_u16().unwrap_or(80)))
}

async fn forward(
    replica: &Replica,
    leader: &str,
    mut request: Request,
) -> Result<Response, String> {
    let authority = authority(leader)?;
    let upgrade = wants_upgrade(request.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    parts.uri = path.parse().map_err(|e| format!("invalid path: {e}"))?;
    parts.version = axum::http::Version::HTTP_11;
    let original_host = parts.headers.get(header::HOST).cloned();
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    upstream_headers(&mut parts.headers, upgrade, &authority, original_host, peer);
    if let Ok(identity) = HeaderValue::from_str(&replica.identity) {
        parts
            .headers
            .insert(HeaderName::from_static(FORWARDED_BY), identity);
    }
    tracing::info!(
        method = %parts.method,
        path = %parts.uri.path(),
        %leader,
        "forwarding to the leader"
    );
    let upstream_request = axum::http::Request::from_parts(parts, body);
    let connection = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| e.to_string())?;
    let _ = connection.set_nodelay(true);
    let (mut sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(connection))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = driver.with_upgrades().await {
            tracing::debug!(error = %e, "connection to the leader ended");
        }
    });
    let mut response = sender
        .send_request(upstream_request)
        .await
        .map_err(|e| e.to_string())?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err("the leader switched protocols without being asked".into());
        };
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            let (client, upstream) = tokio::join!(client_upgrade, upstream_upgrade);
            match (client, upstream) {
                (Ok(client), Ok(upstream)) => {
                    let mut client = TokioIo::new(client);
                    let mut upstream = TokioIo::new(upstream);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
                (client, upstream) => tracing::info!(
                    client = ?client.err(),
                    upstream = ?upstream.err(),
                    "a forwarded upgrade did not complete"
                ),
            }
        });
        let (parts, _) = response.into_parts();
        return Ok(Response::from_parts(parts, Body::empty()));
    }
    let (mut parts, body) = response.into_parts();
    strip(&mut parts.headers, &HOP_BY_HOP);
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// Relays every connection accepted on `listener` to `port` on the leader's host, byte for byte
/// (TLS passes through untouched): a follower's admission webhook port, so the webhook Service
/// may route to any replica. Connections while no leader is known are closed. Runs until
/// aborted.
pub async fn relay_to_leader(
    listener: tokio::net::TcpListener,
    view: watch::Receiver<LeaderView>,
    port: u16,
) {
    loop {
        let mut inbound = match listener.accept().await {
            Ok((inbound, _)) => inbound,
            Err(error) => {
                tracing::debug!(%error, "relay accept failed");
                continue;
            }
        };
        let host = view
            .borrow()
            .leader_url
            .as_deref()
            .and_then(|url| url.parse::<Uri>().ok())
            .and_then(|uri| uri.host().map(|h| h.trim_matches(['[', ']']).to_string()));
        tokio::spawn(async move {
            let Some(host) = host else {
                tracing::info!("no leader is known: closing a relayed connection");
                return;
            };
            match tokio::net::TcpStream::connect((host.as_str(), port)).await {
                Ok(mut outbound) => {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
                Err(error) => {
                    tracing::info!(%error, %host, port, "the leader's port did not answer")
                }
            }
        });
    }
}

fn wants_upgrade(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade && headers.contains_key(header::UPGRADE)
}

fn upstream_headers(
    headers: &mut HeaderMap,
    upgrade: bool,
    authority: &str,
    original_host: Option<HeaderValue>,
    peer: Option<std::net::IpAddr>,
) {
    let upgrade_value = headers.get(header::UPGRADE).cloned();
    strip(headers, &HOP_BY_HOP);
    if upgrade && let Some(value) = upgrade_value {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, value);
    }
    if let Ok(host) = HeaderValue::from_str(authority) {
        headers.insert(header::HOST, host);
    }
    if let Some(original) = original_host
        && !headers.contains_key("x-forwarded-host")
    {
        headers.insert(HeaderName::from_static("x-forwarded-host"), original);
    }
    if let Some(peer) = peer {
        let chain = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(existing) => format!("{existing}, {peer}"),
            None => peer.to_string(),
        };
        if let Ok(value) = HeaderValue::from_str(&chain) {
            headers.insert(HeaderName::from_static("x-forwarded-for"), value);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn leader_urls_become_authorities() {
        assert_eq!(authority("http://10.0.0.5:8080").unwrap(), "10.0.0.5:8080");
        assert_eq!(authority("http://leader/").unwrap(), "leader:80");
        assert!(authority("https://leader").is_err());
        assert!(authority("not a url").is_err());
    }

    #[tokio::test]
    async fn without_a_leader_api_requests_get_a_json_503_and_health_stays_local() {
        let (_tx, rx) = watch::channel(LeaderView::default());
        let app = Replica::new("me", rx).router();
        let response = app
            .clone()
            .oneshot(
                Request::get("/api/v1/sandboxes")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(json.get("error").is_some(), "{json}");
        let health = app
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(health.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn the_relay_joins_connections_to_the_leaders_port() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_port = upstream.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = upstream.accept().await.unwrap();
            let mut buffer = [0u8; 5];
            socket.read_exact(&mut buffer).await.unwrap();
            socket.write_all(&buffer).await.unwrap();
        });
        let (_tx, rx) = watch::channel(LeaderView {
            rounds: 1,
            leading: false,
            leader_url: Some("http://127.0.0.1:8080".to_string()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let relay = tokio::spawn(relay_to_leader(listener, rx, upstream_port));
        let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
        client.write_all(b"hello").await.unwrap();
        let mut echoed = [0u8; 5];
        client.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"hello");
        relay.abort();
    }

    #[tokio::test]
    async fn a_leading_replica_answers_locally() {
        let (_tx, rx) = watch::channel(LeaderView {
            rounds: 1,
            leading: false,
            leader_url: Some("http://127.0.0.1:1".to_string()),
        });
        let replica = Replica::new("me", rx);
        replica.lead(Router::new().route("/api/v1/x", axum::routing::get(|| async { "local" })));
        let response = replica
            .clone()
            .router()
            .oneshot(Request::get("/api/v1/x").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        replica.follow();
        let response = replica
            .router()
            .oneshot(
                Request::get("/api/v1/x")
                    .header(FORWARDED_BY, "other")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    /// A stand-in leader: a streamed echo, an SSE stream and a WebSocket echo.
    async fn leader() -> String {
        use axum::extract::ws::{Message, WebSocketUpgrade};
        use axum::response::sse::{Event, Sse};
        use futures::StreamExt;
        let app = Router::new()
            .route(
                "/api/v1/echo",
                axum::routing::post(|headers: HeaderMap, body: Body| async move {
                    let by = headers
                        .get(FORWARDED_BY)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    let host = headers.get("x-forwarded-host").is_some().to_string();
                    ([("x-by", by), ("x-had-host", host)], body)
                }),
            )
            .route(
                "/api/v1/events",
                axum::routing::get(|| async {
                    let events = futures::stream::iter(["one", "two", "three"])
                        .map(|data| Ok::<_, std::convert::Infallible>(Event::default().data(data)));
                    Sse::new(events)
                }),
            )
            .route(
                "/ws",
                axum::routing::get(|upgrade: WebSocketUpgrade| async move {
                    upgrade.on_upgrade(|mut socket| async move {
                        while let Some(Ok(message)) = socket.next().await {
                            if let Message::Text(text) = message {
                                let _ = socket.send(Message::Text(text)).await;
                            }
                        }
                    })
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    #[tokio::test]
    async fn a_follower_forwards_bodies_sse_and_websockets_to_the_leader() {
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let leader_url = leader().await;
        let (_tx, rx) = watch::channel(LeaderView {
            rounds: 1,
            leading: false,
            leader_url: Some(leader_url),
        });
        let app = Replica::new("follower-1", rx)
            .router()
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let http = reqwest::Client::new();

        let body = "x".repeat(256 * 1024);
        let response = http
            .post(format!("http://{address}/api/v1/echo"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-by"], "follower-1");
        assert_eq!(response.headers()["x-had-host"], "true");
        assert_eq!(response.text().await.unwrap(), body);

        let response = http
            .get(format!("http://{address}/api/v1/events"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let text = response.text().await.unwrap();
        assert!(
            text.contains("data: one")
                && text.contains("data: two")
                && text.contains("data: three"),
            "{text}"
        );

        let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{address}/ws"))
            .await
            .unwrap();
        socket.send(Message::text("ping")).await.unwrap();
        let echoed = socket.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), "ping");

        // Health stays local: the leader has no /healthz route.
        let health = http
            .get(format!("http://{address}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
    }
}
