import { describe, expect, it } from "vitest";
import { checkTemplateYaml } from "../src/lib/templateSchema";

describe("template YAML validation", () => {
  it("accepts a valid template", () => {
    const r = checkTemplateYaml("name: t1\nspec:\n  mode: code\n  storage:\n    size: 1Gi\n  idleTimeout: 30m\n");
    expect(r.problems).toEqual([]);
    expect(r.name).toBe("t1");
    expect(r.spec).toEqual({ mode: "code", storage: { size: "1Gi" }, idleTimeout: "30m" });
  });
  it("reports field errors with their lines", () => {
    const text = [
      "name: Bad_Name",
      "spec:",
      "  mode: turbo",
      "  idleTimeout: forever",
      "  resources:",
      "    limits:",
      "      memory: lots",
      "  colour: blue",
      "  env:",
      "    - value: x",
    ].join("\n");
    const r = checkTemplateYaml(text);
    const byPath = Object.fromEntries(r.problems.map((p) => [p.path, p]));
    expect(byPath.name.line).toBe(1);
    expect(byPath["spec.mode"].message).toMatch(/code, agent/);
    expect(byPath["spec.mode"].line).toBe(3);
    expect(byPath["spec.idleTimeout"].line).toBe(4);
    expect(byPath["spec.resources.limits.memory"].line).toBe(7);
    expect(byPath["spec.colour"].severity).toBe("warning");
    expect(byPath["spec.env.0.name"].message).toBe("is required");
  });
  it("reports YAML syntax errors", () => {
    const r = checkTemplateYaml("name: a\nspec: [unclosed\n");
    expect(r.problems[0].severity).toBe("error");
    expect(r.spec).toBeUndefined();
  });
  it("refuses renaming the template being edited", () => {
    const r = checkTemplateYaml("name: other\nspec: {}\n", "mine");
    expect(r.problems[0].message).toMatch(/cannot be changed/);
  });
  it("flags requests above limits", () => {
    const r = checkTemplateYaml("name: a\nspec:\n  resources:\n    requests: {cpu: '4'}\n    limits: {cpu: '2'}\n");
    expect(r.problems[0].path).toBe("spec.resources.requests.cpu");
  });
});
