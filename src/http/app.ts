import Fastify, { type FastifyInstance, LogController } from "fastify";
import { serializerCompiler, validatorCompiler } from "fastify-type-provider-zod";
import { DEFAULT_HTTP_LIMITS } from "../config/settings.js";
import { TurnoutError } from "../domain/errors.js";
import { AllowedMethods } from "./allowed-methods.js";
import { authenticator } from "./auth.js";
import type { HttpDeps } from "./deps.js";
import {
  clientErrorHandler,
  frameworkErrorHandler,
  installErrorHandlers,
  MAX_PARAM_LENGTH,
} from "./error-mapping.js";
import { registerSlackCommandRoutes } from "./integrations/slack-commands.js";
import { registerOpenApi } from "./openapi.js";
import { installRequestLog, requestId } from "./request-log.js";
import { installBodyTimeouts } from "./request-timeouts.js";
import { registerAgentConnect } from "./routes/agent-connect.js";
import { registerAgentDownload } from "./routes/agent-download.js";
import { registerAppRoutes } from "./routes/apps.js";
import { registerArtifactRoutes } from "./routes/artifacts.js";
import { registerAuditRoutes } from "./routes/audit.js";
import { registerCommitLockRoutes } from "./routes/commit-locks.js";
import { registerConfigRoutes } from "./routes/config.js";
import { registerDeliveryRoutes } from "./routes/deliveries.js";
import { registerDeployLogRoutes } from "./routes/deploy-log.js";
import { registerDeployRoutes } from "./routes/deploys.js";
import { registerEnvironmentDeployRoutes } from "./routes/environment-deploys.js";
import { registerEnvironmentInsightRoutes } from "./routes/environment-insights.js";
import { registerEventRoutes } from "./routes/events.js";
import { registerFleetRoutes } from "./routes/fleet.js";
import { registerGcRoutes } from "./routes/gc.js";
import { gitPushRoutes } from "./routes/git-push.js";
import { registerHealthRoutes } from "./routes/health.js";
import { registerHostHistoryRoutes } from "./routes/host-history.js";
import { registerHostRoutes } from "./routes/hosts.js";
import { registerLockRoutes } from "./routes/locks.js";
import { registerMetricsRoute } from "./routes/metrics.js";
import { registerOverviewRoutes } from "./routes/overview.js";
import { registerPendingRoutes } from "./routes/pending.js";
import { registerPromotionRoutes } from "./routes/promotion.js";
import { registerLoginExchange, registerSessionRoutes } from "./routes/session.js";
import { registerTokenRoutes } from "./routes/tokens.js";
import { registerWebhookRoutes } from "./routes/webhooks.js";
import { installShutdownGate } from "./shutdown-gate.js";
import { DEFAULT_SSE_TIMING, type LogStream, type SseTiming } from "./sse.js";
import { installStrictRequests } from "./strict-requests.js";
import { registerWebUi } from "./web-ui.js";

export type { HttpDeps } from "./deps.js";

export interface HttpOptions {
  /** Shorter SSE poll/heartbeat intervals, for tests. */
  sseTiming?: Partial<SseTiming>;
}

/**
 * The only body parser: JSON (anything else is 415). An empty body counts as
 * no body (clients commonly send `Content-Type: application/json` on a bare
 * POST) and a malformed one is a Turnout E_BAD_REQUEST. `__proto__` keys
 * are refused outright rather than trusted to be harmless further down.
 */
function installJsonParser(app: FastifyInstance): void {
  // JSON only: a text/plain body would otherwise reach the schemas as a string.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_request, body, done) => {
    const text = typeof body === "string" ? body : body.toString("utf8");
    if (text.trim() === "") {
      done(null, undefined);
      return;
    }
    try {
      done(
        null,
        JSON.parse(text, (key, value) => {
          if (key === "__proto__") throw new SyntaxError("'__proto__' is not allowed as a key");
          return value;
        }),
      );
    } catch (error) {
      done(new TurnoutError("E_BAD_REQUEST", `malformed JSON body: ${(error as Error).message}`), undefined);
    }
  });
}

/**
 * Connections beyond the cap are closed by Node as they arrive, before any
 * byte is read: no answer (answering would cost what the cap saves). The
 * operator hears of it, at most once a minute.
 */
function capConnections(app: FastifyInstance, max: number): void {
  app.server.maxConnections = max;
  let told = 0;
  app.server.on("drop", () => {
    if (Date.now() - told < 60_000) return;
    told = Date.now();
    app.log.warn(`connection cap reached (${max} open connections): new connections are closed`);
  });
}

/** Builds the HTTP API (not listening: the caller listens, and may add routes such as the web UI first). */
export async function buildHttpApp(deps: HttpDeps, options: HttpOptions = {}): Promise<FastifyInstance> {
  const limits = { ...DEFAULT_HTTP_LIMITS, ...deps.settings };
  const app = Fastify({
    ...(deps.logger ? { loggerInstance: deps.logger } : { logger: false }),
    // Request ids: the caller's X-Request-Id when well-formed, else a new one (request-log.ts).
    genReqId: requestId,
    requestIdHeader: false,
    // One line per request, written by request-log.ts (Fastify's two would log URLs with their queries).
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: "reqId" }),
    bodyLimit: deps.settings.bodyLimit,
    // Stalled clients: headers by Node (checked often enough to be close to
    // the limit), bodies by request-timeouts.ts (Node's requestTimeout would
    // cut long uploads too), idle keep-alive connections by Node.
    http: {
      headersTimeout: limits.headersTimeoutMs,
      connectionsCheckingInterval: Math.max(100, Math.min(1000, limits.headersTimeoutMs / 4)),
    },
    requestTimeout: 0,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // Long enough that an over-long name is refused by the name rule (422
    // E_INVALID_NAME) rather than by the router; longer still is 414.
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: MAX_PARAM_LENGTH },
    // Every error in Turnout's format, the framework's and Node's included.
    frameworkErrors: frameworkErrorHandler,
    clientErrorHandler,
    return503OnClosing: false,
  }) as unknown as FastifyInstance;
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  capConnections(app, limits.maxConnections);
  // First, so that every answer (refusals included) carries its request id.
  installRequestLog(app, deps.observeRequest);
  installBodyTimeouts(app, { bodyTimeoutMs: limits.bodyTimeoutMs, minRate: limits.uploadMinRate });
  const allowed = new AllowedMethods();
  allowed.install(app);
  installErrorHandlers(app, allowed);
  installJsonParser(app);
  // Before any route: every route registered after this is checked and guarded.
  installStrictRequests(app);
  // Before any route, so that it covers every one of them.
  installShutdownGate(app, () => deps.engine.shuttingDown());

  await registerOpenApi(app, deps.version);
  registerHealthRoutes(app, deps.version);
  if (deps.agentBundle) registerAgentDownload(app, deps.agentBundle);
  await registerMetricsRoute(app, deps);
  // Authenticated by signatures, not bearer tokens: outside the bearer hook, with raw bodies.
  await registerWebhookRoutes(app, deps);
  // Authenticated by Slack's signature, with raw bodies too.
  await registerSlackCommandRoutes(app, deps);
  // Authenticated on the upgrade request, before any socket exists.
  registerAgentConnect(app, deps);
  // The sign-in code is the credential: no bearer token yet.
  registerLoginExchange(app, deps);

  const timing: SseTiming = { ...DEFAULT_SSE_TIMING, ...options.sseTiming };
  const streams = new Set<LogStream>();
  // Live log streams never end by themselves while a deploy runs; without
  // this, closing the server would wait for every follower to hang up.
  app.addHook("preClose", async () => {
    for (const stream of [...streams]) stream.close();
  });

  await app.register(
    async (api) => {
      api.addHook(
        "onRequest",
        authenticator(deps.store, deps.agents && ((hash) => deps.agents!.stagingHost(hash))),
      );
      registerAppRoutes(api, deps);
      registerEnvironmentDeployRoutes(api, deps);
      registerLockRoutes(api, deps);
      registerCommitLockRoutes(api, deps);
      registerPendingRoutes(api, deps);
      registerPromotionRoutes(api, deps);
      registerFleetRoutes(api, deps);
      registerDeployRoutes(api, deps);
      registerDeployLogRoutes(api, deps, { timing, streams });
      registerTokenRoutes(api, deps);
      registerConfigRoutes(api, deps);
      registerAuditRoutes(api, deps);
      registerArtifactRoutes(api, deps);
      registerHostRoutes(api, deps);
      registerGcRoutes(api, deps);
      // What the web dashboard reads (docs/ui.md).
      registerSessionRoutes(api, deps);
      registerOverviewRoutes(api, deps);
      registerEnvironmentInsightRoutes(api, deps);
      registerHostHistoryRoutes(api, deps);
      registerEventRoutes(api, deps, { timing });
      registerDeliveryRoutes(api, deps);
    },
    { prefix: "/api/v1" },
  );
  if (deps.webRoot) registerWebUi(app, deps.webRoot);
  await app.register(gitPushRoutes(deps));
  return app;
}
