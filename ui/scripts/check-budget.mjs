#!/usr/bin/env node
// Fails when the JavaScript a first page load needs is over budget (gzipped). "Initial" is the
// entry script named in dist/index.html plus every chunk it imports statically (transitively);
// chunks loaded with import() — the terminal and its xterm.js, for instance — are not initial.
import { readFileSync, readdirSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const BUDGET_KB = Number(process.env.UI_JS_BUDGET_KB ?? 250);
const dist = join(dirname(fileURLToPath(import.meta.url)), "..", "dist");

let html;
try {
  html = readFileSync(join(dist, "index.html"), "utf8");
} catch {
  console.error(`check-budget: ${dist}/index.html is missing; run \`npm run build\` first`);
  process.exit(2);
}

const gz = (file) => gzipSync(readFileSync(join(dist, file)), { level: 9 }).length;
const entries = [...html.matchAll(/<script[^>]+src="\/?([^"]+\.js)"/g)].map((m) => m[1]);
const styles = [...html.matchAll(/<link[^>]+rel="stylesheet"[^>]+href="\/?([^"]+\.css)"/g)].map((m) => m[1]);
const preloads = [...html.matchAll(/<link[^>]+rel="modulepreload"[^>]+href="\/?([^"]+\.js)"/g)].map((m) => m[1]);
const initial = new Set(styles);
const queue = [...entries, ...preloads];
while (queue.length) {
  const file = queue.shift();
  if (initial.has(file)) continue;
  initial.add(file);
  const code = readFileSync(join(dist, file), "utf8");
  // static imports: `import … from "./x.js"` and `import "./x.js"` (not `import("./x.js")`)
  for (const m of code.matchAll(/(?:^|[;}\s])import\s*(?:[\w${},*\s]+from\s*)?["']\.\/([^"']+\.js)["']/g)) {
    queue.push(join(dirname(file), m[1]));
  }
}

const all = readdirSync(join(dist, "assets")).filter((f) => f.endsWith(".js") || f.endsWith(".css"));
let initialBytes = 0;
const rows = [];
for (const f of all) {
  const rel = join("assets", f);
  const size = gz(rel);
  const isInitial = initial.has(rel);
  if (isInitial && f.endsWith(".js")) initialBytes += size;
  rows.push({ file: f, gzipKB: +(size / 1024).toFixed(1), initial: isInitial });
}
rows.sort((a, b) => Number(b.initial) - Number(a.initial) || b.gzipKB - a.gzipKB);
for (const r of rows) console.log(`${r.initial ? "initial" : "lazy   "}  ${String(r.gzipKB).padStart(7)} KB  ${r.file}`);
const kb = initialBytes / 1024;
console.log(`initial JS: ${kb.toFixed(1)} KB gzipped (budget ${BUDGET_KB} KB)`);
// xterm.js (recognisable by the class names it creates) must not be in what a first visit loads.
const eager = [...initial].filter((f) => f.endsWith(".js") && readFileSync(join(dist, f), "utf8").includes("xterm-helper-textarea"));
if (eager.length) {
  console.error(`check-budget: the terminal (xterm.js) must be loaded lazily, but it is in ${eager.join(", ")}`);
  process.exit(1);
}
if (!rows.some((r) => !r.initial && r.file.endsWith(".js") && readFileSync(join(dist, "assets", r.file), "utf8").includes("xterm-helper-textarea"))) {
  console.error("check-budget: no lazily loaded chunk contains xterm.js; has the terminal moved?");
  process.exit(1);
}
if (kb > BUDGET_KB) {
  console.error(`check-budget: initial JS is over budget by ${(kb - BUDGET_KB).toFixed(1)} KB`);
  process.exit(1);
}

