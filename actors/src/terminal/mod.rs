//! Terminal sessions as actors: a [`TerminalSupervisor`] (linked under the root) keeps one
//! [`TerminalSession`] per open terminal. A session owns a PTY inside its sandbox, fans its output
//! out to every attached client, keeps recent output in a bounded ring for clients that reconnect
//! within the reconnect window, lets only writers type, and closes its clients with the
//! contract's reason when the sandbox stops or is deleted. The gateway holds a [`Terminals`]
//! handle and translates WebSocket frames to and from these messages.

mod handle;
mod messages;
mod ring;
mod session;
mod supervisor;
#[cfg(test)]
mod tests;

pub use handle::{DEFAULT_SHELL, OpenTerminal, Terminals, login_command};
pub use messages::{
    Attachment, CLOSE_ACCESS_REVOKED, CLOSE_SANDBOX, ClientEvent, SessionClient, SessionOptions,
    TerminalSessionMsg, TerminalSupervisorMsg,
};
pub use ring::OutputRing;
pub use session::{CLOSED_REASON, OPENED_REASON, TerminalSession};
pub use supervisor::{TerminalSupervisor, TerminalSupervisorArgs};
