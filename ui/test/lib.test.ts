import { describe, expect, it } from "vitest";
import { estimate, footprint } from "../src/lib/cost";
import { durationError, parseDuration } from "../src/lib/duration";
import { metricValue, parsePrometheus } from "../src/lib/prometheus";
import { formatBytes, parseQuantity } from "../src/lib/quantity";
import { formatAge, parseTime } from "../src/lib/time";
import { filterEvents } from "../src/pages/Activity";
import { crumbs, joinPath } from "../src/pages/Files";
import { formToPolicy, policyToForm } from "../src/pages/Settings";
import { highlightYaml } from "../src/lib/yamlHighlight";
import type { AuditEvent, Sandbox, Template } from "../src/api/types";
import { SANDBOX, TEMPLATE } from "./fetchMock";

describe("times", () => {
  it("reads Go's time text and RFC 3339", () => {
    expect(parseTime("2025-01-02 03:04:05 +0000 UTC")).toBe(Date.UTC(2025, 0, 2, 3, 4, 5));
    expect(parseTime("2025-01-02 03:04:05.123456789 +0000 UTC")).toBe(Date.UTC(2025, 0, 2, 3, 4, 5, 123));
    expect(parseTime("2025-01-02 05:04:05 +0200 CEST")).toBe(Date.UTC(2025, 0, 2, 3, 4, 5));
    expect(parseTime("2025-01-02T03:04:05Z")).toBe(Date.UTC(2025, 0, 2, 3, 4, 5));
    expect(parseTime("")).toBeNaN();
    expect(parseTime("yesterday")).toBeNaN();
  });
  it("formats ages compactly", () => {
    expect(formatAge(5_000)).toBe("5s");
    expect(formatAge(3 * 60_000)).toBe("3m");
    expect(formatAge(2 * 3_600_000 + 5 * 60_000)).toBe("2h 5m");
    expect(formatAge(49 * 3_600_000)).toBe("2d 1h");
    expect(formatAge(NaN)).toBe("—");
  });
});

describe("durations and quantities", () => {
  it("parses Go durations", () => {
    expect(parseDuration("30s")).toBe(30_000);
    expect(parseDuration("1h30m")).toBe(5_400_000);
    expect(parseDuration("1.5h")).toBe(5_400_000);
    expect(parseDuration("250ms")).toBe(250);
    expect(parseDuration("10")).toBeNull();
    expect(parseDuration("1d")).toBeNull();
    expect(parseDuration("")).toBeNull();
  });
  it("explains bad timeouts", () => {
    expect(durationError("")).toBeNull();
    expect(durationError("8h")).toBeNull();
    expect(durationError("8 hours")).toMatch(/duration/);
    expect(durationError("0s")).toMatch(/positive/);
  });
  it("parses Kubernetes quantities", () => {
    expect(parseQuantity("500m")).toBe(0.5);
    expect(parseQuantity("2")).toBe(2);
    expect(parseQuantity("512Mi")).toBe(512 * 1024 ** 2);
    expect(parseQuantity("1G")).toBe(1e9);
    expect(parseQuantity("1e3")).toBe(1000);
    expect(parseQuantity("ten")).toBeNull();
    expect(formatBytes(1536)).toBe("1.5 KiB");
  });
});

describe("cost estimate", () => {
  const t = TEMPLATE as unknown as Template;
  it("uses limits and storage of the template", () => {
    expect(footprint(t)).toEqual({ cpu: 2, memGib: 2, storageGib: 10 });
  });
  it("charges compute for running sandboxes and storage for all", () => {
    const running = SANDBOX as Sandbox;
    const stopped = { ...SANDBOX, name: "b", status: "Stopped" } as Sandbox;
    const e = estimate([running, stopped], [t], { cpuHour: 0.04, memGibHour: 0.005, storageGibMonth: 0.1 });
    expect(e.running).toBe(1);
    expect(e.stopped).toBe(1);
    expect(e.hourlyCompute).toBeCloseTo(0.09);
    expect(e.monthlyCompute).toBeCloseTo(0.09 * 720);
    expect(e.monthlyStorage).toBeCloseTo(2);
    expect(e.monthly).toBeCloseTo(0.09 * 720 + 2);
    expect(e.lines[0].template).toBe("general-coding");
  });
});

describe("prometheus text", () => {
  it("reads samples with labels", () => {
    const samples = parsePrometheus(
      '# HELP x y\n# TYPE a gauge\nagenttier_reconcile_queue_depth{kind="sandbox"} 3\nagenttier_reconcile_queue_depth{kind="pool"} 2\nother 1.5e2\n',
    );
    expect(samples).toHaveLength(3);
    expect(samples[0].labels).toEqual({ kind: "sandbox" });
    expect(metricValue(samples, ["missing", "agenttier_reconcile_queue_depth"])).toBe(5);
    expect(metricValue(samples, ["other"])).toBe(150);
    expect(metricValue(samples, ["nope"])).toBeUndefined();
  });
});

describe("yaml highlighting", () => {
  it("marks keys, values and comments and escapes HTML", () => {
    const html = highlightYaml('name: <b>x</b> # note\nreplicas: 3\nlist:\n  - "a"\nok: true');
    expect(html).toContain('<span class="y-key">name</span>');
    expect(html).toContain("&lt;b&gt;x&lt;/b&gt;");
    expect(html).not.toContain("<b>");
    expect(html).toContain('<span class="y-comment"># note</span>');
    expect(html).toContain('<span class="y-num">3</span>');
    expect(html).toContain('<span class="y-bool">true</span>');
  });
});

describe("activity filters", () => {
  const ev = (eventType: string, timestamp: string, userEmail = ""): AuditEvent => ({
    timestamp,
    eventType,
    sandboxId: "s",
    sandboxName: "s",
    namespace: "default",
    userEmail,
    details: { reason: "r" },
  });
  const events = [
    ev("Creating", "2026-01-01T10:00:00Z", "ann@x"),
    ev("Running", "2026-01-01T10:00:01Z", "ann@x"),
    ev("Stopped", "2026-01-02T10:00:00Z", "bob@x"),
  ];
  it("filters on action, user and time, newest first", () => {
    expect(filterEvents(events, { action: "", user: "", from: "", to: "" }).map((e) => e.eventType)).toEqual([
      "Stopped",
      "Running",
      "Creating",
    ]);
    expect(filterEvents(events, { action: "Running", user: "", from: "", to: "" })).toHaveLength(1);
    expect(filterEvents(events, { action: "", user: "BOB", from: "", to: "" })).toHaveLength(1);
    const from = new Date(Date.parse("2026-01-02T00:00:00Z"));
    const local = new Date(from.getTime() - from.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
    expect(filterEvents(events, { action: "", user: "", from: local, to: "" }).map((e) => e.eventType)).toEqual([
      "Stopped",
    ]);
  });
});

describe("files paths", () => {
  it("joins and splits paths", () => {
    expect(joinPath("/workspace/", "a b")).toBe("/workspace/a b");
    expect(crumbs("/workspace/src")).toEqual([
      { name: "/", path: "/" },
      { name: "workspace", path: "/workspace" },
      { name: "src", path: "/workspace/src" },
    ]);
  });
});

describe("policy form", () => {
  it("round-trips a policy and leaves empty fields out", () => {
    const form = policyToForm({ maxSandboxesPerUser: 3, allowedTemplates: ["a", "b"], maxMemory: "4Gi" });
    expect(form.allowedTemplates).toBe("a, b");
    expect(form.maxCpu).toBe("");
    expect(formToPolicy(form)).toEqual({
      policy: { maxSandboxesPerUser: 3, allowedTemplates: ["a", "b"], maxMemory: "4Gi" },
      problems: {},
    });
  });
  it("reports bad values per field", () => {
    const form = { ...policyToForm({}), maxSandboxesPerUser: "-1", maxTimeout: "soon", maxCpu: "lots" };
    expect(Object.keys(formToPolicy(form).problems).sort()).toEqual(["maxCpu", "maxSandboxesPerUser", "maxTimeout"]);
  });
});

describe("startup times from the audit trail", async () => {
  const { startupTimes } = await import("../src/pages/Metrics");
  it("reads the startup of each Running event", () => {
    expect(startupTimes(["Sandbox is ready (startup: 12 ms)", "Sandbox is ready from warm pool (startup: 1.5s)", "other"])).toEqual([12, 1500]);
  });
});

describe("running history", async () => {
  const { recordSandboxes, runningHistory, resetHistory, HISTORY } = await import("../src/lib/history");
  it("keeps one sample a second, the last HISTORY of them", () => {
    resetHistory();
    const run = { ...SANDBOX } as Sandbox;
    const stop = { ...SANDBOX, status: "Stopped" } as Sandbox;
    recordSandboxes([run, run], 1000);
    recordSandboxes([run, stop], 1500); // same second: replaces
    recordSandboxes([stop], 2600);
    expect(runningHistory()).toEqual([1, 0]);
    for (let i = 0; i < HISTORY + 5; i++) recordSandboxes([run], 10_000 + i * 1000);
    expect(runningHistory()).toHaveLength(HISTORY);
  });
});

describe("preview addresses", async () => {
  const { previewHref } = await import("../src/pages/SandboxCard");
  it("uses the same-origin proxy unless the server names another origin", () => {
    expect(previewHref("a b", undefined, 8000)).toBe("/api/v1/sandboxes/a%20b/preview/8000/");
    expect(previewHref("x", `${window.location.origin}/api/v1/sandboxes/x/preview/8000/`, 8000)).toBe(
      "/api/v1/sandboxes/x/preview/8000/",
    );
    expect(previewHref("x", "https://sandbox-x-8000.preview.example/", 8000)).toBe("https://sandbox-x-8000.preview.example/");
  });
});
