import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { type LiveEvent, onLive } from "../api/live.js";

export interface Resource<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  /** Reads again; the data shown stays until the new answer arrives (no flicker). */
  reload: () => void;
}

/**
 * Data read from the API: loads when `key` changes, keeps the last answer
 * while reloading, and drops answers that arrive after a newer request.
 */
export function useResource<T>(load: () => Promise<T>, key: unknown[]): Resource<T> {
  const [state, setState] = useState<{ data: T | undefined; error: unknown; loading: boolean }>({
    data: undefined,
    error: undefined,
    loading: true,
  });
  const generation = useRef(0);
  const loader = useRef(load);
  loader.current = load;
  const run = useCallback(() => {
    const mine = ++generation.current;
    setState((s) => ({ ...s, loading: true }));
    loader.current().then(
      (data) => {
        if (mine === generation.current) setState({ data, error: undefined, loading: false });
      },
      (error: unknown) => {
        if (mine === generation.current) setState((s) => ({ data: s.data, error, loading: false }));
      },
    );
  }, []);
  // The caller's key says when to read again.
  useEffect(() => {
    setState({ data: undefined, error: undefined, loading: true });
    run();
  }, key);
  return { ...state, reload: run };
}

/**
 * Calls `reload` when a live hint matters to this page (and after a
 * reconnect), at most every `throttleMs`, plus every `everyMs` in case
 * another server process did the work (its hints do not reach us).
 */
export function useLiveReload(
  matters: (event: LiveEvent) => boolean,
  reload: () => void,
  options: { throttleMs?: number; everyMs?: number } = {},
): void {
  const matter = useRef(matters);
  matter.current = matters;
  const again = useRef(reload);
  again.current = reload;
  useEffect(() => {
    const throttleMs = options.throttleMs ?? 400;
    let timer: ReturnType<typeof setTimeout> | null = null;
    let last = 0;
    const schedule = () => {
      if (timer) return;
      const wait = Math.max(0, last + throttleMs - Date.now());
      timer = setTimeout(() => {
        timer = null;
        last = Date.now();
        again.current();
      }, wait);
    };
    const off = onLive((event) => {
      if (event.type === "resync" || matter.current(event)) schedule();
    });
    const every = setInterval(() => {
      if (document.visibilityState === "visible") schedule();
    }, options.everyMs ?? 15_000);
    return () => {
      off();
      clearInterval(every);
      if (timer) clearTimeout(timer);
    };
  }, [options.throttleMs, options.everyMs]);
}

/** The current time, ticking every `ms` (ages and running durations). */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return now;
}

/** Runs `handler` for a key pressed outside text fields (keyboard shortcuts). */
export function useShortcut(keys: string[], handler: (event: KeyboardEvent) => void, enabled = true): void {
  const call = useRef(handler);
  call.current = handler;
  useEffect(() => {
    if (!enabled) return;
    const onKey = (event: KeyboardEvent) => {
      if (event.metaKey || event.ctrlKey || event.altKey) return;
      const target = event.target as HTMLElement | null;
      if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
      if (keys.includes(event.key)) call.current(event);
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [keys.join(" "), enabled]);
}

export function useDebounced<T>(value: T, ms: number): T {
  const [debounced, setDebounced] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setDebounced(value), ms);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return debounced;
}
