import { type Deploy, deployLabel, isFinished } from "../../domain/deploy.js";
import type { EngineApi } from "../../engine/api.js";
import type { Store } from "../../store/store.js";

/**
 * Posts a chat-started deploy's progress to the command's response_url
 * (Slack's delayed responses: JSON POSTs, at most 5 per command, for 30
 * minutes). It listens to the engine's live events of this process and reads
 * the deploy again every few seconds, so a deploy that another server
 * process runs is followed too. Nothing here is awaited by the request that
 * started it; every post is best effort and says so in the server log.
 */
export interface ProgressOptions {
  engine: EngineApi;
  store: Store;
  /** How long a deploy is followed (Slack's response_url expires after 30 minutes). */
  followMs: number;
  /** How often the deploy is read again from the store. */
  pollMs?: number;
  report(message: string): void;
}

/** `text` is Slack mrkdwn: escaped (escapeSlack) by whoever made it. */
export interface SlackMessage {
  response_type: "in_channel" | "ephemeral";
  text: string;
  replace_original?: boolean;
}

/** Slack accepts 5 posts to one response_url; the last one is kept for the outcome. */
const MAX_POSTS = 5;

type Milestone = "running" | "checks" | "approval" | "finished";

export class SlackProgress {
  private readonly follows = new Set<Follow>();

  constructor(private readonly options: ProgressOptions) {}

  /** Posts `message` to a response_url now (outside any follow): e.g. the outcome of a slow command. */
  post(responseUrl: string, message: SlackMessage): Promise<void> {
    return postJson(responseUrl, message).catch((error: Error) =>
      this.options.report(`slack: posting to response_url failed: ${error.message}`),
    );
  }

  /** Follows `deploy` until it finishes (or followMs passes), posting each new milestone; `used` posts are spent. */
  follow(deploy: Deploy, responseUrl: string, used = 0): void {
    const follow = new Follow(this.options, deploy, responseUrl, used, () => this.follows.delete(follow));
    this.follows.add(follow);
    follow.start();
  }

  /** Stops following everything (the server is closing). */
  close(): void {
    for (const follow of [...this.follows]) follow.stop();
  }

  /** Deploys being followed now (tests). */
  get size(): number {
    return this.follows.size;
  }
}

class Follow {
  private readonly seen = new Set<Milestone>();
  private posts: number;
  private chain: Promise<void> = Promise.resolve();
  private unsubscribe: (() => void) | undefined;
  private poll: NodeJS.Timeout | undefined;
  private deadline: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly options: ProgressOptions,
    private readonly deploy: Deploy,
    private readonly responseUrl: string,
    used: number,
    private readonly done: () => void,
  ) {
    this.posts = used;
  }

  start(): void {
    this.unsubscribe = this.options.engine.subscribe(this.deploy.id, (event) => {
      if (event.type === "status") this.saw(event.deploy);
    });
    this.poll = setInterval(() => {
      this.options.store.deploys.get(this.deploy.id).then(
        (deploy) => this.saw(deploy),
        () => undefined,
      );
    }, this.options.pollMs ?? 3_000);
    this.poll.unref();
    this.deadline = setTimeout(() => this.stop(), this.options.followMs);
    this.deadline.unref();
    // It may have moved on between the request and the subscription.
    this.options.store.deploys.get(this.deploy.id).then(
      (deploy) => this.saw(deploy),
      () => undefined,
    );
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.unsubscribe?.();
    clearInterval(this.poll);
    clearTimeout(this.deadline);
    this.done();
  }

  private saw(deploy: Deploy): void {
    if (this.stopped) return;
    const milestone = milestoneOf(deploy);
    if (milestone === undefined || this.seen.has(milestone)) return;
    // A deploy seen finished needs no word about running any more.
    if (this.seen.has("finished")) return;
    this.seen.add(milestone);
    const final = milestone === "finished";
    if (final) this.stop();
    // Keep the last post for the outcome.
    if (!final && this.posts >= MAX_POSTS - 1) return;
    if (this.posts >= MAX_POSTS) return;
    this.posts += 1;
    const message: SlackMessage = {
      response_type: "in_channel",
      text: escapeSlack(progressText(deploy, milestone)),
    };
    this.chain = this.chain.then(() =>
      postJson(this.responseUrl, message).catch((error: Error) =>
        this.options.report(`slack: progress of deploy ${deploy.id} not posted: ${error.message}`),
      ),
    );
  }
}

function milestoneOf(deploy: Deploy): Milestone | undefined {
  if (isFinished(deploy.status)) return "finished";
  if (deploy.status === "running") return "running";
  if (deploy.status === "waiting") return deploy.phase === "approval" ? "approval" : "checks";
  return undefined;
}

export function progressText(deploy: Deploy, milestone: Milestone): string {
  const label = deployLabel(deploy);
  switch (milestone) {
    case "running":
      return `${label} started (${deploy.sha.slice(0, 7)})`;
    case "checks":
      return `${label} is waiting (${deploy.phase ?? "gate"})`;
    case "approval":
      return `${label} is waiting for approval after its canary: /turnout approve ${deploy.id}`;
    case "finished": {
      const why = deploy.errorMessage ? `: ${deploy.errorMessage}` : "";
      const code = deploy.errorCode ? ` (${deploy.errorCode})` : "";
      return `${label} ${deploy.status}${code}${why}`;
    }
  }
}

async function postJson(url: string, message: SlackMessage): Promise<void> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(message),
    signal: AbortSignal.timeout(10_000),
    redirect: "error",
  });
  await response.body?.cancel();
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
}

/**
 * Slack reads `<…>` as links and mentions (`<!channel>`) and `&` as the start
 * of an entity: text from users (lock reasons, commit subjects, error
 * messages) is escaped so it shows as written and pings nobody.
 */
export function escapeSlack(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}
