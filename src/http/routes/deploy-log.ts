import type { FastifyInstance, FastifyRequest } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { isFinished } from "../../domain/deploy.js";
import { principalOf } from "../auth.js";
import { findDeploy } from "../deploy-lookup.js";
import type { HttpDeps } from "../deps.js";
import { deployIdParams, offsetInt } from "../schemas.js";
import { LogStream, type SseTiming } from "../sse.js";

const logQuery = z.strictObject({
  offset: offsetInt.default(0).describe("byte offset to read from"),
});

export interface LogRouteOptions {
  timing: SseTiming;
  /** Open streams, so the server can end them when it shuts down. */
  streams: Set<LogStream>;
}

function wantsEventStream(request: FastifyRequest): boolean {
  return (request.headers.accept ?? "").toLowerCase().includes("text/event-stream");
}

/** An EventSource reconnecting sends the id of the last event it got: the offset to resume from. */
function resumeOffset(request: FastifyRequest): number | undefined {
  const header = request.headers["last-event-id"];
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined || !/^[0-9]{1,15}$/.test(value.trim())) return undefined;
  return Number(value.trim());
}

/** A deploy's log: JSON pages for scripts, a live SSE stream for followers. */
export function registerDeployLogRoutes(
  app: FastifyInstance,
  { engine, store }: HttpDeps,
  { timing, streams }: LogRouteOptions,
): void {
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.get(
    "/deploys/:id/log",
    {
      schema: {
        tags: ["deploys"],
        summary: "The deploy's log from an offset; with Accept: text/event-stream, a live stream",
        description:
          "JSON: {chunks:[{offset,text}], nextOffset, complete, status, prunedAt} (prunedAt: when retention removed " +
          "the log, else null). SSE events: `log` (id = offset after the chunk, " +
          "data {offset,text}), `status` (data {deploy}), `end` (data {deploy}, then the stream closes). " +
          "Reconnecting with Last-Event-ID resumes after the last byte received.",
        params: deployIdParams,
        querystring: logQuery,
      },
    },
    async (request, reply) => {
      const deploy = await findDeploy(engine, principalOf(request), request.params.id, "read");

      if (wantsEventStream(request)) {
        const from = resumeOffset(request) ?? request.query.offset;
        reply.hijack();
        const stream: LogStream = new LogStream({
          store,
          engine,
          deployId: deploy.id,
          from,
          response: reply.raw,
          timing,
          onError: (error) => request.log.error({ err: error }, "log stream failed"),
          onClose: () => streams.delete(stream),
        });
        streams.add(stream);
        stream.start();
        return reply;
      }

      // The deploy was read before the log: if it had finished by then, the log read now is complete.
      const { chunks, nextOffset } = await store.logs.read(deploy.id, request.query.offset);
      const end = await store.logs.end(deploy.id);
      return {
        chunks: chunks.map((c) => ({ offset: c.offset, text: c.text })),
        nextOffset,
        complete: isFinished(deploy.status) && nextOffset >= end.offset,
        status: deploy.status,
        // Removed by retention: the deploy record stays, and says so rather than showing an empty log.
        prunedAt: deploy.logPrunedAt,
      };
    },
  );
}
