//! PTYs inside the sandbox: the agent opens a pseudo-terminal pair, starts the shell on its
//! secondary side as the leader of a new session with the terminal as its controlling terminal
//! (so Ctrl-C, job control and `SIGWINCH` work), and keeps the primary side as an async reader and
//! writer.
//!
//! Everything here is safe `rustix` calls except two: making the terminal the shell's controlling
//! terminal has to happen in the forked child between `fork` and `exec` (`setsid` and
//! `TIOCSCTTY`), and registering such a hook (`CommandExt::pre_exec`) is `unsafe` in std because
//! the hook must only make async-signal-safe calls; and handing the PTY's descriptor to tokio's
//! reactor (`AsyncFd::register_with_interest`) is `unsafe` because tokio cannot check that the
//! descriptor stays open while registered. That is why this module allows unsafe code.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::Stdio;

use rustix::pty::OpenptFlags;
use rustix::termios::{InputModes, OptionalActions, Winsize};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::spawn;

/// The shell started when the requested one does not exist in the sandbox.
pub const FALLBACK_SHELL: &[&str] = &["/bin/sh", "-l"];

/// The primary side of a PTY, readable and writable from async code.
pub struct PtyPrimary {
    fd: AsyncFd<OwnedFd>,
}

/// Opens a PTY pair sized `cols`×`rows` with UTF-8 input handling on; returns the primary side
/// (non-blocking) and the secondary side (blocking, for the shell's stdio).
pub fn open(cols: u16, rows: u16) -> io::Result<(PtyPrimary, OwnedFd)> {
    let primary =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&primary)?;
    rustix::pty::unlockpt(&primary)?;
    // TIOCGPTPEER opens the peer through the primary, without looking its name up in /dev/pts
    // (which can differ inside a mount namespace); older kernels fall back to the name.
    let secondary = match rustix::pty::ioctl_tiocgptpeer(
        &primary,
        OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC,
    ) {
        Ok(fd) => fd,
        Err(_) => {
            use std::os::unix::ffi::OsStrExt;
            use std::os::unix::fs::OpenOptionsExt;
            let name = rustix::pty::ptsname(&primary, Vec::new())?;
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOCTTY)
                .open(std::ffi::OsStr::from_bytes(name.as_bytes()))?;
            OwnedFd::from(file)
        }
    };
    if let Ok(mut termios) = rustix::termios::tcgetattr(&secondary) {
        termios.input_modes.insert(InputModes::IUTF8);
        let _ = rustix::termios::tcsetattr(&secondary, OptionalActions::Now, &termios);
    }
    set_size(&primary, cols, rows)?;
    let flags = rustix::fs::fcntl_getfl(&primary)?;
    rustix::fs::fcntl_setfl(&primary, flags | rustix::fs::OFlags::NONBLOCK)?;
    // SAFETY: `primary` is an open descriptor that the `AsyncFd` owns from here on (an
    // `OwnedFd` always returns the same number and is only closed when dropped), which is what
    // registering it with the reactor requires.
    let fd = unsafe {
        AsyncFd::register_with_interest(primary, Interest::READABLE | Interest::WRITABLE)
    }
    .map_err(io::Error::from)?;
    Ok((PtyPrimary { fd }, secondary))
}

fn set_size(fd: impl AsFd, cols: u16, rows: u16) -> io::Result<()> {
    rustix::termios::tcsetwinsize(
        fd,
        Winsize {
            ws_row: rows.max(1),
            ws_col: cols.max(1),
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )?;
    Ok(())
}

/// Starts `command` on the secondary side of a PTY, in `dir`, with the agent's environment plus
/// `env`, as the leader of a new session whose controlling terminal is the PTY. A program that
/// does not exist falls back to [`FALLBACK_SHELL`].
pub fn spawn_shell(
    command: &[String],
    secondary: &OwnedFd,
    env: &BTreeMap<String, String>,
    dir: &str,
) -> io::Result<tokio::process::Child> {
    let first = spawn_on(command, secondary, env, dir);
    match first {
        Err(e) if e.kind() == io::ErrorKind::NotFound || command.is_empty() => {
            let fallback: Vec<String> = FALLBACK_SHELL.iter().map(|s| (*s).to_owned()).collect();
            spawn_on(&fallback, secondary, env, dir)
        }
        other => other,
    }
}

fn spawn_on(
    command: &[String],
    secondary: &OwnedFd,
    env: &BTreeMap<String, String>,
    dir: &str,
) -> io::Result<tokio::process::Child> {
    let Some((program, args)) = command.split_first() else {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no shell given"));
    };
    let stdio = || -> io::Result<Stdio> { Ok(Stdio::from(secondary.try_clone()?)) };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(env)
        .current_dir(dir)
        .stdin(stdio()?)
        .stdout(stdio()?)
        .stderr(stdio()?)
        .kill_on_drop(false);
    spawn::raise_oom_score_adj(&mut cmd);
    // SAFETY: the hook runs in the forked child after std has set up stdio (fd 0 is the PTY's
    // secondary side) and before exec. It only makes two raw syscalls through rustix (setsid,
    // ioctl TIOCSCTTY), which are async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid()?;
            let stdin = BorrowedFd::borrow_raw(0);
            rustix::process::ioctl_tiocsctty(stdin)?;
            Ok(())
        });
    }
    cmd.spawn()
}

impl PtyPrimary {
    /// Reads what the programs on the terminal wrote, waiting until something is there, then
    /// taking whatever else is already buffered (up to `buf.len()`) so a fast producer yields
    /// big chunks. `Ok(0)` means the terminal is closed: every program let go of it.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| read_some(fd.get_ref(), buf)) {
                Ok(result) => break result?,
                Err(_would_block) => continue,
            }
        };
        if filled == 0 {
            return Ok(0);
        }
        while filled < buf.len() {
            match read_some(self.fd.get_ref(), &mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(_) => break,
            }
        }
        Ok(filled)
    }

    /// Writes all of `data` (keystrokes) to the terminal.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| rustix::io::write(fd.get_ref(), data).map_err(io::Error::from))
            {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Sets the window size; the kernel sends `SIGWINCH` to the foreground process group.
    pub fn resize(&self, cols: u16, rows: u16) -> io::Result<()> {
        set_size(self.fd.get_ref(), cols, rows)
    }
}

/// One `read(2)`; `EIO` (the secondary side is closed everywhere) reads as end of file.
fn read_some(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    match rustix::io::read(fd, buf) {
        Ok(n) => Ok(n),
        Err(rustix::io::Errno::IO) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn read_until(primary: &PtyPrimary, needle: &str) -> String {
        let mut seen = String::new();
        let mut buf = vec![0u8; 4096];
        let deadline = std::time::Duration::from_secs(10);
        tokio::time::timeout(deadline, async {
            while !seen.contains(needle) {
                let n = primary.read(&mut buf).await.unwrap();
                assert!(n > 0, "terminal closed before {needle:?}; saw {seen:?}");
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {needle:?} in {seen:?}"));
        seen
    }

    #[tokio::test]
    async fn shell_on_a_pty_sees_a_terminal_and_its_size() {
        let (primary, secondary) = open(91, 17).unwrap();
        let command = vec!["/bin/sh".to_owned()];
        let mut child = spawn_shell(&command, &secondary, &BTreeMap::new(), "/").unwrap();
        drop(secondary);
        // Expected output is computed by the shell, so the terminal's echo of the command line
        // cannot match it.
        primary
            .write_all(b"stty size | tr ' ' x; tty >/dev/null && echo IS-$((1+1))-TTY; exit 3\n")
            .await
            .unwrap();
        // One read can carry both answers, so both are looked for in the same output.
        let seen = read_until(&primary, "IS-2-TTY").await;
        assert!(seen.contains("17x91"), "stty size: {seen:?}");
        let status = child.wait().await.unwrap();
        assert_eq!(status.code(), Some(3));
    }

    #[tokio::test]
    async fn ctrl_c_interrupts_the_foreground_job_and_resize_is_seen() {
        let (primary, secondary) = open(80, 24).unwrap();
        let command = vec!["/bin/sh".to_owned()];
        let mut child = spawn_shell(&command, &secondary, &BTreeMap::new(), "/").unwrap();
        drop(secondary);
        primary.write_all(b"sleep 30\n").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        primary.write_all(b"\x03").await.unwrap();
        primary.write_all(b"echo AFTER-$?-X\n").await.unwrap();
        read_until(&primary, "AFTER-130-X").await;
        primary.resize(100, 30).unwrap();
        primary.write_all(b"stty size | tr ' ' x\n").await.unwrap();
        read_until(&primary, "30x100").await;
        primary.write_all(b"exit\n").await.unwrap();
        child.wait().await.unwrap();
    }

    #[tokio::test]
    async fn a_missing_shell_falls_back_to_sh() {
        let (primary, secondary) = open(80, 24).unwrap();
        let command = vec!["/nonexistent/shell".to_owned(), "-l".to_owned()];
        let mut child = spawn_shell(&command, &secondary, &BTreeMap::new(), "/").unwrap();
        drop(secondary);
        primary
            .write_all(b"echo FALLBACK-OK; exit\n")
            .await
            .unwrap();
        read_until(&primary, "FALLBACK-OK").await;
        child.wait().await.unwrap();
    }
}
