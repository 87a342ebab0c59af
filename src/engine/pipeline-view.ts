import type { AppConfig } from "../domain/app-config.js";
import { auditActor } from "../domain/audit.js";
import type { Components } from "../domain/deploy.js";
import { notFound, TurnoutError } from "../domain/errors.js";
import {
  mayApprove,
  type PipelineRun,
  type ReleasePosition,
  releasePositions,
} from "../domain/release-pipeline.js";
import type { Principal } from "../domain/roles.js";
import type { Store } from "../store/store.js";

/** An app's pipeline as `GET …/pipeline` and `turnout pipeline` show it. */
export interface PipelineView {
  app: string;
  stages: {
    env: string;
    /** The gate before this stage (null: the first stage). */
    gate: {
      bakeMs: number;
      approval: { role: string; timeoutMs: number } | null;
      checks: { required: string[]; command: boolean } | null;
    } | null;
    current: { deployId: number; deployNumber: number; sha: string; since: string } | null;
  }[];
  /** Each release seen along the line, newest first, with its state in every stage. */
  releases: ReleasePosition[];
  /** The newest runs (moves between stages), newest first. */
  runs: PipelineRun[];
}

export async function pipelineView(store: Store, app: AppConfig): Promise<PipelineView> {
  const stages = app.pipeline?.stages ?? [];
  const live: Record<string, Components | null> = {};
  const shown: PipelineView["stages"] = [];
  for (const stage of stages) {
    const current = await store.releases.current(app.name, stage.env);
    live[stage.env] = current?.components ?? null;
    const primary = app.components[0]!.name;
    shown.push({
      env: stage.env,
      gate: stage.gate
        ? {
            bakeMs: stage.gate.bakeMs,
            approval: stage.gate.approval ?? null,
            checks: stage.gate.checks
              ? { required: stage.gate.checks.required, command: stage.gate.checks.command !== undefined }
              : null,
          }
        : null,
      current: current
        ? {
            deployId: current.deployId,
            deployNumber: current.deployNumber,
            sha: current.components[primary] ?? Object.values(current.components)[0] ?? "",
            since: current.createdAt,
          }
        : null,
    });
  }
  const runs = stages.length > 0 ? await store.pipelineRuns.list(app.name, 50) : [];
  return {
    app: app.name,
    stages: shown,
    releases: app.pipeline ? releasePositions(app.pipeline, live, runs) : [],
    runs,
  };
}

/** Which run an approval answers: by id, or the one waiting for approval into a stage. */
export interface RunChoice {
  run?: number | undefined;
  stage?: string | undefined;
}

/**
 * Approves or rejects a run waiting at a gate with an approval. The role the
 * gate names (or admin) may answer; an answer to a run that has moved on is
 * refused (E_CONFLICT), so two people answering at once see who was first.
 */
export async function answerRun(
  store: Store,
  principal: Principal,
  app: AppConfig,
  choice: RunChoice,
  answer: "approve" | "reject",
  message: string | undefined,
): Promise<PipelineRun> {
  const runs = store.pipelineRuns;
  let run: PipelineRun | undefined;
  if (choice.run !== undefined) {
    run = await runs.get(choice.run).catch(() => undefined);
    if (run?.app !== app.name)
      throw notFound(`pipeline run ${choice.run} of ${app.name}`, { run: choice.run });
  } else if (choice.stage !== undefined) {
    const open = (await runs.unfinished(app.name)).filter(
      (r) => r.env === choice.stage && (r.status === "waiting" || r.status === "approved"),
    );
    run = open[open.length - 1];
    if (!run)
      throw notFound(`a run of ${app.name} waiting to enter ${choice.stage}`, { stage: choice.stage });
  } else {
    throw new TurnoutError("E_VALIDATION", "name the run (run) or the stage it waits to enter (stage)");
  }
  const gate = app.pipeline?.stages.find((s) => s.env === run.env)?.gate;
  if (!gate?.approval) {
    throw new TurnoutError("E_CONFLICT", `entering ${app.name}/${run.env} needs no approval`, {
      run: run.id,
    });
  }
  if (!mayApprove(principal.role, gate.approval.role)) {
    throw new TurnoutError(
      "E_FORBIDDEN",
      `entering ${app.name}/${run.env} is approved by ${gate.approval.role === "admin" ? "an admin" : "a deployer or an admin"}`,
    );
  }
  const decided = { decidedBy: principal.name, decidedAt: new Date().toISOString() };
  const text = message?.trim() || null;
  const moved =
    answer === "approve"
      ? await runs.move(run.id, ["waiting"], { status: "approved", ...decided })
      : await runs.move(run.id, ["waiting", "approved"], {
          status: "rejected",
          waitingOn: null,
          ...decided,
          message: text ? `rejected by ${principal.name}: ${text}` : `rejected by ${principal.name}`,
        });
  if (!moved) {
    const now = await runs.get(run.id);
    throw new TurnoutError(
      "E_CONFLICT",
      `pipeline run ${run.id} is ${now.status}: it can no longer be ${answer}d`,
      {
        run: run.id,
        status: now.status,
      },
    );
  }
  await store.audit.record({
    actor: auditActor(principal),
    action: `pipeline.${answer}`,
    app: app.name,
    env: run.env,
    details: {
      run: run.id,
      from: `${app.name}/${run.fromEnv}#${run.sourceNumber}`,
      ...(text ? { message: text } : {}),
    },
  });
  return runs.get(run.id);
}
