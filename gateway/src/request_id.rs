//! `X-Request-ID` on every response: the inbound value echoed, or 16 fresh lowercase hex chars.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

const HEADER: &str = "x-request-id";

/// Middleware that tags each request and its response with a request id.
pub async fn propagate(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(HEADER)
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .cloned()
        .unwrap_or_else(|| {
            let fresh = hex::encode(rand::random::<[u8; 8]>());
            HeaderValue::from_str(&fresh).unwrap_or(HeaderValue::from_static("0000000000000000"))
        });
    request.headers_mut().insert(HEADER, id.clone());
    let mut response = next.run(request).await;
    response.headers_mut().insert(HEADER, id);
    response
}
