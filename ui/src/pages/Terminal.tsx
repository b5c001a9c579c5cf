// The full-screen terminal: xterm.js over the terminal WebSocket, fitted to the window, with
// copy and paste, a visible connection state, and reconnection. Loaded lazily with xterm.

import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import "@xterm/xterm/css/xterm.css";
import { useEffect, useRef, useState } from "react";
import { useSession } from "../app";
import { getSandbox, terminalTicket } from "../api/endpoints";
import { ApiError } from "../api/client";
import { StatusBadge, Unavailable } from "../components/Notice";
import { Link } from "../lib/router";
import { TerminalSocket, terminalAvailable, terminalUrl, type TerminalState } from "../lib/terminalSocket";

export default function TerminalPage({ id }: { id: string }) {
  const { credential } = useSession();
  const host = useRef<HTMLDivElement>(null);
  const back = useRef<HTMLAnchorElement>(null);
  const term = useRef<Terminal | null>(null);
  const socket = useRef<TerminalSocket | null>(null);
  const [state, setState] = useState<TerminalState>({ kind: "connecting" });
  const [phase, setPhase] = useState<string>("");
  const [note, setNote] = useState<string | null>(null);
  const [missing, setMissing] = useState(false);

  useEffect(() => {
    document.title = `${id} · terminal · AgentTier`;
    getSandbox(id)
      .then((s) => setPhase(s.status))
      .catch((e) => setNote(e instanceof ApiError ? e.display : String(e)));
    return () => {
      document.title = "AgentTier";
    };
  }, [id]);

  useEffect(() => {
    const node = host.current;
    if (!node) return;
    const terminal = new Terminal({
      cursorBlink: true,
      convertEol: false,
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
      fontSize: 14,
      scrollback: 5000,
      theme: { background: "#0f1419", foreground: "#e6e6e6" },
    });
    const fit = new FitAddon();
    terminal.loadAddon(fit);
    terminal.open(node);
    term.current = terminal;
    const doFit = () => {
      try {
        fit.fit();
      } catch {
        // not laid out yet
      }
    };
    doFit();
    const ts = new TerminalSocket({
      url: async (session) => {
        let ticket: string | null = null;
        if (credential.kind === "apiKey") {
          try {
            ticket = (await terminalTicket(id)).ticket;
          } catch (e) {
            // A server without tickets only lets dev-auth through; anything else is a failure.
            if (!(e instanceof ApiError && e.notAvailable)) throw new Error(e instanceof ApiError ? e.display : String(e));
          }
        }
        return terminalUrl(id, credential, { sessionId: session, ticket, cols: terminal.cols, rows: terminal.rows });
      },
      onOutput: (data) => terminal.write(data),
      onState: setState,
      size: () => ({ cols: terminal.cols, rows: terminal.rows }),
    });
    socket.current = ts;
    terminal.onData((data) => ts.input(data));
    terminal.onResize(({ cols, rows }) => ts.resize(cols, rows));
    // Ctrl+Shift+C copies the selection, Ctrl+Shift+V pastes (Ctrl+C stays an interrupt).
    terminal.attachCustomKeyEventHandler((e) => {
      if (e.type !== "keydown" || !e.ctrlKey || !e.shiftKey) return true;
      if (e.key === "C" || e.key === "c") {
        void copySelection(terminal);
        return false;
      }
      if (e.key === "V" || e.key === "v") {
        void pasteInto(terminal);
        return false;
      }
      // The shell takes Tab, so Ctrl+Shift+X is the way out to the toolbar for keyboards.
      if (e.key === "X" || e.key === "x") {
        back.current?.focus();
        return false;
      }
      return true;
    });
    const observer = new ResizeObserver(doFit);
    observer.observe(node);
    let disposed = false;
    void terminalAvailable(id).then((ok) => {
      if (disposed) return;
      if (!ok) {
        setMissing(true);
        setState({ kind: "closed", reason: "not available on this server", final: true });
        return;
      }
      ts.connect();
      terminal.focus();
    });
    return () => {
      disposed = true;
      observer.disconnect();
      ts.dispose();
      terminal.dispose();
      term.current = null;
      socket.current = null;
    };
  }, [id, credential]);

  const label = describeState(state);

  return (
    <div className="terminal-page">
      <header className="terminal-bar">
        <Link href="/" className="button small" ref={back}>
          ← Sandboxes
        </Link>
        <h1>
          {id} {phase && <StatusBadge status={phase} />}
        </h1>
        <span className={`conn conn-${state.kind}`} role="status" aria-live="polite" data-testid="terminal-state">
          {label}
        </span>
        <div className="terminal-actions">
          <button type="button" className="small" onClick={() => term.current && void copySelection(term.current)}>
            Copy
          </button>
          <button type="button" className="small" onClick={() => term.current && void pasteInto(term.current)}>
            Paste
          </button>
          <Link href={`/sandboxes/${encodeURIComponent(id)}/files`} className="button small">
            Files
          </Link>
          {state.kind === "closed" && !missing && (
            <button type="button" className="small primary" onClick={() => socket.current?.retry()}>
              Reconnect
            </button>
          )}
        </div>
      </header>
      {missing && <Unavailable what="The terminal" endpoint={`/ws/terminal/${id}`} />}
      {note && (
        <p className="notice error" role="alert">
          {note}
        </p>
      )}
      <div
        className="terminal-host"
        ref={host}
        aria-label={`Terminal of ${id}. Ctrl+Shift+C copies, Ctrl+Shift+V pastes, Ctrl+Shift+X leaves the terminal.`}
        role="region"
      />
    </div>
  );
}

function describeState(state: TerminalState): string {
  switch (state.kind) {
    case "connecting":
      return "Connecting…";
    case "open":
      return "Connected";
    case "reconnecting":
      return `Reconnecting (attempt ${state.attempt} of ${state.max})…`;
    case "closed":
      return state.final ? `Session ended: ${state.reason}` : `Disconnected: ${state.reason}`;
  }
}

/** Copies the selection; focus goes back to the terminal either way. */
async function copySelection(terminal: Terminal): Promise<void> {
  const text = terminal.getSelection();
  try {
    if (text) await navigator.clipboard.writeText(text);
  } catch {
    // Clipboard permission denied: the browser's own copy still works on the selection.
  }
  terminal.focus();
}

/** Types the clipboard into the shell (as a bracketed paste); focus goes back to the terminal. */
async function pasteInto(terminal: Terminal): Promise<void> {
  try {
    const text = await navigator.clipboard.readText();
    if (text) terminal.paste(text);
  } catch {
    // No clipboard permission: Ctrl+V / the browser's paste still reach the terminal.
  }
  terminal.focus();
}
