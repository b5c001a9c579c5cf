//! REST handlers, a file per resource.

pub mod api_keys;
pub mod audit;
pub mod backups;
pub mod governance;
pub mod health;
pub mod logging;
pub mod lookup;
pub mod sandboxes;
pub mod secrets;
pub mod sharing;
pub mod templates;
pub mod user;
pub mod validate;
pub mod warmpool;
