// Small SVG charts where a glance beats a table: horizontal bars and a sparkline.

export interface Bar {
  label: string;
  value: number;
  className?: string;
}

export function Bars({ bars, title, unit = "" }: { bars: Bar[]; title: string; unit?: string }) {
  const max = Math.max(1, ...bars.map((b) => b.value));
  return (
    <figure className="chart">
      <figcaption>{title}</figcaption>
      {bars.length === 0 ? (
        <p className="muted">No data yet.</p>
      ) : (
        <ul className="bars" aria-label={title}>
          {bars.map((b) => (
            <li key={b.label}>
              <span className="bar-label">{b.label}</span>
              <span className="bar-track" aria-hidden="true">
                <span className={`bar-fill ${b.className ?? ""}`} style={{ width: `${(b.value / max) * 100}%` }} />
              </span>
              <span className="bar-value">
                {b.value}
                {unit}
              </span>
            </li>
          ))}
        </ul>
      )}
    </figure>
  );
}

export function Sparkline({ points, label, height = 48 }: { points: number[]; label: string; height?: number }) {
  const width = 240;
  const max = Math.max(1, ...points);
  const step = points.length > 1 ? width / (points.length - 1) : width;
  const coords = points.map((p, i) => `${(i * step).toFixed(1)},${(height - 4 - (p / max) * (height - 8)).toFixed(1)}`);
  return (
    <svg className="spark" viewBox={`0 0 ${width} ${height}`} role="img" aria-label={label} preserveAspectRatio="none">
      {points.length > 1 && <polyline points={coords.join(" ")} fill="none" strokeWidth="2" />}
      {points.length === 1 && <circle cx={width / 2} cy={coords[0].split(",")[1]} r="3" />}
    </svg>
  );
}
