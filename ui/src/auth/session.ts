// The credential the UI sends: an API key (X-API-Key), an OIDC token (Authorization: Bearer),
// or nothing at all when the server runs with --dev-auth. Kept in sessionStorage, or in
// localStorage when the user asked to be remembered on this device.

export type Credential =
  | { kind: "apiKey"; key: string }
  | { kind: "bearer"; token: string; expiresAt?: number }
  | { kind: "none" };

const STORAGE_KEY = "agenttier.credential";

function stores(): Storage[] {
  const out: Storage[] = [];
  try {
    out.push(window.sessionStorage, window.localStorage);
  } catch {
    // Storage can be disabled; the credential then lives only in memory.
  }
  return out;
}

let current: Credential | null = null;

/** The stored credential, if any (an expired token counts as none). */
export function loadCredential(): Credential | null {
  if (current) return current;
  for (const store of stores()) {
    const raw = store.getItem(STORAGE_KEY);
    if (!raw) continue;
    try {
      const parsed = JSON.parse(raw) as Credential;
      if (parsed.kind === "bearer" && parsed.expiresAt && parsed.expiresAt < Date.now()) {
        store.removeItem(STORAGE_KEY);
        continue;
      }
      current = parsed;
      return parsed;
    } catch {
      store.removeItem(STORAGE_KEY);
    }
  }
  return null;
}

/** Remembers a credential; `remember` keeps it across browser restarts. */
export function saveCredential(credential: Credential, remember = false): void {
  current = credential;
  for (const store of stores()) store.removeItem(STORAGE_KEY);
  if (credential.kind === "none") return;
  const [session, local] = stores();
  const target = remember ? local : session;
  target?.setItem(STORAGE_KEY, JSON.stringify(credential));
}

export function clearCredential(): void {
  current = null;
  for (const store of stores()) store.removeItem(STORAGE_KEY);
}

/** The request headers that carry a credential. */
export function authHeaders(credential: Credential | null = loadCredential()): Record<string, string> {
  if (!credential) return {};
  switch (credential.kind) {
    case "apiKey":
      return { "X-API-Key": credential.key };
    case "bearer":
      return { Authorization: `Bearer ${credential.token}` };
    default:
      return {};
  }
}
