// One sandbox on the dashboard: status, template, age, owner; stop/resume, clone, delete, the
// terminal and files; and, while it runs, its forwarded ports.

import { useId, useState, type FormEvent } from "react";
import { ApiError } from "../api/client";
import {
  addPort,
  cloneSandbox,
  deleteSandbox,
  listPorts,
  previewPath,
  removePort,
  resumeSandbox,
  stopSandbox,
} from "../api/endpoints";
import type { Sandbox } from "../api/types";
import { Confirm, Dialog } from "../components/Dialog";
import { ErrorNote, StatusBadge } from "../components/Notice";
import { useToast } from "../components/Toast";
import { openPreview } from "../lib/preview";
import { Link } from "../lib/router";
import { ageOf } from "../lib/time";
import { usePoll } from "../lib/usePoll";
import { NAME_RE } from "../lib/names";

type Pending = null | "stop" | "resume" | "delete" | "clone";

export function SandboxCard({ sandbox, onChanged }: { sandbox: Sandbox; onChanged: () => void }) {
  const [pending, setPending] = useState<Pending>(null);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [cloning, setCloning] = useState(false);
  const toast = useToast();
  const titleId = useId();
  const id = sandbox.name;
  const running = sandbox.status === "Running";
  // Ready's failures are the message already; the others (a failed hook or tool) are shown too.
  const failing = (sandbox.conditions ?? []).filter((c) => c.status === "False" && c.type !== "Ready");
  const owner = sandbox.createdBy?.displayName || sandbox.createdBy?.email || "—";
  const base = `/sandboxes/${encodeURIComponent(id)}`;

  const act = async (kind: Exclude<Pending, null>, run: () => Promise<unknown>, done: string) => {
    setPending(kind);
    try {
      await run();
      toast(done);
      onChanged();
    } catch (e) {
      toast(`${id}: ${e instanceof ApiError ? e.display : String(e)}`, "error");
    } finally {
      setPending(null);
    }
  };

  return (
    <article className={`card status-${(sandbox.status || "pending").toLowerCase()}`} aria-labelledby={titleId}>
      <header className="card-head">
        <h2 id={titleId}>{id}</h2>
        <StatusBadge status={sandbox.status} />
      </header>
      <dl className="facts">
        <div>
          <dt>Template</dt>
          <dd>{sandbox.templateRef || "—"}</dd>
        </div>
        <div>
          <dt>Age</dt>
          <dd>{ageOf(sandbox.createdAt)}</dd>
        </div>
        <div>
          <dt>Owner</dt>
          <dd>{owner}</dd>
        </div>
        {sandbox.namespace !== "default" && (
          <div>
            <dt>Namespace</dt>
            <dd>{sandbox.namespace}</dd>
          </div>
        )}
      </dl>
      {sandbox.message && <p className="card-message">{sandbox.message}</p>}
      {failing.length > 0 && (
        <ul className="card-conditions" aria-label={`Problems of ${id}`}>
          {failing.map((c) => (
            <li key={c.type} title={c.message}>
              <strong>{c.reason}</strong> {c.message}
            </li>
          ))}
        </ul>
      )}
      <div className="actions" role="group" aria-label={`Actions for ${id}`}>
        {running ? (
          <>
            <Link className="button primary" href={`${base}/terminal`}>
              Terminal
            </Link>
            <Link className="button" href={`${base}/files`}>
              Files
            </Link>
            <button
              type="button"
              disabled={pending !== null}
              onClick={() => act("stop", () => stopSandbox(id), `Stopping ${id}`)}
            >
              {pending === "stop" ? "Stopping…" : "Stop"}
            </button>
          </>
        ) : (
          <button
            type="button"
            disabled={pending !== null || !(sandbox.status === "Stopped" || sandbox.status === "Error")}
            onClick={() => act("resume", () => resumeSandbox(id), `Resuming ${id}`)}
          >
            {pending === "resume" ? "Resuming…" : "Resume"}
          </button>
        )}
        <button type="button" disabled={pending !== null || !sandbox.pvcName} onClick={() => setCloning(true)}>
          {pending === "clone" ? "Cloning…" : "Clone"}
        </button>
        <button type="button" className="danger" disabled={pending !== null} onClick={() => setConfirmDelete(true)}>
          {pending === "delete" ? "Deleting…" : "Delete"}
        </button>
      </div>
      {running && <Ports id={id} />}
      {confirmDelete && (
        <Confirm
          title={`Delete ${id}?`}
          message={<p>This stops the sandbox and deletes its workspace. It cannot be undone.</p>}
          action="Delete sandbox"
          danger
          onCancel={() => setConfirmDelete(false)}
          onConfirm={() => {
            setConfirmDelete(false);
            void act("delete", () => deleteSandbox(id), `Deleted ${id}`);
          }}
        />
      )}
      {cloning && (
        <CloneDialog
          source={id}
          onCancel={() => setCloning(false)}
          onClone={(name) => {
            setCloning(false);
            void act("clone", () => cloneSandbox(id, name), `Cloning ${id} into ${name}`);
          }}
        />
      )}
    </article>
  );
}

function CloneDialog({ source, onCancel, onClone }: { source: string; onCancel: () => void; onClone: (name: string) => void }) {
  const [name, setName] = useState(`${source}-copy`.slice(0, 63));
  const [touched, setTouched] = useState(false);
  const valid = NAME_RE.test(name);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    setTouched(true);
    if (valid) onClone(name);
  };
  return (
    <Dialog title={`Clone ${source}`} onClose={onCancel}>
      <form className="dialog-body" onSubmit={submit} noValidate>
        <p>The clone starts with a copy of the workspace.</p>
        <label htmlFor="clone-name">Name of the clone</label>
        <input
          id="clone-name"
          value={name}
          onChange={(e) => setName(e.target.value)}
          aria-invalid={touched && !valid ? true : undefined}
          aria-describedby={touched && !valid ? "clone-name-error" : undefined}
          data-autofocus
        />
        {touched && !valid && (
          <p id="clone-name-error" className="field-error">
            1–63 lowercase letters, digits or '-'.
          </p>
        )}
        <footer className="dialog-foot">
          <button type="button" onClick={onCancel}>
            Cancel
          </button>
          <button type="submit" className="primary">
            Clone
          </button>
        </footer>
      </form>
    </Dialog>
  );
}

/** Where a forwarded port opens: the server's preview address when it is on another origin
 * (a preview domain), else the same-origin proxy path. */
export function previewHref(id: string, previewUrl: string | undefined, port: number): string {
  if (previewUrl) {
    try {
      const url = new URL(previewUrl, window.location.href);
      if (url.origin !== window.location.origin) return url.href;
    } catch {
      // not a URL: use the proxy path
    }
  }
  return previewPath(id, port);
}

/** Forwarded ports of a running sandbox: open in a new tab, remove, or forward another. */
function Ports({ id }: { id: string }) {
  const ports = usePoll(() => listPorts(id), 5000, [id]);
  const [port, setPort] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const inputId = useId();
  if (ports.unavailable) {
    return <p className="ports muted">Port forwarding is not available on this server.</p>;
  }
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const n = Number(port);
    if (!Number.isInteger(n) || n < 1 || n > 65535) {
      setError("A port is a whole number from 1 to 65535.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await addPort(id, n);
      setPort("");
      await ports.reload();
    } catch (err) {
      setError(err instanceof ApiError ? err.display : String(err));
    } finally {
      setBusy(false);
    }
  };
  const remove = async (p: number) => {
    try {
      await removePort(id, p);
      await ports.reload();
    } catch (err) {
      setError(err instanceof ApiError ? err.display : String(err));
    }
  };
  return (
    <section className="ports" aria-label={`Forwarded ports of ${id}`}>
      <h3>Ports</h3>
      {ports.data && ports.data.length > 0 ? (
        <ul className="port-list">
          {ports.data.map((p) => (
            <li key={p.port}>
              <span className="port-number">{p.port}</span>
              <a
                className="button small"
                href={previewHref(id, p.previewUrl, p.port)}
                target="_blank"
                rel="noopener"
                aria-label={`Open port ${p.port} of ${id} in a new tab`}
                onClick={(e) => {
                  const href = previewHref(id, p.previewUrl, p.port);
                  // Same-origin previews need the UI's credential, which a plain link cannot carry.
                  if (href.startsWith("/") && e.button === 0 && !e.ctrlKey && !e.metaKey && !e.shiftKey) {
                    e.preventDefault();
                    void openPreview(href);
                  }
                }}
              >
                Open
              </a>
              <button
                type="button"
                className="small"
                onClick={() => void remove(p.port)}
                aria-label={`Remove port ${p.port} of ${id}`}
              >
                Remove
              </button>
            </li>
          ))}
        </ul>
      ) : (
        <p className="muted small">No forwarded ports.</p>
      )}
      <form className="inline-form" onSubmit={submit} noValidate>
        <label htmlFor={inputId} className="sr-only">
          Port to forward for {id}
        </label>
        <input
          id={inputId}
          inputMode="numeric"
          placeholder="Port, e.g. 8000"
          value={port}
          onChange={(e) => setPort(e.target.value)}
          size={10}
        />
        <button type="submit" className="small" disabled={busy}>
          Forward
        </button>
      </form>
      <ErrorNote>{error}</ErrorNote>
    </section>
  );
}
