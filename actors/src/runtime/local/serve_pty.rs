//! The agent's side of a terminal: one connection, one PTY. After `PtyOpened` the host sends
//! keystrokes and resizes as [`Chunk`]s and the agent sends the terminal's output the same way,
//! then `Exited` when the shell is gone. When the host hangs up (closes its side), the terminal is
//! hung up: the shell and its jobs get `SIGHUP`, and whatever ignores it in the shell's own
//! process group is killed a second later.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixStream;

use super::protocol::{Chunk, Response, read_chunk, write_chunk, write_data, write_frame};
use super::pty::{self, PtyPrimary};
use super::spawn;

/// How long output is still collected after the shell exited, for background jobs that keep the
/// terminal open (they keep running; what they write later is lost).
const DRAIN_GRACE: Duration = Duration::from_millis(100);
/// How long a hung-up shell has to exit before its process group is killed.
const HANGUP_GRACE: Duration = Duration::from_secs(1);
/// The most output read from the PTY into one chunk.
const READ_BYTES: usize = 64 << 10;

/// What `OpenPty` asks for.
pub struct PtyOptions {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub dir: String,
}

/// Serves one PTY connection until the shell exits or the host hangs up.
pub async fn serve(mut stream: UnixStream, options: PtyOptions) {
    let (primary, secondary) = match pty::open(options.cols, options.rows) {
        Ok(pair) => pair,
        Err(e) => {
            let message = format!("opening a terminal: {e}");
            let _ = write_frame(&mut stream, &Response::Error { message }).await;
            return;
        }
    };
    let mut env = options.env;
    env.entry("TERM".to_owned())
        .or_insert_with(|| "xterm-256color".to_owned());
    let mut child = match pty::spawn_shell(&options.command, &secondary, &env, &options.dir) {
        Ok(child) => child,
        Err(e) => {
            let message = format!("starting {:?}: {e}", options.command);
            let _ = write_frame(&mut stream, &Response::Error { message }).await;
            return;
        }
    };
    // Only the shell holds the secondary side now, so the terminal closes when it is done.
    drop(secondary);
    let pid = child.id().unwrap_or_default();
    if write_frame(&mut stream, &Response::PtyOpened { pid })
        .await
        .is_err()
    {
        hang_up(&mut child, pid, None).await;
        return;
    }
    let (mut from_host, mut to_host) = stream.into_split();
    let primary = Arc::new(primary);
    let input = {
        let primary = primary.clone();
        tokio::spawn(async move {
            while let Ok(Some(chunk)) = read_chunk(&mut from_host).await {
                match chunk {
                    Chunk::Data { data } if primary.write_all(&data).await.is_err() => break,
                    Chunk::Data { .. } => {}
                    Chunk::Resize { cols, rows } => {
                        let _ = primary.resize(cols, rows);
                    }
                    Chunk::End => break,
                    _ => {}
                }
            }
        })
    };
    tokio::pin!(input);

    let mut buf = vec![0u8; READ_BYTES];
    let mut exit = None;
    let drain = tokio::time::sleep(Duration::MAX);
    tokio::pin!(drain);
    let mut host_gone = false;
    loop {
        tokio::select! {
            read = primary.read(&mut buf) => match read {
                Ok(n) if n > 0 => {
                    if write_data(&mut to_host, &buf[..n]).await.is_err() {
                        host_gone = true;
                        break;
                    }
                }
                _ => {
                    if exit.is_none() {
                        // Every program let go of the terminal: the shell is about to be reaped
                        // (or closed its terminal and carries on, which ends the session too).
                        let status = tokio::time::timeout(HANGUP_GRACE, child.wait()).await;
                        exit = Some(match status {
                            Ok(status) => status.ok().and_then(code_of),
                            Err(_) => {
                                hang_up(&mut child, pid, None).await;
                                None
                            }
                        });
                    }
                    break;
                }
            },
            status = child.wait(), if exit.is_none() => {
                exit = Some(status.ok().and_then(code_of));
                drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
            }
            () = &mut drain => break,
            _ = &mut input => {
                host_gone = true;
                break;
            }
        }
    }
    match exit {
        Some(code) if !host_gone => {
            let _ = write_chunk(&mut to_host, &Chunk::Exited { code }).await;
        }
        Some(_) => {}
        None => hang_up(&mut child, pid, Some(primary)).await,
    }
}

/// Hangs the terminal up: closing the last handle on the primary side makes the kernel send
/// `SIGHUP` to the shell, which passes it on to its jobs; the shell's process group also gets one
/// directly, and `SIGKILL` if it is still there after [`HANGUP_GRACE`].
async fn hang_up(child: &mut tokio::process::Child, pid: u32, primary: Option<Arc<PtyPrimary>>) {
    drop(primary);
    let group = i32::try_from(pid).unwrap_or_default();
    let _ = spawn::kill_group(group, libc::SIGHUP);
    if tokio::time::timeout(HANGUP_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = spawn::kill_group(group, libc::SIGKILL);
        let _ = child.wait().await;
    }
}

fn code_of(status: std::process::ExitStatus) -> Option<i32> {
    status.code().or_else(|| status.signal().map(|s| 128 + s))
}
