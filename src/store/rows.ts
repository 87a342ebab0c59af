import type { Selectable } from "kysely";
import type { CommitSummary, Deploy, DeployStatus, FailureCode, Trigger } from "../domain/deploy.js";
import type { Emergency } from "../domain/emergency.js";
import type { Lock } from "../domain/lock.js";
import type { Release } from "../domain/release.js";
import type { DeploysTable, LocksTable, ReleasesTable } from "./schema.js";

/** Row ↔ domain conversions, kept in one place so the JSON-as-text and 0/1 conventions stay consistent. */
export function nowIso(): string {
  return new Date().toISOString();
}

export function isoIn(ms: number): string {
  return new Date(Date.now() + ms).toISOString();
}

export function toJson(value: unknown): string {
  return JSON.stringify(value ?? null);
}

export function fromJson<T>(text: string | null): T {
  return (text === null ? null : JSON.parse(text)) as T;
}

export function toDeploy(row: Selectable<DeploysTable>): Deploy {
  return {
    id: row.id,
    app: row.app,
    env: row.env,
    number: row.number,
    status: row.status as DeployStatus,
    phase: row.phase,
    trigger: row.trigger as Trigger,
    user: row.user_name,
    ref: row.ref,
    sha: row.sha,
    components: fromJson(row.components),
    previousSha: row.previous_sha,
    params: fromJson(row.params),
    force: row.force === 1,
    ignoredSafeties: fromJson(row.ignored_safeties),
    rollbackOf: row.rollback_of,
    errorCode: row.error_code as FailureCode | null,
    errorMessage: row.error_message,
    releaseId: row.release_id,
    configRevision: row.config_revision,
    appRevision: row.app_revision ?? null,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    cancelRequested: row.cancel_requested === 1,
    slot: row.slot ?? null,
    artifact: row.artifact ?? null,
    approval: row.approval ?? null,
    logPrunedAt: row.log_pruned_at ?? null,
    emergency: row.emergency ? fromJson<Emergency>(row.emergency) : null,
    ...commitsOf(row),
    promotedFrom: promotedFromOf(row),
    reason: row.reason ?? null,
  };
}

/** Where a promotion's release came from (the source deploy's number is kept in its env's sequence). */
function promotedFromOf(row: Selectable<DeploysTable>): Deploy["promotedFrom"] {
  if (!row.promoted_from_env || row.promoted_from_deploy === null) return null;
  return {
    env: row.promoted_from_env,
    deployId: row.promoted_from_deploy,
    deployNumber: row.promoted_from_number ?? 0,
  };
}

/**
 * The recorded commit descriptions; the primary component is the one whose
 * commit is the deploy's `sha` (the first component of the app).
 */
function commitsOf(row: Selectable<DeploysTable>): Pick<Deploy, "commit" | "commits"> {
  const commits = row.commits ? fromJson<Record<string, CommitSummary>>(row.commits) : null;
  if (!commits) return { commit: null, commits: null };
  const primary = Object.values(commits).find((c) => c.sha === row.sha) ?? null;
  return { commit: primary, commits };
}

export function toRelease(row: Selectable<ReleasesTable>): Release {
  return {
    id: row.id,
    app: row.app,
    env: row.env,
    deployId: row.deploy_id,
    deployNumber: row.deploy_number,
    fingerprint: row.fingerprint,
    components: fromJson(row.components),
    configRevision: row.config_revision,
    appRevision: row.app_revision ?? null,
    environmentConfig: fromJson(row.environment_config),
    artifact: row.artifact ?? null,
    emergency: row.emergency ? fromJson<Emergency>(row.emergency) : null,
    providerRelease: row.provider_release ?? null,
    createdAt: row.created_at,
  };
}

export function toLock(row: Selectable<LocksTable>): Lock {
  return {
    app: row.app,
    env: row.env,
    lockedBy: row.locked_by,
    reason: row.reason,
    createdAt: row.created_at,
  };
}
