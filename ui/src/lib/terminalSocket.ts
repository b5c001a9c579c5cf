// The terminal WebSocket client (contract §5): JSON text frames, an app-level ping every 30 s,
// a connection counted stale after 90 s without heartbeat or pong, and reconnection every 3 s
// (up to 5 attempts) that resumes the server's session when the server named one.

import type { Credential } from "../auth/session";
import type { TerminalFrame } from "../api/types";

export type TerminalState =
  | { kind: "connecting" }
  | { kind: "open" }
  | { kind: "reconnecting"; attempt: number; max: number }
  | { kind: "closed"; reason: string; final: boolean };

export const RECONNECT_DELAY_MS = 3000;
export const MAX_ATTEMPTS = 5;
export const PING_MS = 30_000;
export const STALE_MS = 90_000;

/** Close reasons after which reconnecting cannot help. */
const FINAL_REASONS = new Set(["sandbox_stopped", "sandbox_deleted", "access_revoked", "idle_timeout"]);
const FINAL_CODES = new Set([4001, 4003, 4004, 4009, 1008]);

/**
 * The WebSocket address. Browsers cannot set headers on a WebSocket, so the credential rides in
 * the query: an OIDC token as `?token=` (contract §5.1), an API key as a short-lived single-use
 * `?ticket=` minted over the API (`ticket`, fetched fresh for every connect). `cols`/`rows`
 * start the shell at the window's size; `session` resumes a session after a reconnect.
 */
export function terminalUrl(
  id: string,
  credential: Credential | null,
  opts: { sessionId?: string | null; ticket?: string | null; cols?: number; rows?: number } = {},
  location: { protocol: string; host: string } = window.location,
): string {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const params = new URLSearchParams();
  if (credential?.kind === "bearer") params.set("token", credential.token);
  if (opts.ticket) params.set("ticket", opts.ticket);
  if (opts.sessionId) params.set("session", opts.sessionId);
  if (opts.cols && opts.rows) {
    params.set("cols", String(opts.cols));
    params.set("rows", String(opts.rows));
  }
  const q = params.toString();
  return `${scheme}//${location.host}/ws/terminal/${encodeURIComponent(id)}${q ? `?${q}` : ""}`;
}

/**
 * Whether the server has the terminal route at all. A browser cannot see why a WebSocket
 * failed, so a plain GET asks first: a missing route answers the API's JSON 404 "no route".
 */
export async function terminalAvailable(id: string): Promise<boolean> {
  try {
    const response = await fetch(`/ws/terminal/${encodeURIComponent(id)}`);
    if (response.status !== 404) return true;
    const text = await response.text();
    return !(text.includes("no route for") || text.trim() === "404 page not found");
  } catch {
    return true;
  }
}

export interface TerminalSocketOptions {
  /** The address for a (re)connect; async because an API-key session fetches a ticket first. */
  url: (sessionId: string | null) => string | Promise<string>;
  onOutput: (data: string) => void;
  onState: (state: TerminalState) => void;
  /** Current size, sent right after every (re)connect. */
  size: () => { cols: number; rows: number };
  WebSocketImpl?: typeof WebSocket;
}

export class TerminalSocket {
  private ws: WebSocket | null = null;
  private sessionId: string | null = null;
  private attempt = 0;
  private lastSeen = 0;
  private timers: ReturnType<typeof setTimeout>[] = [];
  private pinger: ReturnType<typeof setInterval> | null = null;
  private disposed = false;
  private finalReason: string | null = null;
  private readonly opts: TerminalSocketOptions;

  constructor(opts: TerminalSocketOptions) {
    this.opts = opts;
  }

  connect(): void {
    if (this.disposed) return;
    this.opts.onState(this.attempt === 0 ? { kind: "connecting" } : { kind: "reconnecting", attempt: this.attempt, max: MAX_ATTEMPTS });
    let url: string;
    try {
      const next = this.opts.url(this.sessionId);
      if (typeof next !== "string") {
        void next.then(
          (u) => this.open(u),
          (e) => this.failed(e instanceof Error ? e.message : String(e)),
        );
        return;
      }
      url = next;
    } catch (e) {
      this.failed(e instanceof Error ? e.message : String(e));
      return;
    }
    this.open(url);
  }

  /** Getting an address failed (no ticket, say): counts as a failed attempt. */
  private failed(reason: string): void {
    if (this.disposed) return;
    if (this.attempt >= MAX_ATTEMPTS) {
      this.opts.onState({ kind: "closed", reason, final: false });
      return;
    }
    this.attempt++;
    this.opts.onState({ kind: "reconnecting", attempt: this.attempt, max: MAX_ATTEMPTS });
    this.timers.push(setTimeout(() => this.connect(), RECONNECT_DELAY_MS));
  }

  private open(url: string): void {
    if (this.disposed) return;
    const Impl = this.opts.WebSocketImpl ?? WebSocket;
    const ws = new Impl(url);
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.lastSeen = Date.now();
      this.opts.onState({ kind: "open" });
      this.send({ type: "resize", ...this.opts.size() });
      this.startPing();
    };
    ws.onmessage = (event) => {
      this.lastSeen = Date.now();
      if (typeof event.data !== "string") return;
      let frame: TerminalFrame;
      try {
        frame = JSON.parse(event.data) as TerminalFrame;
      } catch {
        return;
      }
      this.handle(frame);
    };
    ws.onclose = (event) => {
      this.stopPing();
      if (this.ws !== ws || this.disposed) return;
      this.ws = null;
      const reason = this.finalReason ?? event.reason ?? "";
      const final = this.finalReason !== null || FINAL_CODES.has(event.code) || FINAL_REASONS.has(event.reason);
      if (final) {
        this.opts.onState({ kind: "closed", reason: describe(reason, event.code), final: true });
        return;
      }
      if (this.attempt >= MAX_ATTEMPTS) {
        this.opts.onState({ kind: "closed", reason: describe(reason, event.code), final: false });
        return;
      }
      this.attempt++;
      this.opts.onState({ kind: "reconnecting", attempt: this.attempt, max: MAX_ATTEMPTS });
      this.timers.push(setTimeout(() => this.connect(), RECONNECT_DELAY_MS));
    };
  }

  private handle(frame: TerminalFrame): void {
    const session = (frame.sessionId ?? (frame.type === "session" ? frame.id : undefined)) as string | undefined;
    if (typeof session === "string" && session) this.sessionId = session;
    switch (frame.type) {
      case "output":
        if (typeof frame.data === "string") this.opts.onOutput(frame.data);
        break;
      case "close":
        this.finalReason = frame.reason ?? "closed";
        this.ws?.close();
        break;
      case "error":
        if (frame.message) this.opts.onOutput(`\r\n\x1b[31m${frame.message}\x1b[0m\r\n`);
        break;
      default:
        break;
    }
  }

  send(frame: TerminalFrame): boolean {
    if (!this.ws || this.ws.readyState !== 1) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  input(data: string): boolean {
    return this.send({ type: "input", data });
  }

  resize(cols: number, rows: number): void {
    this.send({ type: "resize", cols, rows });
  }

  /** Tries again now (after the automatic attempts gave up). */
  retry(): void {
    this.attempt = 0;
    this.finalReason = null;
    this.timers.forEach(clearTimeout);
    this.ws?.close();
    this.ws = null;
    this.connect();
  }

  private startPing(): void {
    this.stopPing();
    this.pinger = setInterval(() => {
      if (Date.now() - this.lastSeen > STALE_MS) {
        // No heartbeat or pong for too long: drop it and reconnect.
        this.ws?.close();
        return;
      }
      this.send({ type: "ping" });
    }, PING_MS);
  }

  private stopPing(): void {
    if (this.pinger) clearInterval(this.pinger);
    this.pinger = null;
  }

  dispose(): void {
    this.disposed = true;
    this.stopPing();
    this.timers.forEach(clearTimeout);
    this.ws?.close();
    this.ws = null;
  }
}

function describe(reason: string, code: number): string {
  switch (reason) {
    case "sandbox_stopped":
      return "the sandbox was stopped";
    case "sandbox_deleted":
      return "the sandbox was deleted";
    case "idle_timeout":
      return "the session was idle too long";
    case "session_expired":
      return "the session expired";
    case "access_revoked":
      return "access was revoked";
    case "":
      return code === 1006 ? "the connection was lost" : `closed (code ${code})`;
    default:
      return reason;
  }
}
