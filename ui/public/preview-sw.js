// AgentTier preview service worker. A forwarded port opens in a new tab at
// /api/v1/sandboxes/{id}/preview/{port}/…, which the API only serves to a request carrying the
// UI's credential (X-API-Key or Authorization), and a browser tab cannot add headers. This worker,
// registered by the UI with scope /api/v1/sandboxes/, adds them to requests for preview paths
// only. It keeps the credential in memory for a minute and otherwise asks an open UI tab for it
// (the UI answers only this script), so nothing is written to disk.

const PREVIEW = /^\/api\/v1\/sandboxes\/[^/]+\/preview\/\d+(\/|$)/;
const TTL_MS = 60_000;
let remembered = null;

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));
self.addEventListener("message", (event) => {
  if (event.data && event.data.type === "agenttier-preview-forget") remembered = null;
});

function ask(client) {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    const timer = setTimeout(() => resolve(null), 1500);
    channel.port1.onmessage = (event) => {
      clearTimeout(timer);
      resolve(event.data && typeof event.data === "object" ? event.data : null);
    };
    client.postMessage({ type: "agenttier-preview-credential" }, [channel.port2]);
  });
}

async function credential() {
  if (remembered && Date.now() - remembered.at < TTL_MS) return remembered.headers;
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  for (const client of windows) {
    if (PREVIEW.test(new URL(client.url).pathname)) continue;
    const headers = await ask(client);
    if (headers) {
      remembered = { headers, at: Date.now() };
      return headers;
    }
  }
  return {};
}

async function withCredential(request) {
  const headers = new Headers(request.headers);
  for (const [name, value] of Object.entries(await credential())) headers.set(name, value);
  const init = {
    method: request.method,
    headers,
    credentials: "same-origin",
    redirect: request.mode === "navigate" ? "manual" : request.redirect,
  };
  if (request.method !== "GET" && request.method !== "HEAD") init.body = await request.blob();
  return fetch(request.url, init);
}

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (url.origin !== self.location.origin || !PREVIEW.test(url.pathname)) return;
  event.respondWith(withCredential(event.request));
});
