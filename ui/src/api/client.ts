// A small fetch wrapper: JSON in and out, the credential on every request, and errors turned
// into ApiError with the contract's message (`error`, else `message`, else the text).

import { authHeaders } from "../auth/session";
import type { Violation } from "./types";

export const API_PREFIX = "/api/v1";

export class ApiError extends Error {
  readonly status: number;
  readonly body: unknown;

  constructor(status: number, message: string, body: unknown) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.body = body;
  }

  /** The server does not have this route at all (as opposed to "no such sandbox"). */
  get notAvailable(): boolean {
    if (this.status === 405 || this.status === 501) return true;
    if (this.status !== 404) return false;
    const text = typeof this.body === "string" ? this.body : "";
    return this.message.startsWith("no route for") || text.trim() === "404 page not found";
  }

  /** The governance rules a create broke (contract §3.1 policy_violation). */
  get violations(): Violation[] {
    const body = this.body as { error?: string; violations?: Violation[] } | null;
    return body && Array.isArray(body.violations) ? body.violations : [];
  }

  /** A message for people: policy violations list their rules. */
  get display(): string {
    const v = this.violations;
    if (v.length > 0) return `Policy violation: ${v.map((x) => x.message).join("; ")}`;
    return this.message;
  }
}

/** Called when the server answers 401 so the app can return to the login page. */
let onUnauthorized: (() => void) | null = null;
export function setUnauthorizedHandler(handler: (() => void) | null): void {
  onUnauthorized = handler;
}

async function parseBody(response: Response): Promise<unknown> {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function messageOf(status: number, statusText: string, body: unknown): string {
  if (body && typeof body === "object") {
    const b = body as { error?: unknown; message?: unknown };
    if (typeof b.error === "string" && b.error) {
      if (b.error === "policy_violation") return b.error;
      return typeof b.message === "string" && b.message ? `${b.error}: ${b.message}` : b.error;
    }
    if (typeof b.message === "string" && b.message) return b.message;
  }
  if (typeof body === "string" && body.trim()) return body.trim();
  return statusText || `request failed (${status})`;
}

export interface RequestOptions {
  method?: string;
  body?: unknown;
  /** Raw body (files); sent as application/octet-stream. */
  raw?: Blob | ArrayBuffer;
  signal?: AbortSignal;
  /** Do not treat a 401 as "log out" (used by the login probe). */
  quiet401?: boolean;
  headers?: Record<string, string>;
}

/** Sends a request to the API; resolves to the response for the caller to read. */
export async function request(path: string, options: RequestOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { ...authHeaders(), ...options.headers };
  let body: BodyInit | undefined;
  if (options.raw !== undefined) {
    body = options.raw;
    headers["Content-Type"] = "application/octet-stream";
  } else if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers["Content-Type"] = "application/json";
  }
  const url = path.startsWith("/") && !path.startsWith(API_PREFIX) ? API_PREFIX + path : path;
  const response = await fetch(url, {
    method: options.method ?? (body ? "POST" : "GET"),
    headers,
    body,
    signal: options.signal,
  });
  if (!response.ok) {
    const parsed = await parseBody(response);
    if (response.status === 401 && !options.quiet401) onUnauthorized?.();
    throw new ApiError(response.status, messageOf(response.status, response.statusText, parsed), parsed);
  }
  return response;
}

/** A JSON request; `null` for an empty body (204). */
export async function api<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const response = await request(path, options);
  return (await parseBody(response)) as T;
}
