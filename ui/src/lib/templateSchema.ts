// Field validation for the template YAML editor: the document is `{name, spec}` where spec is a
// SandboxTemplateSpec (contract §7.3). Problems carry a path and the line they are on.

import { isMap, isSeq, parseDocument, type Document } from "yaml";
import { parseDuration } from "./duration";
import { parseQuantity } from "./quantity";

export interface Problem {
  path: string;
  message: string;
  line?: number;
  severity: "error" | "warning";
}

export interface ParsedTemplate {
  name?: string;
  spec?: Record<string, unknown>;
  problems: Problem[];
}

import { NAME_RE } from "./names";
export { NAME_RE };

const SPEC_FIELDS = new Set([
  "inheritsFrom", "mode", "description", "image", "resources", "storage", "network", "env",
  "timeout", "idleTimeout", "runtimeClass", "credentials", "sidecars", "initContainers",
  "security", "serviceAccount", "initScripts", "files", "harness",
]);

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

class Checker {
  problems: Problem[] = [];
  constructor(private doc: Document, private lineOf: (offset: number) => number) {}

  add(path: (string | number)[], message: string, severity: "error" | "warning" = "error") {
    let line: number | undefined;
    for (let n = path.length; n >= 0 && line === undefined; n--) {
      const node = this.doc.getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined;
      if (node && typeof node === "object" && node.range) line = this.lineOf(node.range[0]);
      if (n > 0) {
        // the key itself is a better anchor than its value
        const parent = this.doc.getIn(path.slice(0, n - 1), true);
        if (isMap(parent)) {
          const pair = parent.items.find((p) => (p.key as { value?: unknown })?.value === path[n - 1]);
          const range = (pair?.key as { range?: [number, number, number] } | undefined)?.range;
          if (range) line = this.lineOf(range[0]);
        } else if (isSeq(parent)) {
          const item = parent.items[path[n - 1] as number] as { range?: [number, number, number] } | undefined;
          if (item?.range) line = this.lineOf(item.range[0]);
        }
      }
    }
    this.problems.push({ path: path.join("."), message, line, severity });
  }

  obj(path: (string | number)[], v: unknown): v is Obj {
    if (v === undefined || v === null) return false;
    if (!isObj(v)) {
      this.add(path, "must be a mapping");
      return false;
    }
    return true;
  }

  str(path: (string | number)[], v: unknown, required = false) {
    if (v === undefined || v === null) {
      if (required) this.add(path, "is required");
      return;
    }
    if (typeof v !== "string") this.add(path, "must be a string");
    else if (required && !v) this.add(path, "must not be empty");
  }

  bool(path: (string | number)[], v: unknown) {
    if (v !== undefined && v !== null && typeof v !== "boolean") this.add(path, "must be true or false");
  }

  oneOf(path: (string | number)[], v: unknown, options: string[]) {
    if (v === undefined || v === null) return;
    if (typeof v !== "string" || !options.includes(v)) this.add(path, `must be one of ${options.join(", ")}`);
  }

  duration(path: (string | number)[], v: unknown) {
    if (v === undefined || v === null) return;
    if (typeof v !== "string") return this.add(path, "must be a duration string such as 30m or 8h");
    const ms = parseDuration(v);
    if (ms === null) this.add(path, `"${v}" is not a duration (use 30s, 5m, 8h, 1h30m)`);
    else if (ms <= 0) this.add(path, "must be positive");
  }

  quantity(path: (string | number)[], v: unknown) {
    if (v === undefined || v === null) return;
    if ((typeof v !== "string" && typeof v !== "number") || parseQuantity(v) === null)
      this.add(path, `"${String(v)}" is not a quantity (use 500m, 2, 512Mi, 10Gi)`);
  }

  list(path: (string | number)[], v: unknown, each?: (p: (string | number)[], item: unknown) => void) {
    if (v === undefined || v === null) return;
    if (!Array.isArray(v)) return this.add(path, "must be a list");
    if (each) v.forEach((item, i) => each([...path, i], item));
  }

  spec(spec: Obj) {
    const p = ["spec"];
    for (const key of Object.keys(spec))
      if (!SPEC_FIELDS.has(key)) this.add([...p, key], `unknown field "${key}"`, "warning");
    this.oneOf([...p, "mode"], spec.mode, ["code", "agent"]);
    this.str([...p, "description"], spec.description);
    if (this.obj([...p, "inheritsFrom"], spec.inheritsFrom)) {
      const ref = spec.inheritsFrom as Obj;
      this.str([...p, "inheritsFrom", "name"], ref.name, true);
      this.oneOf([...p, "inheritsFrom", "kind"], ref.kind, ["SandboxTemplate", "ClusterSandboxTemplate"]);
    }
    if (this.obj([...p, "image"], spec.image)) {
      const image = spec.image as Obj;
      this.str([...p, "image", "repository"], image.repository, true);
      this.oneOf([...p, "image", "pullPolicy"], image.pullPolicy, ["Always", "IfNotPresent", "Never"]);
    }
    if (this.obj([...p, "resources"], spec.resources)) {
      const r = spec.resources as Obj;
      for (const kind of ["requests", "limits"]) {
        if (this.obj([...p, "resources", kind], r[kind]))
          for (const [k, v] of Object.entries(r[kind] as Obj)) this.quantity([...p, "resources", kind, k], v);
      }
      const lim = (r.limits ?? {}) as Obj;
      const req = (r.requests ?? {}) as Obj;
      for (const k of ["cpu", "memory"]) {
        const a = parseQuantity(req[k] as string);
        const b = parseQuantity(lim[k] as string);
        if (a !== null && b !== null && a > b)
          this.add([...p, "resources", "requests", k], `request ${String(req[k])} is above the limit ${String(lim[k])}`);
      }
    }
    if (this.obj([...p, "storage"], spec.storage)) {
      const s = spec.storage as Obj;
      this.quantity([...p, "storage", "size"], s.size);
      this.str([...p, "storage", "mountPath"], s.mountPath);
      if (typeof s.mountPath === "string" && !s.mountPath.startsWith("/"))
        this.add([...p, "storage", "mountPath"], "must be an absolute path");
      this.bool([...p, "storage", "snapshotOnStop"], s.snapshotOnStop);
      this.bool([...p, "storage", "shared"], s.shared);
    }
    if (this.obj([...p, "network"], spec.network)) {
      const n = spec.network as Obj;
      this.bool([...p, "network", "allowInternet"], n.allowInternet);
      this.bool([...p, "network", "allowPeerSandboxes"], n.allowPeerSandboxes);
      this.list([...p, "network", "egressRules"], n.egressRules);
    }
    this.duration([...p, "timeout"], spec.timeout);
    this.duration([...p, "idleTimeout"], spec.idleTimeout);
    this.list([...p, "env"], spec.env, (ip, item) => {
      if (this.obj(ip, item)) {
        this.str([...ip, "name"], (item as Obj).name, true);
        const value = (item as Obj).value;
        if (value !== undefined && value !== null && typeof value !== "string")
          this.add([...ip, "value"], "must be a string (quote numbers and booleans)");
      }
    });
    this.list([...p, "initScripts"], spec.initScripts, (ip, item) => this.str(ip, item, true));
    this.list([...p, "files"], spec.files, (ip, item) => {
      if (this.obj(ip, item)) {
        this.str([...ip, "path"], (item as Obj).path, true);
        this.str([...ip, "content"], (item as Obj).content);
      }
    });
    if (this.obj([...p, "security"], spec.security)) this.bool([...p, "security", "privileged"], (spec.security as Obj).privileged);
    this.obj([...p, "harness"], spec.harness);
    this.str([...p, "runtimeClass"], spec.runtimeClass);
    this.str([...p, "serviceAccount"], spec.serviceAccount);
    this.list([...p, "credentials"], spec.credentials);
    this.list([...p, "sidecars"], spec.sidecars);
    this.list([...p, "initContainers"], spec.initContainers);
  }
}

/** Parses and checks the editor's text. `fixedName` is the name of the template being edited. */
export function checkTemplateYaml(text: string, fixedName?: string): ParsedTemplate {
  const doc = parseDocument(text, { prettyErrors: true });
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text[i] === "\n") starts.push(i + 1);
  const lineOf = (offset: number) => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid] <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  };
  if (doc.errors.length) {
    return {
      problems: doc.errors.map((e) => ({
        path: "",
        message: e.message.split("\n")[0],
        line: e.linePos?.[0]?.line,
        severity: "error" as const,
      })),
    };
  }
  const checker = new Checker(doc, lineOf);
  const value = doc.toJS() as unknown;
  if (!isObj(value)) {
    checker.add([], "the document must be a mapping with name and spec");
    return { problems: checker.problems };
  }
  for (const key of Object.keys(value))
    if (key !== "name" && key !== "spec") checker.add([key], `unknown field "${key}" (expected name and spec)`, "warning");
  const name = value.name;
  if (typeof name !== "string" || !name) checker.add(["name"], "is required");
  else if (!NAME_RE.test(name)) checker.add(["name"], "must be 1–63 lowercase letters, digits or '-', starting and ending with a letter or digit");
  else if (fixedName && name !== fixedName) checker.add(["name"], `cannot be changed (this is "${fixedName}")`);
  let spec: Obj | undefined;
  if (value.spec === undefined || value.spec === null) spec = {};
  else if (checker.obj(["spec"], value.spec)) {
    spec = value.spec as Obj;
    checker.spec(spec);
  }
  return { name: typeof name === "string" ? name : undefined, spec, problems: checker.problems };
}
