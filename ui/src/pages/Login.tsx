// Sign in with an API key, or with the OIDC issuer the server advertises.

import { useEffect, useState, type FormEvent } from "react";
import { ApiError } from "../api/client";
import { authConfig } from "../api/endpoints";
import { beginLogin } from "../auth/oidc";
import type { Credential } from "../auth/session";
import { ErrorNote } from "../components/Notice";

export function Login({
  message,
  onSignIn,
}: {
  message?: string;
  onSignIn: (credential: Credential, remember: boolean) => Promise<void>;
}) {
  const [key, setKey] = useState("");
  const [remember, setRemember] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [oidc, setOidc] = useState<{ issuer: string; clientId: string } | null>(null);

  useEffect(() => {
    authConfig()
      .then((c) => {
        if (c?.oidcIssuer && c.oidcClientId) setOidc({ issuer: c.oidcIssuer, clientId: c.oidcClientId });
      })
      .catch(() => {
        // No auth config on this server: API keys only.
      });
  }, []);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const trimmed = key.trim();
    if (!trimmed) {
      setError("Enter an API key.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await onSignIn({ kind: "apiKey", key: trimmed }, remember);
    } catch (err) {
      setError(
        err instanceof ApiError && err.status === 401
          ? "The server did not accept this API key."
          : err instanceof Error
            ? err.message
            : String(err),
      );
      setBusy(false);
    }
  };

  const sso = async () => {
    if (!oidc) return;
    setBusy(true);
    try {
      const next = new URLSearchParams(window.location.search).get("next") ?? "/";
      await beginLogin(oidc.issuer, oidc.clientId, next);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
      setBusy(false);
    }
  };

  return (
    <main id="main" className="login">
      <div className="login-card">
        <h1>
          <span className="logo" aria-hidden="true">
            ▲
          </span>{" "}
          Sign in to AgentTier
        </h1>
        {message && (
          <p className="notice" role="status">
            {message}
          </p>
        )}
        {oidc && (
          <>
            <button type="button" className="primary wide" onClick={sso} disabled={busy}>
              Sign in with single sign-on
            </button>
            <p className="or">
              <span>or use an API key</span>
            </p>
          </>
        )}
        <form onSubmit={submit} noValidate>
          <label htmlFor="api-key">API key</label>
          <input
            id="api-key"
            name="api-key"
            type="password"
            autoComplete="current-password"
            placeholder="atk_…"
            value={key}
            onChange={(e) => setKey(e.target.value)}
            aria-describedby="api-key-help"
            autoFocus
          />
          <p id="api-key-help" className="help">
            The admin key is printed once, on the server's first start. Admins can mint more keys in Settings.
          </p>
          <label className="check">
            <input type="checkbox" checked={remember} onChange={(e) => setRemember(e.target.checked)} /> Remember
            on this device
          </label>
          <ErrorNote>{error}</ErrorNote>
          <button type="submit" className={oidc ? "wide" : "primary wide"} disabled={busy}>
            {busy ? "Signing in…" : "Sign in"}
          </button>
        </form>
      </div>
    </main>
  );
}
