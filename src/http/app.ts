import Fastify, { type FastifyInstance } from "fastify";
import { serializerCompiler, validatorCompiler } from "fastify-type-provider-zod";
import { TurnoutError } from "../domain/errors.js";
import { authenticator } from "./auth.js";
import type { HttpDeps } from "./deps.js";
import { installErrorHandlers } from "./error-mapping.js";
import { registerOpenApi } from "./openapi.js";
import { registerAgentConnect } from "./routes/agent-connect.js";
import { registerAppRoutes } from "./routes/apps.js";
import { registerArtifactRoutes } from "./routes/artifacts.js";
import { registerConfigRoutes } from "./routes/config.js";
import { registerDeployLogRoutes } from "./routes/deploy-log.js";
import { registerDeployRoutes } from "./routes/deploys.js";
import { registerEnvironmentDeployRoutes } from "./routes/environment-deploys.js";
import { registerEnvironmentInsightRoutes } from "./routes/environment-insights.js";
import { registerEventRoutes } from "./routes/events.js";
import { registerFleetRoutes } from "./routes/fleet.js";
import { gitPushRoutes } from "./routes/git-push.js";
import { registerHealthRoutes } from "./routes/health.js";
import { registerHostHistoryRoutes } from "./routes/host-history.js";
import { registerHostRoutes } from "./routes/hosts.js";
import { registerLockRoutes } from "./routes/locks.js";
import { registerOverviewRoutes } from "./routes/overview.js";
import { registerPendingRoutes } from "./routes/pending.js";
import { registerLoginExchange, registerSessionRoutes } from "./routes/session.js";
import { registerTokenRoutes } from "./routes/tokens.js";
import { registerWebhookRoutes } from "./routes/webhooks.js";
import { installShutdownGate } from "./shutdown-gate.js";
import { DEFAULT_SSE_TIMING, type LogStream, type SseTiming } from "./sse.js";
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

/** Builds the HTTP API (not listening: the caller listens, and may add routes such as the web UI first). */
export async function buildHttpApp(deps: HttpDeps, options: HttpOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    ...(deps.logger ? { loggerInstance: deps.logger } : { logger: false }),
    bodyLimit: deps.settings.bodyLimit,
    routerOptions: { ignoreTrailingSlash: true },
  }) as unknown as FastifyInstance;
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  installErrorHandlers(app);
  installJsonParser(app);
  // Before any route, so that it covers every one of them.
  installShutdownGate(app, () => deps.engine.shuttingDown());

  await registerOpenApi(app, deps.version);
  registerHealthRoutes(app, deps.version);
  // Authenticated by signatures, not bearer tokens: outside the bearer hook, with raw bodies.
  await registerWebhookRoutes(app, deps);
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
      api.addHook("onRequest", authenticator(deps.store));
      registerAppRoutes(api, deps);
      registerEnvironmentDeployRoutes(api, deps);
      registerLockRoutes(api, deps);
      registerPendingRoutes(api, deps);
      registerFleetRoutes(api, deps);
      registerDeployRoutes(api, deps);
      registerDeployLogRoutes(api, deps, { timing, streams });
      registerTokenRoutes(api, deps);
      registerConfigRoutes(api, deps);
      registerArtifactRoutes(api, deps);
      registerHostRoutes(api, deps);
      // What the web dashboard reads (docs/ui.md).
      registerSessionRoutes(api, deps);
      registerOverviewRoutes(api, deps);
      registerEnvironmentInsightRoutes(api, deps);
      registerHostHistoryRoutes(api, deps);
      registerEventRoutes(api, deps, { timing });
    },
    { prefix: "/api/v1" },
  );
  if (deps.webRoot) registerWebUi(app, deps.webRoot);
  await app.register(gitPushRoutes(deps));
  return app;
}
