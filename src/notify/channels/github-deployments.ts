import type { Octokit } from "@octokit/rest";
import { z } from "zod";
import type { AppConfig } from "../../domain/app-config.js";
import type { Deploy } from "../../domain/deploy.js";
import { TurnoutError } from "../../domain/errors.js";
import { GITHUB_DEPLOYMENT_PARAM, TURNOUT_PAYLOAD_KEY } from "../../domain/github-deployment.js";
import type { NotificationEvent, NotifyEventKind } from "../../domain/notification-event.js";
import type { Channel, ChannelDelivery, ChannelFactory, ChannelResult, ChannelState } from "../channel.js";

/**
 * GitHub Deployments (docs.github.com/rest/deployments): each Turnout deploy
 * of a subscribed app becomes a GitHub deployment of its commit to the
 * environment of the same name, and its statuses follow the deploy:
 * queued → in_progress → success | failure | error | inactive (cancelled),
 * with the deploy's page as log URL. A deploy that a GitHub `deployment`
 * event started (webhooks) reports on that deployment instead of creating
 * one. Success marks the environment's earlier deployments inactive
 * (GitHub's auto_inactive).
 *
 * The API base and the token are the channel's (server settings), never a
 * manifest's: a manifest could otherwise send the server's token anywhere.
 * The repository is the app's (`github.repository`, or its github.com URL).
 */
export interface GithubDeploymentsDeps {
  /** The app as configured now (undefined: gone). */
  app(name: string): AppConfig | undefined;
  /** A deploy by id (for the GitHub deployment a `deployment` event gave it). */
  deploy(id: number): Promise<Deploy>;
}

const optionsSchema = z
  .object({
    token: z.string().min(1),
    api_url: z.string().url().optional(),
  })
  .strict();

type GithubState = "queued" | "in_progress" | "success" | "failure" | "error" | "inactive";

const STATES: Partial<Record<NotifyEventKind, { state: GithubState; description: string }>> = {
  "deploy.queued": { state: "queued", description: "queued" },
  "deploy.started": { state: "in_progress", description: "deploying" },
  "deploy.waiting_for_approval": {
    state: "in_progress",
    description: "waiting for approval after the canary",
  },
  "deploy.succeeded": { state: "success", description: "deployed" },
  "deploy.failed": { state: "failure", description: "failed" },
  "deploy.rolled_back": { state: "failure", description: "failed; hosts switched back" },
  "deploy.interrupted": { state: "error", description: "interrupted: the server running it stopped" },
  // Never live: GitHub has no "cancelled"; inactive says it is not what runs.
  "deploy.cancelled": { state: "inactive", description: "cancelled" },
};

export function githubDeploymentsFactory(deps: GithubDeploymentsDeps): ChannelFactory {
  return {
    type: "github-deployments",
    create(name, options) {
      const parsed = optionsSchema.safeParse(options);
      if (!parsed.success) {
        const issue = parsed.error.issues[0]!;
        // The path names the field; the value (a token) is never shown.
        throw new TurnoutError(
          "E_CONFIG",
          `notify channel ${name}: ${issue.path.join(".") || "(options)"}: ${issue.code === "unrecognized_keys" ? issue.message : "missing or invalid (use token_env: VARIABLE)"}`,
        );
      }
      return new GithubDeploymentsChannel(name, parsed.data.token, parsed.data.api_url, deps);
    },
  };
}

export class GithubDeploymentsChannel implements Channel {
  readonly type = "github-deployments";
  // @octokit/rest (some 9 MB and 50 ms to load) is loaded at the first send, not when
  // `turnout server` starts: start-up and idle memory pay nothing for a channel not configured.
  private client: Promise<Octokit> | undefined;

  constructor(
    readonly name: string,
    private readonly token: string,
    private readonly apiUrl: string | undefined,
    private readonly deps: GithubDeploymentsDeps,
  ) {}

  private octokit(): Promise<Octokit> {
    this.client ??= import("@octokit/rest").then(
      ({ Octokit }) =>
        new Octokit({
          auth: this.token,
          baseUrl: (this.apiUrl ?? "https://api.github.com").replace(/\/+$/, ""),
          userAgent: "turnout",
          // Octokit logs warnings (deprecations) to the console by default; the dispatcher reports what matters.
          log: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} },
        }),
    );
    this.client.catch(() => {
      this.client = undefined; // the next send tries again
    });
    return this.client;
  }

  async send(delivery: ChannelDelivery, signal: AbortSignal): Promise<ChannelResult> {
    const { event } = delivery;
    const mapped = STATES[event.kind];
    if (!mapped || !event.deploy) return { outcome: "delivered", detail: "nothing to report on GitHub" };
    const app = this.deps.app(event.app);
    const repository = app?.github?.repository;
    if (!repository) {
      return { outcome: "give_up", reason: `app ${event.app} has no GitHub repository (github.repository)` };
    }
    const [owner, repo] = repository.split("/") as [string, string];
    try {
      const state = await this.deployment(delivery, owner, repo, signal);
      const logUrl = delivery.links.deploy;
      await (await this.octokit()).rest.repos.createDeploymentStatus({
        owner,
        repo,
        deployment_id: state.deploymentId,
        state: mapped.state,
        description: describe(event, mapped.description),
        ...(logUrl ? { log_url: logUrl, environment_url: delivery.links.environment ?? logUrl } : {}),
        ...(mapped.state === "success" ? { auto_inactive: true } : {}),
        request: { signal },
      });
      return {
        outcome: "delivered",
        state: { deploymentId: state.deploymentId, repository, ...(state.linked ? { linked: true } : {}) },
        detail: `deployment ${state.deploymentId}: ${mapped.state}`,
      };
    } catch (error) {
      return failure(error);
    }
  }

  /** The GitHub deployment of the event's deploy: remembered, given by a `deployment` event, found again, or new. */
  private async deployment(
    delivery: ChannelDelivery,
    owner: string,
    repo: string,
    signal: AbortSignal,
  ): Promise<{ deploymentId: number; linked?: boolean }> {
    const remembered = rememberedId(delivery.state);
    if (remembered !== undefined) return { deploymentId: remembered };
    const summary = delivery.event.deploy!;
    if (summary.trigger === "webhook") {
      const deploy = await this.deps.deploy(summary.id);
      const given = Number(deploy.params[GITHUB_DEPLOYMENT_PARAM]);
      if (Number.isSafeInteger(given) && given > 0) return { deploymentId: given, linked: true };
    }
    // A retry may follow a create whose answer was lost: look for it before making another.
    if (delivery.attempt > 1) {
      const { data } = await (await this.octokit()).rest.repos.listDeployments({
        owner,
        repo,
        sha: summary.sha,
        environment: delivery.event.env,
        per_page: 100,
        request: { signal },
      });
      const mine = data.find((d) => payloadDeploy(d.payload) === summary.id);
      if (mine) return { deploymentId: mine.id };
    }
    const created = await (await this.octokit()).rest.repos.createDeployment({
      owner,
      repo,
      ref: summary.sha,
      environment: delivery.event.env,
      // Turnout has its own gates (locks, checks, approvals): GitHub must neither merge nor wait.
      auto_merge: false,
      required_contexts: [],
      description: `${summary.label} by ${summary.user}`.slice(0, 140),
      // Marks it as Turnout's, so the `deployment` event it causes does not start a deploy again.
      payload: { [TURNOUT_PAYLOAD_KEY]: { deploy: summary.id, label: summary.label } },
      production_environment: delivery.event.env === "production",
      transient_environment: false,
      request: { signal },
    });
    const id = (created.data as { id?: unknown }).id;
    if (typeof id !== "number")
      throw new GiveUp("GitHub did not create the deployment (no id in its answer)");
    return { deploymentId: id };
  }
}

class GiveUp extends Error {}

function rememberedId(state: ChannelState | null): number | undefined {
  const id = state?.["deploymentId"];
  return typeof id === "number" && Number.isSafeInteger(id) ? id : undefined;
}

function payloadDeploy(payload: unknown): number | undefined {
  if (typeof payload !== "object" || payload === null) return undefined;
  const mark = (payload as Record<string, unknown>)[TURNOUT_PAYLOAD_KEY];
  if (typeof mark !== "object" || mark === null) return undefined;
  const deploy = (mark as Record<string, unknown>)["deploy"];
  return typeof deploy === "number" ? deploy : undefined;
}

function describe(event: NotificationEvent, what: string): string {
  const why = event.deploy?.errorMessage ? `: ${event.deploy.errorMessage}` : "";
  // GitHub refuses descriptions over 140 characters.
  const text = `${event.deploy!.label} ${what}${event.kind === "deploy.succeeded" ? "" : why}`;
  return text.length > 140 ? `${text.slice(0, 139)}…` : text;
}

/** Octokit's errors → the dispatcher's outcomes: bad credentials or requests never heal, the rest may. */
function failure(error: unknown): ChannelResult {
  if (error instanceof GiveUp) return { outcome: "give_up", reason: error.message };
  const status = (error as { status?: unknown }).status;
  const headers = ((error as { response?: { headers?: Record<string, string | undefined> } }).response
    ?.headers ?? {}) as Record<string, string | undefined>;
  if (typeof status !== "number" || status === 0) {
    return { outcome: "retry", reason: `GitHub unreachable: ${(error as Error).message}` };
  }
  const limited = status === 429 || (status === 403 && headers["x-ratelimit-remaining"] === "0");
  if (limited || status === 408 || status >= 500) {
    const after = Number(headers["retry-after"]);
    const reset = Number(headers["x-ratelimit-reset"]) * 1000 - Date.now();
    const retryAfterMs = Number.isFinite(after) && after >= 0 ? after * 1000 : reset > 0 ? reset : undefined;
    return {
      outcome: "retry",
      reason: `GitHub answered HTTP ${status}`,
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    };
  }
  return { outcome: "give_up", reason: `GitHub refused it: HTTP ${status}` };
}
