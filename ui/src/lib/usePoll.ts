// Data that refreshes itself: load once, then every `intervalMs` while the page is visible.
// A route the server does not have is reported as `unavailable` instead of an error.

import { useCallback, useEffect, useRef, useState } from "react";
import { ApiError } from "../api/client";

export interface Polled<T> {
  data: T | undefined;
  error: string | null;
  unavailable: boolean;
  loading: boolean;
  reload: () => Promise<void>;
}

export function usePoll<T>(load: () => Promise<T>, intervalMs: number | null, deps: unknown[] = []): Polled<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const [unavailable, setUnavailable] = useState(false);
  const [loading, setLoading] = useState(true);
  const loadRef = useRef(load);
  loadRef.current = load;
  const alive = useRef(true);

  const reload = useCallback(async () => {
    try {
      const value = await loadRef.current();
      if (!alive.current) return;
      setData(value);
      setError(null);
      setUnavailable(false);
    } catch (e) {
      if (!alive.current) return;
      if (e instanceof ApiError && e.notAvailable) {
        setUnavailable(true);
        setError(null);
      } else {
        setError(e instanceof ApiError ? e.display : String(e));
      }
    } finally {
      if (alive.current) setLoading(false);
    }
  }, []);

  useEffect(() => {
    alive.current = true;
    setLoading(true);
    void reload();
    let timer: ReturnType<typeof setInterval> | undefined;
    if (intervalMs) {
      timer = setInterval(() => {
        if (typeof document === "undefined" || document.visibilityState !== "hidden") void reload();
      }, intervalMs);
    }
    return () => {
      alive.current = false;
      if (timer) clearInterval(timer);
    };
  }, [reload, intervalMs, ...deps]);

  return { data, error, unavailable, loading, reload };
}
