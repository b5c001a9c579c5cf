//! Starting bubblewrap as the sandbox user inside the sandbox's cgroups, signalling processes, and
//! taking over inherited file descriptors.
//!
//! This is the only module of the local runtime with unsafe code, because these need raw libc
//! calls: a `pre_exec` hook (which runs in the forked child, where only async-signal-safe calls
//! are allowed), `kill(2)`, and adopting a file descriptor number passed on the command line.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::Stdio;

/// `oom_score_adj` of a sandbox's own processes (bubblewrap and the agent), set when the server
/// may lower it (`CAP_SYS_RESOURCE`): the kernel's OOM killer then picks them last.
pub const INFRA_OOM_SCORE_ADJ: i32 = -900;
/// `oom_score_adj` of every command the agent runs (raising it needs no privilege): a command
/// that exhausts the sandbox's memory is killed rather than the agent, whose death would end the
/// sandbox, and on a host short of memory sandbox commands go before host services.
pub const COMMAND_OOM_SCORE_ADJ: i32 = 500;

/// How to start one sandbox's bubblewrap.
#[derive(Debug)]
pub struct BwrapCommand {
    /// Absolute path of `bwrap`.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Host uid the sandbox runs as.
    pub uid: u32,
    /// Host gid the sandbox runs as.
    pub gid: u32,
    /// Open `cgroup.procs` files the child joins before exec.
    pub cgroup_procs: Vec<File>,
    /// Descriptors the child keeps across exec (the info pipe, the agent's listening socket);
    /// they must stay open until `spawn` returns.
    pub inherit: Vec<RawFd>,
    /// Where bubblewrap's and the agent's stderr go.
    pub stderr: File,
}

/// Spawns bubblewrap: inside its cgroups (so nothing it forks can escape them), with a lowered
/// `oom_score_adj`, in a new session (no controlling terminal, so it outlives the server's
/// terminal), then as the sandbox uid/gid with no supplementary groups; stdout is piped for the
/// readiness line.
pub fn spawn(cmd: BwrapCommand) -> io::Result<tokio::process::Child> {
    let procs: Vec<RawFd> = cmd.cgroup_procs.iter().map(AsRawFd::as_raw_fd).collect();
    let inherit = cmd.inherit.clone();
    let oom_score_adj = INFRA_OOM_SCORE_ADJ.to_string().into_bytes();
    let (uid, gid) = (cmd.uid, cmd.gid);
    let mut command = tokio::process::Command::new(&cmd.program);
    command
        .args(&cmd.args)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(cmd.stderr)
        .kill_on_drop(false);
    // SAFETY: the hook runs in the forked child before exec and only makes async-signal-safe
    // calls (write, open, close, setsid, close_range, fcntl, setgroups, setgid, setuid) on values
    // captured by value; it allocates nothing. The privileged steps (joining cgroups, lowering
    // oom_score_adj) come before dropping to the sandbox uid, which is why the uid/gid switch is
    // done here rather than with `Command::uid`, which std applies before this hook.
    unsafe {
        command.pre_exec(move || {
            for &fd in &procs {
                // "0" moves the writing process into the cgroup.
                if libc::write(fd, b"0".as_ptr().cast(), 1) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // Best effort: needs CAP_SYS_RESOURCE; commands are raised above it either way.
            write_proc_self(c"/proc/self/oom_score_adj", &oom_score_adj);
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            // Descriptors the server itself inherited without close-on-exec must not reach the
            // sandbox: mark everything above stdio close-on-exec (best effort, Linux 5.11+),
            // then open up exactly the ones the sandbox needs.
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
            );
            for &fd in &inherit {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::setgroups(0, std::ptr::null()) < 0
                || libc::setgid(gid) < 0
                || libc::setuid(uid) < 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn();
    // The cgroup files are only needed by the child.
    drop(cmd.cgroup_procs);
    child
}

/// Makes commands started by `command` run with [`COMMAND_OOM_SCORE_ADJ`].
pub fn raise_oom_score_adj(command: &mut tokio::process::Command) {
    let value = COMMAND_OOM_SCORE_ADJ.to_string().into_bytes();
    // SAFETY: runs in the forked child before exec; open, write and close are
    // async-signal-safe and nothing is allocated.
    unsafe {
        command.pre_exec(move || {
            write_proc_self(c"/proc/self/oom_score_adj", &value);
            Ok(())
        });
    }
}

/// Writes `value` to a file under `/proc/self`, ignoring failure. Async-signal-safe.
///
/// # Safety
/// Only makes raw open/write/close calls; callable between fork and exec.
unsafe fn write_proc_self(path: &std::ffi::CStr, value: &[u8]) {
    // SAFETY: path is NUL-terminated; value is a valid buffer of its length.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            libc::write(fd, value.as_ptr().cast(), value.len());
            libc::close(fd);
        }
    }
}

/// Sends `signal` to one process. Refuses pids that address groups or everything (`<= 0`).
pub fn kill(pid: i32, signal: i32) -> io::Result<()> {
    if pid <= 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal pid {pid}"),
        ));
    }
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, signal) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `signal` to every process of a process group. Refuses groups 0 and 1 (the caller's own
/// group and init's).
pub fn kill_group(pgid: i32, signal: i32) -> io::Result<()> {
    if pgid <= 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal process group {pgid}"),
        ));
    }
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(-pgid, signal) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes ownership of a descriptor this process inherited (its number came on the command line)
/// and marks it close-on-exec so commands started later do not inherit it. Call at most once per
/// number.
pub fn take_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    if fd <= 2 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {fd} is stdio"),
        ));
    }
    // SAFETY: fcntl on an arbitrary number only queries it; failure means it is not open.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above), was inherited for this purpose and nothing
    // else in this process owns it: it is taken once, at startup.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: plain fcntl on a descriptor we now own.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(owned)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn refuses_broadcast_signals() {
        assert!(kill(0, 0).is_err());
        assert!(kill(-1, 0).is_err());
        assert!(kill_group(1, 0).is_err());
        assert!(kill_group(0, 0).is_err());
        kill(std::process::id() as i32, 0).unwrap();
    }

    #[test]
    fn take_inherited_fd_rejects_closed_and_stdio() {
        assert!(take_inherited_fd(1).is_err());
        assert!(take_inherited_fd(987_654).is_err());
    }
}
