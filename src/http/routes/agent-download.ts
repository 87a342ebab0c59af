import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { FastifyInstance } from "fastify";
import { TurnoutError } from "../../domain/errors.js";

/** Where the build puts the bundled agent (bin/build-agent.js), from src/ or dist/ alike. */
export function defaultAgentBundle(): string {
  return fileURLToPath(new URL("../../../dist/agent/turnout-agent.cjs", import.meta.url));
}

export const AGENT_DOWNLOAD_PATH = "/turnout-agent.cjs";

/**
 * `GET /turnout-agent.cjs`: the host agent as one file that needs only
 * Node.js (docs/fleets.md, "Installing the agent"), so installing it is one
 * command on each host:
 *
 *   curl -fsSL https://SERVER/turnout-agent.cjs -o /usr/local/bin/turnout-agent
 *
 * No token: it is the same code as the published package, and a host has
 * no token before it has an agent. The agent of this server's own version,
 * so it speaks this server's protocol. X-Content-SHA256 (and the ETag) give
 * its digest to check against the package's own dist/agent/turnout-agent.cjs.
 */
export function registerAgentDownload(app: FastifyInstance, file: string): void {
  let cached: { body: Buffer; sha256: string } | undefined;
  app.get(
    AGENT_DOWNLOAD_PATH,
    {
      schema: {
        tags: ["server"],
        summary: "The host agent, bundled: one file that runs with Node.js 20 or newer alone",
        security: [],
      },
    },
    async (_request, reply) => {
      if (!cached) {
        let body: Buffer;
        try {
          body = await readFile(file);
        } catch {
          throw new TurnoutError(
            "E_NOT_FOUND",
            "this server has no agent bundle (a source checkout builds it with `npm run build`)",
          );
        }
        cached = { body, sha256: createHash("sha256").update(body).digest("hex") };
      }
      return reply
        .header("content-type", "application/javascript; charset=utf-8")
        .header("content-disposition", 'attachment; filename="turnout-agent.cjs"')
        .header("x-content-sha256", cached.sha256)
        .header("etag", `"${cached.sha256}"`)
        .header("cache-control", "no-cache")
        .send(cached.body);
    },
  );
}
