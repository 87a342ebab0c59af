import type { FastifyRequest } from "fastify";
import { HOST_TOKEN_PREFIX } from "../agent/protocol.js";
import { TurnoutError } from "../domain/errors.js";
import type { Principal } from "../domain/roles.js";
import type { Store } from "../store/store.js";
import { hashToken } from "../store/tokens.js";

/**
 * Bearer tokens → Principal. Authentication happens in an onRequest hook, i.e.
 * before the body is read, so an anonymous caller cannot make the server
 * buffer a request body. The token is only ever hashed by the store; it is
 * never logged or echoed back.
 */
const PRINCIPAL = Symbol("turnout.principal");

type WithPrincipal = FastifyRequest & { [PRINCIPAL]?: Principal };

export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const match = /^Bearer[ \t]+(\S+)\s*$/i.exec(header);
  return match?.[1];
}

/**
 * A host this server is waiting on to stage, by the hash of its host token
 * (AgentHub.stagingHost): its downloads then need no look-up.
 */
export type StagingHostLookup = (
  tokenHash: string,
) => { id: number; name: string; apps: string[] | null } | undefined;

export function authenticator(
  store: Store,
  stagingHost?: StagingHostLookup,
): (request: FastifyRequest) => Promise<void> {
  return async (request) => {
    const token = bearerToken(request.headers.authorization);
    if (!token) {
      throw new TurnoutError("E_UNAUTHORIZED", "missing bearer token: send 'Authorization: Bearer <token>'");
    }
    // Host tokens (agents after enrollment, agent permission only) say so by their prefix: one
    // lookup, not a miss in the API tokens first (every blob download of every host is one),
    // and none while this server waits for that host to stage.
    const principal = token.startsWith(HOST_TOKEN_PREFIX)
      ? (hostPrincipal(stagingHost?.(hashToken(token))) ?? (await store.hosts.authenticate(token)))
      : await store.tokens.authenticate(token);
    if (!principal) throw new TurnoutError("E_UNAUTHORIZED", "invalid or revoked token");
    // A copy: the store may hand the same (cached) principal to other requests.
    (request as WithPrincipal)[PRINCIPAL] = { ...principal, source: requestSource(request) };
  };
}

function hostPrincipal(
  host: { id: number; name: string; apps: string[] | null } | undefined,
): Principal | undefined {
  // As HostStore.authenticate makes it.
  return (
    host && {
      tokenId: -host.id,
      name: `host:${host.name}`,
      role: "agent",
      apps: host.apps,
      host: { id: host.id, name: host.name },
    }
  );
}

/** The header Turnout's command-line client sends, so the audit trail can tell it from other API callers. */
export const CLIENT_HEADER = "x-turnout-client";

/** "cli" when the command-line client says it sent the request; any other caller is the API. */
export function requestSource(request: FastifyRequest): "api" | "cli" {
  return request.headers[CLIENT_HEADER] === "cli" ? "cli" : "api";
}

/** The caller of an authenticated route; throws if a route forgot to sit behind the hook. */
export function principalOf(request: FastifyRequest): Principal {
  const principal = (request as WithPrincipal)[PRINCIPAL];
  if (!principal) throw new TurnoutError("E_UNAUTHORIZED", "not authenticated");
  return principal;
}
