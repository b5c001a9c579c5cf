//! Per-sandbox cgroups: memory, CPU and process-count limits, and the list of every process a
//! sandbox has (so stop can kill them all). Works on cgroup v2 (one unified hierarchy with the
//! controllers enabled) and on v1 (one hierarchy per controller, as on hybrid systems whose v2
//! has no controllers). Which one is detected once, when the runtime starts.

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::runtime::{Result, RuntimeError};

/// Where cgroup filesystems are mounted.
pub const CGROUP_BASE: &str = "/sys/fs/cgroup";
/// CFS period used with CPU limits, in microseconds (the kernel's default).
pub const CPU_PERIOD_US: u64 = 100_000;
/// Smallest CFS quota the kernel accepts, in microseconds.
const MIN_CPU_QUOTA_US: u64 = 1_000;
/// Process limit when the spec sets none: stops fork bombs, far above what a shell session needs.
pub const DEFAULT_PIDS_LIMIT: u64 = 1024;

/// The limits of one sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Memory limit in bytes; `None` = unlimited.
    pub memory_bytes: Option<u64>,
    /// CPU limit in millicores; `None` = unlimited.
    pub cpu_millis: Option<u64>,
    /// Maximum number of processes.
    pub pids: u64,
}

/// CFS quota for a CPU limit: 1000 millicores is one full period.
pub fn cfs_quota_us(millis: u64) -> u64 {
    (millis.saturating_mul(CPU_PERIOD_US) / 1000).max(MIN_CPU_QUOTA_US)
}

/// The value of v2's `cpu.max`.
pub fn cpu_max(millis: Option<u64>) -> String {
    match millis {
        Some(m) => format!("{} {CPU_PERIOD_US}", cfs_quota_us(m)),
        None => format!("max {CPU_PERIOD_US}"),
    }
}

/// The cgroup support this machine offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupSupport {
    /// A unified hierarchy rooted here, with at least the memory controller available.
    V2 {
        /// The unified hierarchy's mount point.
        root: PathBuf,
    },
    /// Per-controller hierarchies; a missing controller is `None`.
    V1 {
        /// The memory controller's mount point.
        memory: Option<PathBuf>,
        /// The cpu controller's mount point.
        cpu: Option<PathBuf>,
        /// The pids controller's mount point.
        pids: Option<PathBuf>,
    },
    /// No usable cgroups: sandboxes run without limits.
    None,
}

impl CgroupSupport {
    /// Detects support under `/sys/fs/cgroup`.
    pub fn detect() -> Self {
        Self::detect_in(Path::new(CGROUP_BASE))
    }

    /// Detects support under `base`: v2 when a unified hierarchy (at `base` or, on hybrid
    /// systems, `base/unified`) offers the memory controller, else the v1 controllers mounted
    /// at `base/<controller>`.
    pub fn detect_in(base: &Path) -> Self {
        for root in [base.to_path_buf(), base.join("unified")] {
            let controllers =
                std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
            if controllers.split_whitespace().any(|c| c == "memory") {
                return Self::V2 { root };
            }
        }
        let v1 = |name: &str| {
            let dir = base.join(name);
            (dir.join("cgroup.procs").exists() && !dir.join("cgroup.controllers").exists())
                .then_some(dir)
        };
        let (memory, cpu, pids) = (v1("memory"), v1("cpu"), v1("pids"));
        if memory.is_none() && cpu.is_none() && pids.is_none() {
            Self::None
        } else {
            Self::V1 { memory, cpu, pids }
        }
    }

    /// One line for logs.
    pub fn describe(&self) -> String {
        match self {
            Self::V2 { root } => format!("cgroup v2 at {}", root.display()),
            Self::V1 { memory, cpu, pids } => {
                let names: Vec<&str> = [("memory", memory), ("cpu", cpu), ("pids", pids)]
                    .into_iter()
                    .filter_map(|(n, p)| p.as_ref().map(|_| n))
                    .collect();
                format!("cgroup v1 ({})", names.join(", "))
            }
            Self::None => "no cgroups".to_owned(),
        }
    }
}

/// A controller a v1 directory belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Controller {
    Memory,
    Cpu,
    Pids,
    Unified,
}

/// The cgroup directories of one sandbox (whether or not they exist yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxCgroup {
    dirs: Vec<(Controller, PathBuf)>,
}

impl SandboxCgroup {
    /// Where the sandbox `id`'s cgroups are: `<controller>/<parent>/<id>` on v1,
    /// `<root>/<parent>/<id>` on v2, nowhere without cgroups.
    pub fn locate(support: &CgroupSupport, parent: &str, id: &str) -> Self {
        let dirs = match support {
            CgroupSupport::V2 { root } => vec![(Controller::Unified, root.join(parent).join(id))],
            CgroupSupport::V1 { memory, cpu, pids } => [
                (Controller::Memory, memory),
                (Controller::Cpu, cpu),
                (Controller::Pids, pids),
            ]
            .into_iter()
            .filter_map(|(c, mount)| mount.as_ref().map(|m| (c, m.join(parent).join(id))))
            .collect(),
            CgroupSupport::None => Vec::new(),
        };
        Self { dirs }
    }

    /// The directories, for logs and tests.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|(_, d)| d.as_path())
    }

    /// Creates the directories and writes the limits. A memory limit that cannot be applied is
    /// an [`RuntimeError::InvalidSpec`]: running without it would silently break the promise.
    /// CPU and process limits that cannot be applied are logged.
    pub fn create(&self, limits: &Limits) -> Result<()> {
        let has_memory = self
            .dirs
            .iter()
            .any(|(c, _)| matches!(c, Controller::Memory | Controller::Unified));
        if limits.memory_bytes.is_some() && !has_memory {
            return Err(RuntimeError::InvalidSpec(
                "a memory limit was requested but this machine has no memory cgroup controller"
                    .to_owned(),
            ));
        }
        for (controller, dir) in &self.dirs {
            if let Some(parent) = dir.parent() {
                create_dir(parent)?;
                if *controller == Controller::Unified {
                    enable_controllers(parent);
                }
            }
            create_dir(dir)?;
            match controller {
                Controller::Memory => apply_memory_v1(dir, limits.memory_bytes)?,
                Controller::Cpu => soft(dir, apply_cpu_v1(dir, limits.cpu_millis)),
                Controller::Pids => soft(dir, write(dir, "pids.max", &limits.pids.to_string())),
                Controller::Unified => apply_v2(dir, limits)?,
            }
        }
        Ok(())
    }

    /// Opens every `cgroup.procs` for writing, for the spawned child to join.
    pub fn open_procs(&self) -> Result<Vec<File>> {
        self.dirs
            .iter()
            .map(|(_, dir)| {
                let path = dir.join("cgroup.procs");
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| RuntimeError::io(format!("opening {}", path.display()), e))
            })
            .collect()
    }

    /// Every process in any of the sandbox's cgroups.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .dirs
            .iter()
            .filter_map(|(_, dir)| std::fs::read_to_string(dir.join("cgroup.procs")).ok())
            .flat_map(|s| {
                s.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Asks the kernel to kill every process at once where it can (v2's `cgroup.kill`); returns
    /// false when the caller has to signal the processes one by one.
    pub fn kill_all(&self) -> bool {
        let mut done = false;
        for (controller, dir) in &self.dirs {
            if *controller == Controller::Unified && dir.join("cgroup.kill").exists() {
                done = write(dir, "cgroup.kill", "1").is_ok();
            }
        }
        done
    }

    /// Removes the directories; true when none is left. Fails (returns false) while processes
    /// remain in them.
    pub fn remove(&self) -> bool {
        let mut all = true;
        for (_, dir) in &self.dirs {
            match std::fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::debug!(dir = %dir.display(), error = %e, "cgroup not removed yet");
                    all = false;
                }
            }
        }
        all
    }
}

fn create_dir(dir: &Path) -> Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(RuntimeError::io(
            format!("creating cgroup {}", dir.display()),
            e,
        )),
    }
}

fn write(dir: &Path, file: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(dir.join(file), value).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("writing {value:?} to {}/{file}: {e}", dir.display()),
        )
    })
}

/// Logs a limit that could not be applied; the sandbox still runs.
fn soft(dir: &Path, result: std::io::Result<()>) {
    if let Err(e) = result {
        tracing::warn!(cgroup = %dir.display(), error = %e, "cgroup limit not applied");
    }
}

fn memory_error(e: std::io::Error) -> RuntimeError {
    RuntimeError::InvalidSpec(format!("cannot apply the memory limit: {e}"))
}

fn apply_memory_v1(dir: &Path, bytes: Option<u64>) -> Result<()> {
    let value = bytes.map_or_else(|| "-1".to_owned(), |b| b.to_string());
    // memsw (memory+swap) must stay >= the memory limit at every step: lift it first, then set
    // the limit, then cap memsw at the same value so the sandbox cannot swap past its limit.
    let memsw = dir.join("memory.memsw.limit_in_bytes").exists();
    let result = (|| {
        if memsw {
            write(dir, "memory.memsw.limit_in_bytes", "-1")?;
        }
        write(dir, "memory.limit_in_bytes", &value)?;
        if memsw {
            write(dir, "memory.memsw.limit_in_bytes", &value)?;
        }
        Ok(())
    })();
    match (result, bytes) {
        (Ok(()), _) => Ok(()),
        (Err(e), Some(_)) => Err(memory_error(e)),
        (Err(e), None) => {
            soft(dir, Err(e));
            Ok(())
        }
    }
}

fn apply_cpu_v1(dir: &Path, millis: Option<u64>) -> std::io::Result<()> {
    write(dir, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
    let quota = millis.map_or_else(|| "-1".to_owned(), |m| cfs_quota_us(m).to_string());
    write(dir, "cpu.cfs_quota_us", &quota)
}

fn apply_v2(dir: &Path, limits: &Limits) -> Result<()> {
    let memory = limits
        .memory_bytes
        .map_or_else(|| "max".to_owned(), |b| b.to_string());
    match (write(dir, "memory.max", &memory), limits.memory_bytes) {
        (Err(e), Some(_)) => return Err(memory_error(e)),
        (Err(e), None) => soft(dir, Err(e)),
        (Ok(()), _) => {}
    }
    if limits.memory_bytes.is_some() && dir.join("memory.swap.max").exists() {
        write(dir, "memory.swap.max", "0").map_err(memory_error)?;
    }
    soft(dir, write(dir, "cpu.max", &cpu_max(limits.cpu_millis)));
    soft(dir, write(dir, "pids.max", &limits.pids.to_string()));
    Ok(())
}

/// Enables the memory, cpu and pids controllers for the children of `dir` and of its parent
/// (the hierarchy's root), as far as they are available.
fn enable_controllers(dir: &Path) {
    for level in [dir.parent(), Some(dir)].into_iter().flatten() {
        let available =
            std::fs::read_to_string(level.join("cgroup.controllers")).unwrap_or_default();
        for controller in ["memory", "cpu", "pids"] {
            if available.split_whitespace().any(|c| c == controller) {
                soft(
                    level,
                    write(level, "cgroup.subtree_control", &format!("+{controller}")),
                );
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cpu_values() {
        assert_eq!(cfs_quota_us(1000), 100_000);
        assert_eq!(cfs_quota_us(500), 50_000);
        assert_eq!(cfs_quota_us(2500), 250_000);
        assert_eq!(cfs_quota_us(1), MIN_CPU_QUOTA_US);
        assert_eq!(cpu_max(Some(250)), "25000 100000");
        assert_eq!(cpu_max(None), "max 100000");
    }

    fn fake_base(v1: &[&str], unified: Option<&str>) -> tempfile::TempDir {
        let base = tempfile::tempdir().unwrap();
        for c in v1 {
            std::fs::create_dir(base.path().join(c)).unwrap();
            std::fs::write(base.path().join(c).join("cgroup.procs"), "").unwrap();
        }
        if let Some(controllers) = unified {
            let u = base.path().join("unified");
            std::fs::create_dir(&u).unwrap();
            std::fs::write(u.join("cgroup.controllers"), controllers).unwrap();
            std::fs::write(u.join("cgroup.procs"), "").unwrap();
        }
        base
    }

    #[test]
    fn detects_hybrid_v1_when_v2_has_no_controllers() {
        let base = fake_base(&["memory", "cpu", "pids"], Some(""));
        let support = CgroupSupport::detect_in(base.path());
        assert_eq!(
            support,
            CgroupSupport::V1 {
                memory: Some(base.path().join("memory")),
                cpu: Some(base.path().join("cpu")),
                pids: Some(base.path().join("pids")),
            }
        );
        let cg = SandboxCgroup::locate(&support, "agenttier", "sb1");
        let dirs: Vec<&Path> = cg.dirs().collect();
        assert_eq!(dirs[0], base.path().join("memory/agenttier/sb1"));
        assert_eq!(dirs.len(), 3);
    }

    #[test]
    fn detects_v2_with_controllers_and_none_without_anything() {
        let base = fake_base(&[], Some("cpu memory pids"));
        let support = CgroupSupport::detect_in(base.path());
        assert_eq!(
            support,
            CgroupSupport::V2 {
                root: base.path().join("unified")
            }
        );
        let cg = SandboxCgroup::locate(&support, "agenttier", "sb1");
        assert_eq!(
            cg.dirs().collect::<Vec<_>>(),
            [base.path().join("unified/agenttier/sb1")]
        );

        let empty = tempfile::tempdir().unwrap();
        assert_eq!(CgroupSupport::detect_in(empty.path()), CgroupSupport::None);
    }

    #[test]
    fn memory_limit_without_a_memory_controller_is_invalid() {
        let cg = SandboxCgroup::locate(&CgroupSupport::None, "agenttier", "x");
        let limits = Limits {
            memory_bytes: Some(64 << 20),
            cpu_millis: None,
            pids: 10,
        };
        assert!(matches!(
            cg.create(&limits),
            Err(RuntimeError::InvalidSpec(_))
        ));
        let unlimited = Limits {
            memory_bytes: None,
            ..limits
        };
        cg.create(&unlimited).unwrap();
    }

    #[test]
    fn writes_v1_values_into_plain_directories() {
        // On a plain directory the "cgroup files" are ordinary files, which is enough to check
        // which values go where.
        let base = fake_base(&["memory", "cpu", "pids"], None);
        let support = CgroupSupport::detect_in(base.path());
        let cg = SandboxCgroup::locate(&support, "agenttier", "sb");
        let mem = base.path().join("memory/agenttier/sb");
        std::fs::create_dir_all(&mem).unwrap();
        std::fs::write(mem.join("memory.memsw.limit_in_bytes"), "").unwrap();
        cg.create(&Limits {
            memory_bytes: Some(64 << 20),
            cpu_millis: Some(1500),
            pids: 99,
        })
        .unwrap();
        let read = |p: &str| std::fs::read_to_string(base.path().join(p)).unwrap();
        assert_eq!(
            read("memory/agenttier/sb/memory.limit_in_bytes"),
            "67108864"
        );
        assert_eq!(
            read("memory/agenttier/sb/memory.memsw.limit_in_bytes"),
            "67108864"
        );
        assert_eq!(read("cpu/agenttier/sb/cpu.cfs_quota_us"), "150000");
        assert_eq!(read("cpu/agenttier/sb/cpu.cfs_period_us"), "100000");
        assert_eq!(read("pids/agenttier/sb/pids.max"), "99");
    }
}
