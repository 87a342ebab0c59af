import { useMemo, useState } from "preact/hooks";
import type {
  DeployJson,
  DeployReadiness,
  EnvironmentStats,
  EnvSummaryJson,
  PendingComponentJson,
  ReleaseJson,
} from "../../../src/http/api-types.js";
import { del, enc, get, post, put } from "../api/client.js";
import { DeployBars, DurationBars, FailureRateBars } from "../components/charts.js";
import { CommitLine } from "../components/commit.js";
import { ErrorBox } from "../components/error-box.js";
import { RollbackDialog } from "../components/rollback-dialog.js";
import { ChecksIcon, StatusBadge } from "../components/status.js";
import {
  durationBetween,
  formatDuration,
  fullTime,
  percent,
  plural,
  shortSha,
  timeAgo,
} from "../lib/format.js";
import { useDebounced, useLiveReload, useNow, useResource } from "../lib/hooks.js";
import { mayDeploy, useMe } from "../lib/me.js";
import { href, navigate } from "../lib/router.js";

type EnvDetail = EnvSummaryJson & { queue: DeployJson[]; recent: DeployJson[] };

/**
 * One environment: what runs, the lock, what the next deploy would ship
 * (with checks), a deploy button that says why it is blocked, history with
 * rollback (previewed before it is confirmed), and charts of the last 30 days.
 */
export function EnvironmentPage({ app, env }: { app: string; env: string }) {
  const base = `/api/v1/apps/${enc(app)}/environments/${enc(env)}`;
  const me = useMe();
  const canDeploy = mayDeploy(me, app);
  const now = useNow(5000);
  const detail = useResource(() => get<{ environment: EnvDetail }>(base).then((r) => r.environment), [base]);
  const releases = useResource(
    () => get<{ releases: ReleaseJson[] }>(`${base}/releases?limit=50`).then((r) => r.releases),
    [base],
  );
  const [pageSize, setPageSize] = useState(20);
  const history = useResource(
    () =>
      get<{ deploys: DeployJson[] }>(
        `/api/v1/deploys?app=${enc(app)}&env=${enc(env)}&limit=${pageSize}`,
      ).then((r) => r.deploys),
    [app, env, pageSize],
  );
  const pending = useResource(
    () => get<{ components: PendingComponentJson[] }>(`${base}/pending`).then((r) => r.components),
    [base],
  );
  const stats = useResource(
    () => get<{ stats: EnvironmentStats }>(`${base}/stats?days=30`).then((r) => r.stats),
    [base],
  );
  const [rollbackTo, setRollbackTo] = useState<DeployJson | null>(null);

  const mine = (e: { type: string; app?: string; env?: string }) =>
    e.type !== "hosts" && e.app === app && e.env === env;
  useLiveReload(mine, () => {
    detail.reload();
    history.reload();
    releases.reload();
  });
  useLiveReload(
    (e) => mine(e) && (e.type === "undeployed" || (e.type === "deploy" && e.status === "succeeded")),
    pending.reload,
    {
      throttleMs: 1000,
      everyMs: 60_000,
    },
  );
  useLiveReload(
    (e) => mine(e) && e.type === "deploy" && ["succeeded", "failed", "cancelled"].includes(e.status),
    stats.reload,
    {
      throttleMs: 2000,
      everyMs: 300_000,
    },
  );

  const d = detail.data;
  const live = d?.current ? releases.data?.find((r) => r.id === d.current!.releaseId) : undefined;
  const pendingCount = pending.data?.reduce((n, c) => n + c.commits.length, 0) ?? 0;

  return (
    <div class="page environment">
      <nav class="crumbs" aria-label="Breadcrumb">
        <a href={href.overview()}>Overview</a> <span aria-hidden="true">›</span>{" "}
        <a href={`${href.overview()}?q=${enc(app)}`}>{app}</a> <span aria-hidden="true">›</span>{" "}
        <span>{env}</span>
      </nav>
      <header class="page-head">
        <h1>
          {app} <span class="muted">/</span> {env}
        </h1>
        {d && (
          <span class="head-meta muted">
            {d.provider} · branch <code>{d.branch}</code>
            {d.autoDeploy ? " · deploys new commits by itself" : ""}
          </span>
        )}
      </header>
      <ErrorBox error={detail.error} />

      {d && (
        <div class="cards">
          <section class="card live" aria-labelledby="live-h">
            <h2 id="live-h">Live</h2>
            {d.current ? (
              <>
                <CommitLine sha={d.current.sha} commit={live?.deploy.commit} now={now} />
                <p class="muted">
                  <a href={href.deploy(d.current.deployId)}>#{d.current.deployNumber}</a>
                  {live ? ` by ${live.deploy.user} (${live.deploy.trigger})` : ""} · live since{" "}
                  <span title={fullTime(d.current.createdAt)}>{timeAgo(d.current.createdAt, now)}</span>
                </p>
                {d.unreviewed && (
                  // An emergency change nobody reviewed runs here until a normal deploy replaces it.
                  <p class="tone-fail" role="note" data-testid="unreviewed">
                    <strong>Unreviewed change</strong>
                    {d.unreviewed.deployNumber !== undefined
                      ? ` (emergency #${d.unreviewed.deployNumber}`
                      : " (emergency"}
                    {d.unreviewed.by ? ` by ${d.unreviewed.by})` : ")"}: {d.unreviewed.reason} ·{" "}
                    {d.unreviewed.base ? `base ${shortSha(d.unreviewed.base)}, ` : ""}
                    {plural(d.unreviewed.files.length, "file")} changed
                  </p>
                )}
              </>
            ) : (
              <p class="muted">Never deployed.</p>
            )}
          </section>
          <LockCard detail={d} canDeploy={canDeploy} base={base} onChange={detail.reload} />
          <section class="card" aria-labelledby="active-h">
            <h2 id="active-h">Running</h2>
            {d.active ? (
              <p>
                <a href={href.deploy(d.active.id)} class="strong">
                  #{d.active.number}
                </a>{" "}
                <StatusBadge status={d.active.status} />{" "}
                {d.active.phase && <span class="muted">{d.active.phase}</span>}{" "}
                <span class="muted">
                  by {d.active.user} ·{" "}
                  {formatDuration(durationBetween(d.active.startedAt ?? d.active.createdAt, null, now))}
                </span>
              </p>
            ) : (
              <p class="muted">Nothing running.</p>
            )}
            {d.queue.length > 0 && (
              <p class="muted">
                Queued:{" "}
                {d.queue.map((q) => (
                  <a key={q.id} href={href.deploy(q.id)} class="queued-link">
                    #{q.number}
                  </a>
                ))}
              </p>
            )}
          </section>
        </div>
      )}

      {d && canDeploy && (
        <DeployPanel
          base={base}
          branch={d.branch}
          pending={pending.data}
          onDeployed={(id) => navigate(href.deploy(id))}
        />
      )}
      {d && !canDeploy && (
        <p class="notice read-only" data-testid="read-only">
          Your token ({me.role}) can look but not deploy, lock or roll back {app}.
        </p>
      )}

      <section class="section" aria-labelledby="pending-h">
        <h2 id="pending-h">
          {pending.data
            ? pendingCount === 0
              ? "Up to date"
              : `${plural(pendingCount, "commit")} would ship`
            : "What the next deploy would ship"}
        </h2>
        <ErrorBox error={pending.error} compact />
        {!pending.data && !pending.error && <p class="muted">Reading the repository…</p>}
        {pending.data?.map((component) => (
          <div key={component.component} class="pending">
            {pending.data!.length > 1 && (
              <h3>
                {component.component} <span class="muted">({component.branch})</span>
              </h3>
            )}
            {component.commits.length === 0 ? (
              <p class="muted">
                {component.branch} at <code class="sha">{shortSha(component.to)}</code> is live.
              </p>
            ) : (
              <ul class="commits">
                {component.commits.map((c) => (
                  <li key={c.sha}>
                    <ChecksIcon state={c.checks} />
                    <CommitLine sha={c.sha} commit={c} now={now} />
                    {c.locked && (
                      <span class="commit-locked" data-testid="commit-locked" title={c.locked.reason}>
                        {" "}
                        locked by {c.locked.lockedBy}: {c.locked.reason}
                      </span>
                    )}
                  </li>
                ))}
                {component.truncated && <li class="muted">…and more</li>}
              </ul>
            )}
          </div>
        ))}
      </section>

      <section class="section" aria-labelledby="stats-h">
        <h2 id="stats-h">Last 30 days</h2>
        <ErrorBox error={stats.error} compact />
        <StatsCharts stats={stats.data} />
      </section>

      <section class="section" aria-labelledby="history-h">
        <h2 id="history-h">History</h2>
        <ErrorBox error={history.error} compact />
        <div class="table-wrap">
          <table class="history">
            <thead>
              <tr>
                <th scope="col">Deploy</th>
                <th scope="col">Outcome</th>
                <th scope="col">Commit</th>
                <th scope="col">Who</th>
                <th scope="col">When</th>
                <th scope="col">Took</th>
                {canDeploy && (
                  <th scope="col" class="actions-col">
                    <span class="sr-only">Actions</span>
                  </th>
                )}
              </tr>
            </thead>
            <tbody>
              {history.data?.map((deploy) => {
                const isLive = d?.current?.deployId === deploy.id;
                const canRollBackHere =
                  canDeploy &&
                  deploy.status === "succeeded" &&
                  deploy.releaseId !== null &&
                  !isLive &&
                  deploy.slot === null;
                return (
                  <tr key={deploy.id} data-number={deploy.number}>
                    <td>
                      <a href={href.deploy(deploy.id)}>#{deploy.number}</a>
                      {isLive && <span class="live-tag">live</span>}
                    </td>
                    <td>
                      <StatusBadge status={deploy.status} />
                      {deploy.rollbackOf !== null && (
                        <span class="muted"> rollback to #{deploy.rollbackOf}</span>
                      )}
                    </td>
                    <td class="commit-cell">
                      <span class="range">
                        {deploy.previousSha && deploy.previousSha !== deploy.sha ? (
                          <>
                            <code class="sha muted">{shortSha(deploy.previousSha)}</code>→
                          </>
                        ) : null}
                      </span>
                      <CommitLine sha={deploy.sha} commit={deploy.commit} showAuthor={false} />
                    </td>
                    <td>
                      {deploy.user} <span class="muted">({deploy.trigger})</span>
                    </td>
                    <td title={fullTime(deploy.createdAt)}>{timeAgo(deploy.createdAt, now)}</td>
                    <td>{formatDuration(durationBetween(deploy.startedAt, deploy.finishedAt, now))}</td>
                    {canDeploy && (
                      <td class="actions-col">
                        {canRollBackHere && (
                          <button
                            type="button"
                            class="small"
                            onClick={() => setRollbackTo(deploy)}
                            data-action="rollback"
                          >
                            Roll back to this
                          </button>
                        )}
                      </td>
                    )}
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
        {history.data && history.data.length === 0 && <p class="muted">No deploys yet.</p>}
        {history.data && history.data.length >= pageSize && (
          <button type="button" class="small" onClick={() => setPageSize(pageSize + 50)}>
            Show more
          </button>
        )}
      </section>

      {rollbackTo && (
        <RollbackDialog
          base={base}
          to={rollbackTo}
          onClose={() => setRollbackTo(null)}
          onStarted={(id) => navigate(href.deploy(id))}
        />
      )}
    </div>
  );
}

function LockCard({
  detail,
  canDeploy,
  base,
  onChange,
}: {
  detail: EnvDetail;
  canDeploy: boolean;
  base: string;
  onChange: () => void;
}) {
  const [reason, setReason] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const act = async (what: () => Promise<unknown>) => {
    setBusy(true);
    setError(null);
    try {
      await what();
      setReason("");
      onChange();
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class={`card lock-card${detail.lock ? " locked" : ""}`} aria-labelledby="lock-h">
      <h2 id="lock-h">Lock</h2>
      {detail.lock ? (
        <>
          <p>
            <strong>Locked</strong> by {detail.lock.lockedBy}{" "}
            <span class="muted">{timeAgo(detail.lock.createdAt)}</span>
          </p>
          <p class="lock-reason">{detail.lock.reason}</p>
          {canDeploy && (
            <button type="button" disabled={busy} onClick={() => act(() => del(`${base}/lock`))}>
              Unlock
            </button>
          )}
        </>
      ) : (
        <>
          <p class="muted">Open: deploys go through.</p>
          {canDeploy && (
            <form
              class="inline-form"
              onSubmit={(e) => {
                e.preventDefault();
                if (reason.trim()) void act(() => put(`${base}/lock`, { reason: reason.trim() }));
              }}
            >
              <input
                type="text"
                placeholder="Why? (required)"
                aria-label="Lock reason"
                maxLength={500}
                value={reason}
                onInput={(e) => setReason((e.target as HTMLInputElement).value)}
              />
              <button type="submit" disabled={busy || !reason.trim()}>
                Lock
              </button>
            </form>
          )}
        </>
      )}
      <ErrorBox error={error} compact />
    </section>
  );
}

function DeployPanel({
  base,
  branch,
  pending,
  onDeployed,
}: {
  base: string;
  branch: string;
  pending: PendingComponentJson[] | undefined;
  onDeployed: (id: number) => void;
}) {
  const me = useMe();
  const [ref, setRef] = useState("");
  const wanted = useDebounced(ref.trim(), 300);
  const readiness = useResource(
    () =>
      get<{ readiness: DeployReadiness }>(
        `${base}/deploy-readiness${wanted ? `?ref=${enc(wanted)}` : ""}`,
      ).then((r) => r.readiness),
    [base, wanted],
  );
  useLiveReload((e) => e.type === "lock" || e.type === "deploy", readiness.reload, { throttleMs: 500 });
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const suggestions = useMemo(() => {
    const list = [branch];
    for (const c of pending?.[0]?.commits.slice(0, 15) ?? []) list.push(c.sha.slice(0, 12));
    return list;
  }, [branch, pending]);

  const r = readiness.data;
  const blocking = r?.reasons.filter((x) => x.blocking) ?? [];
  const onlyForcible = blocking.length > 0 && blocking.every((x) => x.forcible);
  // A deploy window or a locked commit a deployer may force past (with a reason); a lock takes an admin.
  const canForce =
    onlyForcible &&
    (me.role === "admin" || (me.role === "deployer" && blocking.every((x) => DEPLOYER_FORCIBLE.has(x.code))));

  const deploy = async (force: boolean, reason?: string) => {
    setBusy(true);
    setError(null);
    try {
      const { deploy } = await post<{ deploy: DeployJson }>(`${base}/deploys`, {
        ...(ref.trim() ? { ref: ref.trim() } : {}),
        ...(force ? { force: true } : {}),
        ...(reason ? { reason } : {}),
        trigger: "ui",
      });
      onDeployed(deploy.id);
    } catch (failure) {
      setError(failure);
      readiness.reload();
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="section deploy-panel" aria-labelledby="deploy-h">
      <h2 id="deploy-h">Deploy</h2>
      <form
        class="deploy-form"
        onSubmit={(e) => {
          e.preventDefault();
          if (r?.ready) void deploy(false);
        }}
      >
        <label for="ref">Ref</label>
        <input
          id="ref"
          list="ref-suggestions"
          placeholder={`${branch} (default)`}
          value={ref}
          spellcheck={false}
          autoComplete="off"
          onInput={(e) => setRef((e.target as HTMLInputElement).value)}
        />
        <datalist id="ref-suggestions">
          {suggestions.map((s) => (
            <option key={s} value={s} />
          ))}
        </datalist>
        <span class="resolved muted">
          {r?.sha ? (
            <>
              → <code class="sha">{shortSha(r.sha)}</code>
            </>
          ) : null}
        </span>
        <button
          type="submit"
          class="primary"
          disabled={busy || !r || !r.ready}
          data-action="deploy"
          aria-describedby="deploy-reasons"
        >
          {busy ? "Deploying…" : `Deploy ${ref.trim() || branch}`}
        </button>
        {canForce && (
          <button
            type="button"
            class="danger"
            disabled={busy}
            onClick={() => {
              const reason = prompt(
                `Deploy anyway? ${blocking.map((b) => b.message).join(" ")}\n\nWhy (recorded in the audit log):`,
              );
              if (reason?.trim()) void deploy(true, reason.trim());
            }}
          >
            Deploy anyway (force)
          </button>
        )}
      </form>
      <div id="deploy-reasons" class="reasons" aria-live="polite" data-testid="deploy-reasons">
        <ErrorBox error={readiness.error} compact />
        {r?.reasons.map((reason) => (
          <p
            key={reason.code}
            class={`reason ${reason.blocking ? "blocking" : "info"}`}
            data-code={reason.code}
          >
            <strong>{reason.blocking ? "Blocked:" : "Note:"}</strong> {reason.message}
          </p>
        ))}
        {r?.ready && r.reasons.length === 0 && <p class="reason ok">Ready: nothing stands in the way.</p>}
      </div>
      <ErrorBox error={error} />
    </section>
  );
}

function StatsCharts({ stats }: { stats: EnvironmentStats | undefined }) {
  if (!stats) return <div class="charts placeholder" />;
  const restore = stats.restore;
  return (
    <div class="charts">
      <figure class="chart-card">
        <figcaption>
          <span>Deploys</span>
          <strong>{stats.deploys}</strong>
          <span class="muted">{(stats.deploys / stats.days.length).toFixed(1)}/day</span>
        </figcaption>
        <DeployBars days={stats.days} />
      </figure>
      <figure class="chart-card">
        <figcaption>
          <span>Duration</span>
          <strong>{formatDuration(stats.medianDurationMs)}</strong>
          <span class="muted">median</span>
        </figcaption>
        <DurationBars days={stats.days} />
      </figure>
      <figure class="chart-card">
        <figcaption>
          <span>Failure rate</span>
          <strong>{percent(stats.failureRate)}</strong>
          <span class="muted">
            {stats.failed} of {stats.succeeded + stats.failed}
          </span>
        </figcaption>
        <FailureRateBars days={stats.days} />
      </figure>
      <figure class="chart-card">
        <figcaption>
          <span>Time to restore</span>
          <strong>{formatDuration(restore.meanMs)}</strong>
          <span class="muted">mean</span>
        </figcaption>
        <p class="restore">
          {restore.incidents === 0
            ? "No failed deploy in 30 days."
            : `${plural(restore.incidents, "failure run")}, ${restore.restored} restored by a later deploy.`}
          {restore.openSince && <span class="tone-fail"> Failing since {timeAgo(restore.openSince)}.</span>}
        </p>
      </figure>
    </div>
  );
}

/** Blocking readiness reasons a deployer (not only an admin) may force past, giving a reason. */
const DEPLOYER_FORCIBLE = new Set(["outside_window", "commit_locked"]);
