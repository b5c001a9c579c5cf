// Shared pieces of the browser tests: Debian's chromium through playwright-core with a fresh
// profile, the API for setting up and checking, named steps with a failure screenshot, and
// numbered screenshots of every page.

import { mkdirSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const TIMEOUT = 20_000;
/** axe-core, injected into every page the UI draws to check it against WCAG 2.1 A and AA. */
const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** `AGENTTIER_URL`, `AGENTTIER_ADMIN_KEY` and `SCREENSHOT_DIR` from the environment. */
export function settings() {
  const base = (process.env.AGENTTIER_URL ?? "").replace(/\/$/, "");
  const key = process.env.AGENTTIER_ADMIN_KEY ?? "";
  const shots = process.env.SCREENSHOT_DIR ?? join(process.cwd(), "screenshots");
  if (!base || !key) {
    console.error("set AGENTTIER_URL and AGENTTIER_ADMIN_KEY");
    process.exit(2);
  }
  mkdirSync(shots, { recursive: true });
  return { base, key, shots };
}

/** A JSON call to the API with a key: `{status, json, text}`. */
export function apiClient(base, key) {
  return async function api(method, path, body) {
    const response = await fetch(`${base}/api/v1${path}`, {
      method,
      headers: { "X-API-Key": key, ...(body !== undefined ? { "Content-Type": "application/json" } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = text;
    }
    return { status: response.status, json, text };
  };
}

export async function until(check, what, ms = TIMEOUT) {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

/** The browser, the page, the steps and the screenshots of one run. */
export class Run {
  constructor(shots) {
    this.shots = shots;
    this.results = [];
    this.shotNo = 0;
    this.page = null;
    this.profile = join(tmpdir(), `agenttier-e2e-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
    this.downloads = `${this.profile}-downloads`;
    mkdirSync(this.downloads, { recursive: true });
  }

  /** Starts chromium headless with a fresh profile (playwright passes it as --user-data-dir). */
  async launch() {
    this.context = await chromium.launchPersistentContext(this.profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
      viewport: { width: 1366, height: 860 },
      acceptDownloads: true,
    });
    this.page = this.context.pages()[0] ?? (await this.context.newPage());
    this.page.setDefaultTimeout(TIMEOUT);
    this.pageErrors = [];
    this.page.on("pageerror", (e) => this.pageErrors.push(String(e)));
    return this.page;
  }

  async step(name, fn) {
    const started = Date.now();
    try {
      await fn();
      this.results.push({ name, ok: true });
      console.log(`  ok    ${name} (${Date.now() - started} ms)`);
    } catch (e) {
      this.results.push({ name, ok: false });
      console.log(`  FAIL  ${name}: ${e?.stack ?? e}`);
      try {
        await this.page?.screenshot({ path: join(this.shots, `FAILED-${name.replace(/\W+/g, "-")}.png`), fullPage: true });
      } catch {
        // the page is gone
      }
      throw e;
    }
  }

  /** A numbered full-page screenshot (`07-terminal.png`) of `page` (the main page by default),
   * and an accessibility audit of it unless it is not the UI's (`audit: false`). */
  async shot(name, page = this.page, { audit = true } = {}) {
    this.shotNo++;
    const file = join(this.shots, `${String(this.shotNo).padStart(2, "0")}-${name}.png`);
    await page.waitForTimeout(150); // let transitions and fonts settle
    await page.screenshot({ path: file, fullPage: true });
    console.log(`        screenshot ${file}`);
    if (audit) await this.audit(page, name);
  }

  /** Fails on serious or critical WCAG 2.1 A/AA violations that axe-core finds on the page. */
  async audit(page, name) {
    await page.addScriptTag({ path: AXE });
    const violations = await page.evaluate(async () => {
      const result = await window.axe.run(document, {
        runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] },
      });
      return result.violations
        .filter((v) => v.impact === "serious" || v.impact === "critical")
        .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`);
    });
    this.audited = (this.audited ?? 0) + 1;
    if (violations.length) throw new Error(`accessibility problems on ${name}:\n  ${violations.join("\n  ")}`);
  }

  card(name) {
    return this.page.locator("article", { has: this.page.getByRole("heading", { name, exact: true }) });
  }

  async cardStatus(name, status) {
    await this.card(name).locator(".badge", { hasText: status }).waitFor({ timeout: TIMEOUT });
  }

  /** Closes the browser, prints the summary line and exits (1 on any failure). */
  async finish(failed, note) {
    if (this.pageErrors?.length) {
      this.results.push({ name: "no uncaught page errors", ok: false });
      console.log(`  FAIL  uncaught page errors:\n${this.pageErrors.join("\n")}`);
    }
    try {
      await this.context?.close();
    } finally {
      rmSync(this.profile, { recursive: true, force: true });
      rmSync(this.downloads, { recursive: true, force: true });
    }
    const passed = this.results.filter((r) => r.ok).length;
    const bad = this.results.length - passed;
    if (note) console.log(note);
    console.log(`ui e2e: ${passed} passed, ${bad} failed`);
    process.exit(failed || bad ? 1 : 0);
  }
}
