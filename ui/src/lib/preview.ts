// Opening a forwarded port in a new tab with the UI's credential: see public/preview-sw.js. The
// worker asks this page for the credential headers; the page answers only that script.

import { authHeaders } from "../auth/session";

const SCRIPT = "/preview-sw.js";
const SCOPE = "/api/v1/sandboxes/";
let listening = false;
let registration: Promise<ServiceWorkerRegistration | null> | null = null;

function answerWorker(): void {
  if (listening || !("serviceWorker" in navigator)) return;
  listening = true;
  const script = new URL(SCRIPT, window.location.origin).href;
  navigator.serviceWorker.addEventListener("message", (event) => {
    const source = event.source as ServiceWorker | null;
    if (!source || source.scriptURL !== script) return;
    if ((event.data as { type?: string } | null)?.type !== "agenttier-preview-credential") return;
    event.ports[0]?.postMessage(authHeaders());
  });
  navigator.serviceWorker.startMessages();
}

function activated(reg: ServiceWorkerRegistration): Promise<ServiceWorkerRegistration> {
  if (reg.active) return Promise.resolve(reg);
  const worker = reg.installing ?? reg.waiting;
  return new Promise((resolve, reject) => {
    if (!worker) return reject(new Error("the preview worker did not install"));
    worker.addEventListener("statechange", () => {
      if (worker.state === "activated") resolve(reg);
      if (worker.state === "redundant") reject(new Error("the preview worker failed to start"));
    });
  });
}

/** Whether previews can carry the credential here (service workers need a secure context). */
export const previewAuthSupported = () => "serviceWorker" in navigator && window.isSecureContext;

/** Registers the worker once; resolves when it controls new preview tabs. */
export function preparePreview(): Promise<ServiceWorkerRegistration | null> {
  if (!previewAuthSupported()) return Promise.resolve(null);
  answerWorker();
  registration ??= navigator.serviceWorker
    .register(SCRIPT, { scope: SCOPE })
    .then(activated)
    .catch(() => {
      registration = null;
      return null;
    });
  return registration;
}

/** Opens `url` in a new tab once the worker is ready, with `noopener`: the tab gets no handle
 * back to this page and no copy of its sessionStorage (which holds the credential). Called from
 * a click, and registering the worker takes well under the browser's user-activation window, so
 * popup blockers let it through. */
export async function openPreview(url: string): Promise<void> {
  await preparePreview();
  window.open(url, "_blank", "noopener,noreferrer");
}

/** Makes the worker drop the credential it remembers (on sign-out). */
export function forgetPreviewCredential(): void {
  if (!("serviceWorker" in navigator)) return;
  void navigator.serviceWorker.getRegistration(SCOPE).then((reg) => reg?.active?.postMessage({ type: "agenttier-preview-forget" }));
}
