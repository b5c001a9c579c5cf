// One typed function per REST route the UI uses (contract §4).

import { api, request } from "./client";
import type {
  ApiKeyMeta,
  AuditEvent,
  CostAnalytics,
  CreateSandboxRequest,
  CurrentUser,
  DirListing,
  ForwardedPort,
  MintedApiKey,
  PoliciesResponse,
  Policy,
  Sandbox,
  Template,
  TemplateSpec,
  UsageAnalytics,
  WarmPoolStatus,
} from "./types";

const enc = encodeURIComponent;

/** `/a/b c` → `a/b%20c`: a path as the files route wants it, each segment escaped. */
export function filePathSegment(path: string): string {
  return path
    .split("/")
    .filter(Boolean)
    .map((s) => enc(s))
    .join("/");
}

export const me = (quiet401 = false) => api<CurrentUser>("/user/me", { quiet401 });
export const authConfig = () =>
  api<{ oidcIssuer?: string | null; oidcClientId?: string | null }>("/auth/config", { quiet401: true });

export const listSandboxes = async () =>
  (await api<{ sandboxes: Sandbox[] | null }>("/sandboxes")).sandboxes ?? [];
export const getSandbox = (id: string) => api<Sandbox>(`/sandboxes/${enc(id)}`);
export const createSandbox = (body: CreateSandboxRequest) =>
  api<Sandbox>("/sandboxes", { method: "POST", body });
export const deleteSandbox = (id: string) => api<null>(`/sandboxes/${enc(id)}`, { method: "DELETE" });
export const stopSandbox = (id: string) => api<{ status: string }>(`/sandboxes/${enc(id)}/stop`, { method: "POST" });
export const resumeSandbox = (id: string) =>
  api<{ status: string }>(`/sandboxes/${enc(id)}/resume`, { method: "POST" });
export const cloneSandbox = (id: string, name?: string) =>
  api<{ name: string; namespace: string }>(`/sandboxes/${enc(id)}/clone`, {
    method: "POST",
    body: name ? { name } : {},
  });
export const execSandbox = (id: string, command: string, timeout = 30) =>
  api<{ stdout: string; stderr: string; exitCode: number }>(`/sandboxes/${enc(id)}/exec`, {
    method: "POST",
    body: { command, timeout },
  });

/** A short-lived, single-use ticket that lets a browser open the terminal WebSocket. */
export const terminalTicket = (id: string) =>
  api<{ ticket: string; expiresAt?: string; expiresIn?: number }>(`/sandboxes/${enc(id)}/terminal-ticket`, {
    method: "POST",
  });

export const listDir = (id: string, path: string) =>
  api<DirListing>(`/sandboxes/${enc(id)}/files/?path=${enc(path)}`);
export const downloadFile = (id: string, path: string) =>
  request(`/sandboxes/${enc(id)}/files/${filePathSegment(path)}`);
export const uploadFile = (id: string, path: string, data: Blob | ArrayBuffer) =>
  api<{ path: string; bytes: number }>(`/sandboxes/${enc(id)}/files/${filePathSegment(path)}`, {
    method: "PUT",
    raw: data,
  });
export const downloadArchive = (id: string, path: string) =>
  request(`/sandboxes/${enc(id)}/archive?path=${enc(path)}`);

export const listPorts = async (id: string) =>
  (await api<{ ports: ForwardedPort[] | null }>(`/sandboxes/${enc(id)}/ports`)).ports ?? [];
export const addPort = (id: string, port: number) =>
  api<ForwardedPort>(`/sandboxes/${enc(id)}/ports`, { method: "POST", body: { port, protocol: "http" } });
export const removePort = (id: string, port: number) =>
  api<null>(`/sandboxes/${enc(id)}/ports/${port}`, { method: "DELETE" });
/** The same-origin preview address of a forwarded port. */
export const previewPath = (id: string, port: number) => `/api/v1/sandboxes/${enc(id)}/preview/${port}/`;

export const listTemplates = async () =>
  (await api<{ templates: Template[] | null }>("/templates")).templates ?? [];
export const getTemplate = (name: string) => api<Template>(`/templates/${enc(name)}`);
export const createTemplate = (name: string, spec: TemplateSpec) =>
  api<Template>("/templates", { method: "POST", body: { name, spec } });
export const replaceTemplate = (name: string, spec: TemplateSpec) =>
  api<Template>(`/templates/${enc(name)}`, { method: "PUT", body: { spec } });
export const deleteTemplate = (name: string) => api<null>(`/templates/${enc(name)}`, { method: "DELETE" });

/** Audit events, newest first. The filters are sent to servers that support them (ours does);
 * a server that ignores them returns everything and the page filters on its own. */
export async function auditEvents(filter: { action?: string; since?: string; until?: string; cursor?: string } = {}) {
  const q = new URLSearchParams({ limit: "500" });
  for (const [k, v] of Object.entries(filter)) if (v) q.set(k, v);
  const page = await api<{ events: AuditEvent[] | null; next?: string | null }>(`/audit/events?${q}`);
  return { events: page.events ?? [], next: page.next ?? null };
}
export const usage = () => api<UsageAnalytics>("/analytics/usage");
export const costs = () => api<CostAnalytics>("/analytics/costs");
export const warmPool = () => api<WarmPoolStatus>("/warmpool/status");
export const setWarmPool = (pools: { template: string; desiredCount: number }[]) =>
  api<{ status: string }>("/warmpool/config", { method: "PUT", body: { pools } });

export const policies = () => api<PoliciesResponse>("/governance/policies");
export const setClusterPolicy = (policy: Policy) =>
  api<{ scope: string; policy: Policy }>("/governance/policies", { method: "PUT", body: policy });

export const listApiKeys = async () => (await api<{ keys: ApiKeyMeta[] | null }>("/user/api-keys")).keys ?? [];
export const mintApiKey = (body: { name?: string; expiresIn?: string }) =>
  api<MintedApiKey>("/user/api-keys", { method: "POST", body });
export const revokeApiKey = (id: string) => api<unknown>(`/user/api-keys/${enc(id)}`, { method: "DELETE" });

export const getPreferences = () => api<Record<string, unknown>>("/user/preferences");
export const putPreferences = (prefs: Record<string, unknown>) =>
  api<Record<string, unknown>>("/user/preferences", { method: "PUT", body: prefs });

/** Prometheus text from `/metrics` (outside /api/v1, no auth). */
export async function metricsText(): Promise<string> {
  const response = await fetch("/metrics");
  if (!response.ok) throw new Error(`/metrics answered ${response.status}`);
  return response.text();
}
