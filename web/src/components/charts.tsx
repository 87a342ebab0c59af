import type { DayStats } from "../../../src/http/api-types.js";
import { formatDuration } from "../lib/format.js";

/**
 * Small hand-drawn SVG charts of the last days (no chart library): one
 * column per day, scaled to the busiest day, each with a tooltip. They
 * stretch to the card's width; their height is fixed so nothing moves when
 * the data arrives.
 */
const W = 300;
const H = 64;

function columns(days: DayStats[]) {
  const step = W / Math.max(1, days.length);
  return { step, width: Math.max(1, step - 2) };
}

export function DeployBars({ days }: { days: DayStats[] }) {
  const max = Math.max(1, ...days.map((d) => d.succeeded + d.failed + d.cancelled));
  const { step, width } = columns(days);
  const total = days.reduce((n, d) => n + d.succeeded + d.failed + d.cancelled, 0);
  return (
    <svg
      class="chart"
      viewBox={`0 0 ${W} ${H}`}
      preserveAspectRatio="none"
      role="img"
      aria-label={`${total} deploys over ${days.length} days`}
    >
      <line class="axis" x1="0" y1={H - 0.5} x2={W} y2={H - 0.5} />
      {days.map((d, i) => {
        const x = i * step + 1;
        const parts: [number, string][] = [
          [d.succeeded, "ok"],
          [d.failed, "fail"],
          [d.cancelled, "muted"],
        ];
        let y = H;
        return (
          <g key={d.day}>
            <title>{`${d.day}: ${d.succeeded} succeeded, ${d.failed} failed, ${d.cancelled} cancelled`}</title>
            <rect x={x} y={0} width={width} height={H} class="hit" />
            {parts.map(([n, tone]) => {
              if (n === 0) return null;
              const h = (n / max) * (H - 4);
              y -= h;
              return <rect key={tone} x={x} y={y} width={width} height={h} class={`bar tone-${tone}`} />;
            })}
          </g>
        );
      })}
    </svg>
  );
}

export function DurationBars({ days }: { days: DayStats[] }) {
  const values = days.map((d) => d.medianDurationMs);
  const max = Math.max(1, ...values.map((v) => v ?? 0));
  const { step, width } = columns(days);
  return (
    <svg
      class="chart"
      viewBox={`0 0 ${W} ${H}`}
      preserveAspectRatio="none"
      role="img"
      aria-label="median deploy duration per day"
    >
      <line class="axis" x1="0" y1={H - 0.5} x2={W} y2={H - 0.5} />
      {days.map((d, i) => {
        const v = d.medianDurationMs;
        const h = v === null ? 0 : Math.max(2, (v / max) * (H - 4));
        return (
          <g key={d.day}>
            <title>{`${d.day}: ${v === null ? "no succeeded deploy" : `median ${formatDuration(v)}`}`}</title>
            <rect x={i * step + 1} y={0} width={width} height={H} class="hit" />
            {v !== null && <rect x={i * step + 1} y={H - h} width={width} height={h} class="bar tone-info" />}
          </g>
        );
      })}
    </svg>
  );
}

export function FailureRateBars({ days }: { days: DayStats[] }) {
  const { step, width } = columns(days);
  return (
    <svg
      class="chart"
      viewBox={`0 0 ${W} ${H}`}
      preserveAspectRatio="none"
      role="img"
      aria-label="failure rate per day"
    >
      <line class="axis" x1="0" y1={H - 0.5} x2={W} y2={H - 0.5} />
      {days.map((d, i) => {
        const decided = d.succeeded + d.failed;
        const rate = decided === 0 ? null : d.failed / decided;
        const h = rate === null ? 0 : Math.max(rate > 0 ? 2 : 1, rate * (H - 4));
        return (
          <g key={d.day}>
            <title>{`${d.day}: ${rate === null ? "nothing finished" : `${Math.round(rate * 100)}% failed (${d.failed} of ${decided})`}`}</title>
            <rect x={i * step + 1} y={0} width={width} height={H} class="hit" />
            {rate !== null && (
              <rect
                x={i * step + 1}
                y={H - h}
                width={width}
                height={h}
                class={`bar tone-${rate > 0 ? "fail" : "ok"}`}
              />
            )}
          </g>
        );
      })}
    </svg>
  );
}
