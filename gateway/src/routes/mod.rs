//! REST handlers, a file per resource.

pub mod agent;
pub mod analytics;
pub mod api_keys;
pub mod audit;
pub mod backups;
pub mod files;
pub mod governance;
pub mod health;
#[cfg(test)]
mod interactive_tests;
pub mod logging;
pub mod lookup;
pub mod ports;
pub mod preview;
pub mod sandboxes;
pub mod secrets;
pub mod sharing;
pub mod templates;
pub mod terminal;
pub mod user;
pub mod validate;
pub mod warmpool;
