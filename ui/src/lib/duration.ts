// Go duration strings (`30s`, `5m`, `1h30m`, `1.5h`), which the contract uses for timeouts.

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;

/** Milliseconds, or null when `text` is not a Go duration. */
export function parseDuration(text: string): number | null {
  const t = text.trim();
  if (!t) return null;
  if (t === "0") return 0;
  let i = 0;
  let total = 0;
  let sign = 1;
  if (t[0] === "+" || t[0] === "-") {
    sign = t[0] === "-" ? -1 : 1;
    i = 1;
  }
  if (i >= t.length) return null;
  while (i < t.length) {
    PART.lastIndex = i;
    const m = PART.exec(t);
    if (!m) return null;
    total += parseFloat(m[1]) * UNIT_MS[m[2]];
    i = PART.lastIndex;
  }
  return sign * total;
}

/** An error message for a timeout field, or null when it is fine (empty means "none"). */
export function durationError(text: string): string | null {
  if (!text.trim()) return null;
  const ms = parseDuration(text);
  if (ms === null) return "Use a duration such as 30m, 8h or 1h30m.";
  if (ms <= 0) return "The duration must be positive.";
  return null;
}
