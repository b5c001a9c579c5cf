//! The agent's side of a streamed exec (agent-mode invoke and configure, harness hooks): one
//! connection, one command. After `ExecStarted` the agent sends stdout as `Data` chunks and
//! stderr as `Stderr` chunks as the command writes them, then `Finished`. The host closing its
//! side is a cancel: the command's whole process group is killed at once.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::agent::{DRAIN_GRACE, TIMEOUT_EXIT, spawn_command};
use super::protocol::{Chunk, Response, write_chunk, write_frame};
use super::spawn;

/// The most output read into one chunk.
const READ_BYTES: usize = 64 << 10;

/// What `ExecStream` asks for.
pub struct StreamOptions {
    /// The shell command line.
    pub command: String,
    /// Kill the command's process group after this long.
    pub timeout: Duration,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub dir: String,
    /// Fed to stdin, then closed.
    pub stdin: Vec<u8>,
}

/// Which pipe a piece of output came from.
#[derive(Clone, Copy)]
enum Pipe {
    Stdout,
    Stderr,
}

/// Serves one streamed exec until the command ends or the host hangs up.
pub async fn serve(mut stream: UnixStream, options: StreamOptions) {
    let has_stdin = !options.stdin.is_empty();
    let mut child = match spawn_command(&options.command, &options.env, &options.dir, has_stdin) {
        Ok(child) => child,
        Err((exit_code, message)) => {
            let _ = write_frame(&mut stream, &Response::ExecStarted { pid: 0 }).await;
            let stderr = Chunk::Stderr {
                data: message.into_bytes(),
            };
            let _ = write_chunk(&mut stream, &stderr).await;
            let finished = Chunk::Finished {
                exit_code,
                timed_out: false,
            };
            let _ = write_chunk(&mut stream, &finished).await;
            return;
        }
    };
    let pid = child.id().unwrap_or_default();
    let pgid = i32::try_from(pid).ok().filter(|p| *p > 0);
    let kill = || {
        if let Some(pgid) = pgid {
            let _ = spawn::kill_group(pgid, libc::SIGKILL);
        }
    };
    if write_frame(&mut stream, &Response::ExecStarted { pid })
        .await
        .is_err()
    {
        kill();
        let _ = child.wait().await;
        return;
    }

    let (output_tx, mut output) = mpsc::channel::<(Pipe, Vec<u8>)>(16);
    if let Some(pipe) = child.stdout.take() {
        tokio::spawn(forward(pipe, Pipe::Stdout, output_tx.clone()));
    }
    if let Some(pipe) = child.stderr.take() {
        tokio::spawn(forward(pipe, Pipe::Stderr, output_tx.clone()));
    }
    drop(output_tx);
    if let Some(mut pipe) = child.stdin.take() {
        let input = options.stdin;
        // A command that does not read its input closes the pipe: not an error.
        tokio::spawn(async move {
            let _ = pipe.write_all(&input).await;
        });
    }

    let (mut from_host, mut to_host) = stream.into_split();
    let hang_up = async move {
        let mut byte = [0u8; 1];
        // The host sends nothing after the request: any read result means it hung up.
        let _ = from_host.read(&mut byte).await;
    };
    tokio::pin!(hang_up);
    let deadline = tokio::time::sleep(options.timeout);
    tokio::pin!(deadline);

    let mut output_open = true;
    let ended = loop {
        tokio::select! {
            piece = output.recv(), if output_open => match piece {
                Some(piece) => {
                    if send(&mut to_host, piece).await.is_err() {
                        kill();
                        let _ = child.wait().await;
                        return;
                    }
                }
                None => output_open = false,
            },
            status = child.wait() => break status.map(Some),
            () = &mut deadline => {
                kill();
                break child.wait().await.map(|_| None);
            }
            () = &mut hang_up => {
                kill();
                let _ = child.wait().await;
                return;
            }
        }
    };
    // Output written just before the exit is still in the pipes; background processes that
    // hold them open get a short grace, then their later output is lost.
    let drain = async {
        while let Some(piece) = output.recv().await {
            if send(&mut to_host, piece).await.is_err() {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_GRACE, drain).await;
    let finished = match ended {
        Ok(Some(status)) => Chunk::Finished {
            exit_code: status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(-1),
            timed_out: false,
        },
        Ok(None) => Chunk::Finished {
            exit_code: TIMEOUT_EXIT,
            timed_out: true,
        },
        Err(_) => Chunk::Finished {
            exit_code: -1,
            timed_out: false,
        },
    };
    let _ = write_chunk(&mut to_host, &finished).await;
}

/// Reads one pipe to its end, passing each piece on.
async fn forward(mut pipe: impl AsyncRead + Unpin, which: Pipe, to: mpsc::Sender<(Pipe, Vec<u8>)>) {
    let mut buf = vec![0u8; READ_BYTES];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.send((which, buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn send(
    writer: &mut tokio::net::unix::OwnedWriteHalf,
    (pipe, data): (Pipe, Vec<u8>),
) -> std::io::Result<()> {
    let chunk = match pipe {
        Pipe::Stdout => Chunk::Data { data },
        Pipe::Stderr => Chunk::Stderr { data },
    };
    write_chunk(writer, &chunk).await
}
