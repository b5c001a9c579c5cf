// A short in-memory history of the running-sandbox count, sampled wherever the sandbox list is
// polled (the dashboard every 2 s, the metrics page every 5 s), so the metrics sparkline has a
// past when it opens. At most one sample a second is kept, the last HISTORY of them.

import type { Sandbox } from "../api/types";

export const HISTORY = 90;
let samples: { at: number; running: number }[] = [];

export function recordSandboxes(list: Sandbox[], now = Date.now()): void {
  const running = list.filter((s) => s.status === "Running").length;
  const last = samples[samples.length - 1];
  if (last && now - last.at < 1000) {
    last.running = running;
    return;
  }
  samples = [...samples, { at: now, running }].slice(-HISTORY);
}

export function runningHistory(): number[] {
  return samples.map((s) => s.running);
}

/** For tests. */
export function resetHistory(): void {
  samples = [];
}
