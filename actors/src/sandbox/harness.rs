//! What a template sets up inside a sandbox besides its processes, and the hooks it runs
//! (contract §7.3, which the reference records but never runs):
//!
//! - **embedded files** (`files`, inline content) are seeded on the first start only and never
//!   overwrite a file that exists (the user's change wins);
//! - **init scripts** run, in order and with `set -e`, before the sandbox becomes Running; a
//!   failure is phase Error with the script's output in the Ready condition;
//! - the harness **system prompt** and **skills** are written as files on every start (they
//!   belong to the template);
//! - harness **tools** are installed and verified once per tool set, recorded in the
//!   `ToolsReady` condition and an annotation;
//! - **hooks** `onStart`, `onResume`, `onIdle` and `onStop` run at those transitions, bounded by
//!   a timeout, their output in an event; a failing `onStart` sets `OnStartHookSucceeded=False`.
//!
//! Everything runs through the runtime's exec, so it works the same on every runtime; the
//! Kubernetes runtime runs files and init scripts in init containers of the Pod itself (it
//! says so with [`crate::runtime::Runtime::runs_init_steps`]).

use std::time::Duration;

use agenttier_crds::{HooksSpec, SandboxTemplateSpec, ToolSpec};
use kube::ResourceExt;
use sha2::{Digest, Sha256};

use crate::Result;
use crate::runtime::{ExecOutput, ExecRequest, SandboxId};
use crate::store::EventType;

use super::actor::SandboxState;
use super::status::{self, CONTROLLER};

/// Annotation set once the template's embedded files were seeded.
pub const FILES_SEEDED_ANNOTATION: &str = "agenttier.io/files-seeded";
/// Annotation holding the hash of the tool set that was installed and verified.
pub const TOOLS_ANNOTATION: &str = "agenttier.io/tools-installed";
/// The condition recording the tools' install and verify.
pub const TOOLS_CONDITION: &str = "ToolsReady";
/// The condition recording the last `onStart` hook.
pub const ON_START_CONDITION: &str = "OnStartHookSucceeded";

/// How long the init scripts may run together.
const INIT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How long one tool's install or verify may run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How long a hook may run (capped by `maxCommandTimeout`).
const HOOK_TIMEOUT: Duration = Duration::from_secs(60);
/// How much output an event or condition quotes (the end of it).
const OUTPUT_TAIL: usize = 2048;

/// A life-cycle hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// After a start (create, restart).
    Start,
    /// After a resume.
    Resume,
    /// When the idle timeout stops the sandbox, before `onStop`.
    Idle,
    /// Before a stop.
    Stop,
}

impl Hook {
    fn name(self) -> &'static str {
        match self {
            Self::Start => "onStart",
            Self::Resume => "onResume",
            Self::Idle => "onIdle",
            Self::Stop => "onStop",
        }
    }
}

/// One file to write: where, what, and its mode.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileWrite {
    path: String,
    content: String,
    mode: u32,
}

/// What a resolved template asks to set up.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Setup {
    seed_files: Vec<FileWrite>,
    init_scripts: Vec<String>,
    harness_files: Vec<FileWrite>,
    tools: Vec<ToolSpec>,
    hooks: HooksSpec,
    /// `maxCommandTimeout`: caps exec, hooks and invokes.
    pub command_cap: Option<Duration>,
}

impl Setup {
    /// The setup of a merged template whose workspace is at `mount_path`.
    pub fn from_template(template: &SandboxTemplateSpec, mount_path: &str) -> Self {
        let harness = template.harness.clone().unwrap_or_default();
        let seed_files = template
            .files
            .iter()
            .filter_map(|f| {
                Some(FileWrite {
                    path: f.path.clone(),
                    content: f.content.clone()?,
                    mode: u32::try_from(f.mode.unwrap_or(0o644)).unwrap_or(0o644) & 0o7777,
                })
            })
            .collect();
        let base = format!("{}/.agenttier", mount_path.trim_end_matches('/'));
        let mut harness_files = Vec::new();
        if let Some(prompt) = &harness.system_prompt
            && let Some(content) = &prompt.content
        {
            harness_files.push(FileWrite {
                path: prompt
                    .path
                    .clone()
                    .unwrap_or_else(|| format!("{base}/system-prompt.md")),
                content: content.clone(),
                mode: 0o644,
            });
        }
        for skill in &harness.skills {
            let Some(content) = skill.content.as_ref() else {
                continue;
            };
            let Some(text) = &content.content else {
                continue;
            };
            harness_files.push(FileWrite {
                path: content
                    .path
                    .clone()
                    .unwrap_or_else(|| format!("{base}/skills/{}.md", skill.name)),
                content: text.clone(),
                mode: 0o644,
            });
        }
        let command_cap = harness
            .constraints
            .as_ref()
            .and_then(|c| c.max_command_timeout.as_deref())
            .and_then(|d| agenttier_crds::duration::parse_go_duration(d).ok())
            .filter(|d| !d.is_zero());
        Self {
            seed_files,
            init_scripts: template.init_scripts.clone(),
            harness_files,
            tools: harness.tools.clone(),
            hooks: harness.hooks.clone().unwrap_or_default(),
            command_cap,
        }
    }

    /// Whether nothing has to run before the sandbox is Running (a warm-pool instance, which
    /// ran none of this, can be handed out as it is).
    pub fn ready_without_steps(&self) -> bool {
        self.seed_files.is_empty()
            && self.init_scripts.is_empty()
            && self.harness_files.is_empty()
            && self.tools.is_empty()
    }

    /// A timeout capped by `maxCommandTimeout`.
    pub fn capped(&self, timeout: Duration) -> Duration {
        self.command_cap.map_or(timeout, |cap| timeout.min(cap))
    }

    fn tools_hash(&self) -> String {
        let mut hasher = Sha256::new();
        for tool in &self.tools {
            for part in [
                Some(&tool.name),
                tool.version.as_ref(),
                tool.install_command.as_ref(),
                tool.verify_command.as_ref(),
            ] {
                hasher.update(part.map_or("", String::as_str).as_bytes());
                hasher.update([0]);
            }
        }
        hex::encode(&hasher.finalize()[..16])
    }
}

/// The command that writes stdin to `file` (parents created); with `keep`, an existing file is
/// left alone.
fn write_command(file: &FileWrite, keep: bool) -> String {
    let path = quote(&file.path);
    let write = format!(
        "mkdir -p \"$(dirname {path})\" && cat > {path} && chmod {:o} {path}",
        file.mode
    );
    if keep {
        format!("if [ -e {path} ]; then cat > /dev/null; else {write}; fi")
    } else {
        write
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The end of a command's combined output, for an event or a condition.
fn output_tail(output: &ExecOutput) -> String {
    let mut text = output.stdout.clone();
    if !output.stderr.is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&output.stderr);
    }
    let text = text.trim_end();
    let mut start = text.len().saturating_sub(OUTPUT_TAIL);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

impl SandboxState {
    async fn run_setup_command(
        &self,
        id: &SandboxId,
        command: String,
        stdin: Vec<u8>,
        timeout: Duration,
    ) -> std::result::Result<ExecOutput, String> {
        let request = ExecRequest {
            command,
            timeout,
            env: Default::default(),
            working_dir: None,
            stdin,
        };
        self.deps
            .runtime
            .exec(id, request)
            .await
            .map_err(|e| e.to_string())
    }

    /// Sets a started sandbox up before it is Running. `Ok(Err((reason, message)))` is a
    /// permanent failure (an init script or a file that cannot be written).
    pub(super) async fn set_up(
        &mut self,
        setup: &Setup,
        id: &SandboxId,
    ) -> Result<std::result::Result<(), (&'static str, String)>> {
        let mut annotations = Vec::new();
        if !self.deps.runtime.runs_init_steps() {
            let seeded = self
                .sandbox
                .annotations()
                .contains_key(FILES_SEEDED_ANNOTATION);
            if !seeded && !setup.seed_files.is_empty() {
                for file in &setup.seed_files {
                    let written = self
                        .run_setup_command(
                            id,
                            write_command(file, true),
                            file.content.clone().into_bytes(),
                            INIT_TIMEOUT,
                        )
                        .await;
                    match written {
                        Ok(out) if out.exit_code == 0 => {}
                        Ok(out) => {
                            let message = format!(
                                "Template file {} could not be written: {}",
                                file.path,
                                output_tail(&out)
                            );
                            return Ok(Err(("FilesFailed", message)));
                        }
                        Err(e) => {
                            let message =
                                format!("Template file {} could not be written: {e}", file.path);
                            return Ok(Err(("FilesFailed", message)));
                        }
                    }
                }
                let text = format!("Seeded {} template files", setup.seed_files.len());
                self.event("FilesSeeded", EventType::Normal, text, CONTROLLER)
                    .await?;
                annotations.push((FILES_SEEDED_ANNOTATION, "true".to_string()));
            }
            if !setup.init_scripts.is_empty() {
                let script = format!("set -e\n{}", setup.init_scripts.join("\n"));
                let ran = self
                    .run_setup_command(id, script, Vec::new(), INIT_TIMEOUT)
                    .await;
                match ran {
                    Ok(out) if out.exit_code == 0 => {
                        let text = format!(
                            "Ran {} init script lines: {}",
                            setup.init_scripts.len(),
                            output_tail(&out)
                        );
                        self.event("InitScriptsSucceeded", EventType::Normal, text, CONTROLLER)
                            .await?;
                    }
                    Ok(out) => {
                        let message = format!(
                            "Init script failed (exit {}{}): {}",
                            out.exit_code,
                            if out.timed_out { ", timed out" } else { "" },
                            output_tail(&out)
                        );
                        return Ok(Err(("InitScriptFailed", message)));
                    }
                    Err(e) => {
                        return Ok(Err((
                            "InitScriptFailed",
                            format!("Init script failed: {e}"),
                        )));
                    }
                }
            }
        }
        for file in &setup.harness_files {
            let written = self
                .run_setup_command(
                    id,
                    write_command(file, false),
                    file.content.clone().into_bytes(),
                    INIT_TIMEOUT,
                )
                .await;
            let failed = match written {
                Ok(out) if out.exit_code == 0 => None,
                Ok(out) => Some(output_tail(&out)),
                Err(e) => Some(e),
            };
            if let Some(why) = failed {
                let message = format!("Harness file {} could not be written: {why}", file.path);
                return Ok(Err(("FilesFailed", message)));
            }
        }
        let tools_hash = setup.tools_hash();
        let tools_done = self
            .sandbox
            .annotations()
            .get(TOOLS_ANNOTATION)
            .is_some_and(|h| *h == tools_hash);
        let mut tools_condition = None;
        if !setup.tools.is_empty() && !tools_done {
            let outcome = self.install_tools(setup, id).await;
            let (ok, reason, message) = match outcome {
                Ok(names) => (
                    true,
                    "ToolsInstalled",
                    format!("Installed and verified: {names}"),
                ),
                Err(message) => (false, "ToolInstallFailed", message),
            };
            let event_type = if ok {
                EventType::Normal
            } else {
                EventType::Warning
            };
            self.event(reason, event_type, message.clone(), CONTROLLER)
                .await?;
            if ok {
                annotations.push((TOOLS_ANNOTATION, tools_hash));
            }
            tools_condition = Some((ok, reason, message));
        }
        if !annotations.is_empty() || tools_condition.is_some() {
            let generation = self.sandbox.metadata.generation;
            self.save(|sandbox| {
                for (key, value) in &annotations {
                    sandbox
                        .annotations_mut()
                        .insert((*key).to_string(), value.clone());
                }
                if let Some((ok, reason, message)) = &tools_condition {
                    let s = sandbox.status.get_or_insert_with(Default::default);
                    status::set_condition(s, TOOLS_CONDITION, *ok, reason, message, generation);
                }
            })
            .await?;
        }
        Ok(Ok(()))
    }

    /// Installs and verifies each tool; the names on success, what failed otherwise.
    async fn install_tools(
        &self,
        setup: &Setup,
        id: &SandboxId,
    ) -> std::result::Result<String, String> {
        for tool in &setup.tools {
            for (step, command) in [
                ("install", &tool.install_command),
                ("verify", &tool.verify_command),
            ] {
                let Some(command) = command else { continue };
                let out = self
                    .run_setup_command(id, command.clone(), Vec::new(), TOOL_TIMEOUT)
                    .await
                    .map_err(|e| format!("Tool {} {step} failed: {e}", tool.name))?;
                if out.exit_code != 0 {
                    return Err(format!(
                        "Tool {} {step} failed (exit {}): {}",
                        tool.name,
                        out.exit_code,
                        output_tail(&out)
                    ));
                }
            }
        }
        Ok(setup
            .tools
            .iter()
            .map(|t| match &t.version {
                Some(v) => format!("{} {v}", t.name),
                None => t.name.clone(),
            })
            .collect::<Vec<_>>()
            .join(", "))
    }

    /// Runs `hook` if the template has one: bounded by a timeout, its output in a
    /// `HookSucceeded` or `HookFailed` event; `onStart` also sets its condition.
    pub(super) async fn run_hook(&mut self, setup: &Setup, hook: Hook) -> Result<()> {
        let command = match hook {
            Hook::Start => &setup.hooks.on_start,
            Hook::Resume => &setup.hooks.on_resume,
            Hook::Idle => &setup.hooks.on_idle,
            Hook::Stop => &setup.hooks.on_stop,
        };
        let Some(command) = command.clone().filter(|c| !c.trim().is_empty()) else {
            return Ok(());
        };
        let id = super::runtime_id(&self.sandbox);
        let timeout = setup.capped(HOOK_TIMEOUT);
        let ran = self
            .run_setup_command(&id, command, Vec::new(), timeout)
            .await;
        let (ok, message) = match ran {
            Ok(out) if out.exit_code == 0 => (
                true,
                format!("{} hook succeeded: {}", hook.name(), output_tail(&out)),
            ),
            Ok(out) if out.timed_out => (
                false,
                format!(
                    "{} hook timed out after {}s: {}",
                    hook.name(),
                    timeout.as_secs(),
                    output_tail(&out)
                ),
            ),
            Ok(out) => (
                false,
                format!(
                    "{} hook failed (exit {}): {}",
                    hook.name(),
                    out.exit_code,
                    output_tail(&out)
                ),
            ),
            Err(e) => (false, format!("{} hook could not run: {e}", hook.name())),
        };
        let (reason, event_type) = if ok {
            ("HookSucceeded", EventType::Normal)
        } else {
            ("HookFailed", EventType::Warning)
        };
        self.event(reason, event_type, message.clone(), CONTROLLER)
            .await?;
        if hook == Hook::Start {
            let generation = self.sandbox.metadata.generation;
            let reason = if ok { "HookSucceeded" } else { "HookFailed" };
            self.save(|sandbox| {
                let s = sandbox.status.get_or_insert_with(Default::default);
                status::set_condition(s, ON_START_CONDITION, ok, reason, &message, generation);
            })
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agenttier_crds::{ConstraintsSpec, FileOrRef, HarnessSpec, SkillSpec, TemplateFile};

    #[test]
    fn a_template_becomes_a_setup() {
        let template = SandboxTemplateSpec {
            init_scripts: vec!["echo one".into()],
            files: vec![
                TemplateFile {
                    path: "/workspace/README.md".into(),
                    content: Some("hi".into()),
                    mode: Some(0o600),
                    ..Default::default()
                },
                TemplateFile {
                    path: "/workspace/from-ref".into(),
                    ..Default::default()
                },
            ],
            harness: Some(HarnessSpec {
                system_prompt: Some(FileOrRef {
                    content: Some("be brief".into()),
                    ..Default::default()
                }),
                skills: vec![SkillSpec {
                    name: "git".into(),
                    content: Some(FileOrRef {
                        content: Some("use git".into()),
                        ..Default::default()
                    }),
                }],
                constraints: Some(ConstraintsSpec {
                    max_command_timeout: Some("5s".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let setup = Setup::from_template(&template, "/workspace");
        assert_eq!(setup.seed_files.len(), 1, "only inline content is seeded");
        assert_eq!(setup.seed_files[0].mode, 0o600);
        let paths: Vec<_> = setup
            .harness_files
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        assert_eq!(
            paths,
            [
                "/workspace/.agenttier/system-prompt.md",
                "/workspace/.agenttier/skills/git.md"
            ]
        );
        assert_eq!(
            setup.capped(Duration::from_secs(30)),
            Duration::from_secs(5)
        );
        assert_eq!(setup.capped(Duration::from_secs(2)), Duration::from_secs(2));
    }

    #[test]
    fn seeding_never_overwrites() {
        let file = FileWrite {
            path: "/w/it's.txt".into(),
            content: String::new(),
            mode: 0o644,
        };
        let keep = write_command(&file, true);
        assert!(keep.starts_with(r"if [ -e '/w/it'\''s.txt' ]; then cat > /dev/null;"));
        assert!(write_command(&file, false).starts_with("mkdir -p"));
    }

    #[test]
    fn output_tails_keep_the_end() {
        let out = ExecOutput {
            stdout: "a".repeat(OUTPUT_TAIL) + "end\n",
            stderr: "oops\n".into(),
            ..Default::default()
        };
        let tail = output_tail(&out);
        assert!(tail.ends_with("end\noops") && tail.len() == OUTPUT_TAIL);
    }
}
