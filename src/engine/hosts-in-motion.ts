import type { Store } from "../store/store.js";

/**
 * How long after a fleet deploy ends its hosts' own reports may still be on
 * their way. An agent tells what `current` points at in an inventory report
 * that is written apart from the deploy's record (grouped with other hosts'
 * reports, HostStore's linger), so for a moment after a deploy succeeds the
 * environment's release is already the new one while a host's last stored
 * report still names the old one: a drift that is not one. Self-heal and the
 * drift watch wait this long before they believe a drift.
 */
export const HOST_REPORT_GRACE_MS = 3000;

/**
 * Why an environment's hosts may be moving on purpose now, or null when they
 * are not: a deploy is queued or running (hosts switch one by one), or one
 * ended less than HOST_REPORT_GRACE_MS ago (their reports may lag).
 */
export async function hostsInMotion(
  store: Store,
  app: string,
  env: string,
  now: Date,
): Promise<"deploying" | "settling" | null> {
  if ((await store.deploys.active(app, env)) || (await store.deploys.queued(app, env)).length > 0)
    return "deploying";
  const [latest] = await store.deploys.list({ app, env, limit: 1 });
  if (latest?.finishedAt && now.getTime() - Date.parse(latest.finishedAt) < HOST_REPORT_GRACE_MS)
    return "settling";
  return null;
}
