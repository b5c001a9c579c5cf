#!/usr/bin/env node
// End-to-end test of the web UI in a real browser (Debian chromium driven by playwright-core)
// against a real `agenttier serve`. Run by integration-tests/tests/ui_e2e.rs, which starts the
// server; by hand:
//   AGENTTIER_URL=http://127.0.0.1:8080 AGENTTIER_ADMIN_KEY=atk_… node ui/e2e/run.mjs
// E2E_REQUIRE=terminal,files,… makes a missing endpoint a failure; SCREENSHOT_DIR, CHROMIUM.
//
// Every flow the server supports is exercised as a person would: sign in with the API key,
// create sandboxes (one with the keyboard only), terminal, files, ports, stop/resume, clone,
// templates, governance, activity, metrics, costs, settings, delete. A flow whose endpoint the
// server does not have yet is checked to show its "not available on this server" state, and is
// listed at the end. A screenshot of every page goes to $SCREENSHOT_DIR.

import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Run, apiClient, settings, until } from "./lib.mjs";

const { base: BASE, key: KEY, shots: SHOTS } = settings();
const api = apiClient(BASE, KEY);
const run = new Run(SHOTS);
const step = (name, fn) => run.step(name, fn);
const shot = (name, target, options) => run.shot(name, target, options);
const card = (name) => run.card(name);
const cardStatus = (name, status) => run.cardStatus(name, status);
const unavailable = [];

/** A route exists unless the server answers its "no route" 404 (or the Go server's text 404). */
function exists(r) {
  if (r.status === 405) return true;
  if (r.status !== 404) return true;
  const err = typeof r.json === "object" && r.json ? String(r.json.error ?? "") : String(r.json ?? "");
  return !(err.startsWith("no route for") || err.trim() === "404 page not found");
}

async function probe(method, path, body) {
  return exists(await api(method, path, body));
}

async function wsExists() {
  // A request to a route that does not exist gets the fallback's 404 "no route".
  const response = await fetch(`${BASE}/ws/terminal/__probe__`, { headers: { "X-API-Key": KEY } });
  const text = await response.text();
  return !(response.status === 404 && text.includes("no route for"));
}

async function exec(id, command) {
  const r = await api("POST", `/sandboxes/${id}/exec`, { command, timeout: 30 });
  if (r.status !== 200) throw new Error(`exec ${command}: ${r.status} ${r.text}`);
  return r.json;
}

// ---- main -----------------------------------------------------------------------------------

const page = await run.launch();
const downloads = run.downloads;

let failed = false;
try {
  const has = {
    terminal: await wsExists(),
    files: await probe("GET", "/sandboxes/__probe__/files/?path=/workspace"),
    ports: await probe("GET", "/sandboxes/__probe__/ports"),
    governance: await probe("GET", "/governance/policies"),
    audit: await probe("GET", "/audit/events"),
    warmpool: await probe("GET", "/warmpool/status"),
    apiKeys: await probe("GET", "/user/api-keys"),
    analytics: await probe("GET", "/analytics/usage"),
  };
  console.log(`server has: ${Object.entries(has).map(([k, v]) => `${k}=${v ? "yes" : "no"}`).join(" ")}`);
  for (const [k, v] of Object.entries(has)) if (!v) unavailable.push(k);
  // E2E_REQUIRE names endpoints whose absence is a failure, not a "not available" page.
  const required = (process.env.E2E_REQUIRE ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  const missing = required.filter((k) => !has[k]);
  if (missing.length) {
    run.results.push({ name: "required endpoints", ok: false });
    throw new Error(`the server lacks required endpoints: ${missing.join(", ")}`);
  }

  await step("login page, and a wrong key is refused", async () => {
    await page.goto(`${BASE}/`);
    await page.getByLabel("API key").waitFor();
    await shot("login");
    await page.getByLabel("API key").fill("atk_wrong");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText("The server did not accept this API key.").waitFor();
  });

  await step("sign in with the admin API key", async () => {
    await page.getByLabel("API key").fill(KEY);
    await page.getByLabel("API key").press("Enter");
    await page.getByRole("heading", { name: "Sandboxes", level: 1 }).waitFor();
    await page.getByText("No sandboxes yet.").waitFor();
    await page.getByText(/bootstrap admin key/).first().waitFor();
  });

  await step("create a sandbox from the dialog", async () => {
    await page.getByRole("button", { name: "New sandbox" }).click();
    const dialog = page.getByRole("dialog", { name: "New sandbox" });
    await dialog.getByLabel("Name").fill("demo");
    await dialog.getByLabel("Template").selectOption("general-coding");
    await dialog.getByLabel("Idle timeout").fill("45m");
    await shot("create-dialog");
    await dialog.getByRole("button", { name: "Create sandbox" }).click();
    await dialog.waitFor({ state: "detached" });
    await cardStatus("demo", "Running");
    const got = await api("GET", "/sandboxes/demo");
    if (got.json.templateRef !== "general-coding") throw new Error(`template ${got.json.templateRef}`);
  });

  await step("create a second sandbox with the keyboard only", async () => {
    await page.getByRole("button", { name: "New sandbox" }).focus();
    await page.keyboard.press("Enter");
    const dialog = page.getByRole("dialog", { name: "New sandbox" });
    await dialog.waitFor();
    // Focus starts on the name field.
    await page.keyboard.press("Control+A");
    await page.keyboard.type("scratch");
    await page.keyboard.press("Tab"); // → template
    const last = await dialog.getByLabel("Template").evaluate((el) => {
      if (document.activeElement !== el) throw new Error("Tab did not reach the template field");
      return el.options[el.options.length - 1].value;
    });
    await page.keyboard.press("End"); // the last template
    await page.keyboard.press("Tab"); // → max runtime
    await page.keyboard.press("Enter"); // submits the form
    await dialog.waitFor({ state: "detached" });
    await cardStatus("scratch", "Running");
    const got = await api("GET", "/sandboxes/scratch");
    if (got.json.templateRef !== last) throw new Error(`template ${got.json.templateRef}, chose ${last}`);
  });

  await step("put real files in the workspace", async () => {
    await exec("demo", "mkdir -p /workspace/src /workspace/docs && printf 'hello from agenttier\\n' > /workspace/hello.txt && printf 'print(42)\\n' > /workspace/src/main.py && printf '# Notes\\n' > /workspace/docs/README.md");
  });

  await step("stop a sandbox from its card and see it stopped", async () => {
    await card("scratch").getByRole("button", { name: "Stop" }).click();
    await cardStatus("scratch", "Stopped");
    await card("scratch").getByRole("button", { name: "Resume" }).waitFor();
    await shot("dashboard");
  });

  if (has.terminal) {
    await step("terminal: type a command and read its output", async () => {
      await card("demo").getByRole("link", { name: "Terminal" }).click();
      await page.getByTestId("terminal-state").filter({ hasText: "Connected" }).waitFor();
      await page.locator(".xterm").click();
      await page.keyboard.type("echo ui-e2e-$((6*7)) && cat /workspace/hello.txt\r");
      await page.locator(".xterm-rows", { hasText: "ui-e2e-42" }).waitFor();
      await page.locator(".xterm-rows", { hasText: "hello from agenttier" }).waitFor();
      // Resize: a smaller window makes a smaller terminal, and the shell is told.
      const size = async (tag) => {
        await page.keyboard.type(`clear; echo ${tag}=$(stty size | tr ' ' x)\r`);
        const row = page.locator(".xterm-rows > div", { hasText: new RegExp(`^${tag}=\\d+x\\d+`) });
        await row.waitFor();
        const [rows, cols] = (await row.innerText()).trim().slice(tag.length + 1).split("x").map(Number);
        return { rows, cols };
      };
      const big = await size("big");
      await page.setViewportSize({ width: 900, height: 520 });
      await page.waitForTimeout(300);
      const small = await size("small");
      if (!(small.rows < big.rows && small.cols < big.cols)) throw new Error(`resize: ${JSON.stringify({ big, small })}`);
      await page.setViewportSize({ width: 1366, height: 860 });
      // Paste from the clipboard with the toolbar button.
      await page.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: BASE });
      await page.evaluate(() => navigator.clipboard.writeText("echo pasted-$((40+2))"));
      await page.getByRole("button", { name: "Paste" }).click();
      await page.locator(".xterm-rows", { hasText: "echo pasted-$((40+2))" }).waitFor();
      await page.waitForFunction(() => document.activeElement?.classList.contains("xterm-helper-textarea"));
      await page.keyboard.press("Enter");
      await page.locator(".xterm-rows", { hasText: "pasted-42" }).waitFor();
      await page.keyboard.type("ls /workspace && wc -c /workspace/hello.txt\r");
      await page.locator(".xterm-rows", { hasText: "21 /workspace/hello.txt" }).waitFor();
      await shot("terminal");
      // Keyboard only: out of the terminal (which keeps Tab for the shell) and back to the list.
      await page.keyboard.press("Control+Shift+X");
      await page.getByRole("link", { name: "← Sandboxes" }).evaluate((el) => {
        if (document.activeElement !== el) throw new Error("Ctrl+Shift+X did not leave the terminal");
      });
      await page.keyboard.press("Enter");
      await page.getByRole("heading", { name: "Sandboxes", level: 1 }).waitFor();
    });
  } else {
    await step("terminal page shows its connection state without the server's WebSocket", async () => {
      await card("demo").getByRole("link", { name: "Terminal" }).click();
      await page.getByText("The terminal is not available on this server.").waitFor();
      await shot("terminal-unavailable");
      await page.getByRole("link", { name: "← Sandboxes" }).click();
      await page.getByRole("heading", { name: "Sandboxes", level: 1 }).waitFor();
    });
  }

  if (has.files) {
    await step("files: browse folders with breadcrumbs", async () => {
      await card("demo").getByRole("link", { name: "Files" }).click();
      await page.getByRole("heading", { name: /Files of demo/ }).waitFor();
      await page.getByRole("cell", { name: "hello.txt", exact: true }).waitFor();
      await page.getByRole("button", { name: "src/" }).click();
      await page.getByRole("cell", { name: "main.py", exact: true }).waitFor();
      await page.getByRole("navigation", { name: "Folder path" }).getByRole("link", { name: "workspace" }).click();
      await page.getByRole("cell", { name: "hello.txt", exact: true }).waitFor();
    });
    await step("files: upload by drag and drop and with the file picker", async () => {
      await page.getByTestId("dropzone").evaluate((zone) => {
        const dt = new DataTransfer();
        dt.items.add(new File(["dropped in the browser\n"], "dropped.txt", { type: "text/plain" }));
        zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: dt, bubbles: true, cancelable: true }));
        zone.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
      });
      await page.getByRole("cell", { name: "dropped.txt", exact: true }).waitFor();
      const picked = join(downloads, "picked.txt");
      writeFileSync(picked, "picked with the file chooser\n");
      await page.locator('input[type="file"]').setInputFiles(picked);
      await page.getByRole("cell", { name: "picked.txt", exact: true }).waitFor();
      const out = await exec("demo", "cat /workspace/dropped.txt /workspace/picked.txt");
      if (out.stdout !== "dropped in the browser\npicked with the file chooser\n") throw new Error(`uploaded: ${JSON.stringify(out)}`);
      await shot("files");
    });
    await step("files: download a file and the workspace as zip", async () => {
      const [download] = await Promise.all([
        page.waitForEvent("download"),
        page.getByRole("button", { name: "Download hello.txt" }).click(),
      ]);
      const path = join(downloads, "hello.txt");
      await download.saveAs(path);
      if (readFileSync(path, "utf8") !== "hello from agenttier\n") throw new Error("downloaded content differs");
      const [zip] = await Promise.all([
        page.waitForEvent("download"),
        page.getByRole("button", { name: "Download workspace" }).click(),
      ]);
      const zipPath = join(downloads, "ws.zip");
      await zip.saveAs(zipPath);
      const bytes = readFileSync(zipPath);
      if (bytes[0] !== 0x50 || bytes[1] !== 0x4b) throw new Error("the archive is not a zip");
      if (!bytes.includes(Buffer.from("hello.txt"))) throw new Error("the zip lacks hello.txt");
    });
    await page.getByRole("link", { name: "Sandboxes" }).click();
  } else {
    await step("files page says the server has no files endpoint", async () => {
      await card("demo").getByRole("link", { name: "Files" }).click();
      await page.getByText("Browsing files is not available on this server.").waitFor();
      await shot("files-unavailable");
      await page.getByRole("link", { name: "Sandboxes" }).click();
    });
  }
  await page.getByRole("heading", { name: "Sandboxes", level: 1 }).waitFor();

  if (has.ports) {
    await step("ports: forward a port and open it", async () => {
      await exec(
        "demo",
        "cd /workspace && (nohup python3 -m http.server 8000 --bind 127.0.0.1 >/tmp/http.log 2>&1 &) ; sleep 0.5; true",
      );
      const ports = card("demo").getByRole("region", { name: "Forwarded ports of demo" });
      await ports.getByLabel("Port to forward for demo").fill("8000");
      await ports.getByRole("button", { name: "Forward" }).click();
      const open = ports.getByRole("link", { name: "Open port 8000 of demo in a new tab" });
      await open.waitFor();
      await shot("dashboard-ports");
      // The proxy wants the credential, which a new tab cannot send by itself…
      const bare = await fetch(`${BASE}/api/v1/sandboxes/demo/preview/8000/`);
      if (bare.status !== 401) throw new Error(`the preview answered ${bare.status} without credentials`);
      // …so the UI's preview worker adds it.
      const [popup] = await Promise.all([page.waitForEvent("popup"), open.click()]);
      await popup.getByRole("heading", { name: "Directory listing for /" }).waitFor();
      // The sandbox's page gets the credential on its requests only, never into its hands.
      const leaked = await popup.evaluate(() => [window.opener !== null, sessionStorage.getItem("agenttier.credential")]);
      if (leaked[0] || leaked[1]) throw new Error(`the preview tab can reach the credential: ${JSON.stringify(leaked)}`);
      await popup.getByRole("link", { name: "hello.txt" }).click();
      await popup.getByText("hello from agenttier").waitFor();
      await popup.goBack();
      await popup.getByRole("link", { name: "docs/" }).waitFor();
      await shot("preview", popup, { audit: false });
      await popup.close();
      await ports.getByRole("button", { name: "Remove port 8000 of demo" }).click();
      await open.waitFor({ state: "detached" });
    });
  } else {
    await step("cards say port forwarding is not available", async () => {
      await card("demo").getByText("Port forwarding is not available on this server.").waitFor();
    });
  }

  await step("stop and resume from the card", async () => {
    await card("demo").getByRole("button", { name: "Stop" }).click();
    await cardStatus("demo", "Stopped");
    await card("demo").getByRole("button", { name: "Resume" }).click();
    await cardStatus("demo", "Running");
    const out = await exec("demo", "cat /workspace/hello.txt");
    if (out.stdout !== "hello from agenttier\n") throw new Error("the workspace did not survive stop/resume");
  });

  await step("clone from the card", async () => {
    await card("demo").getByRole("button", { name: "Clone" }).click();
    const dialog = page.getByRole("dialog", { name: "Clone demo" });
    await dialog.getByLabel("Name of the clone").fill("demo-copy");
    await dialog.getByRole("button", { name: "Clone" }).click();
    await cardStatus("demo-copy", "Running");
    const out = await exec("demo-copy", "cat /workspace/hello.txt");
    if (out.stdout !== "hello from agenttier\n") throw new Error("the clone lacks the workspace");
    await shot("dashboard-after-clone");
  });

  await step("templates: list, edit with validation, create and delete", async () => {
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Templates" }).click();
    await page.getByRole("heading", { name: "Templates", level: 1 }).waitFor();
    await page.getByRole("button", { name: /general-coding/ }).click();
    const editor = page.getByLabel(/Template general-coding/);
    await editor.waitFor();
    if (!(await editor.inputValue()).includes("name: general-coding")) throw new Error("the editor does not show the template");
    await page.getByText("No problems found.").waitFor();
    await shot("templates");
    await page.getByRole("button", { name: "New template" }).click();
    const yaml = page.getByLabel(/New template/);
    await yaml.fill("name: e2e-tiny\nspec:\n  description: made in the browser\n  mode: code\n  idleTimeout: soon\n  storage:\n    size: 1Gi\n");
    await page.getByText(/is not a duration/).waitFor();
    if (await page.getByRole("button", { name: "Create" }).isEnabled()) throw new Error("an invalid template can be saved");
    await shot("templates-validation");
    await yaml.fill("name: e2e-tiny\nspec:\n  description: made in the browser\n  mode: code\n  idleTimeout: 20m\n  storage:\n    size: 1Gi\n  harness:\n    shell: /bin/sh\n");
    await page.getByText("No problems found.").waitFor();
    await page.getByRole("button", { name: "Create" }).click();
    await page.getByRole("button", { name: /e2e-tiny/ }).waitFor();
    const got = await api("GET", "/templates/e2e-tiny");
    if (got.status !== 200 || got.json.spec.idleTimeout !== "20m") throw new Error(`template not stored: ${got.text}`);
    await page.getByRole("button", { name: /e2e-tiny/ }).click();
    await page.getByRole("button", { name: "Delete", exact: true }).click();
    await page.getByRole("dialog", { name: "Delete template e2e-tiny?" }).getByRole("button", { name: "Delete template" }).click();
    await page.getByRole("button", { name: /e2e-tiny/ }).waitFor({ state: "detached" });
    if ((await api("GET", "/templates/e2e-tiny")).status !== 404) throw new Error("the template is still there");
  });

  if (has.governance) {
    await step("governance: a policy change rejects a create with the rule's message", async () => {
      await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Settings" }).click();
      const allowed = page.getByLabel("Allowed templates");
      await allowed.fill("minimal-shell");
      await page.getByRole("button", { name: "Save policy" }).click();
      await until(async () => (await api("GET", "/governance/policies")).json?.cluster?.allowedTemplates?.[0] === "minimal-shell", "the policy saved");
      await shot("settings-governance");
      await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Sandboxes" }).click();
      await page.getByRole("button", { name: "New sandbox" }).click();
      const dialog = page.getByRole("dialog", { name: "New sandbox" });
      await dialog.getByLabel("Name").fill("not-allowed");
      await dialog.getByLabel("Template").selectOption("general-coding");
      await dialog.getByRole("button", { name: "Create sandbox" }).click();
      await dialog.getByText("The server's policy rejected this sandbox:").waitFor();
      await dialog.getByText("template_not_allowed").waitFor();
      const direct = await api("POST", "/sandboxes", { name: "not-allowed", templateRef: { name: "general-coding" } });
      if (direct.status !== 403) throw new Error(`the policy did not hold over the API: ${direct.status}`);
      await dialog.getByText(direct.json.violations[0].message).waitFor();
      await shot("create-rejected-by-policy");
      await page.keyboard.press("Escape");
      await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Settings" }).click();
      await page.getByLabel("Allowed templates").fill("");
      await page.getByRole("button", { name: "Save policy" }).click();
      await until(async () => !(await api("GET", "/governance/policies")).json?.cluster?.allowedTemplates, "the policy cleared");
    });
  }

  await step(has.audit ? "activity log with filters" : "activity page says the audit log is missing", async () => {
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Activity" }).click();
    await page.getByRole("heading", { name: "Activity", level: 1 }).waitFor();
    if (has.audit) {
      await page.getByRole("cell", { name: "demo", exact: true }).first().waitFor();
      await shot("activity");
      await page.getByLabel("Action").selectOption("Stopped");
      const types = await page.locator("tbody tr td:nth-child(2)").allInnerTexts();
      if (types.length === 0 || types.some((t) => t.trim() !== "Stopped")) throw new Error(`filter shows ${types}`);
    } else {
      await page.getByText("The activity log is not available on this server.").waitFor();
      await shot("activity-unavailable");
    }
  });

  if (has.warmpool) {
    await step("warm pool: keep a sandbox ready from the settings", async () => {
      await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Settings" }).click();
      await page.getByLabel("minimal-shell", { exact: true }).fill("1");
      await page.getByRole("button", { name: "Save warm pool" }).click();
      await until(async () => (await api("GET", "/warmpool/status")).json?.pools?.[0]?.readyCount === 1, "a ready pool sandbox");
    });
  }

  await step("metrics show live counts", async () => {
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Metrics" }).click();
    await page.getByTestId("running-count").filter({ hasText: /^[1-9]/ }).waitFor();
    await page.getByRole("list", { name: "Sandboxes by status" }).waitFor();
    await page.getByText(/over [1-9]\d* starts/).waitFor();
    if (has.warmpool) await page.getByLabel("minimal-shell pool fill").waitFor();
    await shot("metrics");
  });

  await step("cost estimator follows the unit prices", async () => {
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Costs" }).click();
    const total = page.getByTestId("monthly-total");
    await total.filter({ hasText: /\$[1-9]/ }).waitFor();
    const before = await total.innerText();
    await page.getByLabel("Price per vCPU-hour").fill("0.08");
    await total.filter({ hasNotText: before }).waitFor();
    await shot("costs");
    await page.getByRole("button", { name: "Reset prices" }).click();
  });

  await step("settings (admin)", async () => {
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Settings" }).click();
    await page.getByRole("heading", { name: "Settings", level: 1 }).waitFor();
    if (has.warmpool) {
      await page.getByLabel("minimal-shell", { exact: true }).fill("0");
      await page.getByRole("button", { name: "Save warm pool" }).click();
      await until(async () => !(await api("GET", "/warmpool/status")).json?.pools?.length, "the pool emptied");
    }
    await page.getByLabel("Storage size").fill("2Gi");
    await page.getByRole("button", { name: "Save defaults" }).click();
    await page.getByText(/Defaults saved/).waitFor();
    if (has.apiKeys) {
      await page.getByLabel("Name", { exact: true }).fill("e2e laptop");
      await page.getByRole("button", { name: "Create key" }).click();
      const dialog = page.getByRole("dialog", { name: "Your new API key" });
      const key = await dialog.getByLabel("API key").inputValue();
      if (!key.startsWith("atk_")) throw new Error(`minted ${key}`);
      await dialog.getByRole("button", { name: "Done" }).click();
      await page.getByRole("cell", { name: "e2e laptop", exact: true }).waitFor();
      const me = (k) => fetch(`${BASE}/api/v1/user/me`, { headers: { "X-API-Key": k } }).then((r) => r.status);
      if ((await me(key)) !== 200) throw new Error("the minted key does not work");
      await page.getByRole("button", { name: "Revoke key e2e laptop" }).click();
      await page.getByRole("dialog", { name: "Revoke e2e laptop?" }).getByRole("button", { name: "Revoke key" }).click();
      await page.getByRole("cell", { name: "e2e laptop", exact: true }).waitFor({ state: "detached" });
      if ((await me(key)) !== 401) throw new Error("the revoked key still works");
    }
    await shot("settings");
  });

  await step("delete from the card, with confirmation", async () => {
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Sandboxes" }).click();
    for (const name of ["demo-copy", "scratch", "demo"]) {
      await card(name).getByRole("button", { name: "Delete" }).click();
      const dialog = page.getByRole("dialog", { name: `Delete ${name}?` });
      await dialog.getByRole("button", { name: "Delete sandbox" }).click();
      await card(name).waitFor({ state: "detached" });
    }
    const left = await api("GET", "/sandboxes");
    if ((left.json.sandboxes ?? []).length !== 0) throw new Error(`left over: ${left.text}`);
    await page.getByText("No sandboxes yet.").waitFor();
  });

  await step("sign out", async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("API key").waitFor();
  });
} catch (e) {
  if (!run.results.some((r) => !r.ok)) console.log(`  FAIL  ${e?.stack ?? e}`);
  failed = true;
}
await run.finish(failed, unavailable.length ? `waiting for server endpoints: ${unavailable.join(", ")}` : undefined);

