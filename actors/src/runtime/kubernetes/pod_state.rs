//! What a Pod's status means for a sandbox, and waiting for it to settle. Image pull failures and
//! container configs the kubelet refuses are permanent (retrying with backoff will not help: the
//! sandbox goes to Error with `InvalidConfig`); a Pod that ended is a failed start; anything else
//! is still starting.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::Api;
use kube::runtime::wait::await_condition;

use super::pod;

/// Waiting reasons that end a start for good.
const PERMANENT_WAITING: &[&str] = &[
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// A Pod's state as far as a start is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodState {
    /// Every container runs and the Pod is Ready.
    Ready,
    /// Still being scheduled, pulled or initialised; the text says where it is.
    Starting(String),
    /// The kubelet cannot run it as specified (image pull, container config).
    Invalid(String),
    /// The Pod ended (Succeeded or Failed), or an init container failed.
    Ended(String),
    /// One of the runtime's own setup steps (`file-deployer`, `init-scripts`) failed: the
    /// template's files or init scripts, which no retry will fix.
    SetupFailed {
        /// The init container.
        container: String,
        /// Its exit code.
        exit_code: i32,
        /// Its termination message: the end of its output (`FallbackToLogsOnError`).
        output: String,
    },
    /// Deleted (or being deleted).
    Gone,
}

fn waiting_problem(statuses: &[ContainerStatus]) -> Option<String> {
    statuses.iter().find_map(|s| {
        let waiting = s.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        PERMANENT_WAITING.contains(&reason).then(|| {
            format!(
                "container {}: {reason}: {}",
                s.name,
                waiting.message.clone().unwrap_or_default()
            )
        })
    })
}

fn terminated(statuses: &[ContainerStatus]) -> Option<String> {
    statuses.iter().find_map(|s| {
        let t = s.state.as_ref()?.terminated.as_ref()?;
        (t.exit_code != 0).then(|| {
            format!(
                "container {} exited with code {} ({})",
                s.name,
                t.exit_code,
                t.reason.clone().unwrap_or_default()
            )
        })
    })
}

fn failed_setup_step(init: &[ContainerStatus]) -> Option<PodState> {
    init.iter().find_map(|s| {
        if s.name != pod::FILE_DEPLOYER && s.name != pod::INIT_SCRIPTS {
            return None;
        }
        let t = s.state.as_ref()?.terminated.as_ref()?;
        (t.exit_code != 0).then(|| PodState::SetupFailed {
            container: s.name.clone(),
            exit_code: t.exit_code,
            output: t.message.clone().unwrap_or_default().trim_end().to_string(),
        })
    })
}

/// Classifies a Pod.
pub fn classify(pod: &Pod) -> PodState {
    if pod.metadata.deletion_timestamp.is_some() {
        return PodState::Gone;
    }
    let Some(status) = &pod.status else {
        return PodState::Starting("Pending".into());
    };
    let init = status.init_container_statuses.clone().unwrap_or_default();
    let main = status.container_statuses.clone().unwrap_or_default();
    if let Some(problem) = waiting_problem(&init).or_else(|| waiting_problem(&main)) {
        return PodState::Invalid(problem);
    }
    if let Some(failed) = failed_setup_step(&init) {
        return failed;
    }
    let phase = status.phase.as_deref().unwrap_or("Pending");
    if matches!(phase, "Failed" | "Succeeded") {
        let why = terminated(&init)
            .or_else(|| terminated(&main))
            .or_else(|| status.reason.clone())
            .unwrap_or_else(|| format!("pod phase {phase}"));
        return PodState::Ended(why);
    }
    if let Some(failed_init) = terminated(&init) {
        return PodState::Ended(format!("init {failed_init}"));
    }
    let ready = status
        .conditions
        .as_ref()
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    if phase == "Running" && ready {
        return PodState::Ready;
    }
    let detail = status
        .conditions
        .as_ref()
        .and_then(|c| {
            c.iter()
                .find(|c| c.status == "False" && c.message.is_some())
                .map(|c| {
                    format!(
                        "{}: {}",
                        c.reason.clone().unwrap_or_default(),
                        c.message.clone().unwrap_or_default()
                    )
                })
        })
        .unwrap_or_else(|| phase.to_string());
    PodState::Starting(detail)
}

/// Waits until the Pod is no longer starting (or `timeout` passes, returning the last state).
pub async fn wait_settled(
    pods: &Api<Pod>,
    name: &str,
    timeout: Duration,
) -> Result<PodState, kube::Error> {
    let settled = |pod: Option<&Pod>| match pod {
        None => true,
        Some(pod) => !matches!(classify(pod), PodState::Starting(_)),
    };
    match tokio::time::timeout(timeout, await_condition(pods.clone(), name, settled)).await {
        Ok(Ok(Some(pod))) => Ok(classify(&pod)),
        Ok(Ok(None)) => Ok(PodState::Gone),
        Ok(Err(error)) => Err(kube::Error::Service(Box::new(error))),
        Err(_) => Ok(match pods.get_opt(name).await? {
            Some(pod) => classify(&pod),
            None => PodState::Gone,
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "status": status}))
            .unwrap()
    }

    #[test]
    fn ready_running_pods_are_ready() {
        let p = pod(serde_json::json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}]}));
        assert_eq!(classify(&p), PodState::Ready);
        let starting = pod(serde_json::json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/1 nodes are available"}]}));
        assert_eq!(
            classify(&starting),
            PodState::Starting("Unschedulable: 0/1 nodes are available".into())
        );
    }

    #[test]
    fn image_pull_back_off_is_permanent_but_err_image_pull_is_not_yet() {
        let waiting = |reason: &str| {
            pod(
                serde_json::json!({"phase": "Pending", "containerStatuses": [{"name": "sandbox",
                "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": reason, "message": "no such image"}}}]}),
            )
        };
        assert!(
            matches!(classify(&waiting("ImagePullBackOff")), PodState::Invalid(m) if m.contains("ImagePullBackOff"))
        );
        assert!(matches!(
            classify(&waiting("ErrImagePull")),
            PodState::Starting(_)
        ));
        assert!(matches!(
            classify(&waiting("ErrImageNeverPull")),
            PodState::Invalid(_)
        ));
    }

    #[test]
    fn ended_pods_and_failed_init_containers_end_the_start() {
        let failed = pod(
            serde_json::json!({"phase": "Failed", "initContainerStatuses": [{
            "name": "vault-agent", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}]}),
        );
        assert_eq!(
            classify(&failed),
            PodState::Ended("container vault-agent exited with code 3 (Error)".into()),
            "a template's own init container failing is a failed start"
        );
        let init_script = pod(
            serde_json::json!({"phase": "Failed", "initContainerStatuses": [
            {"name": "fix-permissions", "image": "x", "imageID": "", "ready": true,
             "restartCount": 0, "state": {"terminated": {"exitCode": 0}}},
            {"name": "init-scripts", "image": "x", "imageID": "", "ready": false,
             "restartCount": 0, "state": {"terminated": {"exitCode": 3, "reason": "Error",
             "message": "preparing\nno such tool\n"}}}]}),
        );
        assert_eq!(
            classify(&init_script),
            PodState::SetupFailed {
                container: "init-scripts".into(),
                exit_code: 3,
                output: "preparing\nno such tool".into()
            }
        );
        let mut deleting = pod(serde_json::json!({"phase": "Running"}));
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        assert_eq!(classify(&deleting), PodState::Gone);
    }
}
