import type { Command } from "commander";
import { InvalidSettingError } from "../../config/client-settings.js";
import type { HostWithApps } from "../../domain/fleet.js";
import { collectGrantLabel, collectName, parseName } from "../args.js";
import { clientFor, envPath, path, printJson, println } from "../context.js";
import { formatDate, grantText, table } from "../output.js";
import type { Kit } from "../program.js";
import { type TerminalText, t } from "../terminal-text.js";
import { registerHostHistoryCommand } from "./host-history.js";

/** GET /api/v1/hosts, as the CLI reads it. */
export type HostJson = HostWithApps & { unrestricted?: boolean };

interface GrantFlags {
  app?: string[];
  allApps?: boolean;
  label?: string[];
  anyLabels?: boolean;
}

interface Column {
  header: string;
  cell(host: HostJson): string;
}

export function registerHostsCommand(program: Command, { ctx, action, globals }: Kit): void {
  const hosts = program
    .command("hosts")
    .description("fleet hosts: connection, pool state, labels and what each runs (of APP)")
    .argument("[app]", "show this app's current release", parseName("app"))
    .argument("[env]", "environment of APP", parseName("environment"))
    .action(
      action(async (app: string | undefined, env: string | undefined, _flags: unknown, command: Command) => {
        const options = globals(command);
        const client = clientFor(ctx, options);
        if (app !== undefined && env !== undefined) {
          // One environment: its hosts, what each runs against the environment's release, drift.
          const response = await client.get<{ hosts: FleetHostJson[] }>(envPath(app, env, "hosts"));
          if (options.json) printJson(ctx, response.text);
          else println(ctx.stdout, driftTable(response.body.hosts));
          return 0;
        }
        const response = await client.get<{ hosts: HostJson[] }>("/api/v1/hosts");
        if (options.json) printJson(ctx, response.text);
        else println(ctx.stdout, hostsTable(response.body.hosts, app, env));
        return 0;
      }),
    );

  registerHostHistoryCommand(hosts, { ctx, action, globals });

  hosts
    .command("grant")
    .description("set what an agent host may receive: its apps and the labels that count (admin)")
    .argument("<host>", "the host's name", parseName("host"))
    .option("--app <app>", "an app whose deploys may reach the host, repeatable", collectName("app"))
    .option("--all-apps", "every app's deploys may reach the host")
    .option(
      "--label <key=value>",
      "a label that counts for the host, repeatable (default: none; labels it declares beyond these are ignored)",
      collectGrantLabel,
    )
    .option("--any-labels", "every label the host declares counts (unrestricted; not recommended)")
    .addHelpText(
      "after",
      "\nReplaces the host's grant (the one it got from its enrollment token). Example:" +
        "\n  turnout hosts grant web-1 --app shop --label role=web --label env=prod\n",
    )
    .action(
      action(async (host: string, flags: GrantFlags, command: Command) => {
        const options = globals(command);
        if (Boolean(flags.app) === Boolean(flags.allApps)) {
          throw new InvalidSettingError("give the apps with --app (repeatable) or --all-apps");
        }
        if (flags.label && flags.anyLabels)
          throw new InvalidSettingError("give --label or --any-labels, not both");
        const response = await clientFor(ctx, options).put<{ host: HostJson }>(
          `/api/v1/hosts/${path(host)}/grant`,
          { apps: flags.app ?? null, labels: flags.anyLabels ? null : (flags.label ?? []) },
        );
        if (options.json) {
          printJson(ctx, response.text);
          return 0;
        }
        const updated = response.body.host;
        println(ctx.stdout, t`${updated.name}: ${grantText(updated.grant)}`);
        const ignored = labelsText(updated.ungrantedLabels);
        if (ignored !== "-") println(ctx.stdout, t`labels it declares that do not count: ${ignored}`);
        return 0;
      }),
    );
}

/** A fleet environment's hosts as `GET …/environments/:env/hosts` returns them. */
export interface FleetHostJson {
  name: string;
  kind: "agent" | "ssh";
  connected: boolean;
  poolState: string;
  lastSeenAt: string | null;
  current: string | null;
  desired: string | null;
  drifted: boolean;
  path?: string | null;
}

/** NAME KIND STATE POOL CURRENT DESIRED DRIFT: what `turnout reconcile` would fix. */
export function driftTable(hosts: FleetHostJson[]): TerminalText {
  if (hosts.length === 0) return t`no hosts match this environment`;
  return table(
    ["NAME", "KIND", "STATE", "POOL", "CURRENT", "DESIRED", "DRIFT"],
    hosts.map((h) => [
      h.name,
      h.kind,
      h.kind === "ssh" ? "-" : h.connected ? "connected" : "disconnected",
      h.poolState,
      h.current ?? "-",
      h.desired ?? "-",
      h.drifted ? "drifted" : "ok",
    ]),
  );
}

/** The host table; pure, so its format is unit tested. */
export function hostsTable(hosts: HostJson[], app?: string, env?: string): TerminalText {
  if (hosts.length === 0) return t`no hosts (start \`turnout agent\` on a host, or configure ssh hosts)`;
  const columns = hostColumns(app, env);
  return table(
    columns.map((c) => c.header),
    hosts.map((host) => columns.map((c) => c.cell(host))),
  );
}

function hostColumns(app: string | undefined, _env: string | undefined): Column[] {
  const columns: Column[] = [
    { header: "NAME", cell: (h) => h.name },
    { header: "KIND", cell: (h) => h.kind },
    { header: "STATE", cell: (h) => (h.kind === "ssh" ? "-" : h.connected ? "connected" : "disconnected") },
    { header: "LAST SEEN", cell: (h) => formatDate(h.lastSeenAt) },
    // Per app: `depooled: shop` is out of shop's pool, in every other app's.
    {
      header: "POOL",
      cell: (h) => (h.depooledApps?.length ? `depooled: ${h.depooledApps.join(",")}` : "pooled"),
    },
    { header: "LABELS", cell: (h) => labelsText(h.labels) },
    // Declared by the host, outside its grant: they count for nothing, and this says why.
    { header: "IGNORED LABELS", cell: (h) => labelsText(h.ungrantedLabels ?? {}) },
    {
      header: "GRANT",
      cell: (h) =>
        h.kind === "ssh" ? `app=${h.app ?? "-"}` : `${grantText(h.grant ?? { apps: null, labels: null })}`,
    },
    { header: "CURRENT", cell: (h) => (app === undefined ? currentPairs(h) : currentOf(h, app)) },
  ];
  return columns;
}

export function labelsText(labels: Record<string, string>): string {
  const entries = Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return entries.length === 0 ? "-" : entries.map(([k, v]) => `${k}=${v}`).join(",");
}

/** The app's release in each of its layouts on the host: `<id>` at <root>/<app>, `<path>=<id>` at a deploy path. */
function currentOf(host: HostJson, app: string): string {
  const layouts = host.apps
    .filter((a) => a.app === app && a.current !== null)
    .map((a) => (a.path ? `${a.path}=${a.current}` : `${a.current}`));
  return layouts.length === 0 ? "-" : layouts.join(",");
}

function currentPairs(host: HostJson): string {
  const pairs = host.apps
    .filter((a) => a.current !== null)
    .map((a) => `${a.app}${a.path ? `@${a.path}` : ""}=${a.current}`);
  return pairs.length === 0 ? "-" : pairs.join(",");
}
