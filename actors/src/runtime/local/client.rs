//! The host's side of the agent protocol: connect to a sandbox's socket, send one request, read
//! its answer, with timeouts, mapping failures onto `RuntimeError`.

use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use tokio::net::UnixStream;

use crate::runtime::{EXEC_OUTPUT_CAP, ExecOutput, ExecRequest, Result, RuntimeError};

use super::protocol::{Request, Response, read_frame, write_frame};

/// Longest path `connect(2)` takes in a `sockaddr_un` (108 bytes including the NUL).
const MAX_SOCKET_PATH: usize = 107;
/// Extra time the host waits past an exec's own timeout: the agent kills the command at the
/// timeout and still has to collect and send the output.
const EXEC_REPLY_GRACE: Duration = Duration::from_secs(10);

/// A connection factory for one sandbox's agent.
#[derive(Clone, Copy, Debug)]
pub struct AgentClient<'a> {
    id: &'a str,
    socket: &'a Path,
}

impl<'a> AgentClient<'a> {
    /// A client for the agent of sandbox `id` listening at `socket`.
    pub fn new(id: &'a str, socket: &'a Path) -> Self {
        Self { id, socket }
    }

    /// Sends `request` on a new connection and reads the answer, all within `timeout`.
    pub async fn call(&self, request: &Request, timeout: Duration) -> Result<Response> {
        let exchange = async {
            let mut stream = self.connect().await?;
            write_frame(&mut stream, request)
                .await
                .map_err(|e| self.agent_error(e))?;
            read_frame::<_, Response>(&mut stream)
                .await
                .map_err(|e| self.agent_error(e))?
                .ok_or_else(|| self.agent_error("closed the connection without answering"))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(self.agent_error(format!("no answer within {timeout:?}"))),
        }
    }

    /// Checks that the agent answers.
    pub async fn ping(&self, timeout: Duration) -> Result<()> {
        match self.call(&Request::Ping, timeout).await? {
            Response::Pong { .. } => Ok(()),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Runs one command through the agent.
    pub async fn exec(&self, request: ExecRequest) -> Result<ExecOutput> {
        let timeout = request.timeout;
        let wire = Request::Exec {
            command: request.command,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            env: request.env,
            working_dir: request.working_dir,
            stdin: request.stdin,
        };
        match self
            .call(&wire, timeout.saturating_add(EXEC_REPLY_GRACE))
            .await?
        {
            Response::ExecResult {
                mut stdout,
                mut stderr,
                exit_code,
                timed_out,
                mut truncated,
            } => {
                // The agent lives inside the sandbox and is not trusted to respect the cap.
                truncated |= cap(&mut stdout) | cap(&mut stderr);
                Ok(ExecOutput {
                    stdout,
                    stderr,
                    exit_code,
                    timed_out,
                    truncated,
                })
            }
            Response::Error { message } => Err(self.agent_error(message)),
            other => Err(self.unexpected(&other)),
        }
    }

    async fn connect(&self) -> Result<UnixStream> {
        let result = if self.socket.as_os_str().len() <= MAX_SOCKET_PATH {
            UnixStream::connect(self.socket).await
        } else {
            self.connect_long().await
        };
        result.map_err(|e| match e.kind() {
            // No socket (stopped, removed) or nobody listening (the agent died).
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                RuntimeError::NotRunning(self.id.to_owned())
            }
            _ => self.agent_error(format!("connecting to {}: {e}", self.socket.display())),
        })
    }

    /// Connects to a socket whose path is too long for `sockaddr_un` through
    /// `/proc/self/fd/<dir>/<name>`, which resolves to the same file.
    async fn connect_long(&self) -> std::io::Result<UnixStream> {
        let (dir, short) = proc_path(self.socket)?;
        let stream = UnixStream::connect(&short).await;
        drop(dir);
        stream
    }

    fn agent_error(&self, detail: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::Agent {
            id: self.id.to_owned(),
            detail: detail.to_string(),
        }
    }

    fn unexpected(&self, response: &Response) -> RuntimeError {
        self.agent_error(format!("unexpected answer {response:?}"))
    }
}

/// Binds a listening unix socket at `path`, also when the path is too long for `sockaddr_un`.
pub fn bind(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    if path.as_os_str().len() <= MAX_SOCKET_PATH {
        return std::os::unix::net::UnixListener::bind(path);
    }
    let (dir, short) = proc_path(path)?;
    let listener = std::os::unix::net::UnixListener::bind(&short);
    drop(dir);
    listener
}

/// An `O_PATH` handle on the socket's directory and the short `/proc/self/fd/<n>/<name>` path
/// that names the socket while the handle is open.
fn proc_path(path: &Path) -> std::io::Result<(std::fs::File, std::path::PathBuf)> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "bad socket path",
        ));
    };
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(dir)?;
    let short = Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name);
    Ok((dir, short))
}

/// Cuts `s` to at most [`EXEC_OUTPUT_CAP`] bytes at a character boundary; true when it did.
fn cap(s: &mut String) -> bool {
    if s.len() <= EXEC_OUTPUT_CAP {
        return false;
    }
    let mut end = EXEC_OUTPUT_CAP;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cap_cuts_at_char_boundaries() {
        let mut short = "abc".to_string();
        assert!(!cap(&mut short));
        let mut long = "é".repeat(EXEC_OUTPUT_CAP);
        assert!(cap(&mut long));
        assert!(long.len() <= EXEC_OUTPUT_CAP);
    }

    #[tokio::test]
    async fn missing_socket_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let client = AgentClient::new("x", &socket);
        let err = client.ping(Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(err, RuntimeError::NotRunning(_)), "{err}");
        // A socket file nobody listens on (the agent died) is also not running.
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        let err = client.ping(Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(err, RuntimeError::NotRunning(_)), "{err}");
    }

    #[tokio::test]
    async fn long_socket_paths_connect_through_proc() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("d".repeat(100));
        std::fs::create_dir(&deep).unwrap();
        let socket = deep.join("agent.sock");
        assert!(socket.as_os_str().len() > MAX_SOCKET_PATH);
        let listener = bind(&socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::UnixListener::from_std(listener).unwrap();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let req: Request = read_frame(&mut conn).await.unwrap().unwrap();
            assert_eq!(req, Request::Ping);
            write_frame(&mut conn, &Response::Pong { pid: 2 })
                .await
                .unwrap();
        });
        AgentClient::new("x", &socket)
            .ping(Duration::from_secs(5))
            .await
            .unwrap();
        server.await.unwrap();
    }
}
