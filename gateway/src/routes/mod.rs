//! REST handlers, a file per resource.

pub mod health;
pub mod lookup;
pub mod sandboxes;
pub mod templates;
pub mod user;
pub mod validate;
