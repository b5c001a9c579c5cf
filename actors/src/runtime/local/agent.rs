//! The in-sandbox agent: the sandbox's first process (under bubblewrap's init), started as
//! `agenttier __agent --listen-fd <n> --workdir <dir>`. It installs the seccomp filter, serves the
//! [protocol](super::protocol) on the listening socket the host created and passed down, and
//! reports readiness by writing `ready\n` to stdout (never writing there again). Its stderr is the
//! sandbox's `agent.log`. It stays small: one current-thread tokio runtime, no logging framework.
//! Besides exec it serves PTYs ([`super::serve_pty`]), files ([`super::serve_files`]), archives
//! ([`super::zip_stream`], [`super::unpack`]) and port relays ([`super::serve_port`]), each on its own connection.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::runtime::EXEC_OUTPUT_CAP;

use super::protocol::{Request, Response, read_frame, write_frame};
use super::{seccomp, serve_exec, serve_files, serve_port, serve_pty, spawn, unpack, zip_stream};

/// How long output is still collected after a command's main process exited (or was killed), for
/// background processes that keep its pipes open; they keep running, their later output is lost.
pub(super) const DRAIN_GRACE: Duration = Duration::from_millis(100);
/// Exit code reported for a command killed at its timeout (as `timeout(1)` does).
pub(super) const TIMEOUT_EXIT: i32 = 124;

/// Where the agent serves and how.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Options {
    /// An inherited listening socket (what the local runtime passes).
    listen_fd: Option<i32>,
    /// A socket path to bind instead (for running the agent by hand).
    socket: Option<String>,
    /// Default working directory of exec.
    workdir: Option<String>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Self::default();
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let mut value = || {
                args.next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--listen-fd" => {
                    let v = value()?;
                    options.listen_fd = Some(v.parse().map_err(|_| format!("bad fd {v:?}"))?);
                }
                "--socket" => options.socket = Some(value()?),
                "--workdir" => options.workdir = Some(value()?),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if options.listen_fd.is_none() == options.socket.is_none() {
            return Err("exactly one of --listen-fd and --socket is required".to_owned());
        }
        Ok(options)
    }

    fn listener(&self) -> std::io::Result<std::os::unix::net::UnixListener> {
        let listener = match (self.listen_fd, &self.socket) {
            (Some(fd), _) => std::os::unix::net::UnixListener::from(spawn::take_inherited_fd(fd)?),
            (None, Some(path)) => {
                let _ = std::fs::remove_file(path);
                std::os::unix::net::UnixListener::bind(path)?
            }
            (None, None) => {
                return Err(std::io::Error::other("no socket to serve on"));
            }
        };
        listener.set_nonblocking(true)?;
        Ok(listener)
    }
}

/// Runs the agent with the arguments that follow `__agent`; returns only on a fatal error.
pub fn main(args: Vec<String>) -> ExitCode {
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agenttier agent: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let options = Options::parse(args)?;
    // Before anything else, and before any thread exists, so everything inherits it.
    seccomp::install().map_err(|e| format!("installing the seccomp filter: {e}"))?;
    let listener = options.listener().map_err(|e| format!("socket: {e}"))?;
    let workdir = match &options.workdir {
        Some(dir) => {
            if let Err(e) = std::env::set_current_dir(dir) {
                eprintln!("agenttier agent: working directory {dir}: {e}");
            }
            dir.clone()
        }
        None => std::env::current_dir()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "/".to_owned()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = UnixListener::from_std(listener).map_err(|e| format!("socket: {e}"))?;
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(b"ready\n")
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("reporting ready: {e}"))?;
        drop(stdout);
        serve(listener, workdir).await;
        Ok(())
    })
}

async fn serve(listener: UnixListener, workdir: String) {
    let workdir: std::sync::Arc<str> = workdir.into();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle(stream, workdir.clone()));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("agenttier agent: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle(mut stream: UnixStream, workdir: std::sync::Arc<str>) {
    let request = match read_frame::<_, Request>(&mut stream).await {
        Ok(Some(request)) => request,
        Ok(None) => return,
        Err(e) => {
            let _ = write_frame(
                &mut stream,
                &Response::Error {
                    message: e.to_string(),
                },
            )
            .await;
            return;
        }
    };
    let response = match request {
        Request::Ping => Response::Pong {
            pid: std::process::id(),
        },
        Request::OpenPty {
            command,
            cols,
            rows,
            env,
            working_dir,
        } => {
            let dir = working_dir.unwrap_or_else(|| workdir.to_string());
            let options = serve_pty::PtyOptions {
                command,
                cols,
                rows,
                env,
                dir,
            };
            return serve_pty::serve(stream, options).await;
        }
        Request::ListDir { path } => serve_files::list_dir(path).await,
        Request::ReadFile { path, max_bytes } => {
            return serve_files::read_file(stream, path, max_bytes).await;
        }
        Request::WriteFile { path, max_bytes } => {
            return serve_files::write_file(stream, path, max_bytes).await;
        }
        Request::Archive { path, root } => {
            return zip_stream::send_archive(stream, path, root).await;
        }
        Request::Unpack {
            dir,
            format,
            max_bytes,
        } => return unpack::receive_unpack(stream, dir, format, max_bytes).await,
        Request::ConnectPort { port } => return serve_port::relay(stream, port).await,
        Request::ExecStream {
            command,
            timeout_ms,
            env,
            working_dir,
            stdin,
        } => {
            let options = serve_exec::StreamOptions {
                command,
                timeout: Duration::from_millis(timeout_ms),
                env,
                dir: working_dir.unwrap_or_else(|| workdir.to_string()),
                stdin,
            };
            return serve_exec::serve(stream, options).await;
        }
        Request::Exec {
            command,
            timeout_ms,
            env,
            working_dir,
            stdin,
        } => {
            let dir = working_dir.as_deref().unwrap_or(&workdir);
            exec(
                &command,
                Duration::from_millis(timeout_ms),
                &env,
                dir,
                stdin,
            )
            .await
        }
    };
    if let Err(e) = write_frame(&mut stream, &response).await {
        eprintln!("agenttier agent: replying: {e}");
    }
}

/// Output of one stream, kept up to the cap; the rest is read and dropped so the command never
/// blocks on a full pipe.
#[derive(Default)]
struct Capture {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Capture {
    fn push(&mut self, chunk: &[u8]) {
        let room = EXEC_OUTPUT_CAP.saturating_sub(self.bytes.len());
        if chunk.len() > room {
            self.truncated = true;
        }
        self.bytes
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    /// The output as lossy UTF-8, still within the cap (replacement characters can grow it).
    fn into_string(self) -> (String, bool) {
        let mut s = String::from_utf8_lossy(&self.bytes).into_owned();
        let mut truncated = self.truncated;
        if s.len() > EXEC_OUTPUT_CAP {
            let mut end = EXEC_OUTPUT_CAP;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            truncated = true;
        }
        (s, truncated)
    }
}

async fn drain(pipe: Option<impl AsyncRead + Unpin>, capture: &mut Capture) {
    let Some(mut pipe) = pipe else { return };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => capture.push(&buf[..n]),
        }
    }
}

/// Starts `/bin/sh -c command` in its own process group with piped output (and stdin when
/// there is input). A failure is answered like a shell would: exit 127 when something is
/// missing (the directory, /bin/sh), else 126, with the reason as stderr.
pub(super) fn spawn_command(
    command: &str,
    env: &BTreeMap<String, String>,
    dir: &str,
    piped_stdin: bool,
) -> Result<tokio::process::Child, (i32, String)> {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(dir)
        .envs(env)
        .stdin(if piped_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    spawn::raise_oom_score_adj(&mut cmd);
    cmd.spawn().map_err(|e| {
        let exit_code = if e.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        };
        (
            exit_code,
            format!("agenttier: cannot run the command in {dir}: {e}\n"),
        )
    })
}

/// Runs `/bin/sh -c command` in its own process group; on timeout the whole group is killed.
async fn exec(
    command: &str,
    timeout: Duration,
    env: &BTreeMap<String, String>,
    dir: &str,
    stdin: Vec<u8>,
) -> Response {
    let mut child = match spawn_command(command, env, dir, !stdin.is_empty()) {
        Ok(child) => child,
        Err((exit_code, stderr)) => {
            return Response::ExecResult {
                stdout: String::new(),
                stderr,
                exit_code,
                timed_out: false,
                truncated: false,
            };
        }
    };
    let pgid = child.id().and_then(|id| i32::try_from(id).ok());
    let (stdout, stderr, stdin_pipe) =
        (child.stdout.take(), child.stderr.take(), child.stdin.take());
    let deadline = tokio::time::Instant::now() + timeout;
    let mut out = Capture::default();
    let mut err = Capture::default();

    let status = {
        let io = async {
            let feed = async {
                if let Some(mut pipe) = stdin_pipe {
                    // A command that does not read its input closes the pipe: not an error.
                    let _ = pipe.write_all(&stdin).await;
                }
            };
            tokio::join!(drain(stdout, &mut out), drain(stderr, &mut err), feed);
        };
        tokio::pin!(io);
        let mut io_done = false;
        let exited = loop {
            tokio::select! {
                () = &mut io, if !io_done => io_done = true,
                status = child.wait() => break Some(status),
                () = tokio::time::sleep_until(deadline) => break None,
            }
        };
        let status = match exited {
            Some(status) => status.map(Some),
            None => {
                if let Some(pgid) = pgid {
                    let _ = spawn::kill_group(pgid, libc::SIGKILL);
                }
                child.wait().await.map(|_| None)
            }
        };
        if !io_done {
            let _ = tokio::time::timeout(DRAIN_GRACE, &mut io).await;
        }
        status
    };

    let (exit_code, timed_out) = match status {
        Ok(Some(status)) => (
            status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(-1),
            false,
        ),
        Ok(None) => (TIMEOUT_EXIT, true),
        Err(e) => {
            return Response::Error {
                message: format!("waiting for the command: {e}"),
            };
        }
    };
    let (stdout, out_truncated) = out.into_string();
    let (stderr, err_truncated) = err.into_string();
    Response::ExecResult {
        stdout,
        stderr,
        exit_code,
        timed_out,
        truncated: out_truncated || err_truncated,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_arguments() {
        let o = Options::parse(&args(&["--listen-fd", "5", "--workdir", "/w"])).unwrap();
        assert_eq!(o.listen_fd, Some(5));
        assert_eq!(o.workdir.as_deref(), Some("/w"));
        assert!(Options::parse(&args(&[])).is_err());
        assert!(Options::parse(&args(&["--listen-fd"])).is_err());
        assert!(Options::parse(&args(&["--listen-fd", "x"])).is_err());
        assert!(Options::parse(&args(&["--socket", "/s", "--listen-fd", "3"])).is_err());
        assert!(Options::parse(&args(&["--bogus"])).is_err());
    }

    #[test]
    fn capture_keeps_the_cap_and_flags_the_rest() {
        let mut c = Capture::default();
        c.push(&vec![b'a'; EXEC_OUTPUT_CAP - 1]);
        c.push(b"bc");
        let (s, truncated) = c.into_string();
        assert_eq!(s.len(), EXEC_OUTPUT_CAP);
        assert!(truncated);
        let mut bin = Capture::default();
        bin.push(&vec![0xff; EXEC_OUTPUT_CAP]);
        let (s, truncated) = bin.into_string();
        assert!(
            s.len() <= EXEC_OUTPUT_CAP && truncated,
            "replacement chars stay within the cap"
        );
    }

    async fn run_exec(command: &str, timeout_ms: u64, stdin: &[u8]) -> Response {
        exec(
            command,
            Duration::from_millis(timeout_ms),
            &BTreeMap::new(),
            "/",
            stdin.to_vec(),
        )
        .await
    }

    #[tokio::test]
    async fn exec_captures_output_status_and_stdin() {
        let r = run_exec("cat; echo err >&2; exit 3", 10_000, b"in").await;
        assert_eq!(
            r,
            Response::ExecResult {
                stdout: "in".into(),
                stderr: "err\n".into(),
                exit_code: 3,
                timed_out: false,
                truncated: false
            }
        );
        let r = run_exec("kill -TERM $$", 10_000, b"").await;
        assert!(
            matches!(r, Response::ExecResult { exit_code: 143, .. }),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn exec_timeout_kills_the_process_group() {
        let started = std::time::Instant::now();
        let r = run_exec("sleep 100 & sleep 100; echo never", 300, b"").await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            matches!(&r, Response::ExecResult { exit_code: 124, timed_out: true, stdout, .. } if stdout.is_empty()),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn exec_keeps_draining_past_the_cap() {
        let r = run_exec("head -c 3000000 /dev/zero | tr '\\0' x", 20_000, b"").await;
        match r {
            Response::ExecResult {
                stdout,
                exit_code,
                truncated,
                ..
            } => {
                assert_eq!(exit_code, 0);
                assert!(truncated);
                assert_eq!(stdout.len(), EXEC_OUTPUT_CAP);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn background_processes_do_not_hold_exec() {
        let started = std::time::Instant::now();
        let r = run_exec("sleep 5 & echo started", 10_000, b"").await;
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(
            matches!(&r, Response::ExecResult { stdout, exit_code: 0, .. } if stdout == "started\n")
        );
    }

    #[tokio::test]
    async fn missing_working_dir_is_a_failed_command() {
        let r = exec(
            "true",
            Duration::from_secs(5),
            &BTreeMap::new(),
            "/nonexistent",
            Vec::new(),
        )
        .await;
        assert!(
            matches!(r, Response::ExecResult { exit_code: 127, .. }),
            "{r:?}"
        );
    }
}
