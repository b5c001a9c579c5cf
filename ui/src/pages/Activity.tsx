// The activity log: sandbox events with filters on action, user and time range. Action and time
// are also sent to the server (which pages through its whole history); the user filter matches
// any part of who acted.

import { useEffect, useMemo, useRef, useState } from "react";
import { useSession } from "../app";
import { ApiError } from "../api/client";
import { auditEvents } from "../api/endpoints";
import type { AuditEvent } from "../api/types";
import { ErrorNote, Loading, Unavailable } from "../components/Notice";
import { formatDateTime, parseTime } from "../lib/time";
import { usePoll } from "../lib/usePoll";

export interface ActivityFilter {
  action: string;
  user: string;
  from: string;
  to: string;
}

/** Who acted, as the page shows it. */
export const whoOf = (e: AuditEvent) => e.actor || e.userEmail || String(e.details?.user ?? "");

const isoOf = (local: string) => (local ? new Date(local).toISOString() : "");

/** The events that pass the filter, newest first. `from`/`to` are datetime-local values. */
export function filterEvents(events: AuditEvent[], f: ActivityFilter): AuditEvent[] {
  const from = f.from ? new Date(f.from).getTime() : -Infinity;
  const to = f.to ? new Date(f.to).getTime() : Infinity;
  const user = f.user.trim().toLowerCase();
  return events
    .filter((e) => {
      if (f.action && e.eventType !== f.action) return false;
      if (user && ![whoOf(e), e.userEmail].join(" ").toLowerCase().includes(user)) return false;
      const t = parseTime(e.timestamp);
      if (Number.isFinite(t) && (t < from || t > to)) return false;
      return true;
    })
    .sort((a, b) => (parseTime(b.timestamp) || 0) - (parseTime(a.timestamp) || 0));
}

export default function ActivityPage() {
  const { user } = useSession();
  const [filter, setFilter] = useState<ActivityFilter>({ action: "", user: "", from: "", to: "" });
  const server = { action: filter.action, since: isoOf(filter.from), until: isoOf(filter.to) };
  const page = usePoll(() => auditEvents(server), 5000, [filter.action, filter.from, filter.to]);
  const [older, setOlder] = useState<{ events: AuditEvent[]; next: string | null } | null>(null);
  const [loadingOlder, setLoadingOlder] = useState(false);
  const [olderError, setOlderError] = useState<string | null>(null);
  const seenActions = useRef(new Set<string>());

  useEffect(() => setOlder(null), [filter.action, filter.from, filter.to]);

  const all = useMemo(() => [...(page.data?.events ?? []), ...(older?.events ?? [])], [page.data, older]);
  for (const e of all) seenActions.current.add(e.eventType);
  const actions = [...seenActions.current].sort();
  const shown = useMemo(() => filterEvents(all, filter), [all, filter]);
  const next = older ? older.next : (page.data?.next ?? null);
  const set = (k: keyof ActivityFilter) => (e: { target: { value: string } }) => setFilter({ ...filter, [k]: e.target.value });

  const loadOlder = async () => {
    if (!next) return;
    setLoadingOlder(true);
    setOlderError(null);
    try {
      const more = await auditEvents({ ...server, cursor: next });
      setOlder({ events: [...(older?.events ?? []), ...more.events], next: more.next });
    } catch (e) {
      setOlderError(e instanceof ApiError ? e.display : String(e));
    } finally {
      setLoadingOlder(false);
    }
  };

  return (
    <section aria-labelledby="activity-title">
      <div className="page-head">
        <div>
          <h1 id="activity-title">Activity</h1>
          <p className="muted">What happened to sandboxes and who did it, newest first.</p>
        </div>
      </div>
      {page.unavailable ? (
        <Unavailable what="The activity log" endpoint="GET /api/v1/audit/events" />
      ) : page.error && !user.isAdmin ? (
        <p className="notice">The activity log is for administrators.</p>
      ) : (
        <>
          <ErrorNote>{page.error}</ErrorNote>
          <form className="filters" onSubmit={(e) => e.preventDefault()} aria-label="Filter events">
            <div className="field">
              <label htmlFor="f-action">Action</label>
              <select id="f-action" value={filter.action} onChange={set("action")}>
                <option value="">All actions</option>
                {actions.map((a) => (
                  <option key={a} value={a}>
                    {a}
                  </option>
                ))}
              </select>
            </div>
            <div className="field">
              <label htmlFor="f-user">User</label>
              <input id="f-user" value={filter.user} onChange={set("user")} placeholder="name, email or id" />
            </div>
            <div className="field">
              <label htmlFor="f-from">From</label>
              <input id="f-from" type="datetime-local" value={filter.from} onChange={set("from")} />
            </div>
            <div className="field">
              <label htmlFor="f-to">To</label>
              <input id="f-to" type="datetime-local" value={filter.to} onChange={set("to")} />
            </div>
            <button type="button" onClick={() => setFilter({ action: "", user: "", from: "", to: "" })}>
              Clear filters
            </button>
          </form>
          {page.loading && !page.data ? (
            <Loading />
          ) : (
            <>
              <table className="table">
                <caption className="sr-only">Sandbox events ({shown.length})</caption>
                <thead>
                  <tr>
                    <th scope="col">Time</th>
                    <th scope="col">Action</th>
                    <th scope="col">Sandbox</th>
                    <th scope="col">User</th>
                    <th scope="col">Details</th>
                  </tr>
                </thead>
                <tbody>
                  {shown.length === 0 && (
                    <tr>
                      <td colSpan={5} className="muted">
                        No events match.
                      </td>
                    </tr>
                  )}
                  {shown.map((e, i) => (
                    <tr key={`${e.timestamp}-${e.sandboxId}-${e.eventType}-${i}`} className={e.type === "Warning" ? "warning" : undefined}>
                      <td className="nowrap">{formatDateTime(parseTime(e.timestamp))}</td>
                      <td>
                        <span className={`badge event-${e.eventType.toLowerCase()}`}>{e.eventType}</span>
                      </td>
                      <td>
                        {e.namespace && e.namespace !== "default" ? `${e.namespace}/` : ""}
                        {e.sandboxName || e.sandboxId}
                      </td>
                      <td>{whoOf(e) || "—"}</td>
                      <td>{e.details?.reason ?? ""}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
              <ErrorNote>{olderError}</ErrorNote>
              {next && (
                <button type="button" onClick={() => void loadOlder()} disabled={loadingOlder}>
                  {loadingOlder ? "Loading…" : "Load older events"}
                </button>
              )}
            </>
          )}
        </>
      )}
    </section>
  );
}
