// OIDC sign-in: authorization code with PKCE (S256) against the issuer the server advertises
// (`GET /api/v1/auth/config`). The ID token becomes the bearer token for the API and the
// terminal's `?token=`.

const PENDING = "agenttier.oidc.pending";

interface Discovery {
  authorization_endpoint: string;
  token_endpoint: string;
}

interface Pending {
  verifier: string;
  state: string;
  issuer: string;
  clientId: string;
  returnTo: string;
}

function base64url(bytes: Uint8Array): string {
  let s = "";
  bytes.forEach((b) => (s += String.fromCharCode(b)));
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(bytes = 32): string {
  const buf = new Uint8Array(bytes);
  crypto.getRandomValues(buf);
  return base64url(buf);
}

/** The S256 code challenge of a verifier (RFC 7636). */
export async function challengeOf(verifier: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

async function discover(issuer: string): Promise<Discovery> {
  const response = await fetch(`${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`);
  if (!response.ok) throw new Error(`OIDC discovery failed (${response.status})`);
  return (await response.json()) as Discovery;
}

export const redirectUri = () => `${window.location.origin}/auth/callback`;

/** Sends the browser to the issuer's login page. */
export async function beginLogin(issuer: string, clientId: string, returnTo = "/"): Promise<void> {
  const discovery = await discover(issuer);
  const verifier = randomString(48);
  const state = randomString(16);
  const pending: Pending = { verifier, state, issuer, clientId, returnTo };
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
  const url = new URL(discovery.authorization_endpoint);
  url.searchParams.set("response_type", "code");
  url.searchParams.set("client_id", clientId);
  url.searchParams.set("redirect_uri", redirectUri());
  url.searchParams.set("scope", "openid profile email");
  url.searchParams.set("state", state);
  url.searchParams.set("code_challenge", await challengeOf(verifier));
  url.searchParams.set("code_challenge_method", "S256");
  window.location.assign(url.toString());
}

/** Finishes the login on `/auth/callback`: exchanges the code for tokens. */
export async function completeLogin(search: string): Promise<{ token: string; expiresAt?: number; returnTo: string }> {
  const params = new URLSearchParams(search);
  const raw = sessionStorage.getItem(PENDING);
  sessionStorage.removeItem(PENDING);
  if (params.get("error")) throw new Error(params.get("error_description") ?? params.get("error") ?? "login failed");
  if (!raw) throw new Error("No sign-in was in progress; start again.");
  const pending = JSON.parse(raw) as Pending;
  if (params.get("state") !== pending.state) throw new Error("The sign-in answer does not match the request (state).");
  const code = params.get("code");
  if (!code) throw new Error("The identity provider sent no authorization code.");
  const discovery = await discover(pending.issuer);
  const body = new URLSearchParams({
    grant_type: "authorization_code",
    code,
    redirect_uri: redirectUri(),
    client_id: pending.clientId,
    code_verifier: pending.verifier,
  });
  const response = await fetch(discovery.token_endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body,
  });
  if (!response.ok) throw new Error(`Token exchange failed (${response.status})`);
  const tokens = (await response.json()) as { id_token?: string; access_token?: string; expires_in?: number };
  const token = tokens.id_token ?? tokens.access_token;
  if (!token) throw new Error("The identity provider returned no token.");
  const expiresAt = tokens.expires_in ? Date.now() + tokens.expires_in * 1000 : undefined;
  return { token, expiresAt, returnTo: pending.returnTo || "/" };
}
