//! The fake runtime's terminals, files and ports, for actor and gateway tests: an echo PTY that
//! records window sizes and hang-ups, files kept in the same in-memory map `exec` uses, and ports
//! routed to real TCP servers the test starts on loopback.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;

use super::FakeRuntime;
use crate::runtime::files::clean_path;
use crate::runtime::{
    ByteStream, DirEntry, DirListing, FileDownload, FileErrorKind, PortConnection, PtyInput,
    PtyOutput, PtyRequest, PtySession, Result, RuntimeError, SandboxId,
};

/// Byte sent by a client to end the fake shell (Ctrl-D), like EOF on an empty line.
pub const FAKE_EOF: u8 = 0x04;
/// Byte that makes the fake PTY's connection break without an exit status, as when the
/// sandbox's agent is killed.
pub const FAKE_CRASH: u8 = 0x1d;

/// What the fake runtime keeps for terminals and ports.
#[derive(Default)]
pub(super) struct FakeIo {
    ports: HashMap<(SandboxId, u16), SocketAddr>,
    /// Shared with the echo tasks, which outlive the lock on the runtime's state.
    ptys: Arc<Mutex<PtyRecord>>,
}

/// What the echo PTYs report.
#[derive(Default)]
struct PtyRecord {
    sizes: HashMap<SandboxId, (u16, u16)>,
    hangups: usize,
}

fn record(ptys: &Mutex<PtyRecord>) -> std::sync::MutexGuard<'_, PtyRecord> {
    ptys.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FakeRuntime {
    /// Routes `connect_port(id, port)` to a TCP server at `address` (a test's server).
    pub fn route_port(&self, id: &SandboxId, port: u16, address: SocketAddr) {
        self.lock().io.ports.insert((id.clone(), port), address);
    }

    /// The last window size a PTY of `id` was opened with or resized to.
    pub fn pty_size(&self, id: &SandboxId) -> Option<(u16, u16)> {
        let ptys = self.lock().io.ptys.clone();
        record(&ptys).sizes.get(id).copied()
    }

    /// How many fake PTYs were hung up by their session (input side dropped).
    pub fn pty_hangups(&self) -> usize {
        let ptys = self.lock().io.ptys.clone();
        record(&ptys).hangups
    }

    /// An echo PTY: every input byte comes back as output; [`FAKE_EOF`] ends it with exit 0.
    pub(super) fn fake_pty(&self, id: &SandboxId, request: PtyRequest) -> Result<PtySession> {
        self.running_or_err(id)?;
        let ptys = self.lock().io.ptys.clone();
        record(&ptys)
            .sizes
            .insert(id.clone(), (request.cols, request.rows));
        let (input, mut input_rx) = tokio::sync::mpsc::channel::<PtyInput>(64);
        let (output_tx, output) = tokio::sync::mpsc::channel::<PtyOutput>(64);
        let id = id.clone();
        tokio::spawn(async move {
            while let Some(input) = input_rx.recv().await {
                match input {
                    PtyInput::Data(data) if data.contains(&FAKE_CRASH) => return,
                    PtyInput::Data(data) => {
                        let eof = data.contains(&FAKE_EOF);
                        if output_tx.send(PtyOutput::Data(data)).await.is_err() {
                            return;
                        }
                        if eof {
                            let _ = output_tx.send(PtyOutput::Exited(Some(0))).await;
                            return;
                        }
                    }
                    PtyInput::Resize { cols, rows } => {
                        record(&ptys).sizes.insert(id.clone(), (cols, rows));
                    }
                }
            }
            record(&ptys).hangups += 1;
        });
        Ok(PtySession { input, output })
    }

    pub(super) fn fake_list(&self, id: &SandboxId, path: &str) -> Result<DirListing> {
        self.running_or_err(id)?;
        let state = self.lock();
        let files = state.workspaces.get(id).cloned().unwrap_or_default();
        let prefix = format!("{}/", path.trim_end_matches('/'));
        let mut entries: Vec<DirEntry> = files
            .iter()
            .filter_map(|(name, content)| {
                let rest = clean_path(name).ok()?.strip_prefix(&prefix)?.to_owned();
                (!rest.contains('/')).then(|| DirEntry {
                    name: rest,
                    size: content.len() as u64,
                    is_dir: false,
                    mode: "-rw-r--r--".into(),
                    modified_at: 0,
                })
            })
            .collect();
        if entries.is_empty() && path != "/workspace" {
            return Err(RuntimeError::File {
                kind: FileErrorKind::NotFound,
                message: format!("path not found: {path}"),
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(DirListing {
            path: path.to_owned(),
            entries,
        })
    }

    pub(super) fn fake_read(&self, id: &SandboxId, path: &str, max: u64) -> Result<FileDownload> {
        self.running_or_err(id)?;
        let content = self
            .lock()
            .workspaces
            .get(id)
            .and_then(|files| files.get(path).cloned())
            .ok_or_else(|| RuntimeError::File {
                kind: FileErrorKind::NotFound,
                message: format!("file not found: {path}"),
            })?;
        if content.len() as u64 > max {
            return Err(RuntimeError::File {
                kind: FileErrorKind::TooLarge,
                message: format!("file exceeds {max} bytes"),
            });
        }
        let size = content.len() as u64;
        let body: ByteStream = Box::pin(futures::stream::iter([Ok(Bytes::from(content))]));
        Ok(FileDownload { size, body })
    }

    pub(super) async fn fake_write(
        &self,
        id: &SandboxId,
        path: &str,
        mut body: ByteStream,
        max: u64,
    ) -> Result<u64> {
        self.running_or_err(id)?;
        let mut bytes = Vec::new();
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|e| RuntimeError::File {
                kind: FileErrorKind::Invalid,
                message: format!("reading the request body: {e}"),
            })?;
            bytes.extend_from_slice(&piece);
            if bytes.len() as u64 > max {
                return Err(RuntimeError::File {
                    kind: FileErrorKind::TooLarge,
                    message: format!("payload exceeds {max} bytes"),
                });
            }
        }
        let written = bytes.len() as u64;
        self.lock()
            .workspaces
            .entry(id.clone())
            .or_default()
            .insert(
                path.to_owned(),
                String::from_utf8_lossy(&bytes).into_owned(),
            );
        Ok(written)
    }

    pub(super) async fn fake_connect(&self, id: &SandboxId, port: u16) -> Result<PortConnection> {
        self.running_or_err(id)?;
        let address = self.lock().io.ports.get(&(id.clone(), port)).copied();
        let Some(address) = address else {
            return Err(RuntimeError::Agent {
                id: id.to_string(),
                detail: format!("nothing answers on port {port} in the sandbox"),
            });
        };
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| RuntimeError::io(format!("connecting to {address}"), e))?;
        Ok(Box::new(stream))
    }

    fn running_or_err(&self, id: &SandboxId) -> Result<()> {
        if self.is_running(id) {
            Ok(())
        } else {
            Err(RuntimeError::NotRunning(id.to_string()))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::runtime::{Runtime, WorkspaceSeed};

    #[tokio::test]
    async fn echo_pty_echoes_resizes_and_ends() {
        let fake = FakeRuntime::default();
        let id = SandboxId("s".into());
        fake.prepare(&id, WorkspaceSeed::Empty).await.unwrap();
        fake.start(&id, &Default::default()).await.unwrap();
        let request = PtyRequest {
            command: vec!["/bin/sh".into()],
            cols: 80,
            rows: 24,
            env: Default::default(),
            working_dir: None,
        };
        let mut pty = fake.open_pty(&id, request).await.unwrap();
        assert_eq!(fake.pty_size(&id), Some((80, 24)));
        pty.input
            .send(PtyInput::Data(Bytes::from("hi")))
            .await
            .unwrap();
        assert_eq!(
            pty.output.recv().await,
            Some(PtyOutput::Data(Bytes::from("hi")))
        );
        pty.input
            .send(PtyInput::Resize {
                cols: 100,
                rows: 30,
            })
            .await
            .unwrap();
        pty.input
            .send(PtyInput::Data(Bytes::from_static(&[FAKE_EOF])))
            .await
            .unwrap();
        pty.output.recv().await.unwrap();
        assert_eq!(pty.output.recv().await, Some(PtyOutput::Exited(Some(0))));
        assert_eq!(fake.pty_size(&id), Some((100, 30)));
    }
}
