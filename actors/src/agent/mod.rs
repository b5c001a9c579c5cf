//! Agent mode (contract §6): `POST /configure` writes files, runs an install command and records
//! an entrypoint; `POST /invoke` runs that entrypoint with a payload on stdin and streams its
//! output; `POST /invoke/cancel` ends one. Both streams are produced here as [`AgentEvent`]s on a
//! channel, by a task per request that owns the runtime's streamed exec: the gateway renders them
//! as SSE, and dropping the receiver (the client went away) cancels the work.
//!
//! The sandbox actor is not blocked by either: it only records configure's outcome in the
//! sandbox status (`SandboxMsg::RecordConfigure`), so status writes stay serialized.

pub mod configure;
mod error;
mod events;
pub mod invoke;
mod lines;
mod shell;

pub use configure::{ConfigureFile, ConfigurePlan, ConfigureRequest};
pub use error::{AgentError, Result};
pub use events::{AgentEvent, InvokeOutcome};
pub use invoke::{InvokePlan, InvokeSlot, Invokes};
pub use lines::LineSplitter;
