import { useEffect, useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";
import { parseAnsi, stripAnsi } from "../lib/ansi.js";
import { useDebounced, useShortcut } from "../lib/hooks.js";
import type { LogSource } from "../lib/log-buffer.js";

/** Every line has the same height, so the line under any scroll position is a division away. */
export const LINE_HEIGHT = 20;
const OVERSCAN = 30;

export interface LogViewHandle {
  jumpToEnd(): void;
}

/**
 * A virtualized log: only the lines in view (and a few around them) are in
 * the DOM, whatever the log's length, so a 50,000-line log scrolls like a
 * 50-line one. Follow mode keeps the end in view while it streams; scrolling
 * up pauses it, "Jump to end" (or End) resumes it. Search finds lines
 * (ignoring colour codes) and steps through them with Enter / Shift+Enter.
 */
export function LogView({
  source,
  version,
  label,
  downloadName,
  download,
  streaming,
  height,
  shortcuts = false,
}: {
  source: LogSource;
  /** The source's version, passed so the view renders when it grows. */
  version: number;
  label: string;
  downloadName?: string;
  download?: () => string;
  streaming: boolean;
  height?: string;
  /** This is the page's main log: "/" searches it, "f" toggles following. */
  shortcuts?: boolean;
}) {
  const scroller = useRef<HTMLElement>(null);
  const [follow, setFollow] = useState(true);
  const [view, setView] = useState({ top: 0, height: 600 });
  const [query, setQuery] = useState("");
  const [current, setCurrent] = useState(0);
  const search = useDebounced(query.trim().toLowerCase(), 150);
  const count = source.length;

  const matches = useMemo(() => {
    if (!search) return [] as number[];
    const found: number[] = [];
    for (let i = 0; i < count; i++)
      if (stripAnsi(source.line(i)).toLowerCase().includes(search)) found.push(i);
    return found;
  }, [search, version, count, source]);

  const measure = () => {
    const el = scroller.current;
    if (el) setView({ top: el.scrollTop, height: el.clientHeight });
  };

  useLayoutEffect(() => {
    const el = scroller.current;
    if (el && follow) el.scrollTop = el.scrollHeight;
    measure();
  }, [version, follow, count]);

  useEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const observer = new ResizeObserver(measure);
    observer.observe(el);
    return () => observer.disconnect();
  }, []);

  const onScroll = () => {
    const el = scroller.current;
    if (!el) return;
    const atEnd = el.scrollHeight - el.scrollTop - el.clientHeight < LINE_HEIGHT * 2;
    if (follow !== atEnd) setFollow(atEnd);
    measure();
  };

  const scrollToLine = (index: number) => {
    const el = scroller.current;
    if (!el) return;
    setFollow(false);
    el.scrollTop = Math.max(0, index * LINE_HEIGHT - el.clientHeight / 2);
    measure();
  };

  const step = (delta: number) => {
    if (matches.length === 0) return;
    const next = (current + delta + matches.length) % matches.length;
    setCurrent(next);
    scrollToLine(matches[next]!);
  };

  useEffect(() => {
    setCurrent(0);
    if (matches.length > 0) scrollToLine(matches[0]!);
  }, [search]);

  const jumpToEnd = () => {
    setFollow(true);
    const el = scroller.current;
    if (el) el.scrollTop = el.scrollHeight;
  };

  const searchBox = useRef<HTMLInputElement>(null);
  useShortcut(
    ["/", "f", "End"],
    (event) => {
      event.preventDefault();
      if (event.key === "/") searchBox.current?.focus();
      else if (event.key === "End" || !follow) jumpToEnd();
      else setFollow(false);
    },
    shortcuts,
  );

  const first = Math.max(0, Math.floor(view.top / LINE_HEIGHT) - OVERSCAN);
  const last = Math.min(count, Math.ceil((view.top + view.height) / LINE_HEIGHT) + OVERSCAN);
  const matchSet = useMemo(() => new Set(matches), [matches]);
  const currentLine = matches[current];
  const gutter = String(count > 0 ? source.lineNumber(count - 1) : 1).length;

  const rows = [];
  for (let i = first; i < last; i++) {
    const { segments } = parseAnsi(source.line(i), source.carry(i));
    const isMatch = matchSet.has(i);
    rows.push(
      <div
        key={i}
        class={`log-line${isMatch ? " match" : ""}${i === currentLine ? " current" : ""}`}
        style={{ top: `${i * LINE_HEIGHT}px` }}
      >
        <span class="ln" style={{ width: `${gutter + 1}ch` }}>
          {source.lineNumber(i)}
        </span>
        <span class="lt">
          {segments.map((segment, k) => (
            <span
              key={k}
              class={segment.classes || undefined}
              style={segment.style ? { color: segment.style.fg, background: segment.style.bg } : undefined}
            >
              {isMatch && search ? highlight(segment.text, search) : segment.text}
            </span>
          ))}
        </span>
      </div>,
    );
  }

  const save = () => {
    if (!download) return;
    const blob = new Blob([download()], { type: "text/plain;charset=utf-8" });
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = downloadName ?? "deploy.log";
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  };

  return (
    <section class="log" aria-label={label}>
      <div class="log-toolbar">
        <input
          ref={searchBox}
          type="search"
          class="log-search"
          placeholder="Search the log"
          aria-label="Search the log"
          value={query}
          onInput={(e) => setQuery((e.target as HTMLInputElement).value)}
          onKeyDown={(e) => {
            if (e.key === "Enter") {
              e.preventDefault();
              step(e.shiftKey ? -1 : 1);
            } else if (e.key === "Escape") setQuery("");
          }}
        />
        <span class="log-matches muted" aria-live="polite">
          {search
            ? matches.length === 0
              ? "no match"
              : `${current + 1} / ${matches.length}`
            : `${count.toLocaleString()} lines`}
        </span>
        {search && matches.length > 0 && (
          <>
            <button type="button" class="small" onClick={() => step(-1)} aria-label="Previous match">
              ↑
            </button>
            <button type="button" class="small" onClick={() => step(1)} aria-label="Next match">
              ↓
            </button>
          </>
        )}
        <span class="spacer" />
        <span class={`follow-state ${follow ? "on" : "off"}`} data-follow={follow ? "on" : "off"}>
          {follow ? (streaming ? "● following" : "at end") : "paused"}
        </span>
        <button type="button" class="small" onClick={jumpToEnd} disabled={follow} data-action="jump-to-end">
          Jump to end
        </button>
        {download && (
          <button type="button" class="small" onClick={save}>
            Download
          </button>
        )}
      </div>
      <section
        class="log-scroll"
        aria-label={`${label}, scrollable`}
        ref={scroller}
        onScroll={onScroll}
        // biome-ignore lint/a11y/noNoninteractiveTabindex: a scrollable region must be focusable to be scrolled by keyboard
        tabIndex={0}
        style={height ? { height } : undefined}
        onKeyDown={(e) => {
          if (e.key === "End") {
            e.preventDefault();
            jumpToEnd();
          }
        }}
      >
        <div class="log-spacer" style={{ height: `${Math.max(1, count) * LINE_HEIGHT}px` }}>
          {rows}
        </div>
        {count === 0 && <div class="log-empty muted">{streaming ? "Waiting for output…" : "No output."}</div>}
      </section>
    </section>
  );
}

function highlight(text: string, query: string) {
  const lower = text.toLowerCase();
  const out = [];
  let from = 0;
  for (let at = lower.indexOf(query); at >= 0; at = lower.indexOf(query, from)) {
    if (at > from) out.push(text.slice(from, at));
    out.push(<mark key={at}>{text.slice(at, at + query.length)}</mark>);
    from = at + query.length;
  }
  if (from < text.length) out.push(text.slice(from));
  return out;
}
