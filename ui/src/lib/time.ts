// Times as the contract sends them: Go's `time.Time.String()` text for sandbox fields
// (`2025-01-02 03:04:05.123 +0000 UTC`), RFC 3339 elsewhere, unix seconds for files.

const GO_TIME = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(\.\d+)? ([+-])(\d{2})(\d{2})(?: \S+)?$/;

/** Milliseconds since the epoch, or NaN when the text is not a time. */
export function parseTime(text: string | undefined | null): number {
  if (!text) return NaN;
  const go = GO_TIME.exec(text.trim());
  if (go) {
    const [, date, clock, frac = "", sign, hh, mm] = go;
    const ms = frac ? frac.slice(0, 4).padEnd(4, "0") : "";
    return Date.parse(`${date}T${clock}${ms}${sign}${hh}:${mm}`);
  }
  return Date.parse(text);
}

/** "45s", "3m", "2h 5m", "4d 1h": a compact age. */
export function formatAge(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "—";
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 ? `${h}h ${m % 60}m` : `${h}h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d}d ${h % 24}h` : `${d}d`;
}

/** The age of a timestamp relative to `now`. */
export function ageOf(text: string | undefined, now = Date.now()): string {
  return formatAge(now - parseTime(text));
}

/** A local date and time for tables. */
export function formatDateTime(ms: number): string {
  if (!Number.isFinite(ms)) return "—";
  const d = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
