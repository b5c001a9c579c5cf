import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { App } from "../src/app";
import { ADMIN, SANDBOX, TEMPLATE, mockFetch } from "./fetchMock";

describe("signing in", () => {
  it("logs straight in when the server runs with dev-auth", async () => {
    const { calls } = mockFetch({
      "GET /api/v1/user/me": [200, { sub: "dev-user", email: "dev@agenttier.local", name: "Dev User", groups: ["agenttier-admins"], isAdmin: true }],
      "GET /api/v1/sandboxes": [200, { sandboxes: [SANDBOX] }],
    });
    render(<App />);
    expect(await screen.findByRole("heading", { name: "Sandboxes", level: 1 })).toBeTruthy();
    expect(await screen.findByRole("heading", { name: "demo" })).toBeTruthy();
    expect(screen.getByText("Dev User")).toBeTruthy();
    expect(calls[0].headers.get("X-API-Key")).toBeNull();
    // No credential, so no sign-out button.
    expect(screen.queryByRole("button", { name: "Sign out" })).toBeNull();
  });

  it("asks for an API key, rejects a wrong one and accepts the right one", async () => {
    mockFetch({
      "GET /api/v1/user/me": ({ headers }) =>
        headers.get("X-API-Key") === "atk_good" ? [200, ADMIN] : [401, { error: headers.get("X-API-Key") ? "invalid_api_key" : "missing_authorization" }],
      "GET /api/v1/sandboxes": [200, { sandboxes: null }],
    });
    const user = userEvent.setup();
    render(<App />);
    const input = await screen.findByLabelText("API key");
    await user.type(input, "atk_bad");
    await user.click(screen.getByRole("button", { name: "Sign in" }));
    expect((await screen.findByRole("alert")).textContent).toMatch(/did not accept/);
    await user.clear(input);
    await user.type(input, "atk_good{Enter}");
    expect(await screen.findByText("No sandboxes yet.")).toBeTruthy();
    expect(sessionStorage.getItem("agenttier.credential")).toContain("atk_good");
    expect(screen.getByRole("link", { name: "Settings" })).toBeTruthy();
  });

  it("offers single sign-on when the server advertises an issuer", async () => {
    mockFetch({
      "GET /api/v1/user/me": [401, { error: "missing_authorization" }],
      "GET /api/v1/auth/config": [200, { oidcIssuer: "https://idp.example", oidcClientId: "agenttier" }],
    });
    render(<App />);
    expect(await screen.findByRole("button", { name: "Sign in with single sign-on" })).toBeTruthy();
  });
});

describe("dashboard", () => {
  const signedIn = () => sessionStorage.setItem("agenttier.credential", JSON.stringify({ kind: "apiKey", key: "atk_k" }));

  it("shows a failed hook or tool install on the card", async () => {
    signedIn();
    const conditions = [
      { type: "Ready", status: "True", reason: "Running", message: "" },
      { type: "OnStartHookSucceeded", status: "False", reason: "HookFailed", message: "onStart hook failed (exit 2): boom" },
      { type: "ToolsReady", status: "True", reason: "ToolsInstalled", message: "Installed and verified: git" },
    ];
    mockFetch({
      "GET /api/v1/user/me": [200, ADMIN],
      "GET /api/v1/sandboxes": [200, { sandboxes: [{ ...SANDBOX, conditions }] }],
      "GET /api/v1/sandboxes/demo/ports": [200, { ports: [] }],
    });
    render(<App />);
    const problems = await screen.findByRole("list", { name: "Problems of demo" });
    expect(problems.textContent).toContain("HookFailed");
    expect(problems.textContent).toContain("onStart hook failed (exit 2): boom");
    expect(problems.textContent).not.toContain("ToolsInstalled");
  });

  it("shows cards with status, template and owner, and stops a sandbox", async () => {
    signedIn();
    const { calls } = mockFetch({
      "GET /api/v1/user/me": [200, ADMIN],
      "GET /api/v1/sandboxes": [200, { sandboxes: [SANDBOX, { ...SANDBOX, sandboxId: "old", name: "old", status: "Stopped" }] }],
      "GET /api/v1/sandboxes/demo/ports": [200, { ports: [{ port: 8000, protocol: "http" }] }],
      "POST /api/v1/sandboxes/demo/stop": [200, { status: "stopping" }],
    });
    const user = userEvent.setup();
    render(<App />);
    const card = (await screen.findByRole("heading", { name: "demo" })).closest("article")!;
    expect(within(card).getByText("Running")).toBeTruthy();
    expect(within(card).getByText("general-coding")).toBeTruthy();
    expect(within(card).getByText("bootstrap admin key")).toBeTruthy();
    expect(await within(card).findByRole("link", { name: "Open port 8000 of demo in a new tab" })).toBeTruthy();
    const old = screen.getByRole("heading", { name: "old" }).closest("article")!;
    expect(within(old).getByRole("button", { name: "Resume" })).toBeTruthy();
    expect(within(old).queryByRole("link", { name: "Terminal" })).toBeNull();
    await user.click(within(card).getByRole("button", { name: "Stop" }));
    await waitFor(() => expect(calls.some((c) => c.method === "POST" && c.path === "/api/v1/sandboxes/demo/stop")).toBe(true));
    expect(calls.find((c) => c.path === "/api/v1/sandboxes/demo/stop")!.headers.get("X-API-Key")).toBe("atk_k");
  });

  it("says port forwarding is missing when the server has no ports route", async () => {
    signedIn();
    mockFetch({
      "GET /api/v1/user/me": [200, ADMIN],
      "GET /api/v1/sandboxes": [200, { sandboxes: [SANDBOX] }],
    });
    render(<App />);
    expect(await screen.findByText("Port forwarding is not available on this server.")).toBeTruthy();
  });

  it("creates from the dialog and shows a policy rejection with the rule's message", async () => {
    signedIn();
    let attempts = 0;
    mockFetch({
      "GET /api/v1/user/me": [200, ADMIN],
      "GET /api/v1/sandboxes": [200, { sandboxes: [] }],
      "GET /api/v1/templates": [200, { templates: [TEMPLATE] }],
      "POST /api/v1/sandboxes": ({ body }) => {
        attempts++;
        expect(body).toMatchObject({ name: "sandbox-1", templateRef: { name: "general-coding" }, idleTimeout: "30m" });
        return [403, { error: "policy_violation", violations: [{ code: "user_quota_exceeded", message: "user already has 0 of 0 sandboxes" }] }];
      },
    });
    const user = userEvent.setup();
    render(<App />);
    await user.click(await screen.findByRole("button", { name: "New sandbox" }));
    const dialog = await screen.findByRole("dialog", { name: "New sandbox" });
    // Focus starts in the dialog, on the name.
    expect(document.activeElement).toBe(within(dialog).getByLabelText("Name"));
    await waitFor(() => expect((within(dialog).getByLabelText("Template") as HTMLSelectElement).value).toBe("general-coding"));
    await user.type(within(dialog).getByLabelText("Idle timeout"), "soon");
    await user.click(within(dialog).getByRole("button", { name: "Create sandbox" }));
    expect(within(dialog).getByText(/Use a duration/)).toBeTruthy();
    expect(attempts).toBe(0);
    await user.clear(within(dialog).getByLabelText("Idle timeout"));
    await user.type(within(dialog).getByLabelText("Idle timeout"), "30m");
    await user.click(within(dialog).getByRole("button", { name: "Create sandbox" }));
    expect(await within(dialog).findByText(/user already has 0 of 0 sandboxes/)).toBeTruthy();
    expect(within(dialog).getByText("user_quota_exceeded")).toBeTruthy();
    await user.keyboard("{Escape}");
    expect(screen.queryByRole("dialog")).toBeNull();
    expect(document.activeElement?.textContent).toBe("New sandbox");
  });
});

describe("pages whose endpoint is missing", () => {
  it("shows a clear state instead of crashing", async () => {
    sessionStorage.setItem("agenttier.credential", JSON.stringify({ kind: "apiKey", key: "atk_k" }));
    window.history.replaceState(null, "", "/activity");
    mockFetch({ "GET /api/v1/user/me": [200, ADMIN] });
    render(<App />);
    expect(await screen.findByText("The activity log is not available on this server.")).toBeTruthy();
  });

  it("settings show each missing section on its own", async () => {
    sessionStorage.setItem("agenttier.credential", JSON.stringify({ kind: "apiKey", key: "atk_k" }));
    window.history.replaceState(null, "", "/settings");
    mockFetch({
      "GET /api/v1/user/me": [200, ADMIN],
      "GET /api/v1/templates": [200, { templates: [TEMPLATE] }],
      "GET /api/v1/governance/policies": [200, { cluster: { maxSandboxesPerUser: 2 }, namespaces: [] }],
    });
    render(<App />);
    expect(((await screen.findByLabelText("Max sandboxes per user")) as HTMLInputElement).value).toBe("2");
    expect(await screen.findByText("The warm pool is not available on this server.")).toBeTruthy();
    expect(await screen.findByText("Managing API keys is not available on this server.")).toBeTruthy();
  });
});
