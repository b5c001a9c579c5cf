// Monthly cost of running resources with unit prices the user sets. A running sandbox pays for
// its CPU and memory limits (or requests) and its storage; a stopped one only for its storage.

import type { Sandbox, Template } from "../api/types";
import { GIB, parseQuantity } from "./quantity";

export interface Prices {
  /** per vCPU per hour */
  cpuHour: number;
  /** per GiB of memory per hour */
  memGibHour: number;
  /** per GiB of storage per month */
  storageGibMonth: number;
}

/** Defaults close to the contract's reference estimator (0.04/vCPU-h, 0.005/GB-h). */
export const DEFAULT_PRICES: Prices = { cpuHour: 0.04, memGibHour: 0.005, storageGibMonth: 0.1 };

export const HOURS_PER_MONTH = 720;

export interface Footprint {
  cpu: number;
  memGib: number;
  storageGib: number;
}

/** What one sandbox of a template holds: limits, else requests; storage 10Gi by default. */
export function footprint(template: Template | undefined): Footprint {
  const r = template?.spec?.resources;
  const cpu = parseQuantity(r?.limits?.cpu ?? r?.requests?.cpu) ?? 0;
  const mem = parseQuantity(r?.limits?.memory ?? r?.requests?.memory) ?? 0;
  const storage = parseQuantity(template?.spec?.storage?.size ?? "10Gi") ?? 0;
  return { cpu, memGib: mem / GIB, storageGib: storage / GIB };
}

export interface CostLine {
  template: string;
  running: number;
  stopped: number;
  footprint: Footprint;
  monthlyCompute: number;
  monthlyStorage: number;
  monthly: number;
}

export interface CostEstimate {
  lines: CostLine[];
  running: number;
  stopped: number;
  hourlyCompute: number;
  monthlyCompute: number;
  monthlyStorage: number;
  monthly: number;
}

export function estimate(sandboxes: Sandbox[], templates: Template[], prices: Prices): CostEstimate {
  const byName = new Map(templates.map((t) => [t.name, t]));
  const lines = new Map<string, CostLine>();
  for (const s of sandboxes) {
    const key = s.templateRef || "unknown";
    let line = lines.get(key);
    if (!line) {
      line = {
        template: key,
        running: 0,
        stopped: 0,
        footprint: footprint(byName.get(key)),
        monthlyCompute: 0,
        monthlyStorage: 0,
        monthly: 0,
      };
      lines.set(key, line);
    }
    if (s.status === "Running" || s.status === "Creating") line.running++;
    else line.stopped++;
  }
  let hourlyCompute = 0;
  let monthlyStorage = 0;
  for (const line of lines.values()) {
    const f = line.footprint;
    const perHour = f.cpu * prices.cpuHour + f.memGib * prices.memGibHour;
    hourlyCompute += perHour * line.running;
    line.monthlyCompute = perHour * line.running * HOURS_PER_MONTH;
    line.monthlyStorage = f.storageGib * prices.storageGibMonth * (line.running + line.stopped);
    line.monthly = line.monthlyCompute + line.monthlyStorage;
    monthlyStorage += line.monthlyStorage;
  }
  const sorted = [...lines.values()].sort((a, b) => b.monthly - a.monthly);
  const running = sorted.reduce((a, l) => a + l.running, 0);
  const stopped = sorted.reduce((a, l) => a + l.stopped, 0);
  const monthlyCompute = hourlyCompute * HOURS_PER_MONTH;
  return {
    lines: sorted,
    running,
    stopped,
    hourlyCompute,
    monthlyCompute,
    monthlyStorage,
    monthly: monthlyCompute + monthlyStorage,
  };
}

export function money(v: number): string {
  return `$${v.toFixed(v !== 0 && Math.abs(v) < 1 ? 3 : 2)}`;
}
