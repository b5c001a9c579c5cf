// The activity log: sandbox events with filters on action, user and time range.

import { useMemo, useState } from "react";
import { useSession } from "../app";
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

/** The events that pass the filter, newest first. `from`/`to` are datetime-local values. */
export function filterEvents(events: AuditEvent[], f: ActivityFilter): AuditEvent[] {
  const from = f.from ? new Date(f.from).getTime() : -Infinity;
  const to = f.to ? new Date(f.to).getTime() : Infinity;
  const user = f.user.trim().toLowerCase();
  return events
    .filter((e) => {
      if (f.action && e.eventType !== f.action) return false;
      if (user) {
        const who = [e.userEmail, String(e.details?.user ?? ""), String(e.details?.userId ?? "")].join(" ").toLowerCase();
        if (!who.includes(user)) return false;
      }
      const t = parseTime(e.timestamp);
      if (Number.isFinite(t) && (t < from || t > to)) return false;
      return true;
    })
    .sort((a, b) => (parseTime(b.timestamp) || 0) - (parseTime(a.timestamp) || 0));
}

export default function ActivityPage() {
  const { user } = useSession();
  const events = usePoll(auditEvents, 5000);
  const [filter, setFilter] = useState<ActivityFilter>({ action: "", user: "", from: "", to: "" });
  const actions = useMemo(() => [...new Set((events.data ?? []).map((e) => e.eventType))].sort(), [events.data]);
  const shown = useMemo(() => filterEvents(events.data ?? [], filter), [events.data, filter]);
  const set = (k: keyof ActivityFilter) => (e: { target: { value: string } }) => setFilter({ ...filter, [k]: e.target.value });

  return (
    <section aria-labelledby="activity-title">
      <div className="page-head">
        <div>
          <h1 id="activity-title">Activity</h1>
          <p className="muted">What happened to sandboxes, newest first.</p>
        </div>
      </div>
      {events.unavailable ? (
        <Unavailable what="The activity log" endpoint="GET /api/v1/audit/events" />
      ) : events.error && !user.isAdmin ? (
        <p className="notice">The activity log is for administrators.</p>
      ) : (
        <>
          <ErrorNote>{events.error}</ErrorNote>
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
              <input id="f-user" value={filter.user} onChange={set("user")} placeholder="email or id" />
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
          {events.loading && !events.data ? (
            <Loading />
          ) : (
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
                {shown.slice(0, 500).map((e, i) => (
                  <tr key={`${e.timestamp}-${e.sandboxId}-${e.eventType}-${i}`}>
                    <td className="nowrap">{formatDateTime(parseTime(e.timestamp))}</td>
                    <td>
                      <span className={`badge event-${e.eventType.toLowerCase()}`}>{e.eventType}</span>
                    </td>
                    <td>
                      {e.namespace && e.namespace !== "default" ? `${e.namespace}/` : ""}
                      {e.sandboxName || e.sandboxId}
                    </td>
                    <td>{e.userEmail || String(e.details?.user ?? "") || "—"}</td>
                    <td>{e.details?.reason ?? ""}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </>
      )}
    </section>
  );
}
