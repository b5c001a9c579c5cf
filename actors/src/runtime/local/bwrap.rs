//! The bubblewrap command line of a sandbox: which namespaces, which mounts, which environment.
//! Building it is pure (inputs in, arguments out) so every isolation property is unit-tested
//! here; only [`RootFs::inspect`] looks at the filesystem.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::runtime::{Result, RuntimeError};

use super::layout::{INNER_AGENT, INNER_RUN_DIR};

/// The uid and gid sandbox processes see for themselves (mapped to the host's sandbox uid/gid).
pub const INNER_ID: u32 = 1000;
/// The sandbox's hostname.
pub const HOSTNAME: &str = "sandbox";
/// `PATH` of every sandbox process unless the spec overrides it.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The mount path used when the spec leaves it empty.
pub const DEFAULT_MOUNT_PATH: &str = "/workspace";

/// Top-level host directories a sandbox gets read-only; everything else of the host is absent.
const HOST_ENTRIES: &[&str] = &[
    "usr", "etc", "opt", "bin", "sbin", "lib", "lib32", "lib64", "libx32",
];
/// Top-level entries of an image rootfs that the sandbox gets fresh instead (proc, dev, tmpfs).
const IMAGE_SKIPPED: &[&str] = &["proc", "dev", "sys", "tmp", "run"];
/// Paths a workspace may not be mounted on or under: bubblewrap or the agent own them.
const RESERVED_MOUNTS: &[&str] = &["/proc", "/dev", "/sys", "/.agenttier", INNER_RUN_DIR];

/// One top-level entry of the sandbox's root directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootEntry {
    /// A directory or file bound read-only from the root source at the same name.
    Bind(String),
    /// A symlink recreated as is (`/lib -> usr/lib` on merged-/usr systems).
    Symlink {
        /// The entry's name under `/`.
        name: String,
        /// Where it points.
        target: String,
    },
}

/// The read-only part of a sandbox's root filesystem: top-level entries of a source directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootFs {
    /// `/` for the host, or the image's root directory.
    pub source: PathBuf,
    /// The entries bound or linked into the sandbox's (otherwise empty tmpfs) root.
    pub entries: Vec<RootEntry>,
}

impl RootFs {
    /// The host's `/usr`, `/etc`, `/opt` and the `/bin`, `/lib*` links or directories, as this
    /// machine has them.
    pub fn host() -> std::io::Result<Self> {
        Self::inspect(Path::new("/"), |name| HOST_ENTRIES.contains(&name))
    }

    /// Every top-level entry of an image root directory except the ones the sandbox gets fresh.
    /// Each entry is bound separately (not the directory as `/`), so bubblewrap can still create
    /// mount points such as `/workspace` and `/run/agenttier` in its own tmpfs root.
    pub fn image(dir: &Path) -> std::io::Result<Self> {
        Self::inspect(dir, |name| !IMAGE_SKIPPED.contains(&name))
    }

    fn inspect(dir: &Path, keep: impl Fn(&str) -> bool) -> std::io::Result<Self> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !keep(&name) {
                continue;
            }
            if entry.file_type()?.is_symlink() {
                let target = std::fs::read_link(entry.path())?;
                if let Some(target) = target.to_str() {
                    entries.push(RootEntry::Symlink {
                        name,
                        target: target.to_owned(),
                    });
                }
            } else {
                entries.push(RootEntry::Bind(name));
            }
        }
        // Deterministic order keeps the command line stable across runs and in logs.
        entries.sort_by(|a, b| entry_name(a).cmp(entry_name(b)));
        Ok(Self {
            source: dir.to_path_buf(),
            entries,
        })
    }
}

fn entry_name(e: &RootEntry) -> &str {
    match e {
        RootEntry::Bind(name) | RootEntry::Symlink { name, .. } => name,
    }
}

/// Everything the command line depends on.
#[derive(Clone, Debug)]
pub struct BwrapPlan<'a> {
    /// The read-only root.
    pub root: &'a RootFs,
    /// Host path of the workspace.
    pub workspace: &'a Path,
    /// Host path of the run directory (agent socket).
    pub run_dir: &'a Path,
    /// Host path of the agent binary.
    pub agent_binary: &'a Path,
    /// Where the workspace is mounted inside (already validated, see [`mount_path`]).
    pub mount_path: &'a str,
    /// The default working directory of exec inside.
    pub working_dir: &'a str,
    /// Extra environment from the spec (overrides the defaults).
    pub env: &'a BTreeMap<String, String>,
    /// Keep the host network namespace instead of a loopback-only one.
    pub allow_internet: bool,
    /// Paths to hide (restricted paths), with what each is.
    pub masks: &'a [Mask],
    /// The fd bubblewrap writes `{"child-pid": N, ...}` to.
    pub info_fd: RawFd,
    /// The inherited listening socket the agent serves on.
    pub listen_fd: RawFd,
}

/// A restricted path and how it is hidden.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mask {
    /// A file: `/dev/null` is bound over it, read-only.
    File(String),
    /// A directory (or a path that does not exist yet, in a writable place): an empty tmpfs,
    /// remounted read-only, so nothing can be read from or written into it.
    Dir(String),
}

impl Mask {
    /// How to hide `path` inside a sandbox whose workspace (mounted at `mount_path`) is
    /// `workspace` on the host and whose root comes from `root`; `None` when there is nothing
    /// there and nothing can be created there (the read-only root).
    pub fn for_path(path: &str, mount_path: &str, workspace: &Path, root: &Path) -> Option<Self> {
        let inside_workspace = crate::runtime::files::is_within(path, mount_path);
        let host = if inside_workspace {
            let rel = path[mount_path.len()..].trim_start_matches('/');
            workspace.join(rel)
        } else {
            root.join(path.trim_start_matches('/'))
        };
        match std::fs::metadata(&host) {
            Ok(meta) if meta.is_dir() => Some(Self::Dir(path.to_string())),
            Ok(_) => Some(Self::File(path.to_string())),
            Err(_) if inside_workspace || crate::runtime::files::is_within(path, "/tmp") => {
                Some(Self::Dir(path.to_string()))
            }
            Err(_) => None,
        }
    }
}

/// The spec's mount path, defaulted and checked: absolute, normalized, not `/` and not on a path
/// that bubblewrap or the agent own.
pub fn mount_path(spec_value: &str) -> Result<String> {
    let value = if spec_value.is_empty() {
        DEFAULT_MOUNT_PATH
    } else {
        spec_value
    };
    let value = value.trim_end_matches('/');
    check_absolute("mount path", value)?;
    for reserved in RESERVED_MOUNTS {
        if Path::new(value).starts_with(reserved) {
            return Err(RuntimeError::InvalidSpec(format!(
                "mount path {value} is reserved by the runtime"
            )));
        }
    }
    Ok(value.to_owned())
}

/// The spec's working directory, defaulting to the mount path; must be absolute and normalized.
pub fn working_dir(spec_value: &str, mount_path: &str) -> Result<String> {
    if spec_value.is_empty() {
        return Ok(mount_path.to_owned());
    }
    check_absolute("working directory", spec_value)?;
    Ok(spec_value.to_owned())
}

fn check_absolute(what: &str, value: &str) -> Result<()> {
    let path = Path::new(value);
    let normal = path.is_absolute()
        && path
            .components()
            .skip(1)
            .all(|c| matches!(c, Component::Normal(_)))
        && path.components().count() > 1
        && !value.contains('\0');
    if normal {
        Ok(())
    } else {
        Err(RuntimeError::InvalidSpec(format!(
            "{what} {value:?} must be an absolute path without . or .. (and not /)"
        )))
    }
}

/// The environment of every sandbox process: defaults, then the spec's values on top.
pub fn environment(
    mount_path: &str,
    extra: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::from([
        ("PATH".to_owned(), DEFAULT_PATH.to_owned()),
        ("HOME".to_owned(), mount_path.to_owned()),
        ("TERM".to_owned(), "xterm-256color".to_owned()),
    ]);
    for (key, value) in extra {
        if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
            return Err(RuntimeError::InvalidSpec(format!(
                "invalid environment variable {key:?}"
            )));
        }
        env.insert(key.clone(), value.clone());
    }
    Ok(env)
}

/// The bubblewrap command line, split in two: the options (namespaces, mounts, environment),
/// which are passed through a file descriptor (`--args`) so the environment, which may hold
/// secrets, never shows in `ps`; and the command, which stays on the visible command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BwrapArgs {
    /// Everything before the command.
    pub options: Vec<OsString>,
    /// The agent and its arguments.
    pub command: Vec<OsString>,
}

impl BwrapArgs {
    /// The options as `--args` reads them: each followed by a NUL byte.
    pub fn encoded_options(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for option in &self.options {
            bytes.extend_from_slice(option.as_bytes());
            bytes.push(0);
        }
        bytes
    }

    /// The visible command line when the options are readable from `args_fd`.
    pub fn command_line(&self, args_fd: RawFd) -> Vec<OsString> {
        let mut line: Vec<OsString> = vec!["--args".into(), args_fd.to_string().into()];
        line.extend(self.command.iter().cloned());
        line
    }
}

/// The bubblewrap arguments for `plan`.
pub fn args(plan: &BwrapPlan<'_>) -> Result<BwrapArgs> {
    let mut a = Args::default();
    // All namespaces (user, ipc, pid, net, uts, cgroup); --unshare-user is implied but stated so
    // --disable-userns (no nested user namespaces, so no regained capabilities) is accepted.
    a.flag("--unshare-all")
        .flag("--unshare-user")
        .flag("--disable-userns");
    if plan.allow_internet {
        a.flag("--share-net");
    }
    let id = INNER_ID.to_string();
    a.flag("--uid").arg(&id).flag("--gid").arg(&id);
    a.flag("--hostname").arg(HOSTNAME);

    for entry in &plan.root.entries {
        match entry {
            RootEntry::Bind(name) => {
                a.flag("--ro-bind")
                    .path(&plan.root.source.join(name))
                    .arg(&format!("/{name}"));
            }
            RootEntry::Symlink { name, target } => {
                a.flag("--symlink").arg(target).arg(&format!("/{name}"));
            }
        }
    }
    a.flag("--proc")
        .arg("/proc")
        .flag("--dev")
        .arg("/dev")
        .flag("--tmpfs")
        .arg("/tmp");
    a.flag("--bind").path(plan.workspace).arg(plan.mount_path);
    a.flag("--ro-bind").path(plan.run_dir).arg(INNER_RUN_DIR);
    a.flag("--ro-bind").path(plan.agent_binary).arg(INNER_AGENT);
    for mask in plan.masks {
        match mask {
            Mask::File(path) => {
                a.flag("--ro-bind").arg("/dev/null").arg(path);
            }
            Mask::Dir(path) => {
                a.flag("--perms").arg("0555").flag("--tmpfs").arg(path);
                a.flag("--remount-ro").arg(path);
            }
        }
    }
    a.flag("--chdir").arg(plan.mount_path);
    // bubblewrap also sets no_new_privs unconditionally.
    a.flag("--cap-drop").arg("ALL");
    a.flag("--new-session");
    a.flag("--info-fd").arg(&plan.info_fd.to_string());

    a.flag("--clearenv");
    for (key, value) in environment(plan.mount_path, plan.env)? {
        a.flag("--setenv").arg(&key).arg(&value);
    }

    let mut command = Args::default();
    command.arg(INNER_AGENT).arg("__agent");
    command.flag("--listen-fd").arg(&plan.listen_fd.to_string());
    command.flag("--workdir").arg(plan.working_dir);
    Ok(BwrapArgs {
        options: a.0,
        command: command.0,
    })
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn flag(&mut self, s: &str) -> &mut Self {
        self.0.push(s.into());
        self
    }
    fn arg(&mut self, s: &str) -> &mut Self {
        self.0.push(s.into());
        self
    }
    fn path(&mut self, p: &Path) -> &mut Self {
        self.0.push(p.as_os_str().to_owned());
        self
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn host_root() -> RootFs {
        RootFs {
            source: PathBuf::from("/"),
            entries: vec![
                RootEntry::Symlink {
                    name: "bin".into(),
                    target: "usr/bin".into(),
                },
                RootEntry::Bind("etc".into()),
                RootEntry::Symlink {
                    name: "lib".into(),
                    target: "usr/lib".into(),
                },
                RootEntry::Bind("usr".into()),
            ],
        }
    }

    fn build(env: &BTreeMap<String, String>, allow_internet: bool) -> Vec<String> {
        let root = host_root();
        let plan = BwrapPlan {
            root: &root,
            workspace: Path::new("/data/sandboxes/x/workspace"),
            run_dir: Path::new("/data/sandboxes/x/run"),
            agent_binary: Path::new("/usr/local/bin/agenttier"),
            mount_path: "/workspace",
            working_dir: "/workspace/src",
            env,
            allow_internet,
            masks: &[],
            info_fd: 7,
            listen_fd: 8,
        };
        let args = args(&plan).unwrap();
        args.options
            .into_iter()
            .chain(args.command)
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    /// True when `needle` appears as consecutive arguments.
    fn has(args: &[String], needle: &[&str]) -> bool {
        args.windows(needle.len())
            .any(|w| w.iter().zip(needle).all(|(a, b)| a == b))
    }

    #[test]
    fn isolates_everything_by_default() {
        let a = build(&BTreeMap::new(), false);
        assert_eq!(a[0], "--unshare-all");
        assert!(has(&a, &["--disable-userns"]));
        assert!(!a.contains(&"--share-net".to_string()));
        assert!(
            !a.contains(&"--die-with-parent".to_string()),
            "sandboxes outlive the server"
        );
        assert!(has(&a, &["--uid", "1000", "--gid", "1000"]));
        assert!(has(&a, &["--cap-drop", "ALL"]));
        assert!(has(&a, &["--hostname", "sandbox"]));
        assert!(has(&a, &["--info-fd", "7"]));
    }

    #[test]
    fn host_root_is_read_only_and_workspace_writable() {
        let a = build(&BTreeMap::new(), false);
        assert!(has(&a, &["--ro-bind", "/usr", "/usr"]));
        assert!(has(&a, &["--ro-bind", "/etc", "/etc"]));
        assert!(has(&a, &["--symlink", "usr/lib", "/lib"]));
        assert!(has(
            &a,
            &["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        ));
        assert!(has(
            &a,
            &["--bind", "/data/sandboxes/x/workspace", "/workspace"]
        ));
        assert!(has(
            &a,
            &["--ro-bind", "/data/sandboxes/x/run", "/run/agenttier"]
        ));
        assert!(has(
            &a,
            &["--ro-bind", "/usr/local/bin/agenttier", "/.agenttier/agent"]
        ));
        assert!(has(&a, &["--chdir", "/workspace"]));
        // The only writable bind is the workspace.
        assert_eq!(a.iter().filter(|s| *s == "--bind").count(), 1);
    }

    #[test]
    fn agent_command_comes_last() {
        let a = build(&BTreeMap::new(), false);
        let tail: Vec<&str> = a[a.len() - 6..].iter().map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "/.agenttier/agent",
                "__agent",
                "--listen-fd",
                "8",
                "--workdir",
                "/workspace/src"
            ]
        );
    }

    #[test]
    fn options_go_through_a_descriptor_and_the_command_stays_visible() {
        let root = host_root();
        let env = BTreeMap::from([("API_KEY".to_string(), "s3cret".to_string())]);
        let plan = BwrapPlan {
            root: &root,
            workspace: Path::new("/w"),
            run_dir: Path::new("/r"),
            agent_binary: Path::new("/a"),
            mount_path: "/workspace",
            working_dir: "/workspace",
            env: &env,
            allow_internet: false,
            masks: &[],
            info_fd: 3,
            listen_fd: 4,
        };
        let args = args(&plan).unwrap();
        let line: Vec<String> = args
            .command_line(9)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(
            line,
            [
                "--args",
                "9",
                "/.agenttier/agent",
                "__agent",
                "--listen-fd",
                "4",
                "--workdir",
                "/workspace"
            ]
        );
        assert!(!line.iter().any(|a| a.contains("s3cret")));
        let encoded = args.encoded_options();
        assert!(encoded.ends_with(b"\0"));
        let fields: Vec<&[u8]> = encoded[..encoded.len() - 1].split(|b| *b == 0).collect();
        assert_eq!(fields.len(), args.options.len());
        assert!(fields.contains(&&b"s3cret"[..]));
    }

    #[test]
    fn environment_is_cleared_then_set() {
        let env = BTreeMap::from([
            ("FOO".to_string(), "bar baz".to_string()),
            ("PATH".to_string(), "/opt/bin".to_string()),
        ]);
        let a = build(&env, false);
        let clear = a.iter().position(|s| s == "--clearenv").unwrap();
        let first_set = a.iter().position(|s| s == "--setenv").unwrap();
        assert!(clear < first_set);
        assert!(has(&a, &["--setenv", "FOO", "bar baz"]));
        assert!(
            has(&a, &["--setenv", "PATH", "/opt/bin"]),
            "spec env overrides defaults"
        );
        assert!(has(&a, &["--setenv", "HOME", "/workspace"]));
        assert!(has(&a, &["--setenv", "TERM", "xterm-256color"]));
        assert_eq!(a.iter().filter(|s| *s == "PATH").count(), 1);
    }

    #[test]
    fn internet_is_opt_in() {
        let a = build(&BTreeMap::new(), true);
        assert!(has(
            &a,
            &[
                "--unshare-all",
                "--unshare-user",
                "--disable-userns",
                "--share-net"
            ]
        ));
    }

    #[test]
    fn bad_env_is_rejected() {
        let root = host_root();
        let env = BTreeMap::from([("A=B".to_string(), "x".to_string())]);
        let plan = BwrapPlan {
            root: &root,
            workspace: Path::new("/w"),
            run_dir: Path::new("/r"),
            agent_binary: Path::new("/a"),
            mount_path: "/workspace",
            working_dir: "/workspace",
            env: &env,
            allow_internet: false,
            masks: &[],
            info_fd: 3,
            listen_fd: 4,
        };
        assert!(matches!(args(&plan), Err(RuntimeError::InvalidSpec(_))));
    }

    #[test]
    fn mount_path_is_defaulted_and_checked() {
        assert_eq!(mount_path("").unwrap(), "/workspace");
        assert_eq!(mount_path("/home/user/").unwrap(), "/home/user");
        for bad in [
            "/",
            "relative",
            "/a/../b",
            "/proc/x",
            "/dev",
            "/run/agenttier",
            "/.agenttier",
        ] {
            assert!(mount_path(bad).is_err(), "{bad}");
        }
        assert_eq!(working_dir("", "/workspace").unwrap(), "/workspace");
        assert!(working_dir("x", "/workspace").is_err());
    }

    #[test]
    fn image_roots_skip_what_the_sandbox_gets_fresh() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["usr", "etc", "proc", "tmp", "home"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::os::unix::fs::symlink("usr/bin", dir.path().join("bin")).unwrap();
        let root = RootFs::image(dir.path()).unwrap();
        assert_eq!(
            root.entries,
            vec![
                RootEntry::Symlink {
                    name: "bin".into(),
                    target: "usr/bin".into()
                },
                RootEntry::Bind("etc".into()),
                RootEntry::Bind("home".into()),
                RootEntry::Bind("usr".into()),
            ]
        );
    }
}
