import { fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { App } from "../src/app";
import { ADMIN, SANDBOX, TEMPLATE, mockFetch } from "./fetchMock";

function at(path: string) {
  sessionStorage.setItem("agenttier.credential", JSON.stringify({ kind: "apiKey", key: "atk_k" }));
  window.history.replaceState(null, "", path);
}

describe("files page", () => {
  it("lists a folder, walks the breadcrumbs and uploads dropped files", async () => {
    at("/sandboxes/demo/files");
    const uploads: { path: string; body: unknown }[] = [];
    mockFetch({
      "GET /api/v1/user/me": [200, ADMIN],
      "GET /api/v1/sandboxes/demo": [200, SANDBOX],
      "GET /api/v1/sandboxes/demo/files/?path=%2Fworkspace": [
        200,
        {
          path: "/workspace",
          entries: [
            { name: "src", size: 4096, isDir: true, mode: "drwxr-xr-x", modifiedAt: 1_700_000_000 },
            { name: "hello.txt", size: 21, isDir: false, mode: "-rw-r--r--", modifiedAt: 1_700_000_000 },
          ],
        },
      ],
      "GET /api/v1/sandboxes/demo/files/?path=%2Fworkspace%2Fsrc": [
        200,
        { path: "/workspace/src", entries: [{ name: "main.py", size: 10, isDir: false, mode: "-rw-r--r--", modifiedAt: 1 }] },
      ],
      "PUT /api/v1/sandboxes/demo/files/workspace/notes%20one.txt": ({ url, body }) => {
        uploads.push({ path: url.pathname, body });
        return [201, { path: "/workspace/notes one.txt", bytes: 5 }];
      },
    });
    const user = userEvent.setup();
    render(<App />);
    expect(await screen.findByRole("cell", { name: /hello\.txt/ })).toBeTruthy();
    expect(screen.getByText("21 B")).toBeTruthy();
    // Folders come first.
    const rows = screen.getAllByRole("row").map((r) => r.textContent ?? "");
    expect(rows.findIndex((r) => r.includes("src/"))).toBeLessThan(rows.findIndex((r) => r.includes("hello.txt")));
    await user.click(screen.getByRole("button", { name: "src/" }));
    expect(await screen.findByRole("cell", { name: /main\.py/ })).toBeTruthy();
    const crumbs = screen.getByRole("navigation", { name: "Folder path" });
    expect(within(crumbs).getByText("src").getAttribute("aria-current")).toBe("location");
    await user.click(within(crumbs).getByRole("link", { name: "workspace" }));
    expect(await screen.findByRole("cell", { name: /hello\.txt/ })).toBeTruthy();
    const file = new File(["hello"], "notes one.txt");
    fireEvent.drop(screen.getByTestId("dropzone"), { dataTransfer: { files: [file] } });
    await waitFor(() => expect(uploads).toHaveLength(1));
    expect(uploads[0].body).toBeInstanceOf(File);
    expect(await screen.findByText("Uploaded notes one.txt")).toBeTruthy();
  });

  it("downloads a file with the credential and saves it under its name", async () => {
    at("/sandboxes/demo/files");
    const { calls } = mockFetch({
      "GET /api/v1/user/me": [200, ADMIN],
      "GET /api/v1/sandboxes/demo": [200, SANDBOX],
      "GET /api/v1/sandboxes/demo/files/?path=%2Fworkspace": [
        200,
        { path: "/workspace", entries: [{ name: "hello.txt", size: 5, isDir: false, mode: "-rw-r--r--", modifiedAt: 1 }] },
      ],
      "GET /api/v1/sandboxes/demo/files/workspace/hello.txt": [200, "hello"],
    });
    const created: string[] = [];
    URL.createObjectURL = vi.fn(() => "blob:x");
    URL.revokeObjectURL = vi.fn();
    const click = vi.spyOn(HTMLAnchorElement.prototype, "click").mockImplementation(function (this: HTMLAnchorElement) {
      created.push(this.download);
    });
    const user = userEvent.setup();
    render(<App />);
    await user.click(await screen.findByRole("button", { name: "Download hello.txt" }));
    await waitFor(() => expect(created).toEqual(["hello.txt"]));
    expect(calls.find((c) => c.path.endsWith("/files/workspace/hello.txt"))!.headers.get("X-API-Key")).toBe("atk_k");
    click.mockRestore();
  });
});

describe("templates page", () => {
  it("edits a template, blocks invalid YAML and saves a valid one", async () => {
    at("/templates");
    const saved: unknown[] = [];
    mockFetch({
      "GET /api/v1/user/me": [200, ADMIN],
      "GET /api/v1/templates": [200, { templates: [TEMPLATE] }],
      "PUT /api/v1/templates/general-coding": ({ body }) => {
        saved.push(body);
        return [200, TEMPLATE];
      },
    });
    const user = userEvent.setup();
    render(<App />);
    const editor = (await screen.findByLabelText(/Template general-coding/)) as HTMLTextAreaElement;
    await waitFor(() => expect(editor.value).toContain("name: general-coding"));
    expect(screen.getByText("No problems found.")).toBeTruthy();
    fireEvent.change(editor, { target: { value: editor.value.replace("idleTimeout: 1h", "idleTimeout: an hour") } });
    expect(await screen.findByText(/"an hour" is not a duration/)).toBeTruthy();
    expect((screen.getByRole("button", { name: "Save" }) as HTMLButtonElement).disabled).toBe(true);
    fireEvent.change(editor, { target: { value: editor.value.replace("idleTimeout: an hour", "idleTimeout: 2h") } });
    await user.click(screen.getByRole("button", { name: "Save" }));
    await waitFor(() => expect(saved).toHaveLength(1));
    expect((saved[0] as { spec: { idleTimeout: string } }).spec.idleTimeout).toBe("2h");
  });

  it("is read-only for non-admins", async () => {
    at("/templates");
    mockFetch({
      "GET /api/v1/user/me": [200, { ...ADMIN, isAdmin: false }],
      "GET /api/v1/templates": [200, { templates: [TEMPLATE] }],
    });
    render(<App />);
    const editor = (await screen.findByLabelText(/Template general-coding/)) as HTMLTextAreaElement;
    expect(editor.readOnly).toBe(true);
    expect(screen.queryByRole("button", { name: "New template" })).toBeNull();
    expect(screen.queryByRole("link", { name: "Settings" })).toBeNull();
  });
});

describe("metrics and costs", () => {
  it("counts sandboxes by status and reads the queue depth from /metrics", async () => {
    at("/monitoring");
    mockFetch({
      "GET /api/v1/user/me": [200, ADMIN],
      "GET /api/v1/sandboxes": [200, { sandboxes: [SANDBOX, { ...SANDBOX, name: "b", status: "Stopped" }] }],
      "GET /api/v1/analytics/usage": [200, { total_sandboxes: 2, avg_startup_ms: 12.4, startup_sample_count: 3 }],
      "GET /api/v1/warmpool/status": [200, { pools: [{ template: "general-coding", desiredCount: 2, readyCount: 1 }] }],
      "GET /metrics": [200, "# TYPE agenttier_reconcile_queue_depth gauge\nagenttier_reconcile_queue_depth 4\n"],
    });
    render(<App />);
    await waitFor(() => expect(screen.getByTestId("running-count").textContent).toBe("1"));
    expect(await screen.findByText("12 ms")).toBeTruthy();
    expect(await screen.findByText("4")).toBeTruthy();
    expect(screen.getByLabelText("general-coding pool fill")).toBeTruthy();
  });

  it("estimates the monthly cost and follows the prices", async () => {
    at("/costs");
    mockFetch({
      "GET /api/v1/user/me": [200, ADMIN],
      "GET /api/v1/sandboxes": [200, { sandboxes: [SANDBOX] }],
      "GET /api/v1/templates": [200, { templates: [TEMPLATE] }],
    });
    render(<App />);
    // 2 vCPU × 0.04 + 2 GiB × 0.005 = 0.09/h → 64.80/month, plus 10 GiB × 0.1 = 1.00 storage.
    await waitFor(() => expect(screen.getByTestId("monthly-total").textContent).toBe("$65.80"));
    fireEvent.change(screen.getByLabelText("Price per vCPU-hour"), { target: { value: "0" } });
    await waitFor(() => expect(screen.getByTestId("monthly-total").textContent).toBe("$8.20"));
  });
});
