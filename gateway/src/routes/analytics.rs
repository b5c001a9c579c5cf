//! Usage and capacity (contract §4.18): `/analytics/usage`, `/analytics/costs` (admin),
//! `/cluster/status` and `/cluster/nodes` (admin). On the local runtime "the cluster" is this
//! machine: its CPUs and memory are the allocatable capacity, the running sandboxes' effective
//! resources (their own over their template's) are the requests.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use agenttier_actors::sandbox::StoreTemplates;
use agenttier_crds::resolve::{effective_sandbox_spec, resolve_template};
use agenttier_crds::{Sandbox, SandboxPhase, quantity};
use kube::ResourceExt;

use crate::auth::Identity;
use crate::error::ApiResult;
use crate::extract::ApiQuery;
use crate::state::AppState;

/// The routes of this file.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/analytics/usage", get(usage))
        .route("/analytics/costs", get(costs))
        .route("/cluster/status", get(cluster_status))
        .route("/cluster/nodes", get(cluster_nodes))
}

/// What a sandbox asks for, in millicores and bytes, plus its workspace size.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Footprint {
    cpu_millis: u64,
    mem_bytes: u64,
    storage_bytes: u64,
}

/// A sandbox's effective footprint: requests, else limits, of its spec over its template.
fn footprint(templates: &StoreTemplates, sandbox: &Sandbox) -> Footprint {
    let namespace = sandbox.namespace().unwrap_or_default();
    let spec = match resolve_template(templates, &sandbox.spec.template_ref, &namespace) {
        Ok(resolved) => effective_sandbox_spec(&sandbox.spec, &resolved.spec),
        Err(_) => sandbox.spec.clone(),
    };
    let resources = spec.resources.unwrap_or_default();
    let pick = |name: &str| {
        resources
            .requests
            .as_ref()
            .and_then(|r| r.get(name))
            .or_else(|| resources.limits.as_ref().and_then(|l| l.get(name)))
            .map(|q| q.0.clone())
    };
    Footprint {
        cpu_millis: pick("cpu")
            .and_then(|q| quantity::parse_millicores(&q).ok())
            .unwrap_or(0),
        mem_bytes: pick("memory")
            .and_then(|q| quantity::parse_bytes(&q).ok())
            .unwrap_or(0),
        storage_bytes: spec
            .storage
            .and_then(|s| s.size)
            .and_then(|q| quantity::parse_bytes(&q).ok())
            .unwrap_or(10 * 1024 * 1024 * 1024),
    }
}

fn phase_key(sandbox: &Sandbox) -> String {
    sandbox
        .phase()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "creating".to_string())
}

/// GET `/analytics/usage` (admin).
pub async fn usage(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
) -> ApiResult<Json<Value>> {
    identity.require_admin()?;
    let sandboxes = state.control.list();
    let mut status = BTreeMap::<String, u64>::new();
    let mut templates = BTreeMap::<String, u64>::new();
    let (mut startup_ms_total, mut samples) = (0f64, 0u64);
    for sandbox in &sandboxes {
        *status.entry(phase_key(sandbox)).or_default() += 1;
        let status_ref = sandbox.status.as_ref();
        let template = status_ref
            .and_then(|s| s.resolved_template.clone())
            .unwrap_or_else(|| "unknown".to_string());
        *templates.entry(template).or_default() += 1;
        if let (Some(started), Some(created)) = (
            status_ref.and_then(|s| s.started_at.as_ref()),
            sandbox.metadata.creation_timestamp.as_ref(),
        ) {
            let ms = started.0.as_millisecond() - created.0.as_millisecond();
            if ms >= 0 {
                startup_ms_total += ms as f64;
                samples += 1;
            }
        }
    }
    Ok(Json(json!({
        "total_sandboxes": sandboxes.len(),
        "status_breakdown": status,
        "template_breakdown": templates,
        "avg_startup_ms": if samples > 0 { startup_ms_total / samples as f64 } else { 0.0 },
        "startup_sample_count": samples,
    })))
}

/// Unit prices of the cost estimate; each can be overridden per request.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", default)]
pub struct Prices {
    /// Price of one CPU core for one hour.
    cpu_core_hour: f64,
    /// Price of one GiB of memory for one hour.
    memory_gib_hour: f64,
    /// Price of one GiB of workspace storage for one month.
    storage_gib_month: f64,
}

impl Default for Prices {
    fn default() -> Self {
        Self {
            cpu_core_hour: 0.04,
            memory_gib_hour: 0.005,
            storage_gib_month: 0.10,
        }
    }
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const HOURS_PER_MONTH: f64 = 720.0;

/// GET `/analytics/costs` (admin): monthly cost from the running sandboxes' actual resources and
/// every sandbox's workspace, at the given (or default) unit prices.
pub async fn costs(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    ApiQuery(prices): ApiQuery<Prices>,
) -> ApiResult<Json<Value>> {
    identity.require_admin()?;
    let templates = StoreTemplates::load(state.control.store.as_ref()).await?;
    let sandboxes = state.control.list();
    let (mut running, mut stopped) = (0u64, 0u64);
    let (mut compute, mut storage) = (0f64, 0f64);
    let mut per_template = BTreeMap::<String, (f64, u64)>::new();
    for sandbox in &sandboxes {
        let footprint = footprint(&templates, sandbox);
        let storage_hourly =
            footprint.storage_bytes as f64 / GIB * prices.storage_gib_month / HOURS_PER_MONTH;
        storage += storage_hourly;
        let mut hourly = storage_hourly;
        match sandbox.phase() {
            Some(SandboxPhase::Running) => {
                running += 1;
                let compute_hourly = footprint.cpu_millis as f64 / 1000.0 * prices.cpu_core_hour
                    + footprint.mem_bytes as f64 / GIB * prices.memory_gib_hour;
                compute += compute_hourly;
                hourly += compute_hourly;
            }
            Some(SandboxPhase::Stopped) => stopped += 1,
            _ => {}
        }
        let template = sandbox.spec.template_ref.name.clone();
        let entry = per_template.entry(template).or_default();
        entry.0 += hourly;
        entry.1 += 1;
    }
    let per_template: Vec<Value> = per_template
        .into_iter()
        .map(|(template, (hourly, count))| json!({"template": template, "hourly_cost": hourly, "count": count}))
        .collect();
    Ok(Json(json!({
        "running_sandboxes": running,
        "stopped_sandboxes": stopped,
        "total_hourly_compute": compute,
        "total_hourly_storage": storage,
        "total_estimated_monthly": (compute + storage) * HOURS_PER_MONTH,
        "per_template": per_template,
        "prices": {
            "cpuCoreHour": prices.cpu_core_hour,
            "memoryGibHour": prices.memory_gib_hour,
            "storageGibMonth": prices.storage_gib_month,
        },
    })))
}

/// GET `/cluster/status`: on the local runtime, one node (this machine).
pub async fn cluster_status(State(state): State<AppState>) -> Json<Value> {
    let running = state
        .control
        .list()
        .iter()
        .filter(|s| s.phase() == Some(SandboxPhase::Running))
        .count();
    Json(json!({
        "nodes": 1,
        "nodesReady": 1,
        "pods": running,
        "sandboxPods": running,
        "headroomReady": 0,
        "autoscalerEnabled": false,
    }))
}

/// This machine's CPU (millicores) and memory (bytes).
fn machine_capacity() -> (u64, u64) {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1);
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    (cpus * 1000, mem_kib * 1024)
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 / whole as f64 * 1000.0).round() / 10.0
    }
}

/// GET `/cluster/nodes` (admin): allocatable versus requested CPU and memory, and saturation.
pub async fn cluster_nodes(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
) -> ApiResult<Json<Value>> {
    identity.require_admin()?;
    let templates = StoreTemplates::load(state.control.store.as_ref()).await?;
    let (cpu, mem) = machine_capacity();
    let (mut req_cpu, mut req_mem) = (0u64, 0u64);
    for sandbox in state
        .control
        .list()
        .iter()
        .filter(|s| s.phase() == Some(SandboxPhase::Running))
    {
        let footprint = footprint(&templates, sandbox);
        req_cpu += footprint.cpu_millis;
        req_mem += footprint.mem_bytes;
    }
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let allocatable = json!({"cpuMillis": cpu, "memBytes": mem});
    let requests = json!({"cpuMillis": req_cpu, "memBytes": req_mem});
    Ok(Json(json!({
        "nodes": [{
            "name": name,
            "ready": true,
            "nodeGroup": "local",
            "allocatable": allocatable,
            "requests": requests,
        }],
        "summary": {
            "ready": 1,
            "total": 1,
            "cpuSaturationPct": percent(req_cpu, cpu),
            "memSaturationPct": percent(req_mem, mem),
            "allocatable": allocatable,
            "requests": requests,
        },
    })))
}

#[cfg(test)]
mod tests {
    use super::percent;

    #[test]
    fn saturation_has_one_decimal() {
        assert_eq!(percent(1, 3), 33.3);
        assert_eq!(percent(0, 0), 0.0);
        assert_eq!(percent(2000, 2000), 100.0);
    }
}
