import type { ChecksConfig } from "./app-config.js";
import { canonicalJson } from "./canonical-json.js";
import type { Components } from "./deploy.js";
import type { Role } from "./roles.js";

/**
 * An app's release pipeline: an ordered line of environments. A release that
 * went live in one stage moves on to the next through the gate between them
 * — at once (`auto`), after a bake time, once checks pass, once a person of
 * a role approves — each move a promotion (a normal deploy, trigger
 * `pipeline`). A failure stops the line there. Each move is a *run*, kept in
 * the store so that a restarted server goes on where it was.
 */
export interface PipelineGate {
  /** How long the release must have been live in the previous stage (0: no wait). */
  bakeMs: number;
  /** Checks that must pass on the release's commit before it moves on. */
  checks?: ChecksConfig;
  /** A person of at least this role approves (or rejects) within the timeout. */
  approval?: { role: Extract<Role, "deployer" | "admin">; timeoutMs: number };
}

export interface PipelineStage {
  env: string;
  /** The gate before this stage; null for the first stage (its releases come from ordinary deploys). */
  gate: PipelineGate | null;
}

export interface PipelineConfig {
  stages: PipelineStage[];
}

/**
 * A run's states:
 *   waiting ──approve──▶ approved ──(gates passed)──▶ promoting ──▶ done
 *      │                    │                            ╰──────▶ failed (the deploy failed)
 *      ├──reject / timeout / failed checks──▶ rejected | timed_out | failed
 *      ╰──the previous stage moved on──▶ superseded
 */
export const RUN_STATUSES = [
  "waiting",
  "approved",
  "promoting",
  "done",
  "rejected",
  "timed_out",
  "failed",
  "superseded",
] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];
export const OPEN_RUN_STATUSES: readonly RunStatus[] = ["waiting", "approved", "promoting"];

/** What a waiting run waits for now. */
export type GateStep = "bake" | "checks" | "approval" | "lock" | null;

export interface PipelineRun {
  id: number;
  app: string;
  /** The stage the release moves into. */
  env: string;
  /** The stage it comes from. */
  fromEnv: string;
  /** The deploy that made it live in `fromEnv`. */
  sourceDeployId: number;
  sourceNumber: number;
  sha: string;
  components: Components;
  status: RunStatus;
  waitingOn: GateStep;
  /** Live in `fromEnv` since then + bake. */
  bakeUntil: string;
  checksPassed: boolean;
  /** When a requested approval times out (null: none requested yet). */
  approvalDeadline: string | null;
  decidedBy: string | null;
  decidedAt: string | null;
  /** Why it was rejected, or what stopped it (checks, the deploy's failure). */
  message: string | null;
  /** The promotion deploy, once queued. */
  deployId: number | null;
  createdAt: string;
  updatedAt: string;
}

export function isOpen(status: RunStatus): boolean {
  return OPEN_RUN_STATUSES.includes(status);
}

/** Two releases install the same code when their components are the same commits. */
export function sameComponents(a: Components, b: Components): boolean {
  return canonicalJson(a) === canonicalJson(b);
}

/** The stage before `env` in the pipeline, or undefined (first stage, or not in the pipeline). */
export function previousStage(pipeline: PipelineConfig, env: string): PipelineStage | undefined {
  const index = pipeline.stages.findIndex((s) => s.env === env);
  return index > 0 ? pipeline.stages[index - 1] : undefined;
}

/** Whether a principal's role may answer an approval asking for `role`. */
export function mayApprove(principalRole: Role, required: "deployer" | "admin"): boolean {
  if (required === "admin") return principalRole === "admin";
  return principalRole === "admin" || principalRole === "deployer";
}

/** A release's place along the line: per stage, live there, or how its run stands. */
export interface ReleasePosition {
  sha: string;
  components: Components;
  stages: { env: string; state: "live" | RunStatus | null; waitingOn: GateStep; runId: number | null }[];
}

/**
 * Each release seen along the line (live in a stage, or moving between two),
 * newest first, with its state in every stage. `live` wins over a run's
 * state; of several runs of one release into one stage, the newest counts.
 */
export function releasePositions(
  pipeline: PipelineConfig,
  live: Record<string, Components | null>,
  runs: PipelineRun[],
): ReleasePosition[] {
  const seen: { key: string; components: Components; sha: string }[] = [];
  const note = (components: Components, sha: string) => {
    const key = canonicalJson(components);
    if (!seen.some((s) => s.key === key)) seen.push({ key, components, sha });
  };
  // Newest runs first, then what is live from the last stage back: the furthest along come first.
  const newest = [...runs].sort((a, b) => b.id - a.id);
  for (const run of newest) note(run.components, run.sha);
  for (const stage of [...pipeline.stages].reverse()) {
    const components = live[stage.env];
    if (components) note(components, Object.values(components)[0] ?? "");
  }
  return seen.map(({ key, components, sha }) => ({
    sha,
    components,
    stages: pipeline.stages.map((stage) => {
      const current = live[stage.env];
      if (current && canonicalJson(current) === key)
        return { env: stage.env, state: "live" as const, waitingOn: null, runId: null };
      const run = newest.find((r) => r.env === stage.env && canonicalJson(r.components) === key);
      return run
        ? { env: stage.env, state: run.status, waitingOn: run.waitingOn, runId: run.id }
        : { env: stage.env, state: null, waitingOn: null, runId: null };
    }),
  }));
}
