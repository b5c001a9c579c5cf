#!/usr/bin/env node
// Single sign-on in a real browser: the server runs with `--oidc-issuer` pointing at
// e2e/oidc-provider.mjs; the sign-in page offers single sign-on, the browser goes through the
// provider's page (authorization code + PKCE S256), comes back to /auth/callback, and the ID
// token then carries every API call and the terminal's `?token=`. The person is Ada, who is not
// an admin. Run by integration-tests/tests/ui_e2e.rs:
//   AGENTTIER_URL=… AGENTTIER_ADMIN_KEY=… OIDC_ISSUER=… node ui/e2e/oidc.mjs

import { Run, apiClient, settings } from "./lib.mjs";

const { base: BASE, key: KEY, shots: SHOTS } = settings();
const ISSUER = process.env.OIDC_ISSUER ?? "";
const api = apiClient(BASE, KEY);
const run = new Run(SHOTS);
run.shotNo = 50; // after the main run's screenshots

const page = await run.launch();
let failed = false;
try {
  await run.step("the sign-in page offers single sign-on from /auth/config", async () => {
    const config = await (await fetch(`${BASE}/api/v1/auth/config`)).json();
    if (config.oidcIssuer !== ISSUER) throw new Error(`auth/config: ${JSON.stringify(config)}`);
    await page.goto(`${BASE}/`);
    await page.getByRole("button", { name: "Sign in with single sign-on" }).waitFor();
    await run.shot("sso-login");
  });

  await run.step("through the identity provider and back, signed in as Ada", async () => {
    await page.getByRole("button", { name: "Sign in with single sign-on" }).click();
    await page.getByRole("heading", { name: "Example identity provider" }).waitFor();
    const authorize = new URL(page.url());
    if (authorize.origin !== new URL(ISSUER).origin) throw new Error(`not at the provider: ${page.url()}`);
    if (authorize.searchParams.get("code_challenge_method") !== "S256") throw new Error("no PKCE S256");
    if (authorize.searchParams.get("redirect_uri") !== `${BASE}/auth/callback`) throw new Error("wrong redirect_uri");
    await run.shot("sso-provider", page, { audit: false });
    await page.getByRole("button", { name: "Sign in as Ada Lovelace" }).click();
    await page.getByRole("heading", { name: "Sandboxes", level: 1 }).waitFor();
    if (new URL(page.url()).pathname !== "/") throw new Error(`landed on ${page.url()}`);
    await page.getByText("Ada Lovelace").first().waitFor();
    // Not an admin: no Settings.
    if (await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Settings" }).count())
      throw new Error("a non-admin sees Settings");
  });

  await run.step("Ada creates a sandbox and uses its terminal with her token", async () => {
    await page.getByRole("button", { name: "New sandbox" }).click();
    const dialog = page.getByRole("dialog", { name: "New sandbox" });
    await dialog.getByLabel("Name").fill("ada-box");
    await dialog.getByLabel("Template").selectOption("minimal-shell");
    await dialog.getByRole("button", { name: "Create sandbox" }).click();
    await run.cardStatus("ada-box", "Running");
    await run.card("ada-box").getByText("Ada Lovelace").waitFor();
    await run.shot("sso-dashboard");
    await run.card("ada-box").getByRole("link", { name: "Terminal" }).click();
    await page.getByTestId("terminal-state").filter({ hasText: "Connected" }).waitFor();
    await page.locator(".xterm").click();
    await page.keyboard.type("echo sso-$((2+3))\r");
    await page.locator(".xterm-rows", { hasText: "sso-5" }).waitFor();
    await run.shot("sso-terminal");
    await page.getByRole("link", { name: "← Sandboxes" }).click();
  });

  await run.step("Ada deletes it and signs out", async () => {
    await run.card("ada-box").getByRole("button", { name: "Delete" }).click();
    await page.getByRole("dialog", { name: "Delete ada-box?" }).getByRole("button", { name: "Delete sandbox" }).click();
    await run.card("ada-box").waitFor({ state: "detached" });
    if (((await api("GET", "/sandboxes")).json.sandboxes ?? []).length !== 0) throw new Error("ada-box is still there");
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByRole("button", { name: "Sign in with single sign-on" }).waitFor();
  });
} catch (e) {
  if (!run.results.some((r) => !r.ok)) console.log(`  FAIL  ${e?.stack ?? e}`);
  failed = true;
}
await run.finish(failed);
