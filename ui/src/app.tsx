// The application shell: decides who is signed in (a stored credential, dev-auth, or the login
// page), then renders the navigation and the page for the current path.

import { createContext, lazy, Suspense, useCallback, useContext, useEffect, useState, type ReactNode } from "react";
import { ApiError, setUnauthorizedHandler } from "./api/client";
import { me } from "./api/endpoints";
import type { CurrentUser } from "./api/types";
import { completeLogin } from "./auth/oidc";
import { clearCredential, loadCredential, saveCredential, type Credential } from "./auth/session";
import { Loading } from "./components/Notice";
import { forgetPreviewCredential } from "./lib/preview";
import { ToastProvider } from "./components/Toast";
import { Link, match, navigate, usePath } from "./lib/router";
import { Dashboard } from "./pages/Dashboard";
import { Login } from "./pages/Login";

const TerminalPage = lazy(() => import("./pages/Terminal"));
const TemplatesPage = lazy(() => import("./pages/Templates"));
const FilesPage = lazy(() => import("./pages/Files"));
const ActivityPage = lazy(() => import("./pages/Activity"));
const MetricsPage = lazy(() => import("./pages/Metrics"));
const CostsPage = lazy(() => import("./pages/Costs"));
const SettingsPage = lazy(() => import("./pages/Settings"));

export interface Session {
  user: CurrentUser;
  credential: Credential;
  signOut: () => void;
}

const SessionContext = createContext<Session | null>(null);

/** The signed-in session; pages are only rendered inside one. */
export function useSession(): Session {
  const session = useContext(SessionContext);
  if (!session) throw new Error("useSession outside a session");
  return session;
}

type State =
  | { phase: "checking" }
  | { phase: "login"; message?: string }
  | { phase: "ready"; user: CurrentUser; credential: Credential };

export function App() {
  return (
    <ToastProvider>
      <Root />
    </ToastProvider>
  );
}

function Root() {
  const [state, setState] = useState<State>({ phase: "checking" });
  const path = usePath();

  const signIn = useCallback(async (credential: Credential, remember = false): Promise<void> => {
    saveCredential(credential, remember);
    try {
      const user = await me(true);
      setState({ phase: "ready", user, credential });
    } catch (e) {
      clearCredential();
      throw e;
    }
  }, []);

  const signOut = useCallback((message?: string) => {
    clearCredential();
    forgetPreviewCredential();
    setState({ phase: "login", message });
    if (window.location.pathname !== "/login") navigate("/login", true);
  }, []);

  useEffect(() => {
    setUnauthorizedHandler(() => signOut("Your session ended. Sign in again."));
    return () => setUnauthorizedHandler(null);
  }, [signOut]);

  useEffect(() => {
    let cancelled = false;
    (async () => {
      if (window.location.pathname === "/auth/callback") {
        try {
          const { token, expiresAt, returnTo } = await completeLogin(window.location.search);
          await signIn({ kind: "bearer", token, expiresAt });
          navigate(returnTo, true);
        } catch (e) {
          if (!cancelled) setState({ phase: "login", message: e instanceof Error ? e.message : String(e) });
          navigate("/login", true);
        }
        return;
      }
      const stored = loadCredential();
      try {
        // With a stored credential this checks it; without one it finds out whether the server
        // runs with --dev-auth (then /user/me answers without credentials).
        await signIn(stored ?? { kind: "none" });
      } catch (e) {
        if (cancelled) return;
        const unauthorized = e instanceof ApiError && e.status === 401;
        const message = unauthorized
          ? stored
            ? "Your saved credential is no longer valid."
            : undefined
          : `Could not reach AgentTier: ${e instanceof Error ? e.message : String(e)}`;
        setState({ phase: "login", message });
      }
    })();
    return () => {
      cancelled = true;
    };
  }, [signIn]);

  if (state.phase === "checking") return <Loading label="Connecting to AgentTier…" />;
  if (state.phase === "login") {
    return (
      <Login
        message={state.message}
        onSignIn={async (credential, remember) => {
          await signIn(credential, remember);
          const params = new URLSearchParams(window.location.search);
          const next = params.get("next");
          navigate(next && next.startsWith("/") && !next.startsWith("//") ? next : "/", true);
        }}
      />
    );
  }
  const session: Session = { user: state.user, credential: state.credential, signOut: () => signOut() };
  return (
    <SessionContext.Provider value={session}>
      <Routes path={path} />
    </SessionContext.Provider>
  );
}

function Routes({ path }: { path: string }) {
  const { user } = useSession();
  const terminal = match("/sandboxes/:id/terminal", path);
  if (terminal) {
    return (
      <Suspense fallback={<Loading label="Loading the terminal…" />}>
        <TerminalPage id={terminal.id} />
      </Suspense>
    );
  }
  let page: ReactNode;
  const files = match("/sandboxes/:id/files", path);
  if (path === "/" || path === "/login" || path === "/sandboxes") page = <Dashboard />;
  else if (files) page = <FilesPage id={files.id} />;
  else if (path === "/templates") page = <TemplatesPage />;
  else if (path === "/activity") page = <ActivityPage />;
  else if (path === "/monitoring") page = <MetricsPage />;
  else if (path === "/costs") page = <CostsPage />;
  else if (path === "/settings") page = user.isAdmin ? <SettingsPage /> : <AdminOnly />;
  else page = <NotFound />;
  return (
    <Layout path={path}>
      <Suspense fallback={<Loading />}>{page}</Suspense>
    </Layout>
  );
}

const NAV: { href: string; label: string; admin?: boolean }[] = [
  { href: "/", label: "Sandboxes" },
  { href: "/templates", label: "Templates" },
  { href: "/activity", label: "Activity" },
  { href: "/monitoring", label: "Metrics" },
  { href: "/costs", label: "Costs" },
  { href: "/settings", label: "Settings", admin: true },
];

function Layout({ path, children }: { path: string; children: ReactNode }) {
  const { user, signOut, credential } = useSession();
  const current = (href: string) => (href === "/" ? path === "/" || path.startsWith("/sandboxes") : path === href);
  useEffect(() => {
    // Moving between pages puts focus on the new page's heading for keyboard and screen readers.
    const h1 = document.querySelector<HTMLElement>("main h1");
    if (h1) {
      h1.tabIndex = -1;
      h1.focus({ preventScroll: true });
    }
  }, [path]);
  return (
    <div className="shell">
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <Link href="/" className="brand" aria-label="AgentTier home">
          <span className="logo" aria-hidden="true">
            ▲
          </span>
          AgentTier
        </Link>
        <nav aria-label="Main">
          <ul>
            {NAV.filter((n) => !n.admin || user.isAdmin).map((n) => (
              <li key={n.href}>
                <Link href={n.href} aria-current={current(n.href) ? "page" : undefined}>
                  {n.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <div className="who">
          <span title={user.email || user.sub}>
            {user.name || user.email || user.sub}
            {user.isAdmin && <span className="badge admin">admin</span>}
          </span>
          {credential.kind !== "none" && (
            <button type="button" className="ghost" onClick={signOut}>
              Sign out
            </button>
          )}
        </div>
      </header>
      <main id="main">{children}</main>
    </div>
  );
}

function NotFound() {
  return (
    <section>
      <h1>Page not found</h1>
      <p>
        <Link href="/">Back to your sandboxes</Link>
      </p>
    </section>
  );
}

function AdminOnly() {
  return (
    <section>
      <h1>Settings</h1>
      <p className="notice">Only administrators can change settings.</p>
    </section>
  );
}
