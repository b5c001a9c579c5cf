// The sandboxes: a card each with status, template, age and owner, one-click actions, forwarded
// ports, and a dialog to create one. The list refreshes itself every 2 s.

import { useMemo, useState } from "react";
import { listSandboxes } from "../api/endpoints";
import { ErrorNote, Loading } from "../components/Notice";
import { useToast } from "../components/Toast";
import { recordSandboxes } from "../lib/history";
import { usePoll } from "../lib/usePoll";
import { CreateDialog } from "./CreateDialog";
import { SandboxCard } from "./SandboxCard";

export const POLL_MS = 2000;

async function loadAndRecord() {
  const list = await listSandboxes();
  recordSandboxes(list);
  return list;
}

export function Dashboard() {
  const sandboxes = usePoll(loadAndRecord, POLL_MS);
  const [creating, setCreating] = useState(false);
  const [filter, setFilter] = useState("");
  const toast = useToast();

  const list = useMemo(() => {
    const all = [...(sandboxes.data ?? [])].sort((a, b) => a.name.localeCompare(b.name));
    const f = filter.trim().toLowerCase();
    return f ? all.filter((s) => s.name.includes(f) || s.templateRef.includes(f) || s.status.toLowerCase() === f) : all;
  }, [sandboxes.data, filter]);

  const counts = useMemo(() => {
    const c: Record<string, number> = {};
    for (const s of sandboxes.data ?? []) c[s.status || "Pending"] = (c[s.status || "Pending"] ?? 0) + 1;
    return c;
  }, [sandboxes.data]);

  return (
    <section aria-labelledby="sandboxes-title">
      <div className="page-head">
        <div>
          <h1 id="sandboxes-title">Sandboxes</h1>
          <p className="muted" aria-live="polite">
            {sandboxes.data
              ? `${sandboxes.data.length} total` +
                Object.entries(counts)
                  .map(([k, v]) => ` · ${v} ${k.toLowerCase()}`)
                  .join("")
              : ""}
          </p>
        </div>
        <div className="head-actions">
          <label className="sr-only" htmlFor="sandbox-filter">
            Filter sandboxes
          </label>
          <input
            id="sandbox-filter"
            type="search"
            placeholder="Filter by name, template or status"
            value={filter}
            onChange={(e) => setFilter(e.target.value)}
          />
          <button type="button" className="primary" onClick={() => setCreating(true)}>
            New sandbox
          </button>
        </div>
      </div>
      <ErrorNote>{sandboxes.error && `Could not load sandboxes: ${sandboxes.error}`}</ErrorNote>
      {sandboxes.loading && !sandboxes.data ? (
        <Loading />
      ) : list.length === 0 ? (
        <div className="empty">
          <p>{filter ? "No sandbox matches the filter." : "No sandboxes yet."}</p>
          {!filter && (
            <button type="button" className="primary" onClick={() => setCreating(true)}>
              Create your first sandbox
            </button>
          )}
        </div>
      ) : (
        <ul className="cards" aria-label="Sandboxes">
          {list.map((s) => (
            <li key={`${s.namespace}/${s.name}`}>
              <SandboxCard sandbox={s} onChanged={sandboxes.reload} />
            </li>
          ))}
        </ul>
      )}
      {creating && (
        <CreateDialog
          existing={(sandboxes.data ?? []).map((s) => s.name)}
          onClose={() => setCreating(false)}
          onCreated={(name) => {
            setCreating(false);
            toast(`Sandbox ${name} created`);
            void sandboxes.reload();
          }}
        />
      )}
    </section>
  );
}
