/**
 * Notification events: what the engine tells the outside world (Slack,
 * outgoing webhooks, IRC, GitHub Deployments) about deploys, locks and
 * fleets. Pure shaping: which state change is which event, what an event
 * carries, and which subscriptions take it. No I/O.
 *
 * The event JSON is the documented payload of outgoing webhooks
 * (docs/integrations.md): fields are only ever added, never renamed.
 */
import { type Deploy, deployLabel, type FailureCode, type Trigger } from "./deploy.js";
import type { Lock } from "./lock.js";

export const NOTIFY_EVENT_KINDS = [
  "deploy.queued",
  "deploy.started",
  "deploy.waiting_for_approval",
  "deploy.succeeded",
  "deploy.failed",
  "deploy.cancelled",
  "deploy.interrupted",
  "deploy.rolled_back",
  "lock.locked",
  "lock.unlocked",
  "drift.detected",
  "drift.healed",
  "host.depooled",
] as const;
export type NotifyEventKind = (typeof NOTIFY_EVENT_KINDS)[number];

/** What a subscription may name: a kind, a family (`deploy.*`) or everything (`*`). */
export function isEventPattern(text: string): boolean {
  if (text === "*") return true;
  if (text.endsWith(".*")) return NOTIFY_EVENT_KINDS.some((k) => k.startsWith(text.slice(0, -1)));
  return (NOTIFY_EVENT_KINDS as readonly string[]).includes(text);
}

export function matchesPattern(pattern: string, kind: NotifyEventKind): boolean {
  if (pattern === "*") return true;
  if (pattern.endsWith(".*")) return kind.startsWith(pattern.slice(0, -1));
  return pattern === kind;
}

/** The deploy as a notification shows it: who, what, which commits, how it ended. */
export interface DeploySummary {
  id: number;
  number: number;
  /** `app/env#n` */
  label: string;
  status: Deploy["status"];
  phase: string | null;
  trigger: Trigger;
  user: string;
  ref: string;
  sha: string;
  /** The primary component's commit the environment ran before (null: first deploy). */
  previousSha: string | null;
  components: Record<string, string>;
  /** For a rollback: the deploy number whose release it brings back. */
  rollbackOf: number | null;
  errorCode: FailureCode | null;
  errorMessage: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

export interface NotificationEvent {
  /** Unique per event (every channel's delivery of one event carries the same id). */
  id: number;
  kind: NotifyEventKind;
  /** When it happened (ISO 8601). */
  at: string;
  app: string;
  env: string;
  /** Who did it (a user or token name; `turnout` for the server's own doing). */
  actor: string;
  /** Deploy events (and drift.healed: the reconcile deploy). */
  deploy?: DeploySummary;
  /** lock.* events. */
  lock?: { by: string; reason: string; lockedAt: string };
  /** drift.* and host.depooled events: the hosts concerned. */
  hosts?: string[];
  /** A one-line description, for people. */
  text: string;
}

/** An event before the outbox numbered it. */
export type NewNotificationEvent = Omit<NotificationEvent, "id">;

/**
 * Events of one subject are delivered in order, one after the other, on each
 * channel: a deploy's events, an environment's locks, its drift.
 */
export function eventSubject(event: Pick<NotificationEvent, "kind" | "app" | "env" | "deploy">): string {
  if (event.deploy) return `deploy:${event.deploy.id}`;
  const family = event.kind.split(".")[0];
  return `${family}:${event.app}/${event.env}`;
}

export function summarizeDeploy(deploy: Deploy): DeploySummary {
  return {
    id: deploy.id,
    number: deploy.number,
    label: deployLabel(deploy),
    status: deploy.status,
    phase: deploy.phase,
    trigger: deploy.trigger,
    user: deploy.user,
    ref: deploy.ref,
    sha: deploy.sha,
    previousSha: deploy.previousSha,
    components: deploy.components,
    rollbackOf: deploy.rollbackOf,
    errorCode: deploy.errorCode,
    errorMessage: deploy.errorMessage,
    createdAt: deploy.createdAt,
    startedAt: deploy.startedAt,
    finishedAt: deploy.finishedAt,
  };
}

/**
 * Which event a deploy's new state is, if any. `failed` splits by its code:
 * `interrupted` (the server running it stopped) and `rolled_back` (a fleet
 * deploy switched its hosts back) are events of their own. A `waiting`
 * deploy is an event only when it waits for a person's approval.
 */
export function deployEventKind(
  deploy: Pick<Deploy, "status" | "phase" | "errorCode">,
): NotifyEventKind | undefined {
  switch (deploy.status) {
    case "queued":
      return "deploy.queued";
    case "running":
      return "deploy.started";
    case "waiting":
      return deploy.phase === "approval" ? "deploy.waiting_for_approval" : undefined;
    case "succeeded":
      return "deploy.succeeded";
    case "cancelled":
      return "deploy.cancelled";
    case "failed":
      if (deploy.errorCode === "interrupted") return "deploy.interrupted";
      if (deploy.errorCode === "E_ROLLED_BACK") return "deploy.rolled_back";
      return "deploy.failed";
  }
}

/** `actor`: who made the change (default: the deploy's user when queued, the server otherwise). */
export function deployEvent(
  deploy: Deploy,
  kind: NotifyEventKind,
  at: string,
  actor?: string,
): NewNotificationEvent {
  const summary = summarizeDeploy(deploy);
  const by = actor ?? (kind === "deploy.queued" ? deploy.user : "turnout");
  return {
    kind,
    at,
    app: deploy.app,
    env: deploy.env,
    actor: by,
    deploy: summary,
    text: describeDeploy(kind, summary),
  };
}

export function lockEvent(
  lock: Lock,
  kind: "lock.locked" | "lock.unlocked",
  actor: string,
  at: string,
): NewNotificationEvent {
  const target = `${lock.app}/${lock.env}`;
  return {
    kind,
    at,
    app: lock.app,
    env: lock.env,
    actor,
    lock: { by: lock.lockedBy, reason: lock.reason, lockedAt: lock.createdAt },
    text:
      kind === "lock.locked"
        ? `${target} locked by ${actor}: ${lock.reason}`
        : `${target} unlocked by ${actor}`,
  };
}

export function fleetEvent(
  kind: "drift.detected" | "drift.healed" | "host.depooled",
  app: string,
  env: string,
  hosts: string[],
  at: string,
  deploy?: Deploy,
): NewNotificationEvent {
  const list = hosts.join(", ");
  const text =
    kind === "drift.detected"
      ? `${app}/${env}: ${hosts.length} host(s) drifted from the environment's release: ${list}`
      : kind === "drift.healed"
        ? `${app}/${env}: drift healed${deploy ? ` by ${deployLabel(deploy)}` : ""}${list ? ` (${list})` : ""}`
        : `${app}/${env}: host(s) depooled: ${list}`;
  return {
    kind,
    at,
    app,
    env,
    actor: "turnout",
    hosts,
    ...(deploy ? { deploy: summarizeDeploy(deploy) } : {}),
    text,
  };
}

const VERBS: Partial<Record<NotifyEventKind, string>> = {
  "deploy.queued": "queued",
  "deploy.started": "started",
  "deploy.waiting_for_approval": "is waiting for approval",
  "deploy.succeeded": "succeeded",
  "deploy.failed": "failed",
  "deploy.cancelled": "was cancelled",
  "deploy.interrupted": "was interrupted",
  "deploy.rolled_back": "failed and was rolled back",
};

/** `shop/production#42 (abc1234 by alice) succeeded`, with the reason when it did not work out. */
export function describeDeploy(kind: NotifyEventKind, deploy: DeploySummary): string {
  const range = deploy.previousSha ? `${short(deploy.previousSha)}..${short(deploy.sha)}` : short(deploy.sha);
  const what = deploy.rollbackOf !== null ? ` (rollback to #${deploy.rollbackOf})` : "";
  const why = deploy.errorMessage && kind !== "deploy.succeeded" ? `: ${deploy.errorMessage}` : "";
  return `${deploy.label}${what} ${range} by ${deploy.user} ${VERBS[kind] ?? kind}${why}`;
}

export function short(sha: string): string {
  return sha.slice(0, 7);
}
