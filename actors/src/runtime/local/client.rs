//! The host's side of the agent protocol: connect to a sandbox's socket, send one request, read
//! its answer, with timeouts, mapping failures onto `RuntimeError`. Streaming calls (PTYs, file
//! bodies, archives, port relays) keep the connection and turn it into channels or streams; the
//! agent is untrusted, so every stream is checked against what it announced.

use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use crate::runtime::{
    ArchiveFormat, ByteStream, DirListing, EXEC_OUTPUT_CAP, ExecEvent, ExecOutput, ExecRequest,
    ExecStream, FileDownload, FileErrorKind, PtyInput, PtyOutput, PtyRequest, PtySession, Result,
    RuntimeError, UnpackSummary,
};

use super::protocol::{
    CHUNK_BYTES, Chunk, Request, Response, read_chunk, read_frame, write_chunk, write_data,
    write_frame,
};

/// How long the agent may take to answer the request that opens a stream.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the agent may take to confirm a file upload once the body is sent.
const WRITE_DONE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the agent may take to unpack an upload once it is sent.
const UNPACK_DONE_TIMEOUT: Duration = Duration::from_secs(600);
/// Frames buffered between a PTY's connection and its session, each way.
const PTY_CHANNEL: usize = 64;

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

    /// Starts one command and streams its output. Dropping the stream closes the connection,
    /// which the agent takes as a cancel. An agent that stays silent past the command's timeout
    /// (plus the reply grace) ends the stream with an error.
    pub async fn exec_stream(&self, request: ExecRequest) -> Result<ExecStream> {
        let timeout = request.timeout;
        let wire = Request::ExecStream {
            command: request.command,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            env: request.env,
            working_dir: request.working_dir,
            stdin: request.stdin,
        };
        let (stream, first) = self.open(&wire, OPEN_TIMEOUT).await?;
        if !matches!(first, Response::ExecStarted { .. }) {
            return Err(self.refused(first));
        }
        let deadline = tokio::time::Instant::now() + timeout.saturating_add(EXEC_REPLY_GRACE);
        let id = self.id.to_owned();
        let state = Some(stream);
        let events = futures::stream::unfold(state, move |state| {
            let id = id.clone();
            async move {
                let mut stream = state?;
                let broken = |detail: String| RuntimeError::Agent {
                    id: id.clone(),
                    detail,
                };
                loop {
                    let next = tokio::time::timeout_at(deadline, read_chunk(&mut stream)).await;
                    let event = match next {
                        Ok(Ok(Some(Chunk::Data { data }))) => ExecEvent::Stdout(Bytes::from(data)),
                        Ok(Ok(Some(Chunk::Stderr { data }))) => {
                            ExecEvent::Stderr(Bytes::from(data))
                        }
                        Ok(Ok(Some(Chunk::Finished {
                            exit_code,
                            timed_out,
                        }))) => {
                            return Some((
                                Ok(ExecEvent::Exit {
                                    exit_code,
                                    timed_out,
                                }),
                                None,
                            ));
                        }
                        Ok(Ok(Some(_))) => continue,
                        Ok(Ok(None)) => {
                            let e = broken("the command's stream ended without an exit".into());
                            return Some((Err(e), None));
                        }
                        Ok(Err(e)) => return Some((Err(broken(e.to_string())), None)),
                        Err(_) => {
                            let e = broken("no exit from the command past its timeout".into());
                            return Some((Err(e), None));
                        }
                    };
                    return Some((Ok(event), Some(stream)));
                }
            }
        });
        Ok(Box::pin(events))
    }

    /// Opens a connection, sends `request` and reads the first answer within `timeout`; the
    /// connection stays open for what the request streams next.
    async fn open(&self, request: &Request, timeout: Duration) -> Result<(UnixStream, Response)> {
        let exchange = async {
            let mut stream = self.connect().await?;
            write_frame(&mut stream, request)
                .await
                .map_err(|e| self.agent_error(e))?;
            let response = read_frame::<_, Response>(&mut stream)
                .await
                .map_err(|e| self.agent_error(e))?
                .ok_or_else(|| self.agent_error("closed the connection without answering"))?;
            Ok((stream, response))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(self.agent_error(format!("no answer within {timeout:?}"))),
        }
    }

    /// The error an answer other than the expected one stands for.
    fn refused(&self, response: Response) -> RuntimeError {
        match response {
            Response::FileError { kind, message } => RuntimeError::File { kind, message },
            Response::Error { message } => self.agent_error(message),
            other => self.unexpected(&other),
        }
    }

    /// Opens a PTY; its input and output are relayed over the connection by two tasks, which end
    /// when the shell exits or the session drops its end.
    pub async fn open_pty(&self, request: PtyRequest) -> Result<PtySession> {
        let wire = Request::OpenPty {
            command: request.command,
            cols: request.cols,
            rows: request.rows,
            env: request.env,
            working_dir: request.working_dir,
        };
        let (stream, first) = self.open(&wire, OPEN_TIMEOUT).await?;
        if !matches!(first, Response::PtyOpened { .. }) {
            return Err(self.refused(first));
        }
        let (mut from_agent, mut to_agent) = stream.into_split();
        let (input, mut input_rx) = tokio::sync::mpsc::channel::<PtyInput>(PTY_CHANNEL);
        let (output_tx, output) = tokio::sync::mpsc::channel::<PtyOutput>(PTY_CHANNEL);
        tokio::spawn(async move {
            while let Some(input) = input_rx.recv().await {
                let chunk = match input {
                    PtyInput::Data(data) => Chunk::Data {
                        data: data.to_vec(),
                    },
                    PtyInput::Resize { cols, rows } => Chunk::Resize { cols, rows },
                };
                if write_chunk(&mut to_agent, &chunk).await.is_err() {
                    break;
                }
            }
            // The session let go: closing our side hangs the terminal up.
            let _ = to_agent.shutdown().await;
        });
        tokio::spawn(async move {
            loop {
                let output = match read_chunk(&mut from_agent).await {
                    Ok(Some(Chunk::Data { data })) => PtyOutput::Data(Bytes::from(data)),
                    Ok(Some(Chunk::Exited { code })) => PtyOutput::Exited(code),
                    Ok(Some(_)) => continue,
                    // The agent (or the whole sandbox) went away.
                    Ok(None) | Err(_) => PtyOutput::Exited(None),
                };
                let last = matches!(output, PtyOutput::Exited(_));
                if output_tx.send(output).await.is_err() || last {
                    break;
                }
            }
        });
        Ok(PtySession { input, output })
    }

    /// Lists a directory.
    pub async fn list_dir(&self, path: &str) -> Result<DirListing> {
        let request = Request::ListDir {
            path: path.to_owned(),
        };
        match self.call(&request, OPEN_TIMEOUT).await? {
            Response::DirListing { listing } => Ok(listing),
            other => Err(self.refused(other)),
        }
    }

    /// Opens a file for download; the stream yields exactly the announced size or fails.
    pub async fn read_file(&self, path: &str, max_bytes: u64) -> Result<FileDownload> {
        let request = Request::ReadFile {
            path: path.to_owned(),
            max_bytes,
        };
        let (stream, first) = self.open(&request, OPEN_TIMEOUT).await?;
        let Response::FileStart { size } = first else {
            return Err(self.refused(first));
        };
        if size > max_bytes {
            return Err(RuntimeError::File {
                kind: FileErrorKind::TooLarge,
                message: format!("file exceeds {max_bytes} bytes"),
            });
        }
        Ok(FileDownload {
            size,
            body: chunk_stream(stream, Some(size)),
        })
    }

    /// Streams a zip of `path`, confined to `root`.
    pub async fn archive(&self, path: &str, root: &str) -> Result<ByteStream> {
        let request = Request::Archive {
            path: path.to_owned(),
            root: root.to_owned(),
        };
        let (stream, first) = self.open(&request, OPEN_TIMEOUT).await?;
        match first {
            Response::ArchiveStart => Ok(chunk_stream(stream, None)),
            other => Err(self.refused(other)),
        }
    }

    /// Uploads `body` into a file.
    pub async fn write_file(&self, path: &str, body: ByteStream, max_bytes: u64) -> Result<u64> {
        let request = Request::WriteFile {
            path: path.to_owned(),
            max_bytes,
        };
        match self
            .upload(&request, body, max_bytes, WRITE_DONE_TIMEOUT)
            .await?
        {
            Response::Written { bytes } => Ok(bytes),
            other => Err(self.refused(other)),
        }
    }

    /// Uploads an archive to unpack into `dir`.
    pub async fn unpack(
        &self,
        dir: &str,
        format: Option<ArchiveFormat>,
        body: ByteStream,
        max_bytes: u64,
    ) -> Result<UnpackSummary> {
        let request = Request::Unpack {
            dir: dir.to_owned(),
            format,
            max_bytes,
        };
        match self
            .upload(&request, body, max_bytes, UNPACK_DONE_TIMEOUT)
            .await?
        {
            Response::Unpacked { summary } => Ok(summary),
            other => Err(self.refused(other)),
        }
    }

    /// Sends an upload request, waits for `Ready`, streams `body` as chunks (at most
    /// `max_bytes`), sends `End` and returns the agent's final answer.
    async fn upload(
        &self,
        request: &Request,
        mut body: ByteStream,
        max_bytes: u64,
        done_timeout: Duration,
    ) -> Result<Response> {
        let (mut stream, first) = self.open(request, OPEN_TIMEOUT).await?;
        if !matches!(first, Response::Ready) {
            return Err(self.refused(first));
        }
        let mut total = 0u64;
        let mut sent_all = true;
        'body: while let Some(piece) = body.next().await {
            let piece = piece.map_err(|e| RuntimeError::File {
                kind: FileErrorKind::Invalid,
                message: format!("reading the request body: {e}"),
            })?;
            total += piece.len() as u64;
            if total > max_bytes {
                // Dropping the connection makes the agent discard the partial upload.
                return Err(RuntimeError::File {
                    kind: FileErrorKind::TooLarge,
                    message: format!("payload exceeds {max_bytes} bytes"),
                });
            }
            for part in piece.chunks(CHUNK_BYTES) {
                if write_data(&mut stream, part).await.is_err() {
                    // The agent stopped reading: its answer says why.
                    sent_all = false;
                    break 'body;
                }
            }
        }
        if sent_all {
            let _ = write_chunk(&mut stream, &Chunk::End).await;
        }
        let answer = tokio::time::timeout(done_timeout, read_frame::<_, Response>(&mut stream))
            .await
            .map_err(|_| self.agent_error(format!("no answer within {done_timeout:?}")))?
            .map_err(|e| self.agent_error(e))?;
        answer.ok_or_else(|| self.agent_error("closed the connection without answering"))
    }

    /// Opens a relay to TCP `port` inside the sandbox; the returned socket is the raw pipe.
    pub async fn connect_port(&self, port: u16) -> Result<UnixStream> {
        let (stream, first) = self
            .open(&Request::ConnectPort { port }, OPEN_TIMEOUT)
            .await?;
        match first {
            Response::Connected => Ok(stream),
            other => Err(self.refused(other)),
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

/// The `Data` chunks of a download or archive as a byte stream, ending at `End`; with `size`,
/// anything but exactly that many bytes is an error.
fn chunk_stream(stream: UnixStream, size: Option<u64>) -> ByteStream {
    struct State {
        stream: UnixStream,
        size: Option<u64>,
        got: u64,
        done: bool,
    }
    let state = State {
        stream,
        size,
        got: 0,
        done: false,
    };
    let broken = |message: String| std::io::Error::new(std::io::ErrorKind::InvalidData, message);
    Box::pin(futures::stream::unfold(
        state,
        move |mut state| async move {
            if state.done {
                return None;
            }
            let item = match read_chunk(&mut state.stream).await {
                Ok(Some(Chunk::Data { data })) => {
                    state.got += data.len() as u64;
                    if state.size.is_some_and(|size| state.got > size) {
                        Err(broken("the agent sent more bytes than the file has".into()))
                    } else {
                        return Some((Ok(Bytes::from(data)), state));
                    }
                }
                Ok(Some(Chunk::End)) if state.size.is_none_or(|size| size == state.got) => {
                    return None;
                }
                Ok(Some(Chunk::End)) => Err(broken("the file ended early".into())),
                Ok(Some(Chunk::Failed { message, .. })) => Err(std::io::Error::other(message)),
                Ok(Some(other)) => Err(broken(format!("unexpected frame {other:?}"))),
                Ok(None) => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the agent closed the stream",
                )),
                Err(e) => Err(e),
            };
            state.done = true;
            Some((item, state))
        },
    ))
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
