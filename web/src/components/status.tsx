import type { ComponentChildren } from "preact";

/** Status colours in one place: the same state reads the same everywhere. */
export type Tone = "ok" | "fail" | "run" | "wait" | "lock" | "muted" | "info";

const STATUS_TONE: Record<string, Tone> = {
  succeeded: "ok",
  failed: "fail",
  cancelled: "muted",
  running: "run",
  waiting: "wait",
  queued: "info",
};

export function toneOf(status: string): Tone {
  return STATUS_TONE[status] ?? "muted";
}

export function StatusBadge({ status, label }: { status: string; label?: string }) {
  return (
    <span class={`badge tone-${toneOf(status)}`} data-status={status}>
      <span class="dot" aria-hidden="true" />
      {label ?? status}
    </span>
  );
}

export function Pill({
  tone = "muted",
  children,
  title,
}: {
  tone?: Tone;
  children: ComponentChildren;
  title?: string;
}) {
  return (
    <span class={`pill tone-${tone}`} title={title}>
      {children}
    </span>
  );
}

const HOST_TONE: Record<string, Tone> = {
  pending: "muted",
  staging: "run",
  staged: "info",
  stage_failed: "fail",
  switching: "run",
  switched: "info",
  healthy: "ok",
  failed: "fail",
  rolled_back: "wait",
  depooled: "lock",
};

export function hostTone(step: string): Tone {
  return HOST_TONE[step] ?? "muted";
}

export function ChecksIcon({ state }: { state: "success" | "pending" | "failure" | null }) {
  if (state === null)
    return (
      <span class="checks muted" title="no required checks">
        ·
      </span>
    );
  const text = { success: "✓", pending: "…", failure: "✗" }[state];
  const tone = { success: "ok", pending: "wait", failure: "fail" }[state];
  return (
    <span class={`checks tone-${tone}`} title={`checks: ${state}`} role="img" aria-label={`checks ${state}`}>
      {text}
    </span>
  );
}
