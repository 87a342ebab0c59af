import type { ConfigProvider } from "../config/config-provider.js";
import type { AppConfig, ConfigProblem, ConfigSnapshot } from "../domain/app-config.js";
import { type Deploy, deployLabel } from "../domain/deploy.js";
import { formatDuration } from "../domain/duration.js";
import type { DeployLifecycleEvents } from "../engine/worker.js";
import type { Logger } from "../observability/logger.js";

/**
 * Everything `turnout server` tells its operator about what it is doing —
 * start, configuration reloads, each deploy's start and end, each shutdown
 * step — goes through this one class, as one log line per event: a sentence
 * for people (the message) and fields for machines (`event`, `app`, `env`,
 * `deploy`, …). The wording lives here and nowhere else.
 */
export class ServerLog implements DeployLifecycleEvents {
  constructor(
    readonly logger: Logger,
    /** Whether a person reads the output (a terminal): only then is the first admin token shown. */
    private readonly showSecrets = false,
  ) {}

  private print(text: string, fields: Record<string, unknown> = {}): void {
    this.logger.info(fields, text);
  }

  private warn(text: string, fields: Record<string, unknown> = {}): void {
    this.logger.warn(fields, text);
  }

  /** A line from a part of the server that formats its own (agents, the engine's trouble reports). */
  line(text: string, fields: Record<string, unknown> = {}): void {
    this.print(text, fields);
  }

  /** Something went wrong that the server works around (the engine's reports). */
  trouble(text: string, fields: Record<string, unknown> = {}): void {
    this.warn(text, fields);
  }

  // Start

  listening(version: string, url: string, database: string): void {
    this.print(`Turnout ${version} listening on ${url} (${database})`, {
      event: "server.listening",
      version,
      url,
      database,
    });
  }

  apps(from: string, names: string[]): void {
    this.print(`apps from ${from}: ${names.length > 0 ? names.join(", ") : "(none)"}`, {
      event: "config.apps",
      apps: names,
    });
  }

  /**
   * The first admin token: shown to a person at a terminal, once; JSON logs
   * (which end up in log stores) only say where it was saved.
   */
  adminToken(token: string, file: string): void {
    if (!this.showSecrets) {
      this.print(`admin token (shown once, on a terminal only; saved to ${file}, mode 0600)`, {
        event: "server.admin-token",
        file,
      });
      return;
    }
    this.print(`admin token (shown once; also saved to ${file}, mode 0600):`);
    this.print(`  ${token}`);
  }

  // Configuration

  /** On start: where the configuration comes from, its problems, and a refused newer one. */
  config(config: ConfigProvider): void {
    this.source(config);
    this.problems(config.current().problems);
    this.refused(config);
  }

  /** A new configuration became active: which apps it added, removed and changed, and its problems. */
  configChanged(previous: ConfigSnapshot, next: ConfigSnapshot, config: ConfigProvider): void {
    const { added, removed, changed } = appChanges(previous.apps, next.apps);
    const parts = [
      ...(added.length > 0 ? [`added ${added.join(", ")}`] : []),
      ...(removed.length > 0 ? [`removed ${removed.join(", ")}`] : []),
      ...(changed.length > 0 ? [`changed ${changed.join(", ")}`] : []),
    ];
    this.print(
      `config: reloaded ${short(previous.revision)} → ${short(next.revision)}: ${parts.length > 0 ? parts.join("; ") : "no app changed"}`,
      { event: "config.reload", from: previous.revision, to: next.revision, added, removed, changed },
    );
    this.source(config);
    this.problems(next.problems);
  }

  /** A configuration repository's newest commit could not be read at all (the active one stays). */
  refused(config: ConfigProvider): void {
    const { revision, lastError } = config.status();
    if (!lastError) return;
    const keeping = revision ? `keeping ${revision.slice(0, 12)}` : "no apps until a readable commit";
    this.warn(`config: cannot read ${lastError.revision.slice(0, 12)}, ${keeping}:`, {
      event: "config.refused",
      revision: lastError.revision,
    });
    for (const p of lastError.problems) this.warn(`config:   ${problemText(p)}`, { event: "config.problem" });
  }

  private source(config: ConfigProvider): void {
    const { source, revision } = config.status();
    if (source.kind === "git") {
      this.print(
        `config: ${source.url}@${source.branch} ${revision ? revision.slice(0, 12) : "(no valid commit yet)"}`,
      );
    }
  }

  private problems(problems: ConfigProblem[]): void {
    for (const p of problems)
      this.warn(`config: ${problemText(p)}`, { event: "config.problem", file: p.file });
  }

  reloadFailed(message: string): void {
    this.logger.error({ event: "config.reload-failed" }, `config: reload failed: ${message}`);
  }

  // Deploys

  started(deploy: Deploy): void {
    this.print(
      `deploy ${deployLabel(deploy)}: started (${who(deploy)}, ${deploy.ref} at ${short(deploy.sha)})`,
      { event: "deploy.started", ...deployFields(deploy) },
    );
  }

  finished(deploy: Deploy): void {
    const text = `deploy ${deployLabel(deploy)}: ${outcome(deploy)}${took(deploy)} (${who(deploy)})`;
    const fields = { event: "deploy.finished", ...deployFields(deploy), ...endFields(deploy) };
    if (deploy.status === "failed") this.warn(text, fields);
    else this.print(text, fields);
  }

  recovered(deploy: Deploy): void {
    this.warn(
      `deploy ${deployLabel(deploy)}: ${outcome(deploy)} (${who(deploy)}; recovered, its server is gone)`,
      { event: "deploy.recovered", ...deployFields(deploy), ...endFields(deploy) },
    );
  }

  // Shutdown

  shuttingDown(running: Deploy[], graceMs: number): void {
    if (running.length === 0) {
      this.print("shutting down: no deploy is running", { event: "shutdown.start", running: [] });
      return;
    }
    this.print(
      `shutting down: waiting up to ${formatDuration(graceMs)} for ${running.length} running deploy${running.length === 1 ? "" : "s"} ` +
        `(${running.map(deployLabel).join(", ")}); a second SIGTERM or Ctrl-C interrupts them now`,
      { event: "shutdown.start", running: running.map(deployLabel), graceMs },
    );
  }

  interrupting(deploys: Deploy[], why: "grace" | "now", graceMs: number): void {
    if (deploys.length === 0) return;
    const reason = why === "now" ? "told again to stop" : `grace of ${formatDuration(graceMs)} over`;
    this.warn(`shutting down: ${reason}, interrupting ${deploys.map(deployLabel).join(", ")}`, {
      event: "shutdown.interrupt",
      why,
      deploys: deploys.map(deployLabel),
    });
  }

  closing(): void {
    this.print(
      "shutting down: no deploy running; closing agent connections, the HTTP server and the database",
      { event: "shutdown.close" },
    );
  }

  stopped(): void {
    this.print("stopped", { event: "shutdown.stopped" });
  }
}

function deployFields(deploy: Deploy): Record<string, unknown> {
  return {
    deploy: deployLabel(deploy),
    deployId: deploy.id,
    app: deploy.app,
    env: deploy.env,
    trigger: deploy.trigger,
    user: deploy.user,
    ref: deploy.ref,
    sha: deploy.sha,
  };
}

function endFields(deploy: Deploy): Record<string, unknown> {
  const ms =
    deploy.startedAt && deploy.finishedAt
      ? Date.parse(deploy.finishedAt) - Date.parse(deploy.startedAt)
      : NaN;
  return {
    outcome: deploy.status,
    ...(deploy.errorCode ? { errorCode: deploy.errorCode } : {}),
    ...(Number.isFinite(ms) && ms >= 0 ? { durationMs: ms } : {}),
  };
}

function who(deploy: Deploy): string {
  return `trigger ${deploy.trigger}, by ${deploy.user}`;
}

function outcome(deploy: Deploy): string {
  if (deploy.status === "failed") {
    return `failed (${deploy.errorCode ?? "unknown"}${deploy.errorMessage ? `: ${deploy.errorMessage}` : ""})`;
  }
  return deploy.status;
}

function took(deploy: Deploy): string {
  if (!deploy.startedAt || !deploy.finishedAt) return "";
  const ms = Date.parse(deploy.finishedAt) - Date.parse(deploy.startedAt);
  return Number.isFinite(ms) && ms >= 0 ? ` in ${formatDuration(ms)}` : "";
}

function short(value: string): string {
  return value.slice(0, 12);
}

function problemText(p: ConfigProblem): string {
  return `${p.file}${p.line ? `:${p.line}` : ""}: ${p.field}: ${p.message}`;
}

/** Apps present in only one of the two, and those whose configuration differs. */
export function appChanges(
  previous: ReadonlyMap<string, AppConfig>,
  next: ReadonlyMap<string, AppConfig>,
): { added: string[]; removed: string[]; changed: string[] } {
  const added = [...next.keys()].filter((name) => !previous.has(name)).sort();
  const removed = [...previous.keys()].filter((name) => !next.has(name)).sort();
  const changed = [...next.entries()]
    .filter(([name, app]) => {
      const before = previous.get(name);
      return before !== undefined && JSON.stringify(before) !== JSON.stringify(app);
    })
    .map(([name]) => name)
    .sort();
  return { added, removed, changed };
}
