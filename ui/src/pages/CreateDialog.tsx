// The create dialog: name, template and timeouts, checked as you type; a rejection from the
// server (a governance rule, say) is shown with its message.

import { useEffect, useMemo, useState, type FormEvent } from "react";
import { ApiError } from "../api/client";
import { createSandbox, listTemplates } from "../api/endpoints";
import type { Template } from "../api/types";
import { Dialog } from "../components/Dialog";
import { ErrorNote } from "../components/Notice";
import { durationError } from "../lib/duration";
import { loadDefaults } from "../lib/prefs";
import { parseQuantity } from "../lib/quantity";
import { NAME_RE } from "../lib/names";

function suggestName(existing: string[]): string {
  for (let i = 1; ; i++) {
    const name = `sandbox-${i}`;
    if (!existing.includes(name)) return name;
  }
}

export function CreateDialog({
  existing,
  onClose,
  onCreated,
}: {
  existing: string[];
  onClose: () => void;
  onCreated: (name: string) => void;
}) {
  const [name, setName] = useState(() => suggestName(existing));
  const [templates, setTemplates] = useState<Template[] | null>(null);
  const [template, setTemplate] = useState("");
  const [timeout, setTimeoutValue] = useState("");
  const [idleTimeout, setIdleTimeout] = useState("");
  const [storage, setStorage] = useState("");
  const [touched, setTouched] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | string | null>(null);

  useEffect(() => {
    let alive = true;
    Promise.all([listTemplates(), loadDefaults().catch(() => null)])
      .then(([list, prefs]) => {
        if (!alive) return;
        setTemplates(list);
        const d = prefs?.defaults;
        const preferred = d?.template && list.some((t) => t.name === d.template) ? d.template : undefined;
        setTemplate(preferred ?? list.find((t) => t.name === "general-coding")?.name ?? list[0]?.name ?? "");
        if (d) {
          setTimeoutValue(d.timeout);
          setIdleTimeout(d.idleTimeout);
          setStorage(d.storageSize);
        }
      })
      .catch((e) => alive && setError(e instanceof ApiError ? e : String(e)));
    return () => {
      alive = false;
    };
  }, []);

  const selected = templates?.find((t) => t.name === template);
  const problems = useMemo(() => {
    const p: Record<string, string> = {};
    if (!NAME_RE.test(name)) p.name = "1–63 lowercase letters, digits or '-', starting and ending with a letter or digit.";
    else if (existing.includes(name)) p.name = `A sandbox named ${name} already exists.`;
    if (!template) p.template = "Choose a template.";
    const t = durationError(timeout);
    if (t) p.timeout = t;
    const i = durationError(idleTimeout);
    if (i) p.idleTimeout = i;
    if (storage.trim() && parseQuantity(storage) === null) p.storage = "Use a size such as 1Gi or 10Gi.";
    return p;
  }, [name, template, timeout, idleTimeout, storage, existing]);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setTouched(true);
    if (Object.keys(problems).length > 0) {
      const first = Object.keys(problems)[0];
      document.getElementById(`create-${first}`)?.focus();
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await createSandbox({
        name,
        templateRef: { name: template, kind: "ClusterSandboxTemplate" },
        ...(timeout.trim() ? { timeout: timeout.trim() } : {}),
        ...(idleTimeout.trim() ? { idleTimeout: idleTimeout.trim() } : {}),
        ...(storage.trim() ? { storage: { size: storage.trim() } } : {}),
      });
      onCreated(name);
    } catch (err) {
      setError(err instanceof ApiError ? err : String(err));
      setBusy(false);
    }
  };

  const field = (id: string) => ({
    id: `create-${id}`,
    "aria-invalid": touched && problems[id] ? true : undefined,
    "aria-describedby": touched && problems[id] ? `create-${id}-error` : `create-${id}-help`,
  });
  const fieldError = (id: string) =>
    touched && problems[id] ? (
      <p id={`create-${id}-error`} className="field-error">
        {problems[id]}
      </p>
    ) : null;

  const violations = error instanceof ApiError ? error.violations : [];

  return (
    <Dialog title="New sandbox" onClose={onClose}>
      <form onSubmit={submit} noValidate className="dialog-body form-grid">
        <div className="field">
          <label htmlFor="create-name">Name</label>
          <input {...field("name")} value={name} onChange={(e) => setName(e.target.value)} autoComplete="off" data-autofocus />
          <p id="create-name-help" className="help">
            Lowercase letters, digits and '-'.
          </p>
          {fieldError("name")}
        </div>
        <div className="field">
          <label htmlFor="create-template">Template</label>
          <select {...field("template")} value={template} onChange={(e) => setTemplate(e.target.value)} disabled={!templates}>
            {!templates && <option value="">Loading…</option>}
            {templates?.map((t) => (
              <option key={t.name} value={t.name}>
                {t.name}
                {t.spec?.mode === "agent" ? " (agent)" : ""}
              </option>
            ))}
          </select>
          <p id="create-template-help" className="help">
            {selected?.description || "\u00a0"}
          </p>
          {fieldError("template")}
        </div>
        <div className="field">
          <label htmlFor="create-timeout">Max runtime</label>
          <input
            {...field("timeout")}
            value={timeout}
            onChange={(e) => setTimeoutValue(e.target.value)}
            placeholder={selected?.spec?.timeout ?? "none"}
          />
          <p id="create-timeout-help" className="help">
            A duration such as 8h; empty for none.
          </p>
          {fieldError("timeout")}
        </div>
        <div className="field">
          <label htmlFor="create-idleTimeout">Idle timeout</label>
          <input
            {...field("idleTimeout")}
            value={idleTimeout}
            onChange={(e) => setIdleTimeout(e.target.value)}
            placeholder={selected?.spec?.idleTimeout ?? "none"}
          />
          <p id="create-idleTimeout-help" className="help">
            Stops the sandbox after this long without activity.
          </p>
          {fieldError("idleTimeout")}
        </div>
        <div className="field">
          <label htmlFor="create-storage">Storage size</label>
          <input
            {...field("storage")}
            value={storage}
            onChange={(e) => setStorage(e.target.value)}
            placeholder={selected?.spec?.storage?.size ?? "10Gi"}
          />
          <p id="create-storage-help" className="help">
            Optional; the template's size when empty.
          </p>
          {fieldError("storage")}
        </div>
        {error && (
          <ErrorNote>
            {violations.length > 0 ? (
              <>
                <strong>The server's policy rejected this sandbox:</strong>
                <ul className="violations">
                  {violations.map((v) => (
                    <li key={v.code + v.message}>
                      {v.message} <code>{v.code}</code>
                    </li>
                  ))}
                </ul>
              </>
            ) : error instanceof ApiError ? (
              error.display
            ) : (
              error
            )}
          </ErrorNote>
        )}
        <footer className="dialog-foot">
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" className="primary" disabled={busy}>
            {busy ? "Creating…" : "Create sandbox"}
          </button>
        </footer>
      </form>
    </Dialog>
  );
}
