import type { OverviewActiveJson } from "../../../src/http/api-types.js";
import { durationBetween, formatDuration } from "../lib/format.js";

/**
 * How far a running deploy is: for fleets, hosts done out of hosts; else
 * the time it has run against the environment's typical run time (capped
 * below 100 % until it is really done); unknown when neither is known.
 */
export function progressOf(
  active: OverviewActiveJson,
  now: number,
): { fraction: number | null; label: string } {
  if (active.hosts && active.hosts.total > 0) {
    return {
      fraction: active.hosts.done / active.hosts.total,
      label: `${active.hosts.done}/${active.hosts.total} hosts`,
    };
  }
  const elapsed = durationBetween(active.startedAt, null, now);
  if (elapsed === null) return { fraction: null, label: active.status === "queued" ? "queued" : "starting" };
  if (!active.typicalDurationMs) return { fraction: null, label: formatDuration(elapsed) };
  return {
    fraction: Math.min(0.95, elapsed / active.typicalDurationMs),
    label: `${formatDuration(elapsed)} of ~${formatDuration(active.typicalDurationMs)}`,
  };
}

export function ProgressBar({ fraction, tone = "run" }: { fraction: number | null; tone?: string }) {
  return (
    <span
      class={`progress tone-${tone}${fraction === null ? " indeterminate" : ""}`}
      role="progressbar"
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={fraction === null ? undefined : Math.round(fraction * 100)}
    >
      <span
        class="progress-fill"
        style={fraction === null ? undefined : { width: `${Math.round(fraction * 100)}%` }}
      />
    </span>
  );
}
