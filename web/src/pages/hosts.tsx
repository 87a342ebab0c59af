import { useMemo, useRef, useState } from "preact/hooks";
import type { FleetHostJson, HostJson, OverviewJson } from "../../../src/http/api-types.js";
import { enc, get } from "../api/client.js";
import { ErrorBox } from "../components/error-box.js";
import { Pill } from "../components/status.js";
import { fullTime, shortSha, timeAgo } from "../lib/format.js";
import { useLiveReload, useNow, useResource, useShortcut } from "../lib/hooks.js";
import { href } from "../lib/router.js";

export interface HostPlacement {
  app: string;
  env: string;
  /** The environment's deploy path (null: <root>/<app>): which layout of the app it is. */
  path: string | null;
  current: string | null;
  desired: string | null;
  drifted: boolean;
}

/** For every fleet environment the caller sees: which hosts it targets, what each runs, and drift. */
export async function placements(): Promise<Map<string, HostPlacement[]>> {
  const { apps } = await get<OverviewJson>("/api/v1/overview");
  const fleetEnvs = apps.flatMap((a) => a.environments.filter((e) => e.provider === "fleet"));
  const lists = await Promise.all(
    fleetEnvs.map((e) =>
      get<{ hosts: FleetHostJson[] }>(`/api/v1/apps/${enc(e.app)}/environments/${enc(e.name)}/hosts`).then(
        (r) =>
          r.hosts.map((h) => ({
            host: h.name,
            app: e.app,
            env: e.name,
            path: h.path ?? null,
            current: h.current,
            desired: h.desired,
            drifted: h.drifted,
          })),
        () => [],
      ),
    ),
  );
  const byHost = new Map<string, HostPlacement[]>();
  for (const entry of lists.flat()) {
    const list = byHost.get(entry.host) ?? [];
    list.push({
      app: entry.app,
      env: entry.env,
      path: entry.path,
      current: entry.current,
      desired: entry.desired,
      drifted: entry.drifted,
    });
    byHost.set(entry.host, list);
  }
  return byHost;
}

/**
 * The fleet's hosts: labels, connection and pool state, last seen, and per
 * app the release each runs and whether it drifted from its environment's.
 */
export function HostsPage() {
  const now = useNow(5000);
  const hosts = useResource(() => get<{ hosts: HostJson[] }>("/api/v1/hosts").then((r) => r.hosts), []);
  const where = useResource(placements, []);
  useLiveReload(
    (e) => e.type === "hosts" || (e.type === "deploy" && ["succeeded", "failed"].includes(e.status)),
    () => {
      hosts.reload();
      where.reload();
    },
    { throttleMs: 1000 },
  );
  const [search, setSearch] = useState("");
  const box = useRef<HTMLInputElement>(null);
  useShortcut(["/"], (event) => {
    event.preventDefault();
    box.current?.focus();
  });

  const shown = useMemo(() => {
    const words = search.toLowerCase().split(/\s+/).filter(Boolean);
    return (hosts.data ?? []).filter((h) => {
      const text = [
        h.name,
        h.kind,
        h.address ?? "",
        ...Object.entries(h.labels).map(([k, v]) => `${k}=${v}`),
        ...h.apps.map((a) => a.app),
      ]
        .join(" ")
        .toLowerCase();
      return words.every((w) => text.includes(w));
    });
  }, [hosts.data, search]);

  return (
    <div class="page hosts">
      <header class="page-head">
        <h1>Hosts</h1>
        <input
          ref={box}
          type="search"
          class="search"
          placeholder="Filter by name, label, app  ( / )"
          aria-label="Filter hosts"
          value={search}
          onInput={(e) => setSearch((e.target as HTMLInputElement).value)}
        />
        <span class="muted">{hosts.data ? `${shown.length} of ${hosts.data.length}` : ""}</span>
      </header>
      <ErrorBox error={hosts.error} />
      {hosts.data && hosts.data.length === 0 && (
        <div class="empty">
          <h2>No hosts yet</h2>
          <p>
            Hosts appear when an agent connects (<code>turnout agent --server URL --token TOKEN</code>) or an
            SSH host is used by a fleet deploy. See docs/fleets.md.
          </p>
        </div>
      )}
      {hosts.data && hosts.data.length > 0 && (
        <div class="table-wrap">
          <table class="hosts-table" data-testid="hosts-table">
            <thead>
              <tr>
                <th scope="col">Host</th>
                <th scope="col">Labels</th>
                <th scope="col">Connection</th>
                <th scope="col">Pool</th>
                <th scope="col">Runs</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((host) => {
                const placed = where.data?.get(host.name) ?? [];
                return (
                  <tr key={host.id} data-host={host.name}>
                    <th scope="row">
                      <a href={href.host(host.name)}>{host.name}</a>
                      <span class="muted kind">
                        {host.kind}
                        {host.address ? ` · ${host.address}` : ""}
                      </span>
                    </th>
                    <td class="labels">
                      {Object.entries(host.labels).map(([k, v]) => (
                        <span key={k} class="label-chip">
                          {k}={v}
                        </span>
                      ))}
                      {Object.entries(host.ungrantedLabels ?? {}).map(([k, v]) => (
                        <span
                          key={`u-${k}`}
                          class="label-chip ungranted"
                          title="declared by the host, not granted: it does not count"
                        >
                          {k}={v}
                        </span>
                      ))}
                      {host.unrestricted && (
                        <Pill tone="wait" title="its enrollment token grants any label it declares">
                          unrestricted
                        </Pill>
                      )}
                    </td>
                    <td>
                      {host.kind === "ssh" ? (
                        <span class="muted">ssh, on demand</span>
                      ) : host.connected ? (
                        <span class="tone-ok">● connected</span>
                      ) : (
                        <span class="tone-fail">○ offline</span>
                      )}
                      <span class="muted block" title={fullTime(host.lastSeenAt)}>
                        seen {timeAgo(host.lastSeenAt, now)}
                      </span>
                    </td>
                    <td>
                      {host.poolState === "depooled" ? (
                        <Pill tone="lock">depooled: {(host.depooledApps ?? []).join(", ")}</Pill>
                      ) : (
                        <span class="muted">pooled</span>
                      )}
                    </td>
                    <td class="runs">
                      {host.apps.length === 0 && placed.length === 0 && (
                        <span class="muted">nothing yet</span>
                      )}
                      {host.apps.map((inventory) => {
                        // Each layout with the environments placed there: a host may hold one app at several paths.
                        const envs = placed.filter(
                          (p) => p.app === inventory.app && p.path === (inventory.path ?? null),
                        );
                        return (
                          <div key={`${inventory.app} ${inventory.path ?? ""}`} class="run-line">
                            <span class="app">{inventory.app}</span>{" "}
                            {inventory.path && <span class="muted">at {inventory.path} </span>}
                            <code class="sha" title={inventory.current ?? undefined}>
                              {shortSha(inventory.current, 12)}
                            </code>
                            {envs.map((p) => (
                              <span key={p.env} class="env-state">
                                {" "}
                                <a href={href.environment(p.app, p.env)}>{p.env}</a>
                                {p.drifted ? (
                                  <Pill tone="wait" title={`should run ${p.desired}`}>
                                    drifted → {shortSha(p.desired, 12)}
                                  </Pill>
                                ) : p.desired ? (
                                  <Pill tone="ok">in sync</Pill>
                                ) : null}
                              </span>
                            ))}
                          </div>
                        );
                      })}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
