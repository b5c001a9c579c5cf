//! End-to-end tests of the local runtime: real bubblewrap sandboxes with the real `agenttier`
//! binary as their agent, real cgroups, one data directory per test. Needs root, bubblewrap and
//! a built binary (`cargo build -p agenttier`, or `AGENTTIER_BIN`); a missing piece fails the
//! test, it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agenttier_actors::runtime::local::{LocalRuntime, LocalRuntimeConfig};
use agenttier_actors::runtime::{
    ExecOutput, ExecRequest, Liveness, Runtime, RuntimeError, RuntimeSpec, SandboxId, WorkspaceSeed,
};

const SANDBOX_UID: u32 = 61000;

/// The agent binary: `AGENTTIER_BIN`, else the workspace's debug build.
fn agent_binary() -> PathBuf {
    let path = std::env::var_os("AGENTTIER_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/agenttier"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "the agent binary {} does not exist: run `cargo build -p agenttier` first (or point \
         AGENTTIER_BIN at an agenttier binary)",
        path.display()
    );
    path
}

/// A unique sandbox id: cgroups are machine-wide, so ids must not collide across tests.
fn unique_id(label: &str) -> SandboxId {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    SandboxId(format!("it-{label}-{}-{n}-{nanos:x}", std::process::id()))
}

/// A runtime on its own data directory; removes every sandbox it created when dropped, even
/// when the test panicked.
struct Harness {
    runtime: Arc<LocalRuntime>,
    config: LocalRuntimeConfig,
    created: Mutex<Vec<SandboxId>>,
    data: tempfile::TempDir,
}

impl Harness {
    fn new() -> Self {
        let data = tempfile::tempdir().unwrap();
        let config = LocalRuntimeConfig::new(data.path(), agent_binary());
        let runtime = Arc::new(LocalRuntime::new(config.clone()).unwrap());
        Self {
            runtime,
            config,
            created: Mutex::new(Vec::new()),
            data,
        }
    }

    fn rt(&self) -> &LocalRuntime {
        &self.runtime
    }

    fn sandbox_dir(&self, id: &SandboxId) -> PathBuf {
        std::fs::canonicalize(self.data.path())
            .unwrap()
            .join("sandboxes")
            .join(&id.0)
    }

    fn workspace(&self, id: &SandboxId) -> PathBuf {
        self.sandbox_dir(id).join("workspace")
    }

    async fn prepare(&self, label: &str, seed: WorkspaceSeed) -> SandboxId {
        let id = unique_id(label);
        self.created.lock().unwrap().push(id.clone());
        self.rt().prepare(&id, seed).await.unwrap();
        id
    }

    /// Prepares and starts a sandbox with `spec`.
    async fn start(&self, label: &str, spec: &RuntimeSpec) -> SandboxId {
        let id = self.prepare(label, WorkspaceSeed::Empty).await;
        self.rt().start(&id, spec).await.unwrap();
        id
    }

    async fn sh(&self, id: &SandboxId, command: &str) -> ExecOutput {
        self.rt().exec(id, request(command)).await.unwrap()
    }

    /// Runs `command` and returns its stdout, failing the test on a non-zero exit.
    async fn ok(&self, id: &SandboxId, command: &str) -> String {
        let out = self.sh(id, command).await;
        assert_eq!(out.exit_code, 0, "{command}: {out:?}");
        out.stdout
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let runtime = self.runtime.clone();
        let ids = std::mem::take(&mut *self.created.lock().unwrap_or_else(|e| e.into_inner()));
        // Drop cannot await; clean up on a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                for id in ids {
                    if let Err(e) = runtime.remove(&id).await {
                        eprintln!("cleaning up sandbox {id}: {e}");
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

fn request(command: &str) -> ExecRequest {
    ExecRequest {
        command: command.to_owned(),
        timeout: Duration::from_secs(60),
        env: BTreeMap::new(),
        working_dir: None,
        stdin: Vec::new(),
    }
}

fn spec() -> RuntimeSpec {
    RuntimeSpec {
        display_name: "test/sandbox".into(),
        ..Default::default()
    }
}

/// The host's cgroup directories of a sandbox (v1 controllers or the v2 group).
fn cgroup_dirs(id: &SandboxId) -> Vec<PathBuf> {
    ["memory", "cpu", "pids", ""]
        .iter()
        .map(|c| {
            Path::new("/sys/fs/cgroup")
                .join(c)
                .join("agenttier")
                .join(&id.0)
        })
        .collect()
}

fn pid_of(pod_name: &str) -> i32 {
    pod_name
        .strip_prefix("local-")
        .expect("pod name is local-<pid>")
        .parse()
        .unwrap()
}

fn host_process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn start_and_exec() {
    let h = Harness::new();
    let id = h.prepare("echo", WorkspaceSeed::Empty).await;
    let instance = h.rt().start(&id, &spec()).await.unwrap();
    assert!(instance.pod_name.starts_with("local-"), "{instance:?}");
    assert_eq!(Path::new(&instance.workspace), h.workspace(&id));
    assert!(host_process_alive(pid_of(&instance.pod_name)));

    let out = h.sh(&id, "echo hello; echo oops >&2; exit 7").await;
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str(), out.exit_code),
        ("hello\n", "oops\n", 7)
    );
    assert!(!out.timed_out && !out.truncated);
    assert_eq!(h.ok(&id, "pwd").await, "/workspace\n");
    assert_eq!(h.ok(&id, "hostname").await, "sandbox\n");

    // start on a running sandbox is idempotent.
    assert_eq!(h.rt().start(&id, &spec()).await.unwrap(), instance);
    assert_eq!(h.rt().probe(&id).await.unwrap(), Liveness::Alive(instance));
    h.rt().remove(&id).await.unwrap();
}

#[tokio::test]
async fn env_stdin_and_working_dir() {
    let h = Harness::new();
    let spec = RuntimeSpec {
        env: BTreeMap::from([("FROM_SPEC".to_string(), "spec value".to_string())]),
        ..spec()
    };
    let id = h.start("env", &spec).await;
    h.ok(&id, "mkdir -p sub").await;
    let out = h
        .rt()
        .exec(
            &id,
            ExecRequest {
                command: "echo \"$FROM_SPEC|$FROM_REQUEST|$HOME|$(pwd)\"; cat".into(),
                env: BTreeMap::from([("FROM_REQUEST".to_string(), "req".to_string())]),
                working_dir: Some("/workspace/sub".into()),
                stdin: b"piped in".to_vec(),
                ..request("")
            },
        )
        .await
        .unwrap();
    assert_eq!(
        out.stdout,
        "spec value|req|/workspace|/workspace/sub\npiped in"
    );
    // Spec environment (which may hold secrets) is not on the host's command line.
    let pod = match h.rt().probe(&id).await.unwrap() {
        Liveness::Alive(instance) => instance.pod_name,
        Liveness::Gone => panic!("sandbox should run"),
    };
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid_of(&pod))).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("spec value"));
    // Commands get stdio and nothing else of the host (3 is ls's own directory handle).
    assert_eq!(h.ok(&id, "ls /proc/self/fd").await, "0\n1\n2\n3\n");
    let path = h.ok(&id, "echo $PATH").await;
    assert!(path.contains("/usr/bin"), "{path}");
    h.rt().remove(&id).await.unwrap();
}

#[tokio::test]
async fn runs_as_an_unprivileged_user() {
    let h = Harness::new();
    let id = h.start("uid", &spec()).await;
    assert_eq!(h.ok(&id, "id -u; id -g").await, "1000\n1000\n");
    let status = h
        .ok(
            &id,
            "grep -E '^(CapEff|CapPrm|NoNewPrivs|Seccomp):' /proc/self/status",
        )
        .await;
    let fields: BTreeMap<&str, &str> = status
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k, v.trim()))
        .collect();
    assert_eq!(fields["CapEff"], "0000000000000000", "{status}");
    assert_eq!(fields["CapPrm"], "0000000000000000", "{status}");
    assert_eq!(fields["NoNewPrivs"], "1", "{status}");
    assert_eq!(fields["Seccomp"], "2", "{status}");
    // No nested user namespaces (and so no regained capabilities), no mounts.
    let out = h.sh(&id, "unshare -U true").await;
    assert_ne!(out.exit_code, 0, "{out:?}");
    let out = h.sh(&id, "mount -t tmpfs none /tmp").await;
    assert_ne!(out.exit_code, 0, "{out:?}");
    h.rt().remove(&id).await.unwrap();
}

#[tokio::test]
async fn sees_no_host_processes() {
    let h = Harness::new();
    let id = h.start("pids", &spec()).await;
    let listing = h
        .ok(
            &id,
            "for p in /proc/[0-9]*; do echo \"${p#/proc/} $(cat $p/comm)\"; done",
        )
        .await;
    let processes: Vec<(u32, String)> = listing
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(pid, comm)| (pid.parse().unwrap(), comm.to_owned()))
        .collect();
    // bubblewrap's init, the agent, the shell (and cat, gone by now, maybe listed).
    assert!(processes.len() <= 5, "{listing}");
    assert!(processes.iter().all(|(pid, _)| *pid < 100), "{listing}");
    assert_eq!(processes[0], (1, "bwrap".to_string()), "{listing}");
    let ps = h.ok(&id, "ps -e -o comm=").await;
    assert!(
        !ps.contains("cargo") && !ps.contains("local_runtime"),
        "{ps}"
    );
    h.rt().remove(&id).await.unwrap();
}

#[tokio::test]
async fn network_is_loopback_only() {
    let h = Harness::new();
    let id = h.start("net", &spec()).await;
    let dev = h.ok(&id, "cat /proc/net/dev").await;
    let interfaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(interfaces, ["lo"], "{dev}");
    let route = h.ok(&id, "cat /proc/net/route").await;
    assert_eq!(
        route.lines().count(),
        1,
        "only the header, no default route: {route}"
    );
    h.rt().remove(&id).await.unwrap();
}

#[tokio::test]
async fn internet_is_opt_in() {
    let h = Harness::new();
    let id = h
        .start(
            "inet",
            &RuntimeSpec {
                allow_internet: true,
                ..spec()
            },
        )
        .await;
    let host_interfaces = std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .count();
    let dev = h.ok(&id, "cat /proc/net/dev").await;
    assert_eq!(
        dev.lines().count(),
        host_interfaces,
        "shares the host network: {dev}"
    );
    h.rt().remove(&id).await.unwrap();
}

#[tokio::test]
async fn host_system_is_read_only() {
    let h = Harness::new();
    let id = h.start("ro", &spec()).await;
    for path in [
        "/usr/agenttier-test",
        "/etc/agenttier-test",
        "/bin/agenttier-test",
    ] {
        let out = h.sh(&id, &format!("touch {path}")).await;
        assert_ne!(out.exit_code, 0, "{path} must not be writable: {out:?}");
        assert!(!Path::new(path).exists());
    }
    h.ok(&id, "touch /workspace/ok /tmp/ok").await;
    // Nothing of the host beyond /usr, /etc, /opt.
    let out = h.sh(&id, "ls /root /home /var/lib 2>&1").await;
    assert_ne!(out.exit_code, 0, "{out:?}");
    h.rt().remove(&id).await.unwrap();
}

#[tokio::test]
async fn memory_limit_kills_the_hog_not_the_sandbox() {
    let h = Harness::new();
    let spec = RuntimeSpec {
        memory_limit_bytes: Some(64 << 20),
        ..spec()
    };
    let id = h.start("mem", &spec).await;
    // Commands are the OOM killer's first choice, the agent (pid 2, under bubblewrap's init) is
    // not (-900 when the server has CAP_SYS_RESOURCE, else inherited).
    let adj = h
        .ok(&id, "cat /proc/2/oom_score_adj /proc/self/oom_score_adj")
        .await;
    let adj: Vec<i32> = adj.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(adj[1], 500);
    assert!(adj[0] < adj[1], "{adj:?}");
    // dd fills a 256 MiB buffer from /dev/zero.
    let out = h
        .sh(&id, "dd if=/dev/zero of=/dev/null bs=256M count=1")
        .await;
    assert_eq!(out.exit_code, 137, "killed by SIGKILL (OOM): {out:?}");
    assert_eq!(h.ok(&id, "echo still here").await, "still here\n");
    // Small allocations are fine.
    h.ok(
        &id,
        "dd if=/dev/zero of=/dev/null bs=16M count=1 2>/dev/null",
    )
    .await;
    h.rt().remove(&id).await.unwrap();
}

#[tokio::test]
async fn workspace_files_belong_to_the_sandbox_uid() {
    let h = Harness::new();
    let id = h.start("owner", &spec()).await;
    h.ok(&id, "echo data > file; mkdir dir").await;
    let ws = h.workspace(&id);
    for path in [ws.clone(), ws.join("file"), ws.join("dir")] {
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (SANDBOX_UID, SANDBOX_UID),
            "{}",
            path.display()
        );
    }
    assert_eq!(std::fs::metadata(&ws).unwrap().mode() & 0o777, 0o750);
    assert_eq!(
        h.ok(&id, "stat -c %u:%g /workspace/file").await,
        "1000:1000\n"
    );
    h.rt().remove(&id).await.unwrap();
}

#[tokio::test]
async fn sandboxes_cannot_see_each_other() {
    let h = Harness::new();
    let a = h.start("iso-a", &spec()).await;
    let b = h.start("iso-b", &spec()).await;
    h.ok(&a, "echo secret > /workspace/secret").await;
    let a_host = h.workspace(&a);
    let out = h
        .sh(
            &b,
            &format!(
                "cat /workspace/secret || ls {} || cat {}/secret",
                a_host.display(),
                a_host.display()
            ),
        )
        .await;
    assert_ne!(out.exit_code, 0, "{out:?}");
    assert!(!out.stdout.contains("secret"), "{out:?}");
    let mounts = h.ok(&b, "cat /proc/self/mountinfo").await;
    assert!(!mounts.contains(&a.0), "{mounts}");
    // Processes of one are invisible to the other.
    h.ok(&a, "sleep 300 > /dev/null 2>&1 &").await;
    let ps = h.ok(&b, "ps -e -o comm=").await;
    assert!(!ps.contains("sleep"), "{ps}");
    h.rt().remove(&a).await.unwrap();
    h.rt().remove(&b).await.unwrap();
}

#[tokio::test]
async fn stop_keeps_the_workspace_and_start_resumes() {
    let h = Harness::new();
    let id = h.start("resume", &spec()).await;
    h.ok(&id, "echo kept > kept.txt; sleep 1000 > /dev/null 2>&1 &")
        .await;
    let first = match h.rt().probe(&id).await.unwrap() {
        Liveness::Alive(instance) => instance,
        Liveness::Gone => panic!("sandbox should run"),
    };
    h.rt().stop(&id).await.unwrap();
    assert!(!host_process_alive(pid_of(&first.pod_name)));
    for dir in cgroup_dirs(&id) {
        assert!(!dir.exists(), "{} removed", dir.display());
    }
    assert_eq!(h.rt().probe(&id).await.unwrap(), Liveness::Gone);
    assert!(matches!(
        h.rt().exec(&id, request("true")).await,
        Err(RuntimeError::NotRunning(_))
    ));
    h.rt().stop(&id).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(h.workspace(&id).join("kept.txt")).unwrap(),
        "kept\n"
    );

    let second = h.rt().start(&id, &spec()).await.unwrap();
    assert_ne!(second.pod_name, first.pod_name);
    assert_eq!(h.ok(&id, "cat kept.txt").await, "kept\n");
    assert!(!h.ok(&id, "ps -e -o comm=").await.contains("sleep"));
    h.rt().remove(&id).await.unwrap();
}

#[tokio::test]
async fn clone_copies_the_workspace() {
    let h = Harness::new();
    let source = h.start("clone-src", &spec()).await;
    h.ok(
        &source,
        "mkdir -p d && echo original > d/f && chmod 640 d/f",
    )
    .await;
    let copy = h
        .prepare("clone-dst", WorkspaceSeed::CopyOf(source.clone()))
        .await;
    let meta = std::fs::metadata(h.workspace(&copy).join("d/f")).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (SANDBOX_UID, 0o640));
    h.rt().start(&copy, &spec()).await.unwrap();
    assert_eq!(h.ok(&copy, "cat d/f").await, "original\n");
    h.ok(&copy, "echo changed > d/f").await;
    assert_eq!(h.ok(&source, "cat d/f").await, "original\n");
    h.rt().remove(&copy).await.unwrap();
    h.rt().remove(&source).await.unwrap();
}

#[tokio::test]
async fn exec_timeout_kills_the_command() {
    let h = Harness::new();
    let id = h.start("timeout", &spec()).await;
    let started = Instant::now();
    let out = h
        .rt()
        .exec(
            &id,
            ExecRequest {
                timeout: Duration::from_millis(500),
                ..request("echo before; sleep 100")
            },
        )
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(out.timed_out, "{out:?}");
    assert_eq!(out.exit_code, 124);
    assert_eq!(out.stdout, "before\n");
    assert!(
        !h.ok(&id, "ps -e -o comm=").await.contains("sleep"),
        "the whole group was killed"
    );
    h.rt().remove(&id).await.unwrap();
}

#[tokio::test]
async fn a_restarted_server_readopts_running_sandboxes() {
    let h = Harness::new();
    let id = h.start("adopt", &spec()).await;
    h.ok(&id, "echo from-first > f").await;
    let instance = match h.rt().probe(&id).await.unwrap() {
        Liveness::Alive(instance) => instance,
        Liveness::Gone => panic!("sandbox should run"),
    };

    // A second runtime on the same data directory knows only what is on disk.
    let second = LocalRuntime::new(h.config.clone()).unwrap();
    assert_eq!(
        second.probe(&id).await.unwrap(),
        Liveness::Alive(instance.clone())
    );
    let out = second.exec(&id, request("cat f; id -u")).await.unwrap();
    assert_eq!(out.stdout, "from-first\n1000\n");
    assert_eq!(
        second.start(&id, &spec()).await.unwrap(),
        instance,
        "start adopts, not restarts"
    );
    second.stop(&id).await.unwrap();
    assert!(!host_process_alive(pid_of(&instance.pod_name)));
    assert_eq!(h.rt().probe(&id).await.unwrap(), Liveness::Gone);
    assert_eq!(second.probe(&id).await.unwrap(), Liveness::Gone);
    second.remove(&id).await.unwrap();
}

/// Environment variable that turns [`child_server_starts_a_sandbox`] into the server half of
/// [`sandboxes_survive_a_killed_server`]: `<data dir>|<sandbox id>`.
const CHILD_SERVER_ENV: &str = "AGENTTIER_TEST_CHILD_SERVER";

/// Does nothing when run as a test; run by [`sandboxes_survive_a_killed_server`] as a separate
/// "server" process that starts a sandbox and then waits to be killed.
#[tokio::test]
async fn child_server_starts_a_sandbox() {
    let Ok(job) = std::env::var(CHILD_SERVER_ENV) else {
        return;
    };
    let (data, id) = job.split_once('|').unwrap();
    let runtime = LocalRuntime::new(LocalRuntimeConfig::new(data, agent_binary())).unwrap();
    let id = SandboxId(id.to_owned());
    runtime.prepare(&id, WorkspaceSeed::Empty).await.unwrap();
    runtime.start(&id, &spec()).await.unwrap();
    runtime
        .exec(&id, request("echo before-the-crash > f"))
        .await
        .unwrap();
    println!("STARTED");
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[tokio::test]
async fn sandboxes_survive_a_killed_server() {
    use std::io::BufRead;
    let h = Harness::new();
    let id = unique_id("survive");
    h.created.lock().unwrap().push(id.clone());
    let mut server = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_server_starts_a_sandbox",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            CHILD_SERVER_ENV,
            format!("{}|{}", h.data.path().display(), id.0),
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = server.stdout.take().unwrap();
    let started = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("STARTED"))
    })
    .await
    .unwrap();
    assert!(started, "the child server did not start its sandbox");
    server.kill().unwrap(); // SIGKILL: no cleanup runs in the "server".
    server.wait().unwrap();

    // A new server on the same data directory finds the sandbox still running.
    let instance = match h.rt().probe(&id).await.unwrap() {
        Liveness::Alive(instance) => instance,
        Liveness::Gone => panic!("the sandbox died with its server"),
    };
    assert_eq!(h.ok(&id, "cat f").await, "before-the-crash\n");
    h.rt().stop(&id).await.unwrap();
    assert!(!host_process_alive(pid_of(&instance.pod_name)));
    assert_eq!(h.rt().probe(&id).await.unwrap(), Liveness::Gone);
    h.rt().remove(&id).await.unwrap();
}

#[tokio::test]
async fn remove_deletes_every_trace() {
    let h = Harness::new();
    let id = h.start("remove", &spec()).await;
    h.ok(&id, "echo x > f; sleep 1000 > /dev/null 2>&1 &").await;
    h.rt().remove(&id).await.unwrap();
    assert!(!h.sandbox_dir(&id).exists());
    for dir in cgroup_dirs(&id) {
        assert!(!dir.exists(), "{} removed", dir.display());
    }
    h.rt().remove(&id).await.unwrap();
    h.rt().stop(&id).await.unwrap();
    assert_eq!(h.rt().probe(&id).await.unwrap(), Liveness::Gone);
    assert!(matches!(
        h.rt().exec(&id, request("true")).await,
        Err(RuntimeError::NotRunning(_))
    ));
    assert!(matches!(
        h.rt().start(&id, &spec()).await,
        Err(RuntimeError::NoWorkspace(_))
    ));
}

#[tokio::test]
async fn lifecycle_errors() {
    let h = Harness::new();
    let id = h.prepare("errors", WorkspaceSeed::Empty).await;
    assert!(matches!(
        h.rt().prepare(&id, WorkspaceSeed::Empty).await,
        Err(RuntimeError::WorkspaceExists(_))
    ));
    assert!(matches!(
        h.rt().exec(&id, request("true")).await,
        Err(RuntimeError::NotRunning(_))
    ));
    let missing = unique_id("missing");
    assert!(matches!(
        h.rt()
            .prepare(&unique_id("copy"), WorkspaceSeed::CopyOf(missing))
            .await,
        Err(RuntimeError::NoWorkspace(_))
    ));
    assert!(matches!(
        h.rt()
            .start(
                &id,
                &RuntimeSpec {
                    mount_path: "/proc/x".into(),
                    ..spec()
                }
            )
            .await,
        Err(RuntimeError::InvalidSpec(_))
    ));
    assert!(matches!(
        h.rt()
            .prepare(&SandboxId("../escape".into()), WorkspaceSeed::Empty)
            .await,
        Err(RuntimeError::InvalidSpec(_))
    ));
    h.rt().remove(&id).await.unwrap();
}

#[tokio::test]
async fn a_broken_agent_fails_the_start_with_its_log() {
    let data = tempfile::tempdir().unwrap();
    // `true` exits at once without reporting ready.
    let config = LocalRuntimeConfig::new(data.path(), "/bin/true");
    let rt = LocalRuntime::new(config).unwrap();
    let id = unique_id("broken");
    rt.prepare(&id, WorkspaceSeed::Empty).await.unwrap();
    let err = rt.start(&id, &spec()).await.unwrap_err();
    assert!(matches!(err, RuntimeError::StartFailed { .. }), "{err}");
    assert_eq!(rt.probe(&id).await.unwrap(), Liveness::Gone);
    for dir in cgroup_dirs(&id) {
        assert!(!dir.exists(), "{} removed", dir.display());
    }
    rt.remove(&id).await.unwrap();
}

/// A minimal root filesystem: `sh` and `cat` with the libraries they and the agent load, found
/// with `ldd`, at the same paths as on the host, plus a marker file.
fn tiny_rootfs(dir: &Path) {
    let binaries = [Path::new("/bin/sh"), Path::new("/bin/cat"), &agent_binary()];
    let mut files: Vec<PathBuf> = vec![
        "/bin/sh".into(),
        "/bin/cat".into(),
        "/etc/ld.so.cache".into(),
    ];
    for binary in binaries {
        let out = std::process::Command::new("ldd")
            .arg(binary)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        files.extend(
            text.split_whitespace()
                .filter(|w| w.starts_with('/'))
                .map(PathBuf::from),
        );
    }
    for file in files {
        let target = dir.join(file.strip_prefix("/").unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&file, &target).unwrap();
    }
    std::fs::write(dir.join("etc/image-marker"), "tiny\n").unwrap();
}

#[tokio::test]
async fn an_image_directory_is_the_root_filesystem() {
    let h = Harness::new();
    let image = h.data.path().join("images/tiny");
    tiny_rootfs(&image);
    let spec = RuntimeSpec {
        image: Some(image.display().to_string()),
        ..spec()
    };
    let id = h.start("image", &spec).await;
    assert_eq!(h.ok(&id, "cat /etc/image-marker").await, "tiny\n");
    // The host's /usr is not there; the image's files are read-only.
    assert_eq!(h.ok(&id, "test -e /usr/bin/bwrap; echo $?").await, "1\n");
    let out = h.sh(&id, "echo x > /etc/image-marker").await;
    assert_ne!(out.exit_code, 0, "{out:?}");
    h.ok(&id, "echo ok > /workspace/f && cat /workspace/f")
        .await;

    // An image that is not a directory (a container reference) falls back to the host's /usr.
    let other = h
        .start(
            "image-ref",
            &RuntimeSpec {
                image: Some("python:3.12".into()),
                ..spec
            },
        )
        .await;
    assert_eq!(h.ok(&other, "test -e /usr/bin/env; echo $?").await, "0\n");
    h.rt().remove(&id).await.unwrap();
    h.rt().remove(&other).await.unwrap();
}
