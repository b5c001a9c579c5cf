import type { ReactNode } from "react";

/** What a page shows when the server does not have the endpoint it needs. */
export function Unavailable({ what, endpoint }: { what: string; endpoint: string }) {
  return (
    <div className="notice unavailable" role="status">
      <strong>{what} is not available on this server.</strong>
      <p>
        The server does not answer <code>{endpoint}</code> yet. Everything else keeps working; this page fills in
        once the server provides it.
      </p>
    </div>
  );
}

export function ErrorNote({ children }: { children: ReactNode }) {
  if (!children) return null;
  return (
    <div className="notice error" role="alert">
      {children}
    </div>
  );
}

export function Loading({ label = "Loading…" }: { label?: string }) {
  return (
    <p className="muted" role="status">
      {label}
    </p>
  );
}

export function StatusBadge({ status }: { status: string }) {
  const s = status || "Pending";
  return <span className={`badge status-${s.toLowerCase()}`}>{s}</span>;
}
