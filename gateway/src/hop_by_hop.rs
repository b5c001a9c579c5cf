//! Hop-by-hop headers (RFC 9110 §7.6.1): what a proxy must not pass on. Both of the gateway's
//! proxies use this: the preview proxy into a sandbox and a follower forwarding to the leader.

use axum::http::{HeaderMap, header};

/// The headers that only concern one connection.
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes `names` and every header `Connection` lists, except `upgrade` (a WebSocket relay
/// sets it again itself).
pub fn strip(headers: &mut HeaderMap, names: &[&str]) {
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .filter(|token| !token.is_empty() && token != "upgrade")
        .collect();
    for name in names
        .iter()
        .copied()
        .chain(listed.iter().map(String::as_str))
    {
        headers.remove(name);
    }
}
