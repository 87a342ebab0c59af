import type { FastifyInstance, FastifyRequest } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import type { AppConfig } from "../../domain/app-config.js";
import { TurnoutError } from "../../domain/errors.js";
import type { HttpDeps } from "../deps.js";
import { deliver } from "../webhooks/deliver.js";
import { deploymentEvent } from "../webhooks/deployment-event.js";
import { headerOf, optionalToken, requiredToken } from "../webhooks/headers.js";
import {
  githubRepository,
  gitlabRepository,
  parsePayload,
  pushSummary,
  type RepositoryIdentity,
  rawBodyOf,
  tryParsePayload,
} from "../webhooks/payload.js";
import { acceptRawBodies } from "../webhooks/raw-body.js";
import { verifiedApps } from "../webhooks/select-apps.js";
import { hmacSha256Matches, sha256, tokenMatches } from "../webhooks/signatures.js";

const webhookQuery = z.strictObject({
  app: z
    .string()
    .optional()
    .describe("the app to notify; default: the apps tracking the payload's repository"),
});

const GITLAB_PUSH_EVENTS = new Set(["Push Hook", "Tag Push Hook"]);

/**
 * Webhooks from GitHub, GitLab and anything that can sign a request. They
 * carry no bearer token (the senders cannot send one): each request is
 * authenticated by the receiving app's webhook secret instead, so these
 * routes live in their own plugin context, outside the bearer hook. A hook
 * only makes Turnout fetch sooner; the poller stays the source of truth, so
 * nothing here waits for the fetch or depends on its result.
 */
export async function registerWebhookRoutes(app: FastifyInstance, deps: HttpDeps): Promise<void> {
  await app.register(
    async (scope) => {
      acceptRawBodies(scope);
      const r = scope.withTypeProvider<ZodTypeProvider>();
      // Signed raw bytes: the handlers read the body (see webhooks/raw-body.ts).
      const raw = { rawBody: true };
      const schema = (summary: string, description: string) => ({
        tags: ["webhooks"],
        summary,
        description,
        querystring: webhookQuery,
        // Authenticated by the app's webhook secret, not a bearer token.
        security: [],
      });

      r.post(
        "/github",
        {
          config: raw,
          schema: schema(
            "GitHub webhook (push, ping, deployment)",
            "Verified with X-Hub-Signature-256 (HMAC-SHA256 of the body with the app's webhook secret). " +
              "A push makes Turnout fetch the repository now: 202 {accepted}; a redelivery: 200 {duplicate}. " +
              "A deployment starts a deploy of its commit for apps with github.deploy_on_deployment_event: 202 {deploys}.",
          ),
        },
        async (request, reply) => {
          const { raw, contentType, apps } = verifiedHook(
            deps,
            request,
            githubRepository,
            "X-Hub-Signature-256",
            hmacOf,
          );
          const event = requiredToken(request, "X-GitHub-Event");
          if (event === "ping") return { ok: true, event: "ping" };
          if (event === "deployment") {
            const outcome = await deploymentEvent(deps, request.log, {
              id: requiredToken(request, "X-GitHub-Delivery"),
              apps,
              payload: parsePayload(raw, contentType),
            });
            return reply.code(outcome.status).send(outcome.body);
          }
          if (event !== "push") return reply.code(202).send({ ignored: event });
          const id = requiredToken(request, "X-GitHub-Delivery");
          const outcome = await deliver(deps, request.log, {
            provider: "github",
            id,
            event,
            apps,
            details: pushSummary(tryParsePayload(raw, contentType)),
          });
          return reply.code(outcome.status).send(outcome.body);
        },
      );

      r.post(
        "/gitlab",
        {
          config: raw,
          schema: schema(
            "GitLab webhook (push and tag push)",
            "Verified with X-Gitlab-Token (the app's webhook secret). " +
              "A push makes Turnout fetch the repository now: 202 {accepted}; a redelivery: 200 {duplicate}.",
          ),
        },
        async (request, reply) => {
          const { raw, contentType, apps } = verifiedHook(
            deps,
            request,
            gitlabRepository,
            "X-Gitlab-Token",
            () => tokenMatches,
          );
          const event = requiredToken(request, "X-Gitlab-Event");
          if (!GITLAB_PUSH_EVENTS.has(event)) return reply.code(202).send({ ignored: event });
          // The event UUID is shared by the hooks of one event (deliveries are scoped per app);
          // without either header, the body itself identifies a redelivery.
          const id =
            optionalToken(request, "X-Gitlab-Event-UUID") ??
            optionalToken(request, "Idempotency-Key") ??
            `sha256:${sha256(raw).toString("hex")}`;
          const outcome = await deliver(deps, request.log, {
            provider: "gitlab",
            id,
            event,
            apps,
            details: pushSummary(tryParsePayload(raw, contentType)),
          });
          return reply.code(outcome.status).send(outcome.body);
        },
      );

      r.post(
        "/generic",
        {
          config: raw,
          schema: schema(
            "Generic webhook: fetch an app's repositories now",
            "Requires ?app=NAME, X-Turnout-Signature: sha256=<hex HMAC-SHA256 of the body with the app's " +
              "webhook secret> and X-Turnout-Delivery (unique per delivery). The body may be any JSON or empty.",
          ),
        },
        async (request, reply) => {
          if (request.query.app === undefined) {
            throw new TurnoutError("E_BAD_REQUEST", "name the app: POST /api/v1/webhooks/generic?app=NAME");
          }
          const { apps } = verifiedHook(deps, request, () => ({ urls: [] }), "X-Turnout-Signature", hmacOf);
          const id = requiredToken(request, "X-Turnout-Delivery");
          const outcome = await deliver(deps, request.log, {
            provider: "generic",
            id,
            event: "generic",
            apps,
          });
          return reply.code(outcome.status).send(outcome.body);
        },
      );
    },
    { prefix: "/api/v1/webhooks" },
  );
}

/** HMAC-SHA256 of the exact bytes received, compared with the presented `sha256=<hex>`. */
const hmacOf = (raw: Buffer) => (secret: string, presented: string) =>
  hmacSha256Matches(secret, raw, presented);

/**
 * The common head of every webhook: the raw body, and the apps (named by
 * `?app=` or matched by the payload's repository) whose secret verifies the
 * request's credential header. Refuses (401, worded the same whatever the
 * reason) when none does.
 */
function verifiedHook(
  deps: HttpDeps,
  request: FastifyRequest & { query: { app?: string | undefined } },
  repositoryOf: (payload: unknown) => RepositoryIdentity,
  header: string,
  matchesFor: (raw: Buffer) => (secret: string, presented: string) => boolean,
): { raw: Buffer; contentType: string | undefined; apps: AppConfig[] } {
  const raw = rawBodyOf(request.body);
  const contentType = request.headers["content-type"];
  const apps = verifiedApps(deps.engine.config(), {
    requested: request.query.app,
    identify: () => repositoryOf(parsePayload(raw, contentType)),
    credential: { header, presented: headerOf(request, header), matches: matchesFor(raw) },
    explain: (reason) => request.log.warn(`webhook refused: ${reason}`),
  });
  return { raw, contentType, apps };
}
