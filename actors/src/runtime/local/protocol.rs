//! The wire protocol between the host and a sandbox's agent over its unix socket.
//!
//! A frame is a big-endian `u32` length followed by that many bytes of JSON. Each connection
//! starts with one [`Request`] frame from the host; a request/response call gets exactly one
//! [`Response`] frame back. Messages are enums tagged by `"type"`.
//!
//! Streaming calls answer their request with one `Response` too (`PtyOpened`, `FileStart`,
//! `ArchiveStart`, `Ready`, `Connected`, or an error) and then carry more on the same connection:
//! - Streamed exec: `Data` (stdout) and `Stderr` chunks out, then `Finished`; the host closing
//!   its side kills the command.
//! - PTY: [`Chunk`] frames both ways (`Data`, `Resize` in; `Data`, then `Exited` out); the host
//!   closing its side hangs the terminal up.
//! - Download and archive: `Data` chunks out, then `End` (or `Failed`).
//! - Upload (file or archive): `Data` chunks in, then `End`; the agent answers `Written` or
//!   `Unpacked` (or `FileError`).
//! - Port: after `Connected` the connection is a raw byte pipe to the port, without frames.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::de::DeserializeOwned;

use crate::runtime::{ArchiveFormat, DirListing, FileErrorKind, UnpackSummary};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The most file or PTY bytes one `Data` chunk carries; frames stay far below [`MAX_FRAME`] and
/// memory per connection stays small.
pub const CHUNK_BYTES: usize = 256 << 10;

/// The largest frame either side accepts. Exec output is capped at 1 MiB per stream, but JSON
/// escaping of control bytes can grow it up to six times.
pub const MAX_FRAME: usize = 16 << 20;

/// What the host asks the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Request {
    /// Liveness check; answered with [`Response::Pong`].
    Ping,
    /// Run `/bin/sh -c command`; answered with [`Response::ExecResult`].
    Exec {
        /// The shell command line.
        command: String,
        /// Kill the command's process group after this many milliseconds.
        timeout_ms: u64,
        /// Extra environment for this command.
        #[serde(default)]
        env: BTreeMap<String, String>,
        /// Working directory; `None` = the sandbox's default.
        #[serde(default)]
        working_dir: Option<String>,
        /// Bytes fed to the command's stdin (base64 on the wire), then closed.
        #[serde(default, with = "base64_bytes")]
        stdin: Vec<u8>,
    },
    /// Run `/bin/sh -c command` and stream its output: [`Response::ExecStarted`], then
    /// `Data` (stdout) and `Stderr` chunks as they come, then `Finished`. The host closing its
    /// side kills the command's process group (a cancel).
    ExecStream {
        /// The shell command line.
        command: String,
        /// Kill the command's process group after this many milliseconds.
        timeout_ms: u64,
        /// Extra environment for this command.
        #[serde(default)]
        env: BTreeMap<String, String>,
        /// Working directory; `None` = the sandbox's default.
        #[serde(default)]
        working_dir: Option<String>,
        /// Bytes fed to the command's stdin (base64 on the wire), then closed.
        #[serde(default, with = "base64_bytes")]
        stdin: Vec<u8>,
    },
    /// Open a PTY running `command` (falling back to `/bin/sh -l` when it does not exist);
    /// answered with [`Response::PtyOpened`], then [`Chunk`]s both ways.
    OpenPty {
        /// The program and its arguments.
        command: Vec<String>,
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
        /// Extra environment.
        #[serde(default)]
        env: BTreeMap<String, String>,
        /// Working directory; `None` = the sandbox's default.
        #[serde(default)]
        working_dir: Option<String>,
    },
    /// List a directory; answered with [`Response::DirListing`].
    ListDir {
        /// Clean absolute path.
        path: String,
    },
    /// Send a regular file: [`Response::FileStart`], then `Data` chunks and `End`.
    ReadFile {
        /// Clean absolute path.
        path: String,
        /// Refuse files larger than this.
        max_bytes: u64,
    },
    /// Receive a file: [`Response::Ready`], then the host sends `Data` chunks and `End`, and the
    /// agent answers [`Response::Written`].
    WriteFile {
        /// Clean absolute path.
        path: String,
        /// Refuse bodies larger than this.
        max_bytes: u64,
    },
    /// Send a zip of a directory: [`Response::ArchiveStart`], then `Data` chunks and `End`.
    Archive {
        /// Clean absolute path of the directory.
        path: String,
        /// The directory the archived tree must resolve within (the workspace).
        root: String,
    },
    /// Receive a tar or zip and unpack it into `dir`: [`Response::Ready`], then `Data` chunks
    /// and `End` from the host, then [`Response::Unpacked`].
    Unpack {
        /// Clean absolute path of the destination directory (created if missing).
        dir: String,
        /// The format; `None` = guess from the first bytes.
        #[serde(default)]
        format: Option<ArchiveFormat>,
        /// Refuse uploads larger than this (and content that unpacks to more than 4 times it).
        max_bytes: u64,
    },
    /// Connect to TCP `port` on the sandbox's loopback: [`Response::Connected`], then raw bytes.
    ConnectPort {
        /// The port.
        port: u16,
    },
}

/// The frames that follow a streaming request or answer, in either direction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Chunk {
    /// Bytes: PTY input or output, or a piece of a file or archive (base64 on the wire).
    Data {
        /// The bytes.
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
    },
    /// A new PTY window size.
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// The stream is complete.
    End,
    /// The PTY's shell exited; nothing follows.
    Exited {
        /// The exit code, or 128+signal; `None` when unknown.
        code: Option<i32>,
    },
    /// Bytes a streamed exec wrote to stderr (its stdout travels as `Data`).
    Stderr {
        /// The bytes.
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
    },
    /// A streamed exec ended; nothing follows.
    Finished {
        /// Exit code; 128+signal when killed; 124 on timeout.
        exit_code: i32,
        /// Killed at the timeout.
        timed_out: bool,
    },
    /// The stream broke off; nothing follows.
    Failed {
        /// What kind of failure.
        kind: FileErrorKind,
        /// Why.
        message: String,
    },
}

/// What the agent answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Response {
    /// The agent is serving.
    Pong {
        /// The agent's process id inside the sandbox.
        pid: u32,
    },
    /// The outcome of an exec.
    ExecResult {
        /// Captured stdout, lossy UTF-8, capped.
        stdout: String,
        /// Captured stderr, lossy UTF-8, capped.
        stderr: String,
        /// Exit code; 128+signal when killed; 124 on timeout.
        exit_code: i32,
        /// Killed at the timeout.
        timed_out: bool,
        /// Output was cut at the cap.
        truncated: bool,
    },
    /// The request could not be served.
    Error {
        /// What went wrong.
        message: String,
    },
    /// A streamed exec runs; [`Chunk`]s follow.
    ExecStarted {
        /// The command's pid (and process group) inside the sandbox.
        pid: u32,
    },
    /// A PTY is open; [`Chunk`]s follow.
    PtyOpened {
        /// The shell's pid inside the sandbox.
        pid: u32,
    },
    /// A directory's entries.
    DirListing {
        /// The listing.
        listing: DirListing,
    },
    /// A file's bytes follow.
    FileStart {
        /// Its size; exactly this many bytes follow.
        size: u64,
    },
    /// A zip stream follows.
    ArchiveStart,
    /// The agent is ready for the upload's chunks.
    Ready,
    /// A file upload is complete.
    Written {
        /// Bytes written.
        bytes: u64,
    },
    /// An archive upload is unpacked.
    Unpacked {
        /// What was unpacked.
        summary: UnpackSummary,
    },
    /// The port answered; the connection is now a raw pipe to it.
    Connected,
    /// A file operation was refused or failed.
    FileError {
        /// What kind of failure.
        kind: FileErrorKind,
        /// Why, for the client.
        message: String,
    },
}

/// First byte of a frame whose body is raw bytes: the payload of a [`Chunk::Data`] without
/// base64 or JSON (a JSON body never starts with NUL). Terminal output and file bodies travel
/// this way; every other message stays JSON.
const RAW_DATA: u8 = 0;
/// Raw payloads up to this size are written with one `write` (header and bytes copied
/// together), larger ones with two, to avoid copying them.
const COALESCE_BYTES: usize = 16 << 10;

/// Writes raw bytes as one `Data` chunk frame.
pub async fn write_data<W>(writer: &mut W, data: &[u8]) -> std::io::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let len = data.len() + 1;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {MAX_FRAME}"),
        ));
    }
    let len = u32::try_from(len).map_err(std::io::Error::other)?;
    let mut head = Vec::with_capacity(5 + data.len().min(COALESCE_BYTES));
    head.extend_from_slice(&len.to_be_bytes());
    head.push(RAW_DATA);
    if data.len() <= COALESCE_BYTES {
        head.extend_from_slice(data);
        writer.write_all(&head).await?;
    } else {
        writer.write_all(&head).await?;
        writer.write_all(data).await?;
    }
    writer.flush().await
}

/// Writes a chunk: `Data` as a raw frame, anything else as JSON.
pub async fn write_chunk<W>(writer: &mut W, chunk: &Chunk) -> std::io::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    match chunk {
        Chunk::Data { data } => write_data(writer, data).await,
        other => write_frame(writer, other).await,
    }
}

/// Reads one chunk frame, raw or JSON; `Ok(None)` when the peer closed the connection before a
/// frame started.
pub async fn read_chunk<R>(reader: &mut R) -> std::io::Result<Option<Chunk>>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let Some(len) = read_len(reader).await? else {
        return Ok(None);
    };
    if len == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "empty frame",
        ));
    }
    let mut first = [0u8; 1];
    reader.read_exact(&mut first).await?;
    if first[0] == RAW_DATA {
        let mut data = vec![0u8; len - 1];
        reader.read_exact(&mut data).await?;
        return Ok(Some(Chunk::Data { data }));
    }
    let mut body = vec![0u8; len];
    body[0] = first[0];
    reader.read_exact(&mut body[1..]).await?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Reads a frame's length; `Ok(None)` at a clean end of stream.
async fn read_len<R>(reader: &mut R) -> std::io::Result<Option<usize>>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {MAX_FRAME}"),
        ));
    }
    Ok(Some(len))
}

/// Writes one frame holding `message` as JSON.
pub async fn write_frame<W, T>(writer: &mut W, message: &T) -> std::io::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
    T: Serialize,
{
    let body = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {} bytes exceeds {MAX_FRAME}", body.len()),
        ));
    }
    let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    writer.write_all(&frame).await?;
    writer.flush().await
}

/// Reads one frame; `Ok(None)` when the peer closed the connection before a frame started.
pub async fn read_frame<R, T>(reader: &mut R) -> std::io::Result<Option<T>>
where
    R: tokio::io::AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let Some(len) = read_len(reader).await? else {
        return Ok(None);
    };
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Serde adapter: bytes as a base64 string (JSON arrays of numbers are 4x larger).
mod base64_bytes {
    use super::*;

    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let request = Request::Exec {
            command: "cat".into(),
            timeout_ms: 1500,
            env: BTreeMap::from([("K".into(), "v".into())]),
            working_dir: Some("/workspace".into()),
            stdin: b"\x00hello\xff".to_vec(),
        };
        write_frame(&mut a, &request).await.unwrap();
        write_frame(&mut a, &Request::Ping).await.unwrap();
        drop(a);
        assert_eq!(
            read_frame::<_, Request>(&mut b).await.unwrap(),
            Some(request)
        );
        assert_eq!(
            read_frame::<_, Request>(&mut b).await.unwrap(),
            Some(Request::Ping)
        );
        assert_eq!(read_frame::<_, Request>(&mut b).await.unwrap(), None);
    }

    #[test]
    fn messages_are_tagged_by_type() {
        assert_eq!(
            serde_json::to_string(&Request::Ping).unwrap(),
            r#"{"type":"Ping"}"#
        );
        let r = Response::ExecResult {
            stdout: "hi\n".into(),
            stderr: String::new(),
            exit_code: 0,
            timed_out: false,
            truncated: false,
        };
        let json: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(json["type"], "ExecResult");
        assert_eq!(json["stdout"], "hi\n");
        let exec: Request =
            serde_json::from_str(r#"{"type":"Exec","command":"true","timeout_ms":5}"#).unwrap();
        assert!(matches!(exec, Request::Exec { stdin, .. } if stdin.is_empty()));
    }

    #[tokio::test]
    async fn streaming_frames_round_trip() {
        // Large enough for every frame below: they are all written before any is read.
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let chunks = [
            Chunk::Data {
                data: vec![0, 1, 2, 255],
            },
            Chunk::Resize { cols: 80, rows: 24 },
            Chunk::Exited { code: Some(130) },
            Chunk::Failed {
                kind: FileErrorKind::NotFound,
                message: "gone".into(),
            },
            Chunk::End,
        ];
        for chunk in &chunks {
            write_chunk(&mut a, chunk).await.unwrap();
        }
        // Big data goes out in two writes; JSON `Data` (base64) still reads back.
        write_data(&mut a, &vec![7u8; 100_000]).await.unwrap();
        write_frame(&mut a, &chunks[0]).await.unwrap();
        for chunk in &chunks {
            assert_eq!(read_chunk(&mut b).await.unwrap().as_ref(), Some(chunk));
        }
        assert_eq!(
            read_chunk(&mut b).await.unwrap(),
            Some(Chunk::Data {
                data: vec![7u8; 100_000]
            })
        );
        assert_eq!(read_chunk(&mut b).await.unwrap().as_ref(), Some(&chunks[0]));
        let open: Request = serde_json::from_str(
            r#"{"type":"OpenPty","command":["/bin/bash","-l"],"cols":80,"rows":24}"#,
        )
        .unwrap();
        assert!(matches!(open, Request::OpenPty { env, working_dir: None, .. } if env.is_empty()));
        let unpack: Request = serde_json::from_str(
            r#"{"type":"Unpack","dir":"/workspace","format":"zip","max_bytes":5}"#,
        )
        .unwrap();
        assert!(matches!(
            unpack,
            Request::Unpack {
                format: Some(ArchiveFormat::Zip),
                ..
            }
        ));
    }

    #[tokio::test]
    async fn oversized_frames_are_refused() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let len = u32::try_from(MAX_FRAME + 1).unwrap();
        a.write_all(&len.to_be_bytes()).await.unwrap();
        let err = read_frame::<_, Request>(&mut b).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }
}
