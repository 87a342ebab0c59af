import type {
  ConfigProblemJson,
  DeployJson,
  EnvSummary,
  PendingComponentJson,
  ReleaseJson,
  TokenInfoJson,
} from "./api-types.js";

/**
 * Human output of the CLI. Everything here is pure, so the formats are unit
 * tested and stay stable for people who grep them. Server-provided text that
 * ends up in tables is stripped of control characters: a lock reason must not
 * be able to move the cursor or recolor the terminal.
 */

export function shortSha(sha: string | null | undefined): string {
  return sha ? sha.slice(0, 12) : "-";
}

export function clean(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]+/g, " ");
}

/** `2024-05-01 12:03:04Z`: UTC, second precision, the same everywhere. */
export function formatDate(iso: string | null | undefined): string {
  if (!iso) return "-";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return clean(iso);
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

/** Columns padded to their widest cell, two spaces apart, no trailing blanks. */
export function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows].map((row) => row.map(clean));
  const widths = header.map((_, i) => Math.max(...all.map((row) => (row[i] ?? "").length)));
  return all
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

export function lockText(lock: EnvSummary["lock"]): string {
  return lock ? `${lock.lockedBy}: ${lock.reason}` : "-";
}

export function currentText(env: EnvSummary): string {
  return env.current ? `#${env.current.deployNumber} ${shortSha(env.current.sha)}` : "-";
}

/** `idle`, `running #4`, `queued 2`, `running #4, queued 2`. */
export function stateText(env: EnvSummary): string {
  const parts: string[] = [];
  if (env.active) parts.push(`${env.active.status} #${env.active.number}`);
  if (env.queued > 0) parts.push(`queued ${env.queued}`);
  return parts.length > 0 ? parts.join(", ") : "idle";
}

export function environmentsTable(envs: EnvSummary[]): string {
  if (envs.length === 0) return "no apps configured";
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
 * One history line: `#N  sha12  fingerprint12  user  trigger  date`, and for
 * multi-repo apps what changed in which component (`core 1a2b3c4→5d6e7f8`).
 */
export function releaseRow(release: ReleaseJson): string[] {
  const row = [
    `#${release.deployNumber}`,
    shortSha(releaseSha(release)),
    shortSha(release.fingerprint),
    release.deploy?.user ?? "-",
    release.deploy?.trigger ?? "-",
    formatDate(release.createdAt),
  ];
  const multi = Object.keys(release.components ?? {}).some((name) => name !== "app");
  if (multi) row.push(changesText(release));
  return row;
}

function changesText(release: ReleaseJson): string {
  const parts = (release.changes ?? []).map(
    (c) => `${c.component} ${c.from ? c.from.slice(0, 7) : "(new)"}→${c.to ? c.to.slice(0, 7) : "(removed)"}`,
  );
  if (release.configChanged) parts.push("config");
  return parts.length > 0 ? parts.join(", ") : "(no change)";
}

/** The change preview: per component, the commits the next deploy would ship. */
export function pendingLines(components: PendingComponentJson[]): string {
  const lines: string[] = [];
  for (const c of components) {
    const from = c.from ? shortSha(c.from) : "(never deployed)";
    lines.push(
      c.commits.length === 0
        ? `${c.component} (${c.branch}): up to date at ${shortSha(c.to)}`
        : `${c.component} (${c.branch}): ${c.commits.length}${c.truncated ? "+" : ""} commit${c.commits.length === 1 ? "" : "s"} from ${from} to ${shortSha(c.to)}`,
    );
    for (const commit of c.commits) {
      const checks = commit.checks ? `  [${commit.checks}]` : "";
      lines.push(`  ${shortSha(commit.sha)}  ${clean(commit.author)}  ${clean(commit.subject)}${checks}`);
    }
  }
  return lines.join("\n");
}

export function historyLines(releases: ReleaseJson[], withEnv: boolean): string {
  if (releases.length === 0) return "no releases yet";
  const rows = releases.map((r) => (withEnv ? [r.env, ...releaseRow(r)] : releaseRow(r)));
  // No header: the format is the one documented (`#N  sha  fingerprint  user  trigger  date`).
  const all = rows.map((row) => row.map(clean));
  const widths = all[0]!.map((_, i) => Math.max(...all.map((row) => row[i]!.length)));
  return all
    .map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  "))
    .join("\n");
}

export function problemLine(problem: ConfigProblemJson): string {
  const where =
    problem.line === null || problem.line === undefined ? problem.file : `${problem.file}:${problem.line}`;
  return clean(`${where} ${problem.field}: ${problem.message}`);
}

export function deployLabelOf(deploy: Pick<DeployJson, "app" | "env" | "number" | "label">): string {
  return deploy.label ?? `${deploy.app}/${deploy.env}#${deploy.number}`;
}

/** `queued shop/staging#4 (id 17) at 0123456789ab`. */
export function queuedLine(deploy: DeployJson): string {
  const what =
    deploy.rollbackOf !== null && deploy.rollbackOf !== undefined
      ? `rollback to #${deploy.rollbackOf} as ${deployLabelOf(deploy)}`
      : deployLabelOf(deploy);
  const forced = deploy.ignoredSafeties?.length ? ` (ignoring: ${deploy.ignoredSafeties.join(", ")})` : "";
  return `queued ${what} (id ${deploy.id}) at ${shortSha(deploy.sha)}${forced}`;
}

/** `shop/staging#4 running (deploy) 12s`: the live progress line. */
export function progressLine(deploy: DeployJson, nowMs: number): string {
  const since = Date.parse(deploy.startedAt ?? deploy.createdAt);
  const phase = deploy.phase && deploy.status === "running" ? ` (${deploy.phase})` : "";
  const elapsed = Number.isNaN(since) ? "" : ` ${formatDuration(nowMs - since)}`;
  return clean(`${deployLabelOf(deploy)} ${deploy.status}${phase}${elapsed}`);
}

/** The last line of a followed deploy. */
export function outcomeLine(deploy: DeployJson): string {
  const label = deployLabelOf(deploy);
  switch (deploy.status) {
    case "succeeded": {
      const start = Date.parse(deploy.startedAt ?? deploy.createdAt);
      const end = Date.parse(deploy.finishedAt ?? "");
      const took = Number.isNaN(start) || Number.isNaN(end) ? "" : ` in ${formatDuration(end - start)}`;
      return `${label} succeeded${took}`;
    }
    case "failed":
      return clean(
        `${label} failed: ${deploy.errorCode ?? "unknown"}: ${deploy.errorMessage ?? "no message"}`,
      );
    case "cancelled":
      return `${label} cancelled`;
    default:
      return `${label} ${deploy.status}`;
  }
}

export function tokensTable(tokens: TokenInfoJson[]): string {
  if (tokens.length === 0) return "no tokens";
  return table(
    ["NAME", "ROLE", "APPS", "HOST LABELS", "CREATED", "LAST USED", "REVOKED"],
    tokens.map((t) => [
      t.name,
      t.role,
      t.apps === null ? "*" : t.apps.join(",") || "-",
      t.role === "agent" ? labelGrantText(t.labels ?? null) : "",
      formatDate(t.createdAt),
      formatDate(t.lastUsedAt),
      formatDate(t.revokedAt),
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
