import type { Emergency } from "../domain/emergency.js";
import type {
  AuditEventJson,
  ConfigProblemJson,
  DeployJson,
  EnvSummary,
  PendingComponentJson,
  ReleaseJson,
  TokenInfoJson,
} from "./api-types.js";
import { escapeText, joinLines, type TerminalText, t, table } from "./terminal-text.js";

export { table };

/**
 * Human output of the CLI. Everything here is pure, so the formats are unit
 * tested and stay stable for people who grep them. Every function takes the
 * server's values raw and returns TerminalText: each value is escaped on its
 * way in (terminal-text.ts), so no caller can forget to.
 */

export function shortSha(sha: string | null | undefined): string {
  return sha ? sha.slice(0, 12) : "-";
}

/** One value for a terminal (kept under this name for the commands that format their own lines). */
export function clean(text: unknown): TerminalText {
  return escapeText(text);
}

/** `2024-05-01 12:03:04Z`: UTC, second precision, the same everywhere. */
export function formatDate(iso: string | null | undefined): string {
  if (!iso) return "-";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return `${date.toISOString().slice(0, 19).replace("T", " ")}Z`;
}

/** `14s`, `2m05s`, `1h02m`. */
export function formatDuration(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${String(seconds % 60).padStart(2, "0")}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, "0")}m`;
}

export function lockText(lock: EnvSummary["lock"]): string {
  return lock ? `${lock.lockedBy}: ${lock.reason}` : "-";
}

export function currentText(env: EnvSummary): string {
  if (!env.current) return "-";
  const text = `#${env.current.deployNumber} ${shortSha(env.current.sha)}`;
  return env.unreviewed ? `${text} UNREVIEWED` : text;
}

/** An emergency change in one line: who, under which deploy, from which commit, how many files, why. */
export function emergencyText(emergency: Emergency): string {
  const from = emergency.base ? `base ${shortSha(emergency.base)}` : "no base commit";
  const files = `${emergency.files.length} file${emergency.files.length === 1 ? "" : "s"} changed`;
  const who = emergency.by ? `by ${emergency.by}` : "";
  const deploy = emergency.deployNumber !== undefined ? `#${emergency.deployNumber}` : "";
  return [
    `emergency ${[deploy, who].filter(Boolean).join(" ")}`.trim(),
    from,
    files,
    `reason: ${emergency.reason}`,
  ].join("; ");
}

/** `idle`, `running #4`, `queued 2`, `running #4, queued 2`. */
export function stateText(env: EnvSummary): string {
  const parts: string[] = [];
  if (env.active) parts.push(`${env.active.status} #${env.active.number}`);
  if (env.queued > 0) parts.push(`queued ${env.queued}`);
  return parts.length > 0 ? parts.join(", ") : "idle";
}

export function environmentsTable(envs: EnvSummary[]): TerminalText {
  if (envs.length === 0) return t`no apps configured`;
  return table(
    ["APP", "ENV", "CURRENT", "STATE", "LOCK"],
    envs.map((env) => [env.app, env.name, currentText(env), stateText(env), lockText(env.lock)]),
  );
}

export function releaseSha(release: Pick<ReleaseJson, "components">): string {
  const components = release.components ?? {};
  return components["app"] ?? Object.values(components)[0] ?? "";
}

/**
 * One history row: `#N  sha12  ref  fingerprint12  user  trigger  date`, and
 * for multi-repo apps what changed in which component (`core 1a2b3c4→5d6e7f8`).
 */
export function releaseRow(release: ReleaseJson): string[] {
  const row = [
    `#${release.deployNumber}`,
    shortSha(releaseSha(release)),
    release.deploy?.ref ?? "-",
    shortSha(release.fingerprint),
    release.deploy?.user ?? "-",
    triggerText(release),
    formatDate(release.createdAt),
  ];
  if (isMultiRepo(release)) row.push(changesText(release));
  return row;
}

/** The trigger, and for a promotion where from: `promote (staging#3)`. */
function triggerText(release: ReleaseJson): string {
  const trigger = release.deploy?.trigger ?? "-";
  const from = release.deploy?.promotedFrom;
  return from ? `${trigger} (${from.env}#${from.deployNumber})` : trigger;
}

/** The UNREVIEWED column of history: the emergency change a release installs. */
function reviewText(release: ReleaseJson): string {
  return release.emergency ? emergencyText(release.emergency) : "-";
}

function isMultiRepo(release: ReleaseJson): boolean {
  return Object.keys(release.components ?? {}).some((name) => name !== "app");
}

function changesText(release: ReleaseJson): string {
  const parts = (release.changes ?? []).map(
    (c) => `${c.component} ${c.from ? c.from.slice(0, 7) : "(new)"}→${c.to ? c.to.slice(0, 7) : "(removed)"}`,
  );
  if (release.configChanged) parts.push("config");
  return parts.length > 0 ? parts.join(", ") : "(no change)";
}

/** The change preview: per component, the commits the next deploy would ship. */
export function pendingLines(components: PendingComponentJson[]): TerminalText {
  const lines: TerminalText[] = [];
  for (const c of components) {
    const from = c.from ? shortSha(c.from) : "(never deployed)";
    const count = `${c.commits.length}${c.truncated ? "+" : ""} commit${c.commits.length === 1 ? "" : "s"}`;
    lines.push(
      c.commits.length === 0
        ? t`${c.component} (${c.branch}): up to date at ${shortSha(c.to)}`
        : t`${c.component} (${c.branch}): ${count} from ${from} to ${shortSha(c.to)}`,
    );
    for (const commit of c.commits) {
      const checks = commit.checks ? t`  [${commit.checks}]` : "";
      const locked = commit.locked ? t`  [locked by ${commit.locked.lockedBy}: ${commit.locked.reason}]` : "";
      lines.push(t`  ${shortSha(commit.sha)}  ${commit.author}  ${commit.subject}${checks}${locked}`);
    }
  }
  return joinLines(lines);
}

/** Release history: a header, then a row per release (the environment first when several are shown). */
export function historyLines(releases: ReleaseJson[], withEnv: boolean): TerminalText {
  if (releases.length === 0) return t`no releases yet`;
  const header = ["DEPLOY", "SHA", "REF", "FINGERPRINT", "USER", "TRIGGER", "DATE"];
  if (releases.some(isMultiRepo)) header.push("CHANGES");
  // Only when a release in view is an emergency change: most histories have none.
  const unreviewed = releases.some((r) => r.emergency);
  if (unreviewed) header.push("UNREVIEWED");
  const rows = releases.map((r) => {
    const row = withEnv ? [r.env, ...releaseRow(r)] : releaseRow(r);
    if (unreviewed) {
      if (header.includes("CHANGES") && !isMultiRepo(r)) row.push("");
      row.push(reviewText(r));
    }
    return row;
  });
  return table(withEnv ? ["ENV", ...header] : header, rows);
}

export function problemLine(problem: ConfigProblemJson): TerminalText {
  const where =
    problem.line === null || problem.line === undefined ? problem.file : `${problem.file}:${problem.line}`;
  return t`${where} ${problem.field}: ${problem.message}`;
}

export function deployLabelOf(deploy: Pick<DeployJson, "app" | "env" | "number" | "label">): string {
  return deploy.label ?? `${deploy.app}/${deploy.env}#${deploy.number}`;
}

/** `queued shop/staging#4 (id 17) at 0123456789ab`. */
export function queuedLine(deploy: DeployJson): TerminalText {
  const from = deploy.promotedFrom;
  const what =
    deploy.rollbackOf !== null && deploy.rollbackOf !== undefined
      ? `rollback to #${deploy.rollbackOf} as ${deployLabelOf(deploy)}`
      : from
        ? `${deployLabelOf(deploy)}, promoted from ${deploy.app}/${from.env}#${from.deployNumber},`
        : deployLabelOf(deploy);
  const forced = deploy.ignoredSafeties?.length ? ` (ignoring: ${deploy.ignoredSafeties.join(", ")})` : "";
  return t`queued ${what} (id ${deploy.id}) at ${shortSha(deploy.sha)}${forced}`;
}

/** `shop/staging#4 running (deploy) 12s`: the live progress line. */
export function progressLine(deploy: DeployJson, nowMs: number): TerminalText {
  const since = Date.parse(deploy.startedAt ?? deploy.createdAt);
  const phase = deploy.phase && deploy.status === "running" ? ` (${deploy.phase})` : "";
  const elapsed = Number.isNaN(since) ? "" : ` ${formatDuration(nowMs - since)}`;
  return t`${deployLabelOf(deploy)} ${deploy.status}${phase}${elapsed}`;
}

/** The last line of a followed deploy. */
export function outcomeLine(deploy: DeployJson): TerminalText {
  const label = deployLabelOf(deploy);
  switch (deploy.status) {
    case "succeeded": {
      const start = Date.parse(deploy.startedAt ?? deploy.createdAt);
      const end = Date.parse(deploy.finishedAt ?? "");
      const took = Number.isNaN(start) || Number.isNaN(end) ? "" : ` in ${formatDuration(end - start)}`;
      return t`${label} succeeded${took}`;
    }
    case "failed":
      return t`${label} failed: ${deploy.errorCode ?? "unknown"}: ${deploy.errorMessage ?? "no message"}`;
    case "cancelled":
      return t`${label} cancelled`;
    default:
      return t`${label} ${deploy.status}`;
  }
}

export function tokensTable(tokens: TokenInfoJson[]): TerminalText {
  if (tokens.length === 0) return t`no tokens`;
  return table(
    ["NAME", "ROLE", "APPS", "HOST LABELS", "CREATED", "LAST USED", "REVOKED"],
    tokens.map((tk) => [
      tk.name,
      tk.role,
      tk.apps === null ? "*" : tk.apps.join(",") || "-",
      tk.role === "agent" ? labelGrantText(tk.labels ?? null) : "",
      formatDate(tk.createdAt),
      formatDate(tk.lastUsedAt),
      formatDate(tk.revokedAt),
    ]),
  );
}

/** The labels a grant lets count: `*` flagged when hosts choose their own. */
export function labelGrantText(labels: string[] | null): string {
  if (labels === null) return "* (unrestricted)";
  return labels.length === 0 ? "-" : labels.join(",");
}

/** A host grant in one phrase: `apps=shop labels=env=prod,role=web`. */
export function grantText(grant: { apps: string[] | null; labels: string[] | null }): string {
  const apps = grant.apps === null ? "*" : grant.apps.join(",") || "-";
  return `apps=${apps} labels=${labelGrantText(grant.labels)}`;
}

/** `turnout audit`: one line per event; what it acted on is the target, else the app and environment. */
export function auditTable(events: AuditEventJson[]): TerminalText {
  if (events.length === 0) return t`no audit events`;
  return table(
    ["TIME", "ACTOR", "SOURCE", "ACTION", "TARGET", "DETAILS"],
    events.map((e) => [
      formatDate(e.at),
      e.actor,
      e.source ?? "-",
      e.action,
      e.target ?? ([e.app, e.env].filter((part) => part !== null).join("/") || "-"),
      auditDetails(e.details),
    ]),
  );
}

/** The details worth a glance (reason, ref, trigger, …) as `key=value`, short. */
function auditDetails(details: Record<string, unknown>): string {
  const text = Object.entries(details ?? {})
    .filter(([key, value]) => value !== null && value !== undefined && key !== "deploy" && key !== "sha")
    .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`)
    .join(" ");
  return text.length > 80 ? `${text.slice(0, 79)}…` : text;
}
