import { useState } from "preact/hooks";
import type { DeployJson, RollbackPreview } from "../../../src/http/api-types.js";
import { get, post } from "../api/client.js";
import { timeAgo } from "../lib/format.js";
import { useResource } from "../lib/hooks.js";
import { CommitLine } from "./commit.js";
import { Dialog } from "./dialog.js";
import { ErrorBox } from "./error-box.js";

/**
 * A rollback, previewed before it is confirmed: the release it brings back,
 * every release it undoes, and the commits that leave with them.
 */
export function RollbackDialog({
  base,
  to,
  onClose,
  onStarted,
}: {
  base: string;
  to: DeployJson;
  onClose: () => void;
  onStarted: (deployId: number) => void;
}) {
  const preview = useResource(
    () =>
      get<{ preview: RollbackPreview }>(`${base}/rollback-preview?to=${to.number}`).then((r) => r.preview),
    [base, to.number],
  );
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const p = preview.data;
  const commitCount = p?.commits.reduce((n, c) => n + c.commits.length, 0) ?? 0;

  const confirm = async () => {
    setBusy(true);
    setError(null);
    try {
      const { deploy } = await post<{ deploy: DeployJson }>(`${base}/rollback`, { to: to.number });
      onStarted(deploy.id);
    } catch (failure) {
      setError(failure);
      setBusy(false);
    }
  };

  return (
    <Dialog title={`Roll back to #${to.number}?`} onClose={onClose} wide>
      <ErrorBox error={preview.error} />
      {!p && !preview.error && <p class="muted">Working out what this undoes…</p>}
      {p && (
        <div class="rollback-preview" data-testid="rollback-preview">
          <p>
            Brings back <strong>#{p.target.deployNumber}</strong>:{" "}
            <CommitLine sha={p.target.sha} commit={p.target.commit} />
          </p>
          <h3>
            Undoes {p.undone.length === 1 ? "1 release" : `${p.undone.length} releases`}
            {commitCount > 0 ? ` and ${commitCount} commit${commitCount === 1 ? "" : "s"}` : ""}
          </h3>
          <ul class="undone" data-testid="undone-releases">
            {p.undone.map((r) => (
              <li key={r.releaseId} data-number={r.deployNumber}>
                <strong>#{r.deployNumber}</strong>{" "}
                <CommitLine sha={r.sha} commit={r.commit} showAuthor={false} />{" "}
                <span class="muted">
                  by {r.user} ({r.trigger}), {timeAgo(r.createdAt)}
                </span>
              </li>
            ))}
          </ul>
          {p.commits.map((component) => (
            <details key={component.component} open={component.commits.length <= 8}>
              <summary>
                Commits leaving{p.commits.length > 1 ? ` ${component.component}` : ""}:{" "}
                {component.commits.length}
                {component.truncated ? "+" : ""}
              </summary>
              <ul class="commits">
                {component.commits.map((c) => (
                  <li key={c.sha}>
                    <CommitLine sha={c.sha} commit={c} />
                  </li>
                ))}
              </ul>
            </details>
          ))}
          <p class="muted">
            The rollback is a deploy of its own: it waits for the queue and respects the lock.
          </p>
        </div>
      )}
      <ErrorBox error={error} />
      <div class="dialog-actions">
        <button type="button" onClick={onClose}>
          Keep what runs
        </button>
        <button
          type="button"
          class="danger"
          disabled={!p || busy}
          onClick={confirm}
          data-action="confirm-rollback"
        >
          {busy ? "Rolling back…" : `Roll back to #${to.number}`}
        </button>
      </div>
    </Dialog>
  );
}
