import type { FastifyBaseLogger } from "fastify";
import type { ArtifactStore } from "../artifacts/artifact-store.js";
import type { PrefetchGrants } from "../artifacts/prefetch-grants.js";
import type { ServerSettings } from "../config/settings.js";
import type { SlackSettings } from "../config/slack-settings.js";
import type { EngineApi } from "../engine/api.js";
import type { GarbageCollectorApi } from "../engine/garbage-collector.js";
import type { SharedHostedRepos } from "../git/shared-hosted-repos.js";
import type { AgentHub } from "../providers/fleet/agent-hub.js";
import type { Store } from "../store/store.js";
import type { RequestObserver } from "./request-log.js";
import type { MetricsText } from "./routes/metrics.js";

export type HttpLimit =
  | "headersTimeoutMs"
  | "bodyTimeoutMs"
  | "uploadMinRate"
  | "keepAliveTimeoutMs"
  | "maxConnections";

/** What the HTTP layer needs from the rest of the server: it owns none of it. */
export interface HttpDeps {
  engine: EngineApi;
  store: Store;
  /** Request limits; the timeouts and the connection cap default to DEFAULT_HTTP_LIMITS. */
  settings: Pick<ServerSettings, "bodyLimit"> & Partial<Pick<ServerSettings, HttpLimit>>;
  version: string;
  /**
   * The server's logger. Default: none, so nothing (least of all an
   * Authorization header) is logged unless the composition asks for it.
   */
  logger?: FastifyBaseLogger;
  /** Agent connections (fleet hosts); without it the agent endpoint answers nothing and hosts come from the store. */
  agents?: AgentHub;
  /** Content-addressed artifacts (uploads, blob downloads by agents). */
  artifacts?: ArtifactStore;
  /** Blobs offered to hosts while their release is still being built (fleet prefetch); absent: none. */
  prefetchGrants?: PrefetchGrants;
  /** Retention's garbage collector (`POST /api/v1/gc`); without it that route answers 503. */
  gc?: GarbageCollectorApi;
  /** GET /metrics (Prometheus); absent: no such route. */
  metrics?: MetricsText;
  /** Told of every answered request (the server's metrics). */
  observeRequest?: RequestObserver;
  /** The bundled agent (dist/agent/turnout-agent.cjs) to serve at /turnout-agent.cjs; absent: no such route. */
  agentBundle?: string;
  /** The built web UI (dist/web) to serve at `/`; absent: no UI routes. */
  webRoot?: string;
  /** Slack slash commands (`/api/v1/integrations/slack/commands`); absent: that route answers 404. */
  slack?: SlackSettings;
  /** Hosted repositories shared through PostgreSQL; absent (SQLite): each server's copy is the only one. */
  sharedHosted?: SharedHostedRepos;
}
