//! The terminal WebSocket (contract §5): `/ws/terminal/{sandboxId}`, outside `/api/v1`.
//!
//! Before the upgrade it checks, in the contract's order and with its plain-text errors:
//! credentials (dev-auth, `X-API-Key`, a terminal ticket, or an OIDC token from `?token=` or
//! `Authorization`), the sandbox (`?namespace=` pins it), a scoped key's binding (closing the
//! contract's gap: a scoped key opens terminals only on its own sandbox, with `run-command`),
//! access (owner, admin or share) and the phase. Browsers cannot set headers on a WebSocket and
//! an API key is never accepted in `?token=`, so API-key users first get a short-lived,
//! single-use ticket from `POST /api/v1/sandboxes/{id}/terminal-ticket` and pass `?ticket=`.
//!
//! After the upgrade, [`run`] translates between the socket and a terminal session: the first
//! frame names the session (`{"type":"session","sessionId":…}`; clients that do not know it
//! ignore it), then output, pong, heartbeat, error (notices) and close frames go out, and input,
//! resize and ping frames come in. `?session=<id>` reconnects to a session within its window.
//! `run` is generic over `Sink`/`Stream`, so tests drive it with channels.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use bytes::Bytes;
use futures::{Sink, SinkExt, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use agenttier_actors::Error as ActorError;
use agenttier_actors::sandbox::SandboxKey;
use agenttier_actors::terminal::{Attachment, ClientEvent, OpenTerminal, SessionOptions};
use agenttier_crds::{Sandbox, SandboxPhase};
use kube::ResourceExt;

use super::lookup;
use crate::auth::{self, Identity};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Initial size until the first resize (contract §5.2).
const DEFAULT_COLS: u16 = 120;
/// Initial size until the first resize (contract §5.2).
const DEFAULT_ROWS: u16 = 40;
/// Each write to the socket must finish within this (contract §5.3).
const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// Output waiting for the socket is sent in frames of at most this many bytes.
const MAX_OUTPUT_FRAME: usize = 64 << 10;

/// Settings of terminal connections and sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TerminalConfig {
    /// How often a ping frame and a `heartbeat` message go out (contract: 30 s).
    pub heartbeat: Duration,
    /// How long a session without clients keeps its shell for a reconnect (30 s).
    pub reconnect_window: Duration,
    /// How much recent output a session keeps for reconnects.
    pub ring_bytes: usize,
    /// How long a terminal ticket stays valid.
    pub ticket_ttl: Duration,
}

impl Default for TerminalConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(30),
            reconnect_window: Duration::from_secs(30),
            ring_bytes: 256 << 10,
            ticket_ttl: Duration::from_secs(60),
        }
    }
}

impl TerminalConfig {
    /// A connection that sent nothing (not even a pong) for this long is dropped: two missed
    /// heartbeats and some slack (70 s at the contract's 30 s).
    pub fn read_timeout(&self) -> Duration {
        self.heartbeat * 2 + Duration::from_secs(10)
    }
}

/// Single-use terminal tickets: a browser that holds only an API key (which must never travel
/// in a URL that lands in logs for long) trades it for a ticket valid for one connection to one
/// sandbox within a minute. Only a hash of each ticket is kept.
#[derive(Clone, Default)]
pub struct TerminalTickets {
    inner: Arc<Mutex<HashMap<String, Ticket>>>,
}

struct Ticket {
    identity: Identity,
    sandbox: SandboxKey,
    expires: Instant,
}

impl TerminalTickets {
    /// Mints a ticket for `identity` on `sandbox`, valid for `ttl`.
    pub fn issue(&self, identity: Identity, sandbox: SandboxKey, ttl: Duration) -> String {
        let ticket = format!("att_{}", hex::encode(rand::random::<[u8; 24]>()));
        let mut tickets = self.lock();
        let now = Instant::now();
        tickets.retain(|_, t| t.expires > now);
        tickets.insert(
            hash(&ticket),
            Ticket {
                identity,
                sandbox,
                expires: now + ttl,
            },
        );
        ticket
    }

    /// Redeems a ticket for `sandbox`: the identity it was issued to, once, if still valid.
    pub fn redeem(&self, ticket: &str, sandbox: &SandboxKey) -> Option<Identity> {
        let found = self.lock().remove(&hash(ticket))?;
        (found.expires > Instant::now() && &found.sandbox == sandbox).then_some(found.identity)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Ticket>> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn hash(ticket: &str) -> String {
    hex::encode(Sha256::digest(ticket.as_bytes()))
}

/// The WebSocket route (outside `/api/v1`), sharing `tickets` with [`api_router`].
pub fn ws_router(tickets: TerminalTickets) -> Router<AppState> {
    Router::new()
        .route("/ws/terminal/{id}", any(connect))
        .layer(Extension(tickets))
}

/// The ticket route, for `/api/v1`.
pub fn api_router(tickets: TerminalTickets) -> Router<AppState> {
    Router::new()
        .route("/sandboxes/{id}/terminal-ticket", post(issue_ticket))
        .layer(Extension(tickets))
}

/// POST `/sandboxes/{id}/terminal-ticket`: 201 `{"ticket", "expiresAt", "expiresIn"}` for a
/// caller who may open the sandbox's terminal.
pub async fn issue_ticket(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Extension(tickets): Extension<TerminalTickets>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    auth::authorize_sandbox_action(&identity, &id, auth::scope::TERMINAL_ACTION)?;
    let sandbox = lookup::viewable(&state, &identity, &id)?;
    if sandbox.phase() != Some(SandboxPhase::Running) {
        return Err(ApiError::Conflict("sandbox is not running".into()));
    }
    let ttl = state.config.terminal.ticket_ttl;
    let ticket = tickets.issue(identity, SandboxKey::of(&sandbox), ttl);
    let expires = k8s_openapi::jiff::Timestamp::now()
        .checked_add(k8s_openapi::jiff::SignedDuration::try_from(ttl).unwrap_or_default())
        .map(|t| t.to_string())
        .unwrap_or_default();
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "ticket": ticket,
            "expiresAt": expires,
            "expiresIn": ttl.as_secs(),
        })),
    )
        .into_response())
}

/// Query of the WebSocket route.
#[derive(Deserialize, Default)]
pub struct TerminalQuery {
    token: Option<String>,
    ticket: Option<String>,
    session: Option<String>,
    namespace: Option<String>,
    cols: Option<u16>,
    rows: Option<u16>,
}

/// A pre-upgrade refusal: plain text, as the contract's `http.Error`.
fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", message.into()),
    )
        .into_response()
}

/// GET `/ws/terminal/{sandboxId}` (any method, any Origin, no subprotocol).
pub async fn connect(
    State(state): State<AppState>,
    Extension(tickets): Extension<TerminalTickets>,
    Path(id): Path<String>,
    query: Result<Query<TerminalQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("invalid query: {}", e.body_text()),
            );
        }
    };
    let sandbox = find(&state, &id, query.namespace.as_deref());
    let identity = match authenticate(&state, &tickets, &headers, &query, sandbox.as_ref()).await {
        Ok(identity) => identity,
        Err(refusal) => return refusal,
    };
    let Some(sandbox) = sandbox else {
        return refuse(StatusCode::NOT_FOUND, "sandbox not found");
    };
    if let Err(e) =
        auth::authorize_sandbox_action(&identity, &sandbox.name_any(), auth::scope::TERMINAL_ACTION)
    {
        return refuse(StatusCode::FORBIDDEN, e.to_string());
    }
    if !identity.can_view(&sandbox) {
        return refuse(StatusCode::FORBIDDEN, "access denied");
    }
    if sandbox.phase() != Some(SandboxPhase::Running) {
        return refuse(StatusCode::CONFLICT, "sandbox is not running");
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let config = state.config.terminal;
    let can_write = identity.can_write(&sandbox);
    let key = SandboxKey::of(&sandbox);
    let attached = match query.session.as_deref().filter(|s| !s.is_empty()) {
        Some(session) => {
            state
                .control
                .terminals
                .attach(&key, session, can_write)
                .await
        }
        None => {
            let open = OpenTerminal {
                sandbox,
                user: identity.sub.clone(),
                can_write,
                cols: query.cols.unwrap_or(DEFAULT_COLS).max(1),
                rows: query.rows.unwrap_or(DEFAULT_ROWS).max(1),
                options: SessionOptions {
                    reconnect_window: config.reconnect_window,
                    ring_bytes: config.ring_bytes,
                },
            };
            state.control.terminals.open(open).await
        }
    };
    let attachment = match attached {
        Ok(attachment) => attachment,
        Err(ActorError::NotFound(message)) => return refuse(StatusCode::NOT_FOUND, message),
        Err(e) => {
            let error = ApiError::from(e);
            tracing::warn!(sandbox = %key, error = %error, "terminal could not be opened");
            return refuse(error.status(), error.to_string());
        }
    };
    upgrade.on_upgrade(move |socket| async move {
        let (sink, stream) = socket.split();
        run(sink, stream, attachment, config).await;
    })
}

/// The sandbox the path names: in `?namespace=` when given, else as REST looks it up.
fn find(state: &AppState, id: &str, namespace: Option<&str>) -> Option<Sandbox> {
    match namespace.filter(|ns| !ns.is_empty()) {
        Some(namespace) => state.control.get(&SandboxKey::new(namespace, id)),
        None => lookup::find(state, id).ok(),
    }
}

/// Who is connecting, in the contract's order (§5.1); refusals are plain text.
async fn authenticate(
    state: &AppState,
    tickets: &TerminalTickets,
    headers: &HeaderMap,
    query: &TerminalQuery,
    sandbox: Option<&Sandbox>,
) -> Result<Identity, Response> {
    let unauthorized = |message: String| refuse(StatusCode::UNAUTHORIZED, message);
    if state.auth.dev_auth() {
        return Ok(Identity::dev_user());
    }
    if let Some(key) = headers.get("x-api-key") {
        let key = key.to_str().unwrap_or_default();
        return state
            .auth
            .authenticate_api_key(key)
            .await
            .map_err(|_| unauthorized("invalid api key".into()));
    }
    if let Some(ticket) = query.ticket.as_deref().filter(|t| !t.is_empty()) {
        return sandbox
            .and_then(|s| tickets.redeem(ticket, &SandboxKey::of(s)))
            .ok_or_else(|| {
                unauthorized("invalid token: the ticket is unknown, used or expired".into())
            });
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = query.token.as_deref().filter(|t| !t.is_empty()).or(bearer) else {
        return Err(unauthorized("missing authentication".into()));
    };
    if token.starts_with("atk_") {
        return Err(unauthorized(
            "invalid token: API keys are not accepted as tokens; send X-API-Key or use a \
             terminal ticket (POST /api/v1/sandboxes/{id}/terminal-ticket)"
                .into(),
        ));
    }
    state
        .auth
        .authenticate_token(token)
        .await
        .map_err(|e| match e {
            ApiError::Unauthorized {
                message: Some(reason),
                ..
            } => unauthorized(format!("invalid token: {reason}")),
            other => unauthorized(format!("invalid token: {other}")),
        })
}

/// Turns terminal output into text frames: bytes are decoded as UTF-8 with invalid sequences
/// replaced (as the contract says), but a sequence split across two chunks is kept whole.
#[derive(Debug, Default)]
pub struct Utf8Decoder {
    carry: Vec<u8>,
}

impl Utf8Decoder {
    /// Decodes `data` after what was carried over; an incomplete sequence at the end waits for
    /// the next chunk.
    pub fn decode(&mut self, data: &[u8]) -> String {
        let mut bytes = std::mem::take(&mut self.carry);
        bytes.extend_from_slice(data);
        let keep = incomplete_tail(&bytes);
        self.carry = bytes.split_off(bytes.len() - keep);
        match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// Whatever was carried over, decoded as it is (the stream ended).
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.carry);
        String::from_utf8_lossy(&rest).into_owned()
    }
}

/// How many bytes at the end of `bytes` start a UTF-8 sequence that is not complete yet.
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let byte = bytes[bytes.len() - back];
        if byte & 0xC0 == 0x80 {
            continue;
        }
        let needed = match byte {
            0xF0..=0xF7 => 4,
            0xE0..=0xEF => 3,
            0xC0..=0xDF => 2,
            _ => 1,
        };
        return if needed > back { back } else { 0 };
    }
    0
}

/// A frame from the client; everything but `type` is optional.
#[derive(Deserialize)]
struct ClientFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    cols: Option<i64>,
    #[serde(default)]
    rows: Option<i64>,
}

fn clamp_size(value: Option<i64>) -> Option<u16> {
    value.map(|v| v.clamp(1, 65535) as u16)
}

/// Runs one terminal connection until either side ends it; dropping the attachment on the way
/// out detaches the client from the session, which keeps the shell for the reconnect window.
pub async fn run<S, R, E>(
    mut sink: S,
    mut stream: R,
    attachment: Attachment,
    config: TerminalConfig,
) where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    let Attachment {
        session_id,
        client,
        mut events,
    } = attachment;
    let hello = json!({"type": "session", "sessionId": session_id});
    if send(&mut sink, text(&hello)).await.is_err() {
        return;
    }
    let mut decoder = Utf8Decoder::default();
    let start = tokio::time::Instant::now() + config.heartbeat;
    let mut heartbeat = tokio::time::interval_at(start, config.heartbeat);
    let mut last_heard = tokio::time::Instant::now();
    let mut pending: Option<ClientEvent> = None;
    loop {
        let event = match pending.take() {
            Some(event) => Some(event),
            None => tokio::select! {
                event = events.recv() => match event {
                    Some(event) => Some(event),
                    None => {
                        // The session dropped this client (it stopped reading) or ended.
                        let _ = close(&mut sink, 1011, "terminal session ended").await;
                        return;
                    }
                },
                message = stream.next() => {
                    last_heard = tokio::time::Instant::now();
                    match message {
                        Some(Ok(Message::Text(frame))) => {
                            if inbound(frame.as_bytes(), &client, &mut sink).await.is_err() {
                                return;
                            }
                        }
                        Some(Ok(Message::Binary(frame))) => {
                            if inbound(&frame, &client, &mut sink).await.is_err() {
                                return;
                            }
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                    }
                    None
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > config.read_timeout() {
                        let _ = close(&mut sink, 1001, "keepalive timeout").await;
                        return;
                    }
                    let beat = json!({"type": "heartbeat", "ts": epoch_millis()});
                    if send(&mut sink, Message::Ping(Bytes::new())).await.is_err()
                        || send(&mut sink, text(&beat)).await.is_err()
                    {
                        return;
                    }
                    None
                }
            },
        };
        let Some(event) = event else { continue };
        match event {
            ClientEvent::Output { data, end } => {
                // Take whatever else is already waiting, so a fast producer gets big frames.
                let mut bytes = data.to_vec();
                let mut last = end;
                while bytes.len() < MAX_OUTPUT_FRAME {
                    match events.try_recv() {
                        Ok(ClientEvent::Output { data, end }) => {
                            bytes.extend_from_slice(&data);
                            last = end;
                        }
                        Ok(other) => {
                            pending = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let output = decoder.decode(&bytes);
                if !output.is_empty() && send(&mut sink, output_frame(&output)).await.is_err() {
                    return;
                }
                client.delivered(last);
            }
            ClientEvent::Notice(message) => {
                let frame = json!({"type": "error", "message": message});
                if send(&mut sink, text(&frame)).await.is_err() {
                    return;
                }
            }
            ClientEvent::Closed { reason, code } => {
                let frame = json!({"type": "close", "reason": reason, "code": code});
                let _ = send(&mut sink, text(&frame)).await;
                let _ = close(&mut sink, code, reason).await;
                return;
            }
            ClientEvent::Exited { code } => {
                let rest = decoder.finish();
                if !rest.is_empty() {
                    let _ = send(&mut sink, output_frame(&rest)).await;
                }
                let reason = match code {
                    Some(code) => format!("shell exited with code {code}"),
                    None => "shell exited".to_owned(),
                };
                let _ = close(&mut sink, 1000, &reason).await;
                return;
            }
        }
    }
}

/// Handles one frame from the client: input, resize, ping; anything else is ignored.
async fn inbound<S: Sink<Message> + Unpin>(
    frame: &[u8],
    client: &agenttier_actors::terminal::SessionClient,
    sink: &mut S,
) -> Result<(), ()> {
    let Ok(frame) = serde_json::from_slice::<ClientFrame>(frame) else {
        return Ok(());
    };
    match frame.kind.as_str() {
        "input" => {
            if let Some(data) = frame.data.filter(|d| !d.is_empty()) {
                client.input(Bytes::from(data));
            }
        }
        "resize" => {
            if let (Some(cols), Some(rows)) = (clamp_size(frame.cols), clamp_size(frame.rows)) {
                client.resize(cols, rows);
            }
        }
        "ping" => send(sink, text(&json!({"type": "pong"}))).await?,
        _ => {}
    }
    Ok(())
}

/// An `output` frame, serialised directly (the hot path: no intermediate JSON value).
fn output_frame(data: &str) -> Message {
    let escaped = serde_json::to_string(data).unwrap_or_default();
    let mut frame = String::with_capacity(escaped.len() + 40);
    frame.push_str(r#"{"type":"output","stream":"stdout","data":"#);
    frame.push_str(&escaped);
    frame.push('}');
    Message::Text(frame.into())
}

fn text(value: &Value) -> Message {
    Message::Text(value.to_string().into())
}

async fn send<S: Sink<Message> + Unpin>(sink: &mut S, message: Message) -> Result<(), ()> {
    match tokio::time::timeout(WRITE_DEADLINE, sink.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

async fn close<S: Sink<Message> + Unpin>(sink: &mut S, code: u16, reason: &str) -> Result<(), ()> {
    let frame = CloseFrame {
        code,
        reason: reason.to_owned().into(),
    };
    send(sink, Message::Close(Some(frame))).await
}

fn epoch_millis() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_millisecond()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_chunks_stays_whole() {
        let snowman = "☃".as_bytes();
        let mut decoder = Utf8Decoder::default();
        assert_eq!(decoder.decode(&[b'a', snowman[0]]), "a");
        assert_eq!(decoder.decode(&snowman[1..]), "☃");
        assert_eq!(decoder.decode(b"\xffok"), "\u{fffd}ok");
        assert_eq!(decoder.decode(&snowman[..2]), "");
        assert_eq!(decoder.finish(), "\u{fffd}");
    }

    #[test]
    fn tickets_are_single_use_bound_and_expire() {
        let tickets = TerminalTickets::default();
        let key = SandboxKey::new("default", "a");
        let ticket = tickets.issue(Identity::dev_user(), key.clone(), Duration::from_secs(60));
        assert!(ticket.starts_with("att_"));
        let other = SandboxKey::new("default", "b");
        assert!(
            tickets.redeem(&ticket, &other).is_none(),
            "bound to its sandbox"
        );
        let ticket = tickets.issue(Identity::dev_user(), key.clone(), Duration::from_secs(60));
        assert!(tickets.redeem(&ticket, &key).is_some());
        assert!(tickets.redeem(&ticket, &key).is_none(), "single use");
        let expired = tickets.issue(Identity::dev_user(), key.clone(), Duration::ZERO);
        assert!(tickets.redeem(&expired, &key).is_none());
    }

    #[test]
    fn sizes_are_clamped() {
        assert_eq!(clamp_size(Some(0)), Some(1));
        assert_eq!(clamp_size(Some(-5)), Some(1));
        assert_eq!(clamp_size(Some(100_000)), Some(65535));
        assert_eq!(clamp_size(None), None);
    }
}
