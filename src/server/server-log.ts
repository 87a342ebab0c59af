import type { ConfigProvider } from "../config/config-provider.js";
import type { AppConfig, ConfigProblem, ConfigSnapshot } from "../domain/app-config.js";
import { type Deploy, deployLabel } from "../domain/deploy.js";
import { formatDuration } from "../domain/duration.js";
import type { DeployLifecycleEvents } from "../engine/worker.js";

/**
 * Everything `turnout server` tells its operator about what it is doing —
 * start, configuration reloads, each deploy's start and end, each shutdown
 * step — goes through this one class, as one line per event. Keeping the
 * wording here (and nowhere else) is what lets these lines move to
 * structured logging later without a hunt through the code.
 */
export class ServerLog implements DeployLifecycleEvents {
  constructor(private readonly print: (line: string) => void) {}

  /** A line from a part of the server that formats its own (agents, the engine's trouble reports). */
  line(text: string): void {
    this.print(text);
  }

  // Start

  listening(version: string, url: string, database: string): void {
    this.print(`Turnout ${version} listening on ${url} (${database})`);
  }

  apps(from: string, names: string[]): void {
    this.print(`apps from ${from}: ${names.length > 0 ? names.join(", ") : "(none)"}`);
  }

  adminToken(token: string, file: string): void {
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
    );
    this.source(config);
    this.problems(next.problems);
  }

  /** A configuration repository's newest commit could not be read at all (the active one stays). */
  refused(config: ConfigProvider): void {
    const { revision, lastError } = config.status();
    if (!lastError) return;
    const keeping = revision ? `keeping ${revision.slice(0, 12)}` : "no apps until a readable commit";
    this.print(`config: cannot read ${lastError.revision.slice(0, 12)}, ${keeping}:`);
    for (const p of lastError.problems) this.print(`config:   ${problemText(p)}`);
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
    for (const p of problems) this.print(`config: ${problemText(p)}`);
  }

  reloadFailed(message: string): void {
    this.print(`config: reload failed: ${message}`);
  }

  // Deploys

  started(deploy: Deploy): void {
    this.print(
      `deploy ${deployLabel(deploy)}: started (${who(deploy)}, ${deploy.ref} at ${short(deploy.sha)})`,
    );
  }

  finished(deploy: Deploy): void {
    this.print(`deploy ${deployLabel(deploy)}: ${outcome(deploy)}${took(deploy)} (${who(deploy)})`);
  }

  recovered(deploy: Deploy): void {
    this.print(
      `deploy ${deployLabel(deploy)}: ${outcome(deploy)} (${who(deploy)}; recovered, its server is gone)`,
    );
  }

  // Shutdown

  shuttingDown(running: Deploy[], graceMs: number): void {
    if (running.length === 0) {
      this.print("shutting down: no deploy is running");
      return;
    }
    this.print(
      `shutting down: waiting up to ${formatDuration(graceMs)} for ${running.length} running deploy${running.length === 1 ? "" : "s"} ` +
        `(${running.map(deployLabel).join(", ")}); a second SIGTERM or Ctrl-C interrupts them now`,
    );
  }

  interrupting(deploys: Deploy[], why: "grace" | "now", graceMs: number): void {
    if (deploys.length === 0) return;
    const reason = why === "now" ? "told again to stop" : `grace of ${formatDuration(graceMs)} over`;
    this.print(`shutting down: ${reason}, interrupting ${deploys.map(deployLabel).join(", ")}`);
  }

  closing(): void {
    this.print(
      "shutting down: no deploy running; closing agent connections, the HTTP server and the database",
    );
  }

  stopped(): void {
    this.print("stopped");
  }
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
