// Metrics: live sandbox counts (with a sparkline of the last minutes), average startup time,
// reconcile queue depth and the warm pool. Each source fails on its own.

import { useMemo } from "react";
import { auditEvents, listSandboxes, metricsText, usage, warmPool } from "../api/endpoints";
import { Bars, Sparkline } from "../components/Charts";
import { ErrorNote, Unavailable } from "../components/Notice";
import { metricValue, parsePrometheus, type Sample } from "../lib/prometheus";
import { HISTORY, recordSandboxes, runningHistory } from "../lib/history";
import { usePoll } from "../lib/usePoll";

const REFRESH_MS = 5000;

const QUEUE_METRICS = [
  "agenttier_reconcile_queue_depth",
  "agenttier_reconcile_queue_length",
  "agenttier_sandbox_reconcile_queue_depth",
  "agenttier_actor_mailbox_depth",
];
const STARTUP_SUM = ["agenttier_sandbox_startup_seconds_sum", "agenttier_sandbox_startup_duration_seconds_sum"];
const STARTUP_COUNT = ["agenttier_sandbox_startup_seconds_count", "agenttier_sandbox_startup_duration_seconds_count"];

async function loadMetrics(): Promise<Sample[]> {
  return parsePrometheus(await metricsText());
}

/** Startup times (ms) from the audit trail's `Running` events ("… (startup: 12 ms)"). */
export function startupTimes(reasons: string[]): number[] {
  const out: number[] = [];
  for (const r of reasons) {
    const m = /startup: ?(\d+(?:\.\d+)?) ?(ms|s)\b/.exec(r);
    if (m) out.push(parseFloat(m[1]) * (m[2] === "s" ? 1000 : 1));
  }
  return out;
}

async function loadStartups(): Promise<number[]> {
  const page = await auditEvents({ action: "Running" });
  return startupTimes(page.events.filter((e) => e.eventType === "Running").map((e) => String(e.details?.reason ?? "")));
}

export default function MetricsPage() {
  const sandboxes = usePoll(async () => {
    const list = await listSandboxes();
    recordSandboxes(list);
    return list;
  }, REFRESH_MS);
  const analytics = usePoll(usage, REFRESH_MS);
  const pool = usePoll(warmPool, REFRESH_MS);
  const prom = usePoll(loadMetrics, REFRESH_MS);
  // Without the analytics route, the audit trail's Running events carry each startup time.
  const startups = usePoll(() => (analytics.unavailable ? loadStartups() : Promise.resolve([])), REFRESH_MS, [
    analytics.unavailable,
  ]);

  const byStatus = useMemo(() => {
    const c: Record<string, number> = {};
    for (const s of sandboxes.data ?? []) c[s.status || "Pending"] = (c[s.status || "Pending"] ?? 0) + 1;
    return c;
  }, [sandboxes.data]);
  const byTemplate = useMemo(() => {
    const c: Record<string, number> = {};
    for (const s of sandboxes.data ?? []) c[s.templateRef || "unknown"] = (c[s.templateRef || "unknown"] ?? 0) + 1;
    return c;
  }, [sandboxes.data]);
  const running = byStatus.Running ?? 0;

  const queueDepth = prom.data ? metricValue(prom.data, QUEUE_METRICS) : undefined;
  let avgStartupMs = analytics.data?.avg_startup_ms;
  let startupSamples = analytics.data?.startup_sample_count;
  if (avgStartupMs === undefined && startups.data?.length) {
    avgStartupMs = startups.data.reduce((a, b) => a + b, 0) / startups.data.length;
    startupSamples = startups.data.length;
  }
  if (avgStartupMs === undefined && prom.data) {
    const sum = metricValue(prom.data, STARTUP_SUM);
    const count = metricValue(prom.data, STARTUP_COUNT);
    if (sum !== undefined && count) {
      avgStartupMs = (sum / count) * 1000;
      startupSamples = count;
    }
  }

  const STATUS_ORDER = ["Running", "Creating", "Stopped", "Error", "Pending"];
  const statusBars = Object.entries(byStatus)
    .sort(([a], [b]) => STATUS_ORDER.indexOf(a) - STATUS_ORDER.indexOf(b))
    .map(([label, value]) => ({ label, value, className: `status-${label.toLowerCase()}` }));

  return (
    <section aria-labelledby="metrics-title">
      <div className="page-head">
        <div>
          <h1 id="metrics-title">Metrics</h1>
          <p className="muted">Refreshes every {REFRESH_MS / 1000} s.</p>
        </div>
      </div>
      <ErrorNote>{sandboxes.error}</ErrorNote>
      <div className="stats">
        <div className="stat">
          <span className="stat-label">Running sandboxes</span>
          <span className="stat-value" data-testid="running-count">
            {sandboxes.data ? running : "…"}
          </span>
          <Sparkline points={runningHistory()} label={`Running sandboxes over the last ${HISTORY} samples`} />
        </div>
        <div className="stat">
          <span className="stat-label">Total sandboxes</span>
          <span className="stat-value">{sandboxes.data ? sandboxes.data.length : "…"}</span>
        </div>
        <div className="stat">
          <span className="stat-label">Average startup</span>
          <span className="stat-value">
            {avgStartupMs !== undefined ? `${Math.round(avgStartupMs)} ms` : analytics.unavailable && prom.unavailable ? "n/a" : "—"}
          </span>
          <span className="muted small">
            {avgStartupMs !== undefined
              ? `over ${startupSamples ?? 0} starts`
              : analytics.unavailable
                ? "not available on this server"
                : ""}
          </span>
        </div>
        <div className="stat">
          <span className="stat-label">Reconcile queue depth</span>
          <span className="stat-value">{queueDepth !== undefined ? queueDepth : "n/a"}</span>
          <span className="muted small">
            {queueDepth !== undefined ? "from /metrics" : prom.unavailable || prom.error ? "not available on this server" : "not exported"}
          </span>
        </div>
      </div>
      <div className="chart-grid">
        <Bars title="Sandboxes by status" bars={statusBars} />
        <Bars
          title="Sandboxes by template"
          bars={Object.entries(byTemplate)
            .sort((a, b) => b[1] - a[1])
            .map(([label, value]) => ({ label, value }))}
        />
      </div>
      <h2>Warm pool</h2>
      {pool.unavailable ? (
        <Unavailable what="The warm pool" endpoint="GET /api/v1/warmpool/status" />
      ) : pool.error ? (
        <ErrorNote>{pool.error}</ErrorNote>
      ) : !pool.data?.pools?.length ? (
        <p className="muted">No warm pool is configured.</p>
      ) : (
        <table className="table">
          <thead>
            <tr>
              <th scope="col">Template</th>
              <th scope="col" className="num">
                Desired
              </th>
              <th scope="col" className="num">
                Ready
              </th>
              <th scope="col" className="num">
                Pending
              </th>
              <th scope="col">Fill</th>
            </tr>
          </thead>
          <tbody>
            {pool.data.pools.map((p) => (
              <tr key={p.template}>
                <td>{p.template}</td>
                <td className="num">{p.desiredCount ?? 0}</td>
                <td className="num">{p.readyCount ?? 0}</td>
                <td className="num">{p.pendingCount ?? 0}</td>
                <td>
                  <meter min={0} max={Math.max(1, p.desiredCount ?? 0)} value={p.readyCount ?? 0} aria-label={`${p.template} pool fill`} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
