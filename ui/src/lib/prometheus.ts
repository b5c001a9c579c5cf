// Reads samples out of Prometheus text exposition (what `/metrics` serves).

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parsePrometheus(text: string): Sample[] {
  const out: Sample[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    if (m[2]) for (const l of m[2].matchAll(LABEL)) labels[l[1]] = l[2].replace(/\\(.)/g, "$1");
    const value = Number(m[3] === "+Inf" ? Infinity : m[3] === "-Inf" ? -Infinity : m[3]);
    out.push({ name: m[1], labels, value });
  }
  return out;
}

/** The sum of every sample whose name matches one of `names` (first name that has samples wins). */
export function metricValue(samples: Sample[], names: string[]): number | undefined {
  for (const name of names) {
    const hits = samples.filter((s) => s.name === name);
    if (hits.length) return hits.reduce((a, s) => a + s.value, 0);
  }
  return undefined;
}
