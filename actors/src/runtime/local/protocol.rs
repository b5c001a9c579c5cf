//! The wire protocol between the host and a sandbox's agent over its unix socket.
//!
//! A frame is a big-endian `u32` length followed by that many bytes of JSON. Each connection
//! starts with one [`Request`] frame from the host; a request/response call gets exactly one
//! [`Response`] frame back. Messages are enums tagged by `"type"`, so streaming calls (PTYs,
//! invoke) can be added later as requests whose connection then carries further frames in both
//! directions, without changing how frames or existing messages look.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    async fn oversized_frames_are_refused() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let len = u32::try_from(MAX_FRAME + 1).unwrap();
        a.write_all(&len.to_be_bytes()).await.unwrap();
        let err = read_frame::<_, Request>(&mut b).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }
}
