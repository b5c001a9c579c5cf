// A fetch stand-in: routes are "METHOD /path" (query string ignored unless given) → a handler
// that returns [status, body]. Unknown routes answer like our server: JSON 404 "no route for".
import { vi } from "vitest";

export type Handler = (req: { url: URL; method: string; headers: Headers; body: unknown }) => [number, unknown] | Promise<[number, unknown]>;

export function mockFetch(routes: Record<string, Handler | [number, unknown]>) {
  const calls: { method: string; path: string; headers: Headers; body: unknown }[] = [];
  const fn = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = new URL(String(input), "http://localhost");
    const method = (init?.method ?? "GET").toUpperCase();
    const headers = new Headers(init?.headers);
    let body: unknown = init?.body;
    if (typeof body === "string") {
      try {
        body = JSON.parse(body);
      } catch {
        // raw
      }
    }
    calls.push({ method, path: url.pathname + url.search, headers, body });
    const route = routes[`${method} ${url.pathname}${url.search}`] ?? routes[`${method} ${url.pathname}`];
    const [status, payload] = route
      ? typeof route === "function"
        ? await route({ url, method, headers, body })
        : route
      : [404, { error: `no route for ${url.pathname}` }];
    const text = payload === null || payload === undefined ? "" : typeof payload === "string" ? payload : JSON.stringify(payload);
    return new Response(status === 204 ? null : text, {
      status,
      headers: { "Content-Type": typeof payload === "string" ? "text/plain" : "application/json" },
    });
  });
  vi.stubGlobal("fetch", fn);
  return { fn, calls };
}

export const SANDBOX = {
  sandboxId: "demo",
  name: "demo",
  namespace: "default",
  status: "Running",
  podName: "local-1",
  pvcName: "/data/ws",
  templateRef: "general-coding",
  mode: "code",
  createdAt: "2026-01-02 03:04:05 +0000 UTC",
  message: "",
  createdBy: { email: "", displayName: "bootstrap admin key" },
};

export const TEMPLATE = {
  name: "general-coding",
  description: "A coding sandbox",
  image: "",
  resourceVersion: "3",
  spec: {
    description: "A coding sandbox",
    mode: "code",
    resources: { requests: { cpu: "500m", memory: "512Mi" }, limits: { cpu: "2", memory: "2Gi" } },
    storage: { size: "10Gi", mountPath: "/workspace" },
    idleTimeout: "1h",
  },
};

export const ADMIN = { sub: "admin", email: "", name: "bootstrap admin key", groups: [], isAdmin: true };
