//! Commands and terminals through the pods/exec API (websocket, kube-rs's `ws` feature).
//!
//! kube-rs offers `v5.channel.k8s.io, v4.channel.k8s.io` in one header; a 1.20 apiserver picks
//! v4, which carries stdout, stderr, the exit status (channel 3) and resizes (channel 4) but has
//! no way to close stdin. So stdin is never left to EOF: a command's stdin is fed through
//! `head -c <len>`, which ends after exactly the bytes sent, whatever the protocol. The timeout is
//! enforced inside the Pod (`timeout -s KILL`, when the image has it) so the command dies with its
//! deadline, and again on this side so a silent Pod cannot hold a caller.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::SinkExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::Api;
use kube::api::{AttachParams, AttachedProcess, TerminalSize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::names;
use super::pod::sh_quote;
use crate::runtime::{
    EXEC_OUTPUT_CAP, ExecEvent, ExecOutput, ExecRequest, ExecStream, PtyInput, PtyOutput,
    PtyRequest, PtySession, RuntimeError,
};

/// Slack on top of a command's timeout before this side gives up on the Pod.
const CLIENT_SLACK: Duration = Duration::from_secs(5);

/// The argv that runs `request` in `working_dir`: `env` for the extra variables, `timeout` when
/// the image has it, stdin through `head -c`.
pub fn exec_argv(request: &ExecRequest, working_dir: &str) -> Vec<String> {
    exec_argv_with_pidfile(request, working_dir, None)
}

/// Like [`exec_argv`], and when `pidfile` is set the command's top process writes its pid there
/// first, so a cancel can find and kill its process tree.
fn exec_argv_with_pidfile(
    request: &ExecRequest,
    working_dir: &str,
    pidfile: Option<&str>,
) -> Vec<String> {
    let mut script = format!("cd {} || exit 1\n", sh_quote(working_dir));
    if request.stdin.is_empty() {
        script.push_str(&request.command);
    } else {
        script.push_str(&format!(
            "head -c {} | {{\n{}\n}}",
            request.stdin.len(),
            request.command
        ));
    }
    let seconds = request.timeout.as_secs().max(1);
    let record = pidfile
        .map(|p| format!("echo $$ > {} 2>/dev/null; ", sh_quote(p)))
        .unwrap_or_default();
    let wrapper = format!(
        "{record}if command -v timeout >/dev/null 2>&1; then exec timeout -s KILL {seconds} /bin/sh -c \"$0\"; \
         else exec /bin/sh -c \"$0\"; fi"
    );
    let mut argv = Vec::new();
    if !request.env.is_empty() {
        argv.push("env".to_string());
        argv.extend(request.env.iter().map(|(k, v)| format!("{k}={v}")));
    }
    argv.extend(["/bin/sh".to_string(), "-c".to_string(), wrapper, script]);
    argv
}

/// The exit code a v4 status object carries: 0 on Success, the `ExitCode` cause otherwise.
pub fn exit_code(status: &Status) -> Option<i32> {
    if status.status.as_deref() == Some("Success") {
        return Some(0);
    }
    status
        .details
        .as_ref()?
        .causes
        .as_ref()?
        .iter()
        .find(|c| c.reason.as_deref() == Some("ExitCode"))
        .and_then(|c| c.message.as_deref()?.parse().ok())
}

fn exec_error(pod: &str, error: kube::Error) -> RuntimeError {
    match &error {
        kube::Error::Api(status) if status.code == 404 => RuntimeError::NotRunning(pod.into()),
        _ => RuntimeError::Agent {
            id: pod.to_string(),
            detail: format!("pods/exec: {error}"),
        },
    }
}

/// Reads everything, keeping at most `cap` bytes; true when more was discarded.
async fn read_capped(mut reader: impl AsyncRead + Unpin, cap: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                truncated |= n > room;
            }
        }
    }
    (kept, truncated)
}

/// Starts an exec in the sandbox container.
pub async fn attach(
    pods: &Api<Pod>,
    pod: &str,
    argv: Vec<String>,
    params: AttachParams,
) -> Result<AttachedProcess, RuntimeError> {
    pods.exec(pod, argv, &params.container(names::CONTAINER))
        .await
        .map_err(|e| exec_error(pod, e))
}

/// What a finished exec produced.
#[derive(Debug, Default)]
pub struct Captured {
    /// Stdout, up to the cap.
    pub stdout: Vec<u8>,
    /// Stderr, up to the cap.
    pub stderr: Vec<u8>,
    /// The exit code; `None` when the stream ended without a status.
    pub code: Option<i32>,
    /// Some output was cut at the cap.
    pub truncated: bool,
    /// The deadline passed before the command ended (the stream was closed).
    pub timed_out: bool,
}

/// Runs `argv` in the sandbox container, feeding `stdin` (a script must read it with
/// `head -c <len>`: a v4 stream never signals its end), and collects the output.
pub async fn capture(
    pods: &Api<Pod>,
    pod: &str,
    argv: Vec<String>,
    stdin: Vec<u8>,
    deadline: Duration,
    cap: usize,
) -> Result<Captured, RuntimeError> {
    let params = AttachParams::default()
        .stdin(!stdin.is_empty())
        .stdout(true)
        .stderr(true);
    let mut process = attach(pods, pod, argv, params).await?;
    // Kept until the command ended: dropping the writer closes the whole v4 stream.
    let mut writer = process.stdin();
    let stdout = process.stdout();
    let stderr = process.stderr();
    let status = process.take_status();
    let feed = async {
        if let Some(writer) = writer.as_mut() {
            let _ = writer.write_all(&stdin).await;
            let _ = writer.flush().await;
        }
    };
    let collect = async {
        let out = async {
            match stdout {
                Some(r) => read_capped(r, cap).await,
                None => (Vec::new(), false),
            }
        };
        let err = async {
            match stderr {
                Some(r) => read_capped(r, cap).await,
                None => (Vec::new(), false),
            }
        };
        let ((out, out_cut), (err, err_cut)) = tokio::join!(out, err);
        let status = match status {
            Some(s) => s.await,
            None => None,
        };
        Captured {
            stdout: out,
            stderr: err,
            code: status.as_ref().and_then(exit_code),
            truncated: out_cut || err_cut,
            timed_out: false,
        }
    };
    // Input and output move together, so a command that writes while it reads never stalls.
    let outcome = tokio::time::timeout(deadline, async {
        let ((), collected) = tokio::join!(feed, collect);
        collected
    })
    .await;
    drop(writer);
    match outcome {
        Ok(captured) => Ok(captured),
        Err(_) => {
            process.abort();
            Ok(Captured {
                timed_out: true,
                ..Default::default()
            })
        }
    }
}

/// Runs a command and collects its output.
pub async fn run(
    pods: &Api<Pod>,
    pod: &str,
    request: ExecRequest,
    working_dir: &str,
) -> Result<ExecOutput, RuntimeError> {
    let started = Instant::now();
    let timeout = request.timeout;
    let argv = exec_argv(&request, working_dir);
    let captured = capture(
        pods,
        pod,
        argv,
        request.stdin,
        timeout + CLIENT_SLACK,
        EXEC_OUTPUT_CAP,
    )
    .await?;
    if captured.timed_out {
        return Ok(ExecOutput {
            exit_code: 124,
            timed_out: true,
            ..Default::default()
        });
    }
    let Some(mut code) = captured.code else {
        return Err(RuntimeError::Agent {
            id: pod.to_string(),
            detail: "the exec stream ended without an exit status (the Pod went away?)".into(),
        });
    };
    // `timeout -s KILL` ends the command with 137 (128+9) at its deadline.
    let timed_out =
        matches!(code, 124 | 137) && started.elapsed() + Duration::from_millis(500) >= timeout;
    if timed_out {
        code = 124;
    }
    Ok(ExecOutput {
        stdout: String::from_utf8_lossy(&captured.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&captured.stderr).into_owned(),
        exit_code: code,
        timed_out,
        truncated: captured.truncated,
    })
}

/// Kills the process tree whose top pid is in `pidfile` (depth first, through
/// `/proc/<pid>/task/*/children`), then removes the file.
fn kill_tree_argv(pidfile: &str) -> Vec<String> {
    let file = sh_quote(pidfile);
    let script = format!(
        "k() {{ for c in $(cat /proc/$1/task/*/children 2>/dev/null); do k $c; done; kill -KILL $1 2>/dev/null; }}; \
         [ -f {file} ] && k \"$(cat {file})\"; rm -f {file}"
    );
    vec!["/bin/sh".into(), "-c".into(), script]
}

/// Starts a command and streams its output from a task that owns the exec. When the stream is
/// dropped before the exit (a cancel), or the deadline passes, the task kills the command's
/// process tree with a second exec: closing a v4 exec stream does not end the process.
pub async fn stream(
    pods: Api<Pod>,
    pod: String,
    request: ExecRequest,
    working_dir: &str,
) -> Result<ExecStream, RuntimeError> {
    let pidfile = format!("/tmp/.agenttier-exec-{}.pid", crate::store::new_uid());
    let deadline = request.timeout + CLIENT_SLACK;
    let argv = exec_argv_with_pidfile(&request, working_dir, Some(&pidfile));
    let params = AttachParams::default()
        .stdin(!request.stdin.is_empty())
        .stdout(true)
        .stderr(true);
    let mut process = attach(&pods, &pod, argv, params).await?;
    let (events, receiver) = tokio::sync::mpsc::channel::<Result<ExecEvent, RuntimeError>>(16);
    let started = Instant::now();
    let timeout = request.timeout;
    let stdin = request.stdin;
    tokio::spawn(async move {
        let mut writer = process.stdin();
        let stdout = process.stdout();
        let stderr = process.stderr();
        let status = process.take_status();
        let forward = |reader: Option<Box<dyn AsyncRead + Send + Unpin>>, stderr: bool| {
            let events = events.clone();
            async move {
                let Some(mut reader) = reader else {
                    return true;
                };
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    match reader.read(&mut buf).await {
                        Ok(0) | Err(_) => return true,
                        Ok(n) => {
                            let data = Bytes::copy_from_slice(&buf[..n]);
                            let event = if stderr {
                                ExecEvent::Stderr(data)
                            } else {
                                ExecEvent::Stdout(data)
                            };
                            if events.send(Ok(event)).await.is_err() {
                                return false;
                            }
                        }
                    }
                }
            }
        };
        let run = async {
            if let Some(writer) = writer.as_mut() {
                let _ = writer.write_all(&stdin).await;
                let _ = writer.flush().await;
            }
            let out = forward(
                stdout.map(|r| Box::new(r) as Box<dyn AsyncRead + Send + Unpin>),
                false,
            );
            let err = forward(
                stderr.map(|r| Box::new(r) as Box<dyn AsyncRead + Send + Unpin>),
                true,
            );
            let (out_open, err_open) = tokio::join!(out, err);
            if !(out_open && err_open) {
                return None;
            }
            let status = match status {
                Some(s) => s.await,
                None => None,
            };
            Some(status.as_ref().and_then(exit_code))
        };
        let cancelled = async { events.closed().await };
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(deadline, run) => outcome.ok(),
            () = cancelled => Some(None),
        };
        drop(writer);
        let finished = match outcome {
            // Ended by itself.
            Some(Some(Some(code))) => {
                let timed_out = matches!(code, 124 | 137)
                    && started.elapsed() + Duration::from_millis(500) >= timeout;
                let exit_code = if timed_out { 124 } else { code };
                Some(ExecEvent::Exit {
                    exit_code,
                    timed_out,
                })
            }
            // The stream ended without a status: the Pod went away.
            Some(Some(None)) => {
                let _ = events
                    .send(Err(RuntimeError::Agent {
                        id: pod.clone(),
                        detail: "the exec stream ended without an exit status (the Pod went away?)"
                            .into(),
                    }))
                    .await;
                None
            }
            // Cancelled by the receiver.
            Some(None) => None,
            // Past the deadline with the Pod silent.
            None => Some(ExecEvent::Exit {
                exit_code: 124,
                timed_out: true,
            }),
        };
        let ended = matches!(
            &finished,
            Some(ExecEvent::Exit {
                timed_out: false,
                ..
            })
        );
        if let Some(event) = finished {
            let _ = events.send(Ok(event)).await;
        }
        process.abort();
        let cleanup = kill_tree_argv(&pidfile);
        let cleanup = if ended {
            // Only the pid file is left; no process to kill.
            vec!["rm".into(), "-f".into(), pidfile.clone()]
        } else {
            cleanup
        };
        let _ = capture(&pods, &pod, cleanup, Vec::new(), CLIENT_SLACK, 1024).await;
    });
    Ok(Box::pin(tokio_stream_of(receiver)))
}

/// The receiving end of a channel as a stream.
fn tokio_stream_of<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// The argv of a terminal: `request.command` in the working dir, or a login `/bin/sh` when the
/// image has no such program (as the local runtime does).
pub fn pty_argv(request: &PtyRequest, working_dir: &str) -> Vec<String> {
    let mut argv = Vec::new();
    if !request.env.is_empty() {
        argv.push("env".to_string());
        argv.extend(request.env.iter().map(|(k, v)| format!("{k}={v}")));
    }
    argv.extend([
        "/bin/sh".to_string(),
        "-c".to_string(),
        "cd \"$1\" 2>/dev/null; shift; if [ $# -gt 0 ] && command -v \"$1\" >/dev/null 2>&1; \
         then exec \"$@\"; else exec /bin/sh -l; fi"
            .to_string(),
        "sh".to_string(),
        working_dir.to_string(),
    ]);
    argv.extend(request.command.iter().cloned());
    argv
}

/// Opens a terminal: a tty exec whose input, resizes and output are pumped by one task. Dropping
/// the session's input sender hangs up (the exec stream is closed).
pub async fn open_pty(
    pods: &Api<Pod>,
    pod: &str,
    request: PtyRequest,
    working_dir: &str,
) -> Result<PtySession, RuntimeError> {
    let argv = pty_argv(&request, working_dir);
    let mut process = attach(pods, pod, argv, AttachParams::interactive_tty()).await?;
    let (Some(mut stdin), Some(mut stdout)) = (process.stdin(), process.stdout()) else {
        return Err(RuntimeError::Agent {
            id: pod.to_string(),
            detail: "the tty exec has no stdin or stdout".into(),
        });
    };
    let mut resize = process.terminal_size();
    let status = process.take_status();
    if let Some(resize) = &mut resize {
        let _ = resize
            .send(TerminalSize {
                width: request.cols,
                height: request.rows,
            })
            .await;
    }
    let (input_tx, mut input_rx) = tokio::sync::mpsc::channel::<PtyInput>(64);
    let (output_tx, output_rx) = tokio::sync::mpsc::channel::<PtyOutput>(64);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            tokio::select! {
                input = input_rx.recv() => match input {
                    Some(PtyInput::Data(bytes)) => {
                        if stdin.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                    Some(PtyInput::Resize { cols, rows }) => {
                        if let Some(tx) = &mut resize {
                            let _ = tx.send(TerminalSize { width: cols, height: rows }).await;
                        }
                    }
                    None => {
                        // Hang-up: the user went away. Closing the stream ends the exec.
                        process.abort();
                        return;
                    }
                },
                read = stdout.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if output_tx.send(PtyOutput::Data(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                            process.abort();
                            return;
                        }
                    }
                },
            }
        }
        let code = match status {
            Some(status) => status.await.as_ref().and_then(exit_code),
            None => None,
        };
        let _ = output_tx.send(PtyOutput::Exited(code)).await;
    });
    Ok(PtySession {
        input: input_tx,
        output: output_rx,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn request(command: &str, stdin: &[u8]) -> ExecRequest {
        ExecRequest {
            command: command.into(),
            timeout: Duration::from_secs(30),
            env: BTreeMap::new(),
            working_dir: None,
            stdin: stdin.to_vec(),
        }
    }

    #[test]
    fn argv_runs_the_command_in_its_directory_with_a_timeout() {
        let argv = exec_argv(&request("echo hi", b""), "/work space");
        assert_eq!(&argv[..2], ["/bin/sh", "-c"]);
        assert!(argv[2].contains("timeout -s KILL 30"));
        assert_eq!(argv[3], "cd '/work space' || exit 1\necho hi");
        let mut with_env = request("env", b"abc");
        with_env.env.insert("A".into(), "b c".into());
        let argv = exec_argv(&with_env, "/w");
        assert_eq!(&argv[..2], ["env", "A=b c"]);
        assert!(argv[5].contains("head -c 3 | {\nenv\n}"), "{}", argv[5]);
    }

    #[test]
    fn exit_codes_come_from_the_status_object() {
        let success = Status {
            status: Some("Success".into()),
            ..Default::default()
        };
        assert_eq!(exit_code(&success), Some(0));
        let failure: Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": "7"}]}}))
        .unwrap();
        assert_eq!(exit_code(&failure), Some(7));
    }

    #[test]
    fn pty_argv_falls_back_to_a_login_shell() {
        let argv = pty_argv(
            &PtyRequest {
                command: vec!["/bin/bash".into(), "-l".into()],
                cols: 80,
                rows: 24,
                env: BTreeMap::from([("TERM".into(), "xterm".into())]),
                working_dir: None,
            },
            "/workspace",
        );
        assert_eq!(argv[..2], ["env", "TERM=xterm"]);
        assert!(argv[4].contains("exec /bin/sh -l"));
        assert_eq!(argv[5..], ["sh", "/workspace", "/bin/bash", "-l"]);
    }
}
