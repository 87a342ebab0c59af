import { createHash } from "node:crypto";
import http, { type IncomingMessage } from "node:http";
import https from "node:https";
import type { Readable } from "node:stream";
import { type ArtifactManifest, isSha256 } from "../domain/artifact.js";
import { TurnoutError } from "../domain/errors.js";
import type { BlobSource } from "../providers/fleet/host-ops.js";

/**
 * The agent's BlobSource: `GET {server}/api/v1/blobs/<sha256>` with the
 * agent's own token, the body streamed (never buffered) into the release
 * being staged, or many at once back to back (`openConcatenated`, POST
 * /api/v1/blobs/batch). The host verifies each blob's digest itself; the
 * server is trusted for availability, not for content. Each request names
 * the artifact being staged (`forArtifact`): the server lets a host token
 * read only blobs of artifacts it sent to that host.
 *
 * node:http rather than fetch: a release is tens of megabytes per host, and
 * fetch's web streams (converted back to a Node stream) cost several times
 * the CPU of the plain socket stream for the same bytes.
 */
export class HttpBlobSource implements BlobSource {
  private working: string | undefined;
  private readonly agent: http.Agent;

  constructor(
    private readonly server: string,
    /** Tokens to try, best first (the host token; an enrollment token reads nothing). */
    private readonly tokens: () => string[],
    /** The artifact whose blobs these are (see forArtifact). */
    private readonly artifact?: string,
    agent?: http.Agent,
  ) {
    const options = { keepAlive: true, maxSockets: 4 };
    this.agent = agent ?? (server.startsWith("https:") ? new https.Agent(options) : new http.Agent(options));
  }

  /** The same source (connections shared) for the blobs of one artifact, which every request names. */
  forArtifact(digest: string | undefined): HttpBlobSource {
    if (digest !== undefined && !isSha256(digest)) {
      throw new TurnoutError("E_VALIDATION", `not an artifact digest: ${JSON.stringify(digest)}`);
    }
    return new HttpBlobSource(this.server, this.tokens, digest, this.agent);
  }

  async open(sha256: string): Promise<Readable> {
    if (!isSha256(sha256))
      throw new TurnoutError("E_VALIDATION", `not a blob digest: ${JSON.stringify(sha256)}`);
    const query = this.artifact === undefined ? "" : `?artifact=${this.artifact}`;
    // The body itself is the stream: a read of a body cut short fails, and the consumer says so.
    return this.request("GET", `/api/v1/blobs/${sha256}${query}`, undefined, `blob ${sha256.slice(0, 12)}`);
  }

  /**
   * `POST {server}/api/v1/blobs/batch {digests}`: the blobs' bytes back to
   * back, in the order asked. The host splits and verifies them by the
   * manifest's sizes and digests; a stream that breaks off fails its read.
   */
  async openConcatenated(digests: string[]): Promise<Readable> {
    for (const sha256 of digests) {
      if (!isSha256(sha256))
        throw new TurnoutError("E_VALIDATION", `not a blob digest: ${JSON.stringify(sha256)}`);
    }
    return this.request(
      "POST",
      "/api/v1/blobs/batch",
      JSON.stringify(this.artifact === undefined ? { digests } : { digests, artifact: this.artifact }),
      `${digests.length} blobs`,
    );
  }

  /**
   * `GET {server}/api/v1/artifacts/<digest>/manifest`: the whole manifest of
   * the artifact being staged, for when the server sent a difference from a
   * manifest this host no longer has (or one that did not add up). Checked
   * against its digest here: the bytes are canonical JSON.
   */
  async manifest(digest: string): Promise<ArtifactManifest> {
    if (!isSha256(digest))
      throw new TurnoutError("E_VALIDATION", `not an artifact digest: ${JSON.stringify(digest)}`);
    const response = await this.request(
      "GET",
      `/api/v1/artifacts/${digest}/manifest`,
      undefined,
      `manifest ${digest.slice(0, 12)}`,
    );
    const chunks: Buffer[] = [];
    const hash = createHash("sha256");
    for await (const chunk of response as AsyncIterable<Buffer>) {
      hash.update(chunk);
      chunks.push(chunk);
    }
    if (hash.digest("hex") !== digest) {
      throw new TurnoutError(
        "E_VALIDATION",
        `manifest ${digest.slice(0, 12)} from the server does not match its digest`,
      );
    }
    return JSON.parse(Buffer.concat(chunks).toString("utf8")) as ArtifactManifest;
  }

  /** One request with the token that works: the one that worked last first, then the others on 401. */
  private async request(
    method: string,
    path: string,
    payload: string | undefined,
    what: string,
  ): Promise<IncomingMessage> {
    // The token that worked last goes first: one request, not one refusal and a retry.
    const tokens = [...new Set([this.working, ...this.tokens()])].filter((t): t is string => t !== undefined);
    let response: IncomingMessage | undefined;
    for (const token of tokens) {
      response = await this.send(method, path, payload, token, what);
      // A host token the blob endpoint does not take: the enrollment token may still be valid.
      if (response.statusCode !== 401) {
        if (ok(response)) this.working = token;
        break;
      }
      response.resume();
    }
    if (!response) throw new TurnoutError("E_UNAUTHORIZED", "no token to fetch blobs with");
    if (!ok(response)) {
      const status = response.statusCode ?? 0;
      const message = await errorMessage(response);
      const code = status === 404 ? "E_NOT_FOUND" : status === 401 ? "E_UNAUTHORIZED" : "E_UNAVAILABLE";
      throw new TurnoutError(code, `${what}: HTTP ${status}${message ? `: ${message}` : ""}`);
    }
    return response;
  }

  private send(
    method: string,
    path: string,
    payload: string | undefined,
    token: string,
    what: string,
  ): Promise<IncomingMessage> {
    const url = new URL(path, this.server);
    const client = url.protocol === "https:" ? https : http;
    return new Promise((resolve, reject) => {
      const request = client.request(url, {
        method,
        agent: this.agent,
        headers: {
          authorization: `Bearer ${token}`,
          ...(payload === undefined
            ? {}
            : { "content-type": "application/json", "content-length": Buffer.byteLength(payload) }),
        },
      });
      request.once("response", resolve);
      request.once("error", (error: NodeJS.ErrnoException) =>
        reject(new TurnoutError("E_UNAVAILABLE", `cannot fetch ${what}: ${error.code ?? error.message}`)),
      );
      request.end(payload);
    });
  }
}

function ok(response: IncomingMessage): boolean {
  const status = response.statusCode ?? 0;
  return status >= 200 && status < 300;
}

async function errorMessage(response: IncomingMessage): Promise<string> {
  try {
    let text = "";
    for await (const chunk of response) {
      text += String(chunk);
      if (text.length > 2000) break;
    }
    const parsed = JSON.parse(text) as { error?: { message?: unknown } };
    return typeof parsed.error?.message === "string" ? parsed.error.message : "";
  } catch {
    return "";
  }
}
