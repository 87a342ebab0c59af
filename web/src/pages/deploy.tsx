import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import type {
  DeployHostJson,
  DeployJson,
  DeployResponseJson,
  PhaseEntry,
} from "../../../src/http/api-types.js";
import { authHeaders, enc, get, post } from "../api/client.js";
import { connection } from "../api/connection.js";
import { readEventStream } from "../api/event-stream.js";
import { CommitLine } from "../components/commit.js";
import { ErrorBox } from "../components/error-box.js";
import { LogView } from "../components/log-view.js";
import { hostTone, StatusBadge } from "../components/status.js";
import { durationBetween, formatDuration, fullTime, shortSha, timeAgo } from "../lib/format.js";
import { useLiveReload, useNow, useResource, useShortcut } from "../lib/hooks.js";
import { FilteredLog, LogBuffer } from "../lib/log-buffer.js";
import { mayDeploy, useMe } from "../lib/me.js";
import { href, navigate } from "../lib/router.js";

const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

/**
 * One deploy: its live log, phase timeline, actions (cancel, approve,
 * abort), for fleets the host grid with each host's own output, and links
 * back to the environment and to the other running deploys, all above the
 * log so nothing needs scrolling.
 */
export function DeployPage({ id }: { id: string }) {
  const me = useMe();
  const now = useNow(1000);
  const loaded = useResource(() => get<DeployResponseJson>(`/api/v1/deploys/${enc(id)}`), [id]);
  const [live, setLive] = useState<DeployJson | null>(null);
  const deploy =
    live && loaded.data && live.id === loaded.data.deploy.id
      ? pickNewer(live, loaded.data.deploy)
      : loaded.data?.deploy;
  const deployId = loaded.data?.deploy.id;
  const finished = deploy ? FINISHED.has(deploy.status) : false;
  useLiveReload((e) => e.type === "deploy" && e.deployId === deployId, loaded.reload, { throttleMs: 300 });

  const { buffer, version, streamError } = useLogStream(deployId, (d) => {
    setLive(d);
    loaded.reload();
  });

  const hosts = useResource(
    () =>
      deployId
        ? get<{ hosts: DeployHostJson[] }>(`/api/v1/deploys/${deployId}/hosts`).then((r) => r.hosts)
        : Promise.resolve([]),
    [deployId],
  );
  // Host steps move with the log: read them again as output arrives, and now and then.
  useEffect(() => {
    if (!deployId || finished) return;
    const timer = setInterval(hosts.reload, 1500);
    return () => clearInterval(timer);
  }, [deployId, finished]);
  // Output arriving means hosts may have moved: read them again, at most every half second,
  // the last change always included; and once more when the deploy ends.
  const hostTimer = useRef<ReturnType<typeof setTimeout> | null>(null);
  useEffect(() => {
    if (!deployId || hostTimer.current) return;
    hostTimer.current = setTimeout(() => {
      hostTimer.current = null;
      hosts.reload();
    }, 500);
  }, [version]);
  useEffect(() => {
    if (deployId && finished) hosts.reload();
  }, [deployId, finished]);
  useEffect(
    () => () => {
      if (hostTimer.current) clearTimeout(hostTimer.current);
    },
    [],
  );

  const running = useResource(async () => {
    const [r, w] = await Promise.all([
      get<{ deploys: DeployJson[] }>("/api/v1/deploys?status=running&limit=20"),
      get<{ deploys: DeployJson[] }>("/api/v1/deploys?status=waiting&limit=20"),
    ]);
    return [...r.deploys, ...w.deploys].sort((a, b) => b.id - a.id);
  }, []);
  useLiveReload((e) => e.type === "deploy", running.reload, { throttleMs: 1000 });

  const [selectedHost, setSelectedHost] = useState<string | null>(null);
  const hostLog = useMemo(
    () => (selectedHost ? new FilteredLog(buffer, (line) => line.startsWith(`[${selectedHost}] `)) : null),
    [selectedHost, buffer],
  );

  useShortcut(["e"], () => deploy && navigate(href.environment(deploy.app, deploy.env)), !!deploy);

  const [actionError, setActionError] = useState<unknown>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const act = async (name: string, path: string) => {
    setBusy(name);
    setActionError(null);
    try {
      const { deploy: changed } = await post<{ deploy: DeployJson }>(path);
      setLive(changed);
      loaded.reload();
    } catch (error) {
      setActionError(error);
    } finally {
      setBusy(null);
    }
  };

  if (loaded.error && !deploy)
    return (
      <div class="page">
        <ErrorBox error={loaded.error} />
      </div>
    );
  if (!deploy)
    return (
      <div class="page">
        <p class="muted">Loading…</p>
      </div>
    );

  const canAct = mayDeploy(me, deploy.app);
  const hostList = hosts.data ?? [];
  const others = (running.data ?? []).filter((d) => d.id !== deploy.id);
  const awaitingApproval = deploy.status === "waiting" && deploy.approval === "requested";
  return (
    <div class="page deploy-page">
      <div class="deploy-head">
        <nav class="crumbs" aria-label="Breadcrumb">
          <a href={href.overview()}>Overview</a> <span aria-hidden="true">›</span>{" "}
          <a href={href.environment(deploy.app, deploy.env)} data-action="to-environment">
            {deploy.app} / {deploy.env}
          </a>{" "}
          <span aria-hidden="true">›</span> <span>#{deploy.number}</span>
        </nav>
        <nav class="other-running" aria-label="Other running deploys">
          <span class="muted">Running:</span>
          {others.length === 0 ? (
            <span class="muted">no other</span>
          ) : (
            others.slice(0, 6).map((d) => (
              <a key={d.id} href={href.deploy(d.id)} class="running-link">
                {d.label}
              </a>
            ))
          )}
        </nav>
        <header class="page-head">
          <h1>
            {deploy.label} <StatusBadge status={deploy.status} label={statusLabel(deploy)} />
          </h1>
          <div class="actions">
            {canAct && awaitingApproval && (
              <>
                <button
                  type="button"
                  class="primary"
                  disabled={busy !== null}
                  onClick={() => act("approve", `/api/v1/deploys/${deploy.id}/approve`)}
                >
                  Approve the rest
                </button>
                <button
                  type="button"
                  class="danger"
                  disabled={busy !== null}
                  onClick={() => act("abort", `/api/v1/deploys/${deploy.id}/abort`)}
                >
                  Abort (switch the canary back)
                </button>
              </>
            )}
            {canAct && !finished && (
              <button
                type="button"
                class="danger"
                disabled={busy !== null || deploy.cancelRequested}
                onClick={() => act("cancel", `/api/v1/deploys/${deploy.id}/cancel`)}
                data-action="cancel"
              >
                {deploy.cancelRequested ? "Cancelling…" : "Cancel"}
              </button>
            )}
          </div>
        </header>
        <p class="deploy-meta">
          <CommitLine sha={deploy.sha} commit={deploy.commit} now={now} />
          <span class="muted">
            {deploy.rollbackOf !== null ? `rollback to #${deploy.rollbackOf}` : `ref ${deploy.ref}`} ·{" "}
            {deploy.trigger} by {deploy.user} ·{" "}
            <span title={fullTime(deploy.createdAt)}>{timeAgo(deploy.createdAt, now)}</span>
            {deploy.previousSha && deploy.previousSha !== deploy.sha && (
              <>
                {" "}
                · from <code class="sha">{shortSha(deploy.previousSha)}</code>
              </>
            )}
          </span>
        </p>
        {deploy.errorMessage && deploy.status !== "succeeded" && (
          <p class={`outcome tone-${deploy.status === "failed" ? "fail" : "muted"}`}>
            {deploy.errorCode ? <code>{deploy.errorCode}</code> : null} {deploy.errorMessage}
          </p>
        )}
        <ErrorBox error={actionError} />
        <Timeline deploy={deploy} phases={loaded.data?.phases ?? []} now={now} />
      </div>

      {hostList.length > 0 && (
        <section class="section hosts-grid-section" aria-labelledby="hosts-h">
          <h2 id="hosts-h">
            Hosts <span class="muted">{summarizeHosts(hostList)}</span>
          </h2>
          <div class="host-grid" data-testid="host-grid">
            {hostList.map((h) => (
              <button
                key={h.hostId}
                type="button"
                class={`host-tile tone-${hostTone(h.step)}${selectedHost === h.hostName ? " selected" : ""}`}
                aria-pressed={selectedHost === h.hostName}
                data-host={h.hostName}
                data-step={h.step}
                onClick={() => setSelectedHost(selectedHost === h.hostName ? null : h.hostName)}
                title={h.error ?? `${h.hostName}: ${h.step}`}
              >
                <span class="host-name">{h.hostName}</span>
                <span class="host-step">{h.step.replace("_", " ")}</span>
                {h.batch !== null && (
                  <span class="host-batch muted">{h.batch === 0 ? "canary" : `batch ${h.batch}`}</span>
                )}
              </button>
            ))}
          </div>
          {selectedHost && hostLog && (
            <div class="host-output" data-testid="host-output">
              <h3>
                Output of {selectedHost}{" "}
                <button type="button" class="small ghost" onClick={() => setSelectedHost(null)}>
                  Close
                </button>
              </h3>
              <LogView
                source={hostLog}
                version={version}
                label={`Output of ${selectedHost}`}
                streaming={!finished}
                height="220px"
              />
            </div>
          )}
        </section>
      )}

      <ErrorBox error={streamError} compact />
      <LogView
        source={buffer}
        version={version}
        label="Deploy log"
        streaming={!finished}
        downloadName={`${deploy.app}-${deploy.env}-${deploy.number}.log`}
        download={() => buffer.text()}
        shortcuts
      />
    </div>
  );
}

function pickNewer(a: DeployJson, b: DeployJson): DeployJson {
  // The stream's copy is newer while running; once finished, the read one has everything.
  if (FINISHED.has(b.status)) return b;
  if (FINISHED.has(a.status)) return a;
  return a.phase !== b.phase || a.status !== b.status ? a : b;
}

function statusLabel(deploy: DeployJson): string {
  if (deploy.status === "waiting" && deploy.approval === "requested") return "waiting for approval";
  if ((deploy.status === "running" || deploy.status === "waiting") && deploy.phase)
    return `${deploy.status} · ${deploy.phase}`;
  return deploy.status;
}

function summarizeHosts(hosts: DeployHostJson[]): string {
  const counts = new Map<string, number>();
  for (const h of hosts) counts.set(h.step, (counts.get(h.step) ?? 0) + 1);
  return [...counts].map(([step, n]) => `${n} ${step.replace("_", " ")}`).join(" · ");
}

/**
 * Follows the deploy's log: everything from offset 0, then live; after a
 * dropped connection it resumes from the last byte it has (the server's
 * event ids are byte offsets), with a growing delay.
 */
function useLogStream(deployId: number | undefined, onStatus: (deploy: DeployJson) => void) {
  const [buffer, setBuffer] = useState(() => new LogBuffer());
  const [version, setVersion] = useState(0);
  const [streamError, setStreamError] = useState<unknown>(null);
  const status = useRef(onStatus);
  status.current = onStatus;
  useEffect(() => {
    if (deployId === undefined) return;
    const fresh = new LogBuffer();
    setBuffer(fresh);
    setVersion(0);
    const controller = new AbortController();
    let offset = 0;
    let pendingFrame = 0;
    const bump = () => {
      if (pendingFrame) return;
      // Many chunks in one frame are drawn once.
      pendingFrame = requestAnimationFrame(() => {
        pendingFrame = 0;
        setVersion(fresh.version);
      });
    };
    void (async () => {
      let failures = 0;
      let ended = false;
      while (!controller.signal.aborted && !ended) {
        try {
          await readEventStream(`/api/v1/deploys/${deployId}/log?offset=${offset}`, {
            headers: authHeaders(),
            signal: controller.signal,
            onOpen: () => {
              failures = 0;
              setStreamError(null);
              connection.reached();
            },
            onEvent: (event) => {
              if (event.event === "log") {
                const { text } = JSON.parse(event.data) as { offset: number; text: string };
                fresh.append(text);
                if (event.id !== undefined) offset = Number(event.id);
                bump();
              } else if (event.event === "status" || event.event === "end") {
                const { deploy } = JSON.parse(event.data) as { deploy: DeployJson };
                status.current(deploy);
                if (event.event === "end") ended = true;
              }
            },
          });
        } catch (error) {
          if (controller.signal.aborted) return;
          if (error instanceof Response && error.status !== 503) {
            setStreamError(new Error(`The log could not be read (HTTP ${error.status}).`));
            return;
          }
          failures++;
        }
        if (ended || controller.signal.aborted) break;
        await new Promise((resolve) => setTimeout(resolve, Math.min(10_000, 300 * 2 ** failures)));
      }
    })();
    return () => {
      controller.abort();
      cancelAnimationFrame(pendingFrame);
    };
  }, [deployId]);
  return { buffer, version, streamError };
}

function Timeline({ deploy, phases, now }: { deploy: DeployJson; phases: PhaseEntry[]; now: number }) {
  const end = deploy.finishedAt ? Date.parse(deploy.finishedAt) : now;
  const created = Date.parse(deploy.createdAt);
  const segments: { name: string; start: number; stop: number; tone: string }[] = [];
  const firstStart = phases[0]
    ? Date.parse(phases[0].at)
    : deploy.startedAt
      ? Date.parse(deploy.startedAt)
      : end;
  segments.push({ name: "queued", start: created, stop: Math.max(created, firstStart), tone: "muted" });
  phases.forEach((phase, i) => {
    const start = Date.parse(phase.at);
    const next = phases[i + 1];
    const stop = next ? Date.parse(next.at) : end;
    segments.push({
      name: phase.phase,
      start,
      stop: Math.max(start, stop),
      tone: phase.status === "waiting" ? "wait" : "run",
    });
  });
  const total = Math.max(1, end - created);
  const finished = FINISHED.has(deploy.status);
  return (
    <section class="timeline" aria-label="Phases">
      <ol class="phases">
        {segments.map((s, i) => {
          const ms = s.stop - s.start;
          const isLast = i === segments.length - 1;
          const tone =
            isLast && finished
              ? deploy.status === "succeeded"
                ? "ok"
                : deploy.status === "failed"
                  ? "fail"
                  : "muted"
              : s.tone;
          return (
            <li
              key={`${s.name}-${i}`}
              class={`phase tone-${tone}${isLast && !finished ? " current" : ""}`}
              style={{ flexGrow: Math.max(0.04, ms / total) }}
              title={`${s.name}: ${formatDuration(ms)}`}
            >
              <span class="phase-bar" />
              <span class="phase-name">{s.name}</span>
              <span class="phase-time muted">{formatDuration(ms)}</span>
            </li>
          );
        })}
      </ol>
      <span class="timeline-total muted">
        {finished
          ? `${deploy.status} after ${formatDuration(durationBetween(deploy.createdAt, deploy.finishedAt))}`
          : `${formatDuration(durationBetween(deploy.createdAt, null, now))} so far`}
      </span>
    </section>
  );
}
