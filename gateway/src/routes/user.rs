//! `/user/me`: who the caller is.

use axum::{Extension, Json};
use serde_json::{Value, json};

use crate::auth::Identity;

/// The caller's identity; `groups` is always an array (SDK 0.8.1 rejects null).
pub async fn me(Extension(identity): Extension<Identity>) -> Json<Value> {
    Json(json!({
        "sub": identity.sub,
        "email": identity.email,
        "name": identity.name,
        "groups": identity.groups,
        "isAdmin": identity.is_admin,
    }))
}
