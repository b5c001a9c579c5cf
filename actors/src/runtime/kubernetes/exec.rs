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

/// The variable that marks every process of a streamed exec (see [`kill_marked_argv`]).
const MARKER_VARIABLE: &str = "AGENTTIER_EXEC_ID";

/// The argv that runs `request` in `working_dir`: `env` for the extra variables, `timeout` when
/// the image has it, stdin through `head -c`. With `marker` (every exec of [`run`] and
/// [`stream`] has one), the command and everything it starts carry `AGENTTIER_EXEC_ID=<marker>`
/// in their environment, so a cancel or a timeout can find them all, even the ones orphaned when
/// their parent died.
pub fn exec_argv(request: &ExecRequest, working_dir: &str, marker: Option<&str>) -> Vec<String> {
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
    let mark = marker
        .map(|m| format!("export {MARKER_VARIABLE}={}; ", sh_quote(m)))
        .unwrap_or_default();
    let wrapper = format!(
        "{mark}if command -v timeout >/dev/null 2>&1; then exec timeout -s KILL {seconds} /bin/sh -c \"$0\"; \
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

/// Runs a command and collects its output; a command that times out is killed with everything
/// it started.
pub async fn run(
    pods: &Api<Pod>,
    pod: &str,
    request: ExecRequest,
    working_dir: &str,
) -> Result<ExecOutput, RuntimeError> {
    let started = Instant::now();
    let timeout = request.timeout;
    let marker = crate::store::new_uid();
    let argv = exec_argv(&request, working_dir, Some(&marker));
    // What the in-Pod `timeout` left behind (it kills only its child) goes with a second exec.
    let kill_leftovers = || async {
        let cleanup = kill_marked_argv(&marker);
        let _ = capture(pods, pod, cleanup, Vec::new(), CLIENT_SLACK, 1024).await;
    };
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
        kill_leftovers().await;
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
        kill_leftovers().await;
    }
    Ok(ExecOutput {
        stdout: String::from_utf8_lossy(&captured.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&captured.stderr).into_owned(),
        exit_code: code,
        timed_out,
        truncated: captured.truncated,
    })
}

/// Kills every process whose environment carries the exec's marker: the command's whole tree,
/// including what its parent's death orphaned (`timeout -s KILL` kills only its child, and the
/// rest is reparented, out of reach of a walk down from the top pid, still holding the exec's
/// output open). Scans again while it finds any, for processes forked during a scan.
fn kill_marked_argv(marker: &str) -> Vec<String> {
    let wanted = sh_quote(&format!("{MARKER_VARIABLE}={marker}"));
    let script = format!(
        "for round in 1 2 3 4 5 6 7 8; do found=; \
         for p in /proc/[0-9]*; do \
         if grep -q {wanted} \"$p/environ\" 2>/dev/null; then found=1; kill -KILL \"${{p#/proc/}}\" 2>/dev/null; fi; \
         done; [ -n \"$found\" ] || break; done"
    );
    vec!["/bin/sh".into(), "-c".into(), script]
}

/// Starts a command and streams its output from a task that owns the exec. When the stream is
/// dropped before the exit (a cancel), or the timeout passes, the task kills every process of
/// the command with a second exec: closing a v4 exec stream does not end the process, and a
/// timed-out command's orphans would keep its output (and so the exec) open.
pub async fn stream(
    pods: Api<Pod>,
    pod: String,
    request: ExecRequest,
    working_dir: &str,
) -> Result<ExecStream, RuntimeError> {
    let marker = crate::store::new_uid();
    let deadline = request.timeout;
    let argv = exec_argv(&request, working_dir, Some(&marker));
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
            // Past the timeout (the in-Pod `timeout` may have killed the top process, but
            // not what it started).
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
        process.abort();
        if !ended {
            // Killed before the exit event goes out, so a client that hears "timeout" finds
            // the command gone.
            let cleanup = kill_marked_argv(&marker);
            let _ = capture(&pods, &pod, cleanup, Vec::new(), CLIENT_SLACK, 1024).await;
        }
        if let Some(event) = finished {
            let _ = events.send(Ok(event)).await;
        }
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
        let argv = exec_argv(&request("echo hi", b""), "/work space", None);
        assert_eq!(&argv[..2], ["/bin/sh", "-c"]);
        assert!(argv[2].contains("timeout -s KILL 30"));
        assert_eq!(argv[3], "cd '/work space' || exit 1\necho hi");
        let mut with_env = request("env", b"abc");
        with_env.env.insert("A".into(), "b c".into());
        let argv = exec_argv(&with_env, "/w", None);
        assert_eq!(&argv[..2], ["env", "A=b c"]);
        assert!(argv[5].contains("head -c 3 | {\nenv\n}"), "{}", argv[5]);
    }

    #[test]
    fn streamed_commands_are_marked_and_killed_by_their_mark() {
        let argv = exec_argv(&request("sleep 9", b""), "/w", Some("m-1"));
        assert!(
            argv[2].starts_with("export AGENTTIER_EXEC_ID='m-1'; "),
            "{}",
            argv[2]
        );
        let kill = kill_marked_argv("m-1");
        assert_eq!(kill[..2], ["/bin/sh", "-c"]);
        assert!(
            kill[2].contains("grep -q 'AGENTTIER_EXEC_ID=m-1' \"$p/environ\""),
            "{}",
            kill[2]
        );
        assert!(kill[2].contains("kill -KILL"), "{}", kill[2]);
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
