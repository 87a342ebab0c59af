import type { FastifyBaseLogger } from "fastify";
import type { ServerSettings } from "../config/settings.js";
import type { EngineApi } from "../engine/api.js";
import type { Store } from "../store/store.js";

/** What the HTTP layer needs from the rest of the server: it owns none of it. */
export interface HttpDeps {
  engine: EngineApi;
  store: Store;
  settings: Pick<ServerSettings, "bodyLimit">;
  version: string;
  /**
   * The server's logger. Default: none, so nothing (least of all an
   * Authorization header) is logged unless the composition asks for it.
   */
  logger?: FastifyBaseLogger;
}
