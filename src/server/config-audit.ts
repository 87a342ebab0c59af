import type { ConfigSnapshot } from "../domain/app-config.js";
import { scheduleActor } from "../domain/audit.js";
import type { Store } from "../store/store.js";
import { appChanges } from "./server-log.js";

/**
 * A new configuration became active: one audit event, server-wide (no app),
 * saying which apps came, went and changed. Whoever made it active (the poll
 * timer, a push to the configuration repository), the server applied it on
 * its own: source "schedule".
 */
export async function recordConfigReload(
  store: Store,
  previous: ConfigSnapshot,
  next: ConfigSnapshot,
): Promise<void> {
  const { added, removed, changed } = appChanges(previous.apps, next.apps);
  await store.audit.record({
    actor: scheduleActor("turnout (config)"),
    action: "config.reload",
    app: null,
    env: null,
    target: next.revision,
    details: {
      from: previous.revision,
      to: next.revision,
      added,
      removed,
      changed,
      problems: next.problems.length,
    },
  });
}
