import path from "node:path";
import type { Readable } from "node:stream";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { ArtifactStore } from "../../artifacts/artifact-store.js";
import { ArtifactReadAccess } from "../../artifacts/read-access.js";
import { artifactNotFound, isSha256 } from "../../domain/artifact.js";
import { isTurnoutError, TurnoutError } from "../../domain/errors.js";
import { authorize } from "../../domain/roles.js";
import { principalOf } from "../auth.js";
import type { HttpDeps } from "../deps.js";
import { resolveApp } from "../environments.js";
import { sendError, toHttpError } from "../error-mapping.js";
import { appParams, positiveInt } from "../schemas.js";

/** Uploads up to 1 GiB: a built tree, not a request body in the usual sense. */
export const MAX_UPLOAD_BYTES = 1024 * 1024 * 1024;
const UPLOAD_TYPES = [
  "application/x-tar",
  "application/gzip",
  "application/x-gzip",
  "application/x-gtar",
  "application/octet-stream",
];
/** Content-addressed: what a digest names never changes, so caches may keep it forever. */
const IMMUTABLE = "private, max-age=31536000, immutable";

const digestParams = z.object({ digest: z.string().describe("the artifact's digest (64 hex digits)") });
const blobParams = z.object({ sha256: z.string().describe("the blob's sha256 (64 hex digits)") });
const artifactField = z
  .string()
  .describe(
    "the digest of the artifact the blobs belong to: host tokens may read only blobs of artifacts the server sent their host",
  );
const blobQuery = z.strictObject({ artifact: artifactField.optional() });
/** Digests per batch request: enough to amortize a request, small enough to validate up front. */
export const MAX_BATCH_DIGESTS = 1000;
const batchBody = z.strictObject({
  digests: z
    .array(z.string())
    .min(1)
    .max(MAX_BATCH_DIGESTS)
    .describe(`the blobs' sha256 digests (1..${MAX_BATCH_DIGESTS}), in the order wanted`),
  artifact: artifactField.optional(),
});
const listQuery = z.strictObject({
  limit: positiveInt.max(500).optional().describe("at most this many (default 50)"),
});

/**
 * Artifacts: uploads of pre-built trees (for teams whose CI builds
 * elsewhere), reading what was stored, and the two hot-path downloads of
 * fleet deploys, manifests and blobs, which agents fetch and which stream
 * from disk as they are. In their own plugin context so that only the upload
 * route accepts raw tar bodies; the bearer hook of /api/v1 still applies.
 */
export function registerArtifactRoutes(api: FastifyInstance, deps: HttpDeps): void {
  // Opened on first use: an HTTP app built without a data directory (tests of
  // other routes) still starts, and only these routes answer "unavailable".
  let opened: ArtifactStore | undefined = deps.artifacts;
  const artifactStore = (): ArtifactStore => {
    opened ??= openFromSettings(deps);
    return opened;
  };
  const { engine, store } = deps;
  const access = new ArtifactReadAccess({
    wasSent: (hostId, digest) => store.fleet.wasSent(hostId, digest),
    // The host's connection to this server, and that very host (not a namesake since re-enrolled).
    staging: (host, digest) => {
      const connection = deps.agents?.connection(host.name);
      return connection !== undefined && connection.hostId === host.id && connection.isStaging(digest);
    },
    findArtifact: (digest) => store.artifacts.find(digest),
    manifest: (digest) => artifactStore().manifest(digest),
    ...(deps.prefetchGrants
      ? { prefetched: (hostId, grant, digests) => deps.prefetchGrants!.allows(hostId, grant, digests) }
      : {}),
  });

  api.register(async (scope) => {
    // The stream itself, unread: the artifact store reads it as it arrives.
    scope.addContentTypeParser(UPLOAD_TYPES, (_request, payload, done) => done(null, payload));
    const r = scope.withTypeProvider<ZodTypeProvider>();

    r.post(
      "/apps/:app/artifacts",
      {
        bodyLimit: MAX_UPLOAD_BYTES,
        // A tar stream, read by the artifact store as it arrives, for as long as it keeps moving.
        config: { rawBody: true, streamedBody: true },
        schema: {
          tags: ["artifacts"],
          summary: "Upload a pre-built artifact (tar or tar.gz body)",
          description:
            "The body is a tar archive, optionally gzipped, of the tree to deploy. Absolute paths, '..', " +
            "links leaving the tree, devices and duplicates are refused (422, details.path). Up to 1 GiB.",
          params: appParams,
        },
      },
      async (request, reply) => {
        const app = resolveApp(engine, principalOf(request), request.params.app, "deploy").name;
        // Only the archive types reach here as a stream; JSON (which the API parses) is not an archive.
        if (typeof (request.body as Readable | undefined)?.pipe !== "function") {
          throw new TurnoutError(
            "E_UNSUPPORTED_MEDIA_TYPE",
            `an artifact upload is a tar archive: send it as ${UPLOAD_TYPES.join(", ")}`,
          );
        }
        const declared = Number(request.headers["content-length"] ?? Number.NaN);
        if (declared > MAX_UPLOAD_BYTES) {
          throw new TurnoutError(
            "E_PAYLOAD_TOO_LARGE",
            `an artifact upload is at most ${MAX_UPLOAD_BYTES} bytes`,
          );
        }
        const artifacts = artifactStore();
        // Stored and recorded in one section: the garbage collector keeps a recorded upload for a while.
        const stored = await artifacts
          .hold(async () => {
            const tree = await artifacts.fromTar(request.body as Readable, { maxBytes: MAX_UPLOAD_BYTES });
            await store.artifacts.record({
              digest: tree.digest,
              app,
              fingerprint: null,
              files: tree.files,
              bytes: tree.bytes,
              source: "uploaded",
            });
            return tree;
          })
          .catch((error: unknown) => {
            // A stalled sender is not waited for; any other refusal lets the client finish sending.
            if (!(isTurnoutError(error) && error.code === "E_REQUEST_TIMEOUT")) drain(request);
            throw error;
          })
          .catch((error: unknown) => refusal(reply, error));
        if (!stored) return reply;
        return reply.code(201).send({ artifact: await store.artifacts.get(stored.digest) });
      },
    );

    r.get(
      "/apps/:app/artifacts",
      {
        schema: {
          tags: ["artifacts"],
          summary: "Artifacts of an app, newest first",
          params: appParams,
          querystring: listQuery,
        },
      },
      async (request) => {
        const app = resolveApp(engine, principalOf(request), request.params.app, "read").name;
        return { artifacts: await store.artifacts.list(app, request.query.limit ?? 50) };
      },
    );

    r.get(
      "/artifacts/:digest",
      { schema: { tags: ["artifacts"], summary: "One artifact and its manifest", params: digestParams } },
      async (request) => {
        const principal = principalOf(request);
        // The role first: whether a digest is stored is not for callers who may not read.
        authorize(principal, "read");
        const digest = assertDigest(request.params.digest);
        const artifact = await store.artifacts.get(digest);
        authorize(principal, "read", artifact.app, () => artifactNotFound(digest));
        return { artifact, manifest: await artifactStore().manifest(digest) };
      },
    );

    r.get(
      "/artifacts/:digest/manifest",
      {
        schema: {
          tags: ["artifacts"],
          summary: "An artifact's manifest, for agents (canonical JSON, immutable)",
          params: digestParams,
        },
      },
      async (request, reply) => {
        const digest = assertDigest(request.params.digest);
        await access.assertManifest(principalOf(request), digest);
        if (notModified(request, digest)) return reply.code(304).header("etag", `"${digest}"`).send();
        // The manifest blob is the canonical JSON already: streamed, not parsed and re-serialized.
        const { stream, size } = await artifactStore().openBlobWithSize(digest);
        return reply
          .header("content-type", "application/json")
          .header("content-length", size)
          .header("etag", `"${digest}"`)
          .header("cache-control", IMMUTABLE)
          .send(stream);
      },
    );

    r.get(
      "/blobs/:sha256",
      {
        schema: {
          tags: ["artifacts"],
          summary: "A blob by its sha256, for agents",
          description:
            "Host tokens name the artifact (?artifact=DIGEST) and read only blobs of artifacts the server sent " +
            "their host (404 otherwise, as for a blob that does not exist); enrollment tokens read nothing.",
          params: blobParams,
          querystring: blobQuery,
        },
      },
      async (request, reply) => {
        const sha256 = assertDigest(request.params.sha256);
        const artifact =
          request.query.artifact === undefined ? undefined : assertDigest(request.query.artifact);
        await access.assertBlobs(principalOf(request), artifact, [sha256]);
        if (notModified(request, sha256)) return reply.code(304).header("etag", `"${sha256}"`).send();
        const { stream, size } = await artifactStore().openBlobWithSize(sha256);
        return reply
          .header("content-type", "application/octet-stream")
          .header("content-length", size)
          .header("etag", `"${sha256}"`)
          .header("cache-control", IMMUTABLE)
          .send(stream);
      },
    );

    r.post(
      "/blobs/batch",
      {
        // A read (POST only for the list of digests): running fleet deploys need it while the server
        // drains, and its log line is at debug like the other reads'.
        config: { duringShutdown: true, logAsRead: true },
        schema: {
          tags: ["artifacts"],
          summary: "Many blobs in one stream, for agents",
          description:
            `The body names up to ${MAX_BATCH_DIGESTS} blobs by sha256; the answer (application/octet-stream, ` +
            "with Content-Length) is their bytes back to back, in the order asked, with no framing: the " +
            "host knows each size from the manifest and verifies each digest. 404 (before any byte) when " +
            "one of them is not stored. Host tokens name the artifact the blobs belong to and read only " +
            "artifacts the server sent their host (404 otherwise, the same answer as for a missing blob).",
          body: batchBody,
        },
      },
      async (request, reply) => {
        const digests = request.body.digests.map(assertDigest);
        const artifact =
          request.body.artifact === undefined ? undefined : assertDigest(request.body.artifact);
        await access.assertBlobs(principalOf(request), artifact, digests);
        // With several servers, blobs this server lacks are fetched from the shared store first.
        const blobs = await artifactStore().openConcatenated(digests);
        // Written by hand, not sent as a stream: the store recycles its buffers on the write callbacks.
        reply.hijack();
        const raw = reply.raw;
        const gone = new AbortController();
        raw.once("close", () => gone.abort(new Error("the client went away")));
        raw.writeHead(200, { "content-type": "application/octet-stream", "content-length": blobs.size });
        try {
          await blobs.writeTo(raw, gone.signal);
          raw.end();
        } catch (error) {
          // Headers are out: cutting the connection is the only way to say the body is not whole.
          if (!raw.destroyed) request.log.warn({ err: error }, "blob batch cut short");
          raw.destroy();
        }
      },
    );
  });
}

/**
 * Settings carry the data directory in the running server; the composition
 * root may instead pass the store it shares with the engine (preferred).
 */
function openFromSettings(deps: HttpDeps): ArtifactStore {
  const dataDir = (deps.settings as { dataDir?: unknown }).dataDir;
  if (typeof dataDir !== "string") {
    throw new TurnoutError("E_UNAVAILABLE", "the HTTP API needs an artifact store or settings.dataDir");
  }
  return new ArtifactStore({ dir: path.join(dataDir, "artifacts") });
}

/** Checked before any path is built from it. */
function assertDigest(value: string): string {
  if (!isSha256(value)) {
    throw new TurnoutError("E_BAD_REQUEST", "a digest is 64 lowercase hex digits", { digest: value });
  }
  return value;
}

function notModified(request: FastifyRequest, digest: string): boolean {
  const tags = request.headers["if-none-match"];
  return (
    typeof tags === "string" &&
    tags.split(",").some((tag) => tag.trim().replace(/^W\//, "") === `"${digest}"`)
  );
}

/**
 * A refused archive is a well-formed request naming something invalid:
 * 422, like the other "fix your input" answers, with the entry in details.
 */
function refusal(reply: FastifyReply, error: unknown): undefined {
  if (isTurnoutError(error) && error.code === "E_VALIDATION") {
    const mapped = toHttpError(error);
    sendError(reply, { ...mapped, status: 422 });
    return undefined;
  }
  throw error;
}

/**
 * The rest of a refused upload is read and dropped, so the client gets its
 * answer instead of a reset; a sender that keeps going past the limit is cut off.
 */
function drain(request: FastifyRequest): void {
  const raw = request.raw;
  if (raw.complete) return;
  // Not through the body watch (request-timeouts.ts) any more: nobody reads that now.
  raw.unpipe();
  let dropped = 0;
  raw.on("data", (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > MAX_UPLOAD_BYTES) raw.destroy();
  });
  raw.resume();
}
