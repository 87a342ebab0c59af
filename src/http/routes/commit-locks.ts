import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { principalOf } from "../auth.js";
import type { HttpDeps } from "../deps.js";
import { appParams } from "../schemas.js";

const shaParams = appParams.extend({ sha: z.string().describe("full or short commit SHA") });
const lockBody = z.strictObject({
  sha: z.string().min(4).max(64).describe("full or short commit SHA (hex)"),
  reason: z.string().trim().min(1).max(500).describe("why the commit must not be deployed"),
});
const listQuery = z.strictObject({
  history: z.enum(["true", "false"]).optional().describe("true: unlocked locks too, newest first"),
});

/**
 * Commit locks: commits of an app marked as not deployable. Automatic
 * deploys stop before them; a manual deploy whose range holds one needs
 * `force`.
 */
export function registerCommitLockRoutes(app: FastifyInstance, { engine }: HttpDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.get(
    "/apps/:app/commit-locks",
    {
      schema: {
        tags: ["locks"],
        summary: "Commit locks of an app (in force; with history=true, unlocked ones too)",
        params: appParams,
        querystring: listQuery,
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const history = request.query.history === "true";
      return { locks: await engine.commitLocks(principal, request.params.app, history) };
    },
  );

  r.post(
    "/apps/:app/commit-locks",
    {
      schema: {
        tags: ["locks"],
        summary: "Lock a commit: automatic deploys stop before it, manual ones need force",
        params: appParams,
        body: lockBody,
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const lock = await engine.lockCommit(
        principal,
        request.params.app,
        request.body.sha,
        request.body.reason,
      );
      return reply.code(201).send({ lock });
    },
  );

  r.delete(
    "/apps/:app/commit-locks/:sha",
    {
      schema: {
        tags: ["locks"],
        summary: "Unlock a commit; returns the lock lifted (null: none was in force)",
        params: shaParams,
      },
    },
    async (request) => {
      const principal = principalOf(request);
      return { lock: (await engine.unlockCommit(principal, request.params.app, request.params.sha)) ?? null };
    },
  );
}
