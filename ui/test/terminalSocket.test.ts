import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MAX_ATTEMPTS, RECONNECT_DELAY_MS, TerminalSocket, terminalUrl, type TerminalState } from "../src/lib/terminalSocket";

class FakeSocket {
  static all: FakeSocket[] = [];
  readyState = 0;
  sent: unknown[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((e: { data: unknown }) => void) | null = null;
  onclose: ((e: { code: number; reason: string }) => void) | null = null;
  constructor(public url: string) {
    FakeSocket.all.push(this);
  }
  send(data: string) {
    this.sent.push(JSON.parse(data));
  }
  close() {
    this.readyState = 3;
    this.onclose?.({ code: 1000, reason: "" });
  }
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  frame(f: unknown) {
    this.onmessage?.({ data: JSON.stringify(f) });
  }
  drop(code = 1006, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

describe("terminal socket", () => {
  let states: TerminalState[];
  let output: string;
  const make = () =>
    new TerminalSocket({
      url: (s) => `ws://h/ws/terminal/x${s ? `?session=${s}` : ""}`,
      onOutput: (d) => (output += d),
      onState: (s) => states.push(s),
      size: () => ({ cols: 100, rows: 30 }),
      WebSocketImpl: FakeSocket as unknown as typeof WebSocket,
    });

  beforeEach(() => {
    vi.useFakeTimers();
    FakeSocket.all = [];
    states = [];
    output = "";
  });
  afterEach(() => vi.useRealTimers());

  it("sends a resize on open, input as frames, and writes output", () => {
    const ts = make();
    ts.connect();
    const ws = FakeSocket.all[0];
    ws.open();
    expect(ws.sent[0]).toEqual({ type: "resize", cols: 100, rows: 30 });
    ts.input("ls\r");
    expect(ws.sent[1]).toEqual({ type: "input", data: "ls\r" });
    ws.frame({ type: "output", stream: "stdout", data: "hello" });
    ws.frame({ type: "heartbeat", ts: 1 });
    expect(output).toBe("hello");
    expect(states.at(-1)).toEqual({ kind: "open" });
  });

  it("reconnects with the session the server named, and gives up after the last attempt", () => {
    const ts = make();
    ts.connect();
    FakeSocket.all[0].open();
    FakeSocket.all[0].frame({ type: "session", sessionId: "abc" });
    FakeSocket.all[0].drop();
    expect(states.at(-1)).toEqual({ kind: "reconnecting", attempt: 1, max: MAX_ATTEMPTS });
    vi.advanceTimersByTime(RECONNECT_DELAY_MS);
    expect(FakeSocket.all[1].url).toContain("session=abc");
    for (let i = 1; i < MAX_ATTEMPTS; i++) {
      FakeSocket.all[i].drop();
      vi.advanceTimersByTime(RECONNECT_DELAY_MS);
    }
    FakeSocket.all[MAX_ATTEMPTS].drop();
    expect(states.at(-1)).toMatchObject({ kind: "closed", final: false });
    ts.dispose();
  });

  it("stops for good when the server closes with a final reason", () => {
    const ts = make();
    ts.connect();
    FakeSocket.all[0].open();
    FakeSocket.all[0].frame({ type: "close", reason: "sandbox_stopped", code: 4001 });
    expect(states.at(-1)).toEqual({ kind: "closed", reason: "the sandbox was stopped", final: true });
    vi.advanceTimersByTime(RECONNECT_DELAY_MS * 3);
    expect(FakeSocket.all).toHaveLength(1);
  });

  it("puts the credential, ticket, session and size in the query", () => {
    const loc = { protocol: "https:", host: "at.example" };
    expect(terminalUrl("a b", { kind: "bearer", token: "jwt" }, {}, loc)).toBe("wss://at.example/ws/terminal/a%20b?token=jwt");
    expect(
      terminalUrl("x", { kind: "apiKey", key: "atk_1" }, { ticket: "att_1", sessionId: "s1", cols: 80, rows: 24 }, { protocol: "http:", host: "h" }),
    ).toBe("ws://h/ws/terminal/x?ticket=att_1&session=s1&cols=80&rows=24");
    expect(terminalUrl("x", { kind: "none" }, {}, { protocol: "http:", host: "h" })).toBe("ws://h/ws/terminal/x");
  });

  it("waits for an asynchronous address and counts a failure to get one as an attempt", async () => {
    let fail = true;
    const ts = new TerminalSocket({
      url: async () => {
        if (fail) throw new Error("sandbox is not running");
        return "ws://h/ws/terminal/x?ticket=t";
      },
      onOutput: () => {},
      onState: (s) => states.push(s),
      size: () => ({ cols: 80, rows: 24 }),
      WebSocketImpl: FakeSocket as unknown as typeof WebSocket,
    });
    ts.connect();
    await vi.advanceTimersByTimeAsync(0);
    expect(states.at(-1)).toEqual({ kind: "reconnecting", attempt: 1, max: MAX_ATTEMPTS });
    fail = false;
    await vi.advanceTimersByTimeAsync(RECONNECT_DELAY_MS);
    expect(FakeSocket.all.at(-1)!.url).toBe("ws://h/ws/terminal/x?ticket=t");
    ts.dispose();
  });
});
