// Settings (admin): the cluster governance policy, the warm pool, the create dialog's defaults
// and API keys. Each section works, or says its endpoint is missing, on its own.

import { useEffect, useState, type FormEvent } from "react";
import { ApiError } from "../api/client";
import {
  listApiKeys,
  listTemplates,
  mintApiKey,
  policies,
  revokeApiKey,
  setClusterPolicy,
  setWarmPool,
  warmPool,
} from "../api/endpoints";
import type { ApiKeyMeta, MintedApiKey, Policy } from "../api/types";
import { Confirm, Dialog } from "../components/Dialog";
import { ErrorNote, Loading, Unavailable } from "../components/Notice";
import { useToast } from "../components/Toast";
import { durationError } from "../lib/duration";
import { EMPTY_DEFAULTS, loadDefaults, saveDefaults, type CreateDefaults } from "../lib/prefs";
import { parseQuantity } from "../lib/quantity";
import { formatDateTime, parseTime } from "../lib/time";
import { usePoll } from "../lib/usePoll";

const SECTIONS = [
  { id: "governance", label: "Governance" },
  { id: "warm-pool", label: "Warm pool" },
  { id: "defaults", label: "Defaults" },
  { id: "api-keys", label: "API keys" },
];

export default function SettingsPage() {
  return (
    <section aria-labelledby="settings-title">
      <div className="page-head">
        <div>
          <h1 id="settings-title">Settings</h1>
          <nav aria-label="Settings sections" className="section-nav">
            {SECTIONS.map((s) => (
              <a key={s.id} href={`#${s.id}`}>
                {s.label}
              </a>
            ))}
          </nav>
        </div>
      </div>
      <GovernanceSection />
      <WarmPoolSection />
      <DefaultsSection />
      <ApiKeysSection />
    </section>
  );
}

// ---- governance -------------------------------------------------------------------------------

type PolicyForm = Record<
  | "maxSandboxesPerUser"
  | "maxSandboxesTotal"
  | "maxAgentSandboxes"
  | "maxConcurrentInvokesPerSandbox"
  | "maxCpu"
  | "maxMemory"
  | "maxStorage"
  | "maxTimeout"
  | "maxIdleTimeout"
  | "allowedTemplates"
  | "approvedRegistries"
  | "allowedAgentImages"
  | "description",
  string
>;

const INT_FIELDS = ["maxSandboxesPerUser", "maxSandboxesTotal", "maxAgentSandboxes", "maxConcurrentInvokesPerSandbox"] as const;
const QTY_FIELDS = ["maxCpu", "maxMemory", "maxStorage"] as const;
const DUR_FIELDS = ["maxTimeout", "maxIdleTimeout"] as const;
const LIST_FIELDS = ["allowedTemplates", "approvedRegistries", "allowedAgentImages"] as const;

const LABELS: Record<keyof PolicyForm, string> = {
  maxSandboxesPerUser: "Max sandboxes per user",
  maxSandboxesTotal: "Max sandboxes in a namespace",
  maxAgentSandboxes: "Max agent sandboxes",
  maxConcurrentInvokesPerSandbox: "Max concurrent invokes per sandbox",
  maxCpu: "Max CPU",
  maxMemory: "Max memory",
  maxStorage: "Max storage",
  maxTimeout: "Max runtime",
  maxIdleTimeout: "Max idle timeout",
  allowedTemplates: "Allowed templates",
  approvedRegistries: "Approved image registries",
  allowedAgentImages: "Allowed agent images",
  description: "Description",
};

export function policyToForm(p: Policy | null | undefined): PolicyForm {
  const f = {} as PolicyForm;
  for (const k of Object.keys(LABELS) as (keyof PolicyForm)[]) {
    const v = p?.[k as keyof Policy];
    f[k] = Array.isArray(v) ? v.join(", ") : v === undefined || v === null ? "" : String(v);
  }
  return f;
}

/** The policy a form describes, or the per-field problems. Empty fields are left out. */
export function formToPolicy(f: PolicyForm): { policy: Policy; problems: Partial<Record<keyof PolicyForm, string>> } {
  const policy: Record<string, unknown> = {};
  const problems: Partial<Record<keyof PolicyForm, string>> = {};
  for (const k of INT_FIELDS) {
    const v = f[k].trim();
    if (!v) continue;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) problems[k] = "A whole number, 0 or more.";
    else if (n > 0) policy[k] = n;
  }
  for (const k of QTY_FIELDS) {
    const v = f[k].trim();
    if (!v) continue;
    if (parseQuantity(v) === null) problems[k] = "A quantity such as 2, 500m, 4Gi.";
    else policy[k] = v;
  }
  for (const k of DUR_FIELDS) {
    const v = f[k].trim();
    if (!v) continue;
    const e = durationError(v);
    if (e) problems[k] = e;
    else policy[k] = v;
  }
  for (const k of LIST_FIELDS) {
    const items = f[k]
      .split(/[,\n]/)
      .map((s) => s.trim())
      .filter(Boolean);
    if (items.length) policy[k] = items;
  }
  if (f.description.trim()) policy.description = f.description.trim();
  return { policy: policy as Policy, problems };
}

function GovernanceSection() {
  const data = usePoll(policies, null);
  const [form, setForm] = useState<PolicyForm | null>(null);
  const [touched, setTouched] = useState(false);
  const [saving, setSaving] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const toast = useToast();

  useEffect(() => {
    if (data.data && !form) setForm(policyToForm(data.data.cluster));
  }, [data.data, form]);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!form) return;
    setTouched(true);
    const { policy, problems } = formToPolicy(form);
    if (Object.keys(problems).length) return;
    setSaving(true);
    setError(null);
    try {
      await setClusterPolicy(policy);
      toast("Cluster policy saved");
      setTouched(false);
      await data.reload();
    } catch (err) {
      setError(err instanceof ApiError ? err.display : String(err));
    } finally {
      setSaving(false);
    }
  };

  const problems = form && touched ? formToPolicy(form).problems : {};
  const input = (k: keyof PolicyForm, help: string, wide = false) =>
    form && (
      <div className={wide ? "field wide" : "field"} key={k}>
        <label htmlFor={`policy-${k}`}>{LABELS[k]}</label>
        <input
          id={`policy-${k}`}
          value={form[k]}
          onChange={(e) => setForm({ ...form, [k]: e.target.value })}
          inputMode={(INT_FIELDS as readonly string[]).includes(k) ? "numeric" : undefined}
          aria-invalid={problems[k] ? true : undefined}
          aria-describedby={`policy-${k}-help`}
        />
        <p id={`policy-${k}-help`} className={problems[k] ? "field-error" : "help"}>
          {problems[k] ?? help}
        </p>
      </div>
    );

  return (
    <section id="governance" className="panel" aria-labelledby="governance-title">
      <h2 id="governance-title">Governance policy</h2>
      <p className="muted">
        The cluster-wide policy every create is checked against. Empty fields mean no limit; namespace policies
        override it field by field.
      </p>
      {data.unavailable ? (
        <Unavailable what="Governance" endpoint="GET /api/v1/governance/policies" />
      ) : data.error ? (
        <ErrorNote>{data.error}</ErrorNote>
      ) : !form ? (
        <Loading />
      ) : (
        <form onSubmit={submit} noValidate>
          <div className="form-grid cols">
            {input("maxSandboxesPerUser", "Counts every non-error sandbox a user owns.")}
            {input("maxSandboxesTotal", "Per namespace.")}
            {input("maxAgentSandboxes", "Sandboxes in agent mode.")}
            {input("maxConcurrentInvokesPerSandbox", "Agent invokes at once.")}
            {input("maxCpu", "Largest CPU limit, e.g. 2.")}
            {input("maxMemory", "Largest memory limit, e.g. 4Gi.")}
            {input("maxStorage", "Largest workspace, e.g. 20Gi.")}
            {input("maxTimeout", "Longest max runtime, e.g. 8h.")}
            {input("maxIdleTimeout", "Longest idle timeout, e.g. 2h.")}
            {input("allowedTemplates", "Comma-separated; empty allows all.", true)}
            {input("approvedRegistries", "Image prefixes, comma-separated.", true)}
            {input("allowedAgentImages", "Image prefixes for agent sandboxes.", true)}
            {input("description", "Shown to admins.", true)}
          </div>
          <ErrorNote>{error}</ErrorNote>
          <div className="form-actions">
            <button type="submit" className="primary" disabled={saving}>
              {saving ? "Saving…" : "Save policy"}
            </button>
          </div>
          {data.data?.namespaces && data.data.namespaces.length > 0 && (
            <>
              <h3>Namespace overrides</h3>
              <ul className="plain">
                {data.data.namespaces.map((n) => (
                  <li key={n.namespace}>
                    <code>{n.namespace}</code>: {JSON.stringify(n.policy)}
                  </li>
                ))}
              </ul>
            </>
          )}
        </form>
      )}
    </section>
  );
}

// ---- warm pool --------------------------------------------------------------------------------

function WarmPoolSection() {
  const status = usePoll(warmPool, 5000);
  const templates = usePoll(listTemplates, null);
  const [desired, setDesired] = useState<Record<string, string> | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [saving, setSaving] = useState(false);
  const toast = useToast();

  useEffect(() => {
    if (status.data && templates.data && !desired) {
      const d: Record<string, string> = {};
      for (const t of templates.data) d[t.name] = "0";
      for (const p of status.data.pools ?? []) d[p.template] = String(p.desiredCount ?? 0);
      setDesired(d);
    }
  }, [status.data, templates.data, desired]);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!desired) return;
    const pools = [];
    for (const [template, v] of Object.entries(desired)) {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 10) {
        setError(`${template}: the desired count is a whole number from 0 to 10.`);
        return;
      }
      if (n > 0) pools.push({ template, desiredCount: n });
    }
    setSaving(true);
    setError(null);
    try {
      await setWarmPool(pools);
      toast("Warm pool updated");
      await status.reload();
    } catch (err) {
      setError(err instanceof ApiError ? err.display : String(err));
    } finally {
      setSaving(false);
    }
  };

  const ready = (t: string) => status.data?.pools?.find((p) => p.template === t);

  return (
    <section id="warm-pool" className="panel" aria-labelledby="warm-pool-title">
      <h2 id="warm-pool-title">Warm pool</h2>
      <p className="muted">Sandboxes kept started ahead of time, so a create from these templates is instant.</p>
      {status.unavailable ? (
        <Unavailable what="The warm pool" endpoint="GET /api/v1/warmpool/status" />
      ) : status.error ? (
        <ErrorNote>{status.error}</ErrorNote>
      ) : !desired ? (
        <Loading />
      ) : (
        <form onSubmit={submit} noValidate>
          <table className="table">
            <thead>
              <tr>
                <th scope="col">Template</th>
                <th scope="col">Desired (0–10)</th>
                <th scope="col" className="num">
                  Ready
                </th>
                <th scope="col" className="num">
                  Pending
                </th>
              </tr>
            </thead>
            <tbody>
              {Object.keys(desired).map((t) => (
                <tr key={t}>
                  <td>
                    <label htmlFor={`pool-${t}`}>{t}</label>
                  </td>
                  <td>
                    <input
                      id={`pool-${t}`}
                      type="number"
                      min={0}
                      max={10}
                      value={desired[t]}
                      onChange={(e) => setDesired({ ...desired, [t]: e.target.value })}
                      className="narrow"
                    />
                  </td>
                  <td className="num">{ready(t)?.readyCount ?? 0}</td>
                  <td className="num">{ready(t)?.pendingCount ?? 0}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <ErrorNote>{error}</ErrorNote>
          <div className="form-actions">
            <button type="submit" className="primary" disabled={saving}>
              {saving ? "Saving…" : "Save warm pool"}
            </button>
          </div>
        </form>
      )}
    </section>
  );
}

// ---- defaults ---------------------------------------------------------------------------------

function DefaultsSection() {
  const [defaults, setDefaults] = useState<CreateDefaults | null>(null);
  const [stored, setStored] = useState<"server" | "browser">("browser");
  const templates = usePoll(listTemplates, null);
  const [error, setError] = useState<string | null>(null);
  const toast = useToast();

  useEffect(() => {
    loadDefaults()
      .then((r) => {
        setDefaults(r.defaults);
        setStored(r.stored);
      })
      .catch((e) => {
        setDefaults(EMPTY_DEFAULTS);
        setError(e instanceof ApiError ? e.display : String(e));
      });
  }, []);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!defaults) return;
    const bad = durationError(defaults.timeout) ?? durationError(defaults.idleTimeout);
    if (bad) return setError(bad);
    if (defaults.storageSize.trim() && parseQuantity(defaults.storageSize) === null)
      return setError("The storage size must be a quantity such as 10Gi.");
    setError(null);
    try {
      const where = await saveDefaults(defaults);
      setStored(where);
      toast(where === "server" ? "Defaults saved" : "Defaults saved in this browser");
    } catch (err) {
      setError(err instanceof ApiError ? err.display : String(err));
    }
  };

  return (
    <section id="defaults" className="panel" aria-labelledby="defaults-title">
      <h2 id="defaults-title">Defaults for new sandboxes</h2>
      <p className="muted">
        What the create dialog starts with.{" "}
        {stored === "server" ? "Stored in your preferences on the server." : "Stored in this browser."}
      </p>
      {!defaults ? (
        <Loading />
      ) : (
        <form onSubmit={submit} noValidate>
          <div className="form-grid cols">
            <div className="field">
              <label htmlFor="def-template">Template</label>
              <select
                id="def-template"
                value={defaults.template}
                onChange={(e) => setDefaults({ ...defaults, template: e.target.value })}
              >
                <option value="">(general-coding)</option>
                {templates.data?.map((t) => (
                  <option key={t.name} value={t.name}>
                    {t.name}
                  </option>
                ))}
              </select>
            </div>
            <div className="field">
              <label htmlFor="def-timeout">Max runtime</label>
              <input
                id="def-timeout"
                value={defaults.timeout}
                placeholder="none"
                onChange={(e) => setDefaults({ ...defaults, timeout: e.target.value })}
              />
            </div>
            <div className="field">
              <label htmlFor="def-idle">Idle timeout</label>
              <input
                id="def-idle"
                value={defaults.idleTimeout}
                placeholder="template's"
                onChange={(e) => setDefaults({ ...defaults, idleTimeout: e.target.value })}
              />
            </div>
            <div className="field">
              <label htmlFor="def-storage">Storage size</label>
              <input
                id="def-storage"
                value={defaults.storageSize}
                placeholder="template's"
                onChange={(e) => setDefaults({ ...defaults, storageSize: e.target.value })}
              />
            </div>
          </div>
          <ErrorNote>{error}</ErrorNote>
          <div className="form-actions">
            <button type="submit" className="primary">
              Save defaults
            </button>
          </div>
        </form>
      )}
    </section>
  );
}

// ---- API keys ---------------------------------------------------------------------------------

function ApiKeysSection() {
  const keys = usePoll(listApiKeys, null);
  const [name, setName] = useState("");
  const [expiresIn, setExpiresIn] = useState("");
  const [minted, setMinted] = useState<MintedApiKey | null>(null);
  const [revoking, setRevoking] = useState<ApiKeyMeta | null>(null);
  const [error, setError] = useState<string | null>(null);
  const toast = useToast();

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const bad = durationError(expiresIn);
    if (bad) return setError(`Expires in: ${bad}`);
    setError(null);
    try {
      const key = await mintApiKey({ ...(name.trim() ? { name: name.trim() } : {}), ...(expiresIn.trim() ? { expiresIn: expiresIn.trim() } : {}) });
      setMinted(key);
      setName("");
      setExpiresIn("");
      await keys.reload();
    } catch (err) {
      setError(err instanceof ApiError ? err.display : String(err));
    }
  };

  const revoke = async (key: ApiKeyMeta) => {
    setRevoking(null);
    try {
      await revokeApiKey(key.id);
      toast(`Key ${key.name || key.id} revoked`);
      await keys.reload();
    } catch (err) {
      setError(err instanceof ApiError ? err.display : String(err));
    }
  };

  return (
    <section id="api-keys" className="panel" aria-labelledby="api-keys-title">
      <h2 id="api-keys-title">API keys</h2>
      <p className="muted">Keys for the CLI, the SDK and automation. A key is shown once, when it is created.</p>
      {keys.unavailable ? (
        <Unavailable what="Managing API keys" endpoint="GET /api/v1/user/api-keys" />
      ) : (
        <>
          <ErrorNote>{keys.error}</ErrorNote>
          <form className="inline-form" onSubmit={submit} noValidate>
            <div className="field">
              <label htmlFor="key-name">Name</label>
              <input id="key-name" value={name} onChange={(e) => setName(e.target.value)} placeholder="laptop" />
            </div>
            <div className="field">
              <label htmlFor="key-expires">Expires in</label>
              <input
                id="key-expires"
                value={expiresIn}
                onChange={(e) => setExpiresIn(e.target.value)}
                placeholder="never, or 720h"
              />
            </div>
            <button type="submit" className="primary">
              Create key
            </button>
          </form>
          <ErrorNote>{error}</ErrorNote>
          {keys.data && (
            <table className="table">
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Created</th>
                  <th scope="col">Expires</th>
                  <th scope="col">Scope</th>
                  <th scope="col">
                    <span className="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {keys.data.length === 0 && (
                  <tr>
                    <td colSpan={5} className="muted">
                      No keys yet.
                    </td>
                  </tr>
                )}
                {keys.data.map((k) => (
                  <tr key={k.id}>
                    <td>{k.name || <code>{k.id}</code>}</td>
                    <td>{formatDateTime(parseTime(k.createdAt))}</td>
                    <td>{k.expiresAt ? formatDateTime(parseTime(k.expiresAt)) : "never"}</td>
                    <td>{k.sandboxId ? `${k.sandboxId}: ${(k.actionGroups ?? []).join(", ")}` : "all"}</td>
                    <td className="row-actions">
                      <button
                        type="button"
                        className="small danger"
                        onClick={() => setRevoking(k)}
                        aria-label={`Revoke key ${k.name || k.id}`}
                      >
                        Revoke
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </>
      )}
      {minted && (
        <Dialog title="Your new API key" onClose={() => setMinted(null)}>
          <div className="dialog-body">
            <p>Copy it now: it is not shown again.</p>
            <label htmlFor="minted-key">API key</label>
            <input id="minted-key" readOnly value={minted.key} onFocus={(e) => e.target.select()} data-autofocus />
            <footer className="dialog-foot">
              <button type="button" onClick={() => void navigator.clipboard?.writeText(minted.key).then(() => toast("Copied"))}>
                Copy
              </button>
              <button type="button" className="primary" onClick={() => setMinted(null)}>
                Done
              </button>
            </footer>
          </div>
        </Dialog>
      )}
      {revoking && (
        <Confirm
          title={`Revoke ${revoking.name || revoking.id}?`}
          message={<p>Anything using this key stops working at once.</p>}
          action="Revoke key"
          danger
          onCancel={() => setRevoking(null)}
          onConfirm={() => void revoke(revoking)}
        />
      )}
    </section>
  );
}
