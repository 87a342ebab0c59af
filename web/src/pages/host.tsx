import type { HostHistoryEntry, HostJson } from "../../../src/http/api-types.js";
import { enc, get } from "../api/client.js";
import { CommitLine } from "../components/commit.js";
import { ErrorBox } from "../components/error-box.js";
import { hostTone, Pill, StatusBadge } from "../components/status.js";
import { fullTime, shortSha, timeAgo } from "../lib/format.js";
import { useLiveReload, useNow, useResource } from "../lib/hooks.js";
import { href } from "../lib/router.js";

/** One host: what it holds per app (current, slots, releases) and every fleet deploy that reached it. */
export function HostPage({ name }: { name: string }) {
  const now = useNow(5000);
  const host = useResource(
    () => get<{ host: HostJson }>(`/api/v1/hosts/${enc(name)}`).then((r) => r.host),
    [name],
  );
  const history = useResource(
    () =>
      get<{ history: HostHistoryEntry[] }>(`/api/v1/hosts/${enc(name)}/history?limit=100`).then(
        (r) => r.history,
      ),
    [name],
  );
  useLiveReload(
    (e) => e.type === "hosts" || e.type === "deploy",
    () => {
      host.reload();
      history.reload();
    },
    { throttleMs: 1000 },
  );
  const h = host.data;
  return (
    <div class="page host">
      <nav class="crumbs" aria-label="Breadcrumb">
        <a href={href.hosts()}>Hosts</a> <span aria-hidden="true">›</span> <span>{name}</span>
      </nav>
      <header class="page-head">
        <h1>{name}</h1>
        {h && (
          <span class="head-meta">
            {h.kind === "agent" ? (
              h.connected ? (
                <span class="tone-ok">● connected</span>
              ) : (
                <span class="tone-fail">○ offline</span>
              )
            ) : (
              "ssh"
            )}{" "}
            <span class="muted">· seen {timeAgo(h.lastSeenAt, now)}</span>{" "}
            {h.poolState === "depooled" ? (
              <Pill tone="lock">depooled: {(h.depooledApps ?? []).join(", ")}</Pill>
            ) : (
              <span class="muted">· pooled</span>
            )}
          </span>
        )}
      </header>
      <ErrorBox error={host.error} />
      {h && (
        <div class="cards">
          <section class="card">
            <h2>Labels</h2>
            {Object.keys(h.labels).length === 0 ? (
              <p class="muted">none</p>
            ) : (
              <p>
                {Object.entries(h.labels).map(([k, v]) => (
                  <span key={k} class="label-chip">
                    {k}={v}
                  </span>
                ))}
              </p>
            )}
            {h.address && <p class="muted">address {h.address}</p>}
          </section>
          {h.apps.map((inventory) => (
            <section key={inventory.app} class="card">
              <h2>{inventory.app}</h2>
              <p>
                current <code class="sha">{shortSha(inventory.current, 16)}</code>
              </p>
              {Object.keys(inventory.slots).length > 0 && (
                <p class="muted">
                  slots:{" "}
                  {Object.entries(inventory.slots)
                    .map(([slot, release]) => `${slot} → ${shortSha(release, 12)}`)
                    .join(", ")}
                </p>
              )}
              <p class="muted">{inventory.releases.length} release(s) kept</p>
            </section>
          ))}
        </div>
      )}
      <section class="section" aria-labelledby="host-history-h">
        <h2 id="host-history-h">History</h2>
        <ErrorBox error={history.error} compact />
        {history.data && history.data.length === 0 && (
          <p class="muted">No fleet deploy has reached this host yet.</p>
        )}
        {history.data && history.data.length > 0 && (
          <div class="table-wrap">
            <table class="history" data-testid="host-history">
              <thead>
                <tr>
                  <th scope="col">Deploy</th>
                  <th scope="col">Release</th>
                  <th scope="col">On this host</th>
                  <th scope="col">Commit</th>
                  <th scope="col">Who</th>
                  <th scope="col">When</th>
                </tr>
              </thead>
              <tbody>
                {history.data.map((entry) => (
                  <tr key={entry.deployId}>
                    <td>
                      <a href={href.deploy(entry.deployId)}>
                        {entry.app}/{entry.env}#{entry.number}
                      </a>{" "}
                      <StatusBadge status={entry.status} />
                    </td>
                    <td>
                      <code class="sha">{shortSha(entry.releaseId, 12)}</code>
                      {entry.previousRelease && (
                        <span class="muted"> (was {shortSha(entry.previousRelease, 12)})</span>
                      )}
                    </td>
                    <td>
                      <Pill tone={hostTone(entry.step)}>{entry.step.replace("_", " ")}</Pill>
                      {entry.error && <span class="tone-fail block">{entry.error}</span>}
                    </td>
                    <td class="commit-cell">
                      <CommitLine sha={entry.sha} commit={entry.commit} showAuthor={false} />
                    </td>
                    <td>
                      {entry.user} <span class="muted">({entry.trigger})</span>
                    </td>
                    <td title={fullTime(entry.updatedAt)}>{timeAgo(entry.updatedAt, now)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </div>
  );
}
