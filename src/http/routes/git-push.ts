import path from "node:path";
import type { Readable } from "node:stream";
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import { isTurnoutError } from "../../domain/errors.js";
import type { Principal } from "../../domain/roles.js";
import { ensureHostedRepo } from "../../git/hosted-repos.js";
import type { HttpDeps } from "../deps.js";
import { toHttpError } from "../error-mapping.js";
import { afterPush } from "../git-http/after-push.js";
import { type CgiResponse, runHttpBackend } from "../git-http/cgi.js";
import { BASIC_CHALLENGE, gitToken } from "../git-http/credentials.js";
import { HeldResponse } from "../git-http/held-response.js";
import { type GitService, refusalAdvertisement } from "../git-http/pkt-line.js";
import { watchPushCommands } from "../git-http/push-commands.js";
import { type HostedTarget, repoAddress, resolveHostedTarget } from "../git-http/resolve-repo.js";

/**
 * Push-to-deploy: git's smart HTTP protocol for the repositories Turnout
 * hosts, at `/git/<app>.git` and `/git/<app>/<component>.git` (see
 * git-http/resolve-repo.ts). Git sends HTTP Basic credentials (the password
 * is a Turnout token), so these routes sit outside the API's bearer hook and
 * answer in git's terms: 401 with a Basic challenge, refusals as ERR packets
 * git prints, everything else streamed to and from `git http-backend`.
 */
const SERVICES: readonly GitService[] = ["git-upload-pack", "git-receive-pack"];
// Pushes carry whole histories; this only stops a client that never ends.
const MAX_BODY_BYTES = 1024 * 1024 * 1024;

const PRINCIPAL = Symbol("turnout.git-principal");
type GitParams = { repo: string; app?: string };
type GitRequest = FastifyRequest<{ Params: GitParams }> & { [PRINCIPAL]?: Principal };

function text(reply: FastifyReply, status: number, message: string): FastifyReply {
  return reply
    .code(status)
    .header("content-type", "text/plain; charset=utf-8")
    .header("cache-control", "no-cache")
    .send(`${message}\n`);
}

/** The repository the URL names, or undefined for anything that is not made of valid names. */
function addressOf(request: GitRequest) {
  return repoAddress(request.params);
}

/** Both URL shapes: `/git/<app>.git/…` and `/git/<app>/<component>.git/…`. */
const PREFIXES = ["/git/:repo", "/git/:app/:repo"] as const;

export function gitPushRoutes({ engine, store, sharedHosted }: HttpDeps): FastifyPluginAsync {
  return async (git: FastifyInstance) => {
    // Bodies are streamed to git untouched (and unlimited by the JSON body
    // limit); the handlers check the content type themselves.
    git.removeAllContentTypeParsers();
    // The body as a stream (watched for stalls, see request-timeouts.ts), read by http-backend.
    git.addContentTypeParser("*", (_request, payload, done) => done(null, payload));

    const closing = new AbortController();
    git.addHook("preClose", async () => closing.abort());

    git.setErrorHandler((error: unknown, request, reply) => {
      const mapped = toHttpError(error);
      // Git failures name server paths: the operator's log gets them, the client does not.
      if (isTurnoutError(error) && error.code === "E_GIT") {
        request.log.error({ err: error }, "git request failed");
        return text(reply, 502, "turnout: the repository is not available (see the server log)");
      }
      if (mapped.internal) request.log.error({ err: error }, "git request failed");
      return text(reply, mapped.status, `turnout: ${mapped.body.error.message}`);
    });

    // Runs before any body is read: hostile names and anonymous callers cost nothing.
    git.addHook("onRequest", async (raw, reply) => {
      const request = raw as GitRequest;
      if (addressOf(request) === undefined) return text(reply, 404, "turnout: no such repository");
      const token = gitToken(request.headers.authorization);
      const principal = token === undefined ? undefined : await store.tokens.authenticate(token);
      if (!principal) {
        return text(
          reply.header("www-authenticate", BASIC_CHALLENGE),
          401,
          token === undefined
            ? "turnout: authentication required: use a Turnout token as the password"
            : "turnout: invalid or revoked token",
        );
      }
      request[PRINCIPAL] = principal;
    });

    const target = (request: GitRequest, service: GitService): HostedTarget =>
      resolveHostedTarget(engine.config(), request[PRINCIPAL]!, addressOf(request)!, service);

    const serve = async (
      request: GitRequest,
      reply: FastifyReply,
      service: GitService,
      found: Extract<HostedTarget, { ok: true }>,
    ) => {
      const repo = found.component.repo;
      await ensureHostedRepo(repo);
      const isPush = request.method === "POST" && service === "git-receive-pack";
      // Another server may have taken a push this copy has not seen: whatever
      // is advertised or sent comes from the shared log's latest state.
      if (sharedHosted && !isPush) await sharedHosted.catchUp(repo);
      const watcher = isPush ? watchPushCommands(request.headers["content-encoding"]) : undefined;
      reply.hijack();
      const backend = (response: CgiResponse) =>
        runHttpBackend(
          request.raw,
          response,
          {
            projectRoot: path.dirname(repo),
            pathInfo:
              request.method === "GET"
                ? `/${path.basename(repo)}/info/refs`
                : `/${path.basename(repo)}/${service}`,
            method: request.method === "GET" ? "GET" : "POST",
            query: request.method === "GET" ? `service=${service}` : "",
            remoteUser: request[PRINCIPAL]!.name,
            remoteAddr: request.ip,
          },
          {
            maxBodyBytes: MAX_BODY_BYTES,
            ...(request.body ? { body: request.body as Readable } : {}),
            ...(watcher ? { onBodyChunk: (chunk: Buffer) => watcher.write(chunk) } : {}),
            log: (message) => request.log.warn(message),
            signal: closing.signal,
          },
        );
      let outcome: Awaited<ReturnType<typeof runHttpBackend>>;
      try {
        if (isPush && sharedHosted) {
          // The client hears git's answer only once the push is in the shared log.
          const held = new HeldResponse();
          try {
            outcome = await sharedHosted.push(repo, request[PRINCIPAL]!.name, () => backend(held));
          } catch (error) {
            request.log.error({ err: error }, "a push could not be shared with the other servers");
            const busy = isTurnoutError(error) && error.code === "E_UNAVAILABLE";
            HeldResponse.refuse(
              reply.raw,
              503,
              busy
                ? `turnout: ${error.message}`
                : "turnout: the push could not be recorded for the other servers; nothing changed (see the server log)",
            );
            return;
          }
          held.release(reply.raw);
        } else {
          outcome = await backend(reply.raw);
        }
      } catch (error) {
        // Hijacked: Fastify can no longer answer for us.
        request.log.error({ err: error }, "git http-backend failed");
        reply.raw.destroy();
        return;
      }
      if (!watcher || outcome.exitCode !== 0) return;
      await afterPush(
        {
          engine,
          store,
          log: (message, error) => request.log.warn(error === undefined ? {} : { err: error }, message),
        },
        {
          app: found.app,
          component: found.component,
          principal: request[PRINCIPAL]!,
          requested: await watcher.result(),
        },
      );
    };

    // Git's protocol: bodies and query strings are git's, checked here and by http-backend.
    const hidden = {
      schema: { hide: true },
      exposeHeadRoute: false,
      config: { rawBody: true, rawQuery: true, streamedBody: true },
    } as const;

    for (const prefix of PREFIXES) {
      git.get<{ Params: GitParams; Querystring: { service?: string } }>(
        `${prefix}/info/refs`,
        hidden,
        async (request, reply) => {
          const service = SERVICES.find((s) => s === request.query.service);
          if (!service) {
            return text(reply, 403, "turnout: only git's smart HTTP protocol is served here");
          }
          const found = target(request as GitRequest, service);
          if (!found.ok) {
            // 200 on purpose: git shows the ERR packet of an advertisement, not an error page.
            return reply
              .code(200)
              .header("content-type", `application/x-${service}-advertisement`)
              .header("cache-control", "no-cache")
              .send(refusalAdvertisement(service, found.message));
          }
          await serve(request as GitRequest, reply, service, found);
        },
      );

      for (const service of SERVICES) {
        // A fetch (upload-pack) only reads and goes on while the server shuts down; a push does not.
        const options = {
          ...hidden,
          config: { ...hidden.config, duringShutdown: service === "git-upload-pack" },
        };
        git.post<{ Params: GitParams }>(`${prefix}/${service}`, options, async (request, reply) => {
          const type = request.headers["content-type"]?.split(";")[0]?.trim().toLowerCase();
          if (type !== `application/x-${service}-request`) {
            return text(reply, 415, `turnout: expected a body of type application/x-${service}-request`);
          }
          const found = target(request as GitRequest, service);
          // Git asked for the advertisement first and saw the refusal there; this is for other clients.
          if (!found.ok) return text(reply, 403, found.message);
          const length = Number(request.headers["content-length"] ?? 0);
          if (length > MAX_BODY_BYTES) return text(reply, 413, "turnout: request body too large");
          await serve(request as GitRequest, reply, service, found);
        });
      }
    }
  };
}
