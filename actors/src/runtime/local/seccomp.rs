//! The seccomp filter the agent installs on itself before serving, so every process of the sandbox
//! (all are forked from the agent) inherits it: everything is allowed except syscalls that
//! reconfigure the kernel, mounts, namespaces, tracing and other processes' memory, which fail
//! with `EPERM`. Namespaces, dropped capabilities and no_new_privs come from bubblewrap; this
//! filter narrows the kernel surface that is left.

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, SeccompRule, TargetArch};

/// Syscalls denied with `EPERM`, by name (for tests and logs) and number.
pub fn denied_syscalls() -> Vec<(&'static str, i64)> {
    let mut list: Vec<(&'static str, i64)> = vec![
        ("mount", libc::SYS_mount),
        ("umount2", libc::SYS_umount2),
        ("pivot_root", libc::SYS_pivot_root),
        ("swapon", libc::SYS_swapon),
        ("swapoff", libc::SYS_swapoff),
        ("reboot", libc::SYS_reboot),
        ("kexec_load", libc::SYS_kexec_load),
        ("kexec_file_load", libc::SYS_kexec_file_load),
        ("init_module", libc::SYS_init_module),
        ("finit_module", libc::SYS_finit_module),
        ("delete_module", libc::SYS_delete_module),
        ("bpf", libc::SYS_bpf),
        ("perf_event_open", libc::SYS_perf_event_open),
        ("keyctl", libc::SYS_keyctl),
        ("add_key", libc::SYS_add_key),
        ("request_key", libc::SYS_request_key),
        ("userfaultfd", libc::SYS_userfaultfd),
        ("open_by_handle_at", libc::SYS_open_by_handle_at),
        ("name_to_handle_at", libc::SYS_name_to_handle_at),
        ("setns", libc::SYS_setns),
        ("unshare", libc::SYS_unshare),
        ("ptrace", libc::SYS_ptrace),
        ("acct", libc::SYS_acct),
        ("quotactl", libc::SYS_quotactl),
        ("syslog", libc::SYS_syslog),
        ("clock_settime", libc::SYS_clock_settime),
        ("settimeofday", libc::SYS_settimeofday),
        ("lookup_dcookie", libc::SYS_lookup_dcookie),
        ("fanotify_init", libc::SYS_fanotify_init),
        ("process_vm_readv", libc::SYS_process_vm_readv),
        ("process_vm_writev", libc::SYS_process_vm_writev),
    ];
    #[cfg(target_arch = "x86_64")]
    list.extend([("iopl", libc::SYS_iopl), ("ioperm", libc::SYS_ioperm)]);
    list
}

/// Compiles the filter for the architecture this binary runs on.
pub fn filter() -> Result<BpfProgram, seccompiler::Error> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (_, nr) in denied_syscalls() {
        // An empty rule list matches the syscall whatever its arguments.
        rules.insert(nr, Vec::new());
        // x32-ABI numbers carry this bit on x86_64 and pass the filter's arch check; deny them
        // too on kernels built with x32 support.
        #[cfg(target_arch = "x86_64")]
        rules.insert(nr | X32_SYSCALL_BIT, Vec::new());
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )?;
    Ok(BpfProgram::try_from(filter)?)
}

#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: i64 = 0x4000_0000;

/// Installs the filter on the calling thread (and sets no_new_privs, which bubblewrap has already
/// set). Call before any other thread exists so every later thread and child inherits it.
pub fn install() -> Result<(), seccompiler::Error> {
    let program = filter()?;
    seccompiler::apply_filter(&program)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn filter_compiles() {
        let program = filter().unwrap();
        assert!(!program.is_empty());
    }

    #[test]
    fn deny_list_covers_the_dangerous_syscalls() {
        let names: Vec<&str> = denied_syscalls().iter().map(|(n, _)| *n).collect();
        for required in [
            "mount",
            "unshare",
            "setns",
            "ptrace",
            "bpf",
            "kexec_load",
            "keyctl",
        ] {
            assert!(names.contains(&required), "{required}");
        }
        let mut numbers: Vec<i64> = denied_syscalls().iter().map(|(_, nr)| *nr).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), names.len(), "no duplicate numbers");
    }

    #[test]
    fn children_of_a_filtered_thread_are_filtered() {
        // seccomp applies per thread and is inherited by children, so installing it on a helper
        // thread leaves the test process itself unfiltered.
        let status = std::thread::spawn(|| {
            install().unwrap();
            std::process::Command::new("/bin/sh")
                .args(["-c", "grep '^Seccomp:' /proc/self/status"])
                .output()
                .unwrap()
        })
        .join()
        .unwrap();
        let stdout = String::from_utf8_lossy(&status.stdout);
        assert_eq!(
            stdout.split_whitespace().collect::<Vec<_>>(),
            ["Seccomp:", "2"]
        );
    }
}
