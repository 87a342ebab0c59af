import { PassThrough, Readable } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { isSha256 } from "../domain/artifact.js";
import { TurnoutError } from "../domain/errors.js";
import type { BlobSource } from "../providers/fleet/host-ops.js";

/**
 * The agent's BlobSource: `GET {server}/api/v1/blobs/<sha256>` with the
 * agent's own token, the body streamed (never buffered) into the host's
 * cache, or many at once back to back (`openConcatenated`, POST /api/v1/blobs/batch).
 * The host verifies each blob's digest itself; the server is trusted for
 * availability, not for content.
 */
export class HttpBlobSource implements BlobSource {
  private working: string | undefined;

  constructor(
    private readonly server: string,
    /** Tokens to try, best first (the host token, then the enrollment token). */
    private readonly tokens: () => string[],
  ) {}

  async open(sha256: string): Promise<Readable> {
    if (!isSha256(sha256))
      throw new TurnoutError("E_VALIDATION", `not a blob digest: ${JSON.stringify(sha256)}`);
    const response = await this.request(
      `${this.server}/api/v1/blobs/${sha256}`,
      {},
      `blob ${sha256.slice(0, 12)}`,
    );
    return Readable.fromWeb(response.body as WebReadableStream<Uint8Array>);
  }

  /**
   * `POST {server}/api/v1/blobs/batch {digests}`: the blobs' bytes back to
   * back, in the order asked. The host splits and verifies them by the
   * manifest's sizes and digests; a stream that breaks off is E_UNAVAILABLE.
   */
  async openConcatenated(digests: string[]): Promise<Readable> {
    for (const sha256 of digests) {
      if (!isSha256(sha256))
        throw new TurnoutError("E_VALIDATION", `not a blob digest: ${JSON.stringify(sha256)}`);
    }
    const what = `${digests.length} blobs`;
    const response = await this.request(
      `${this.server}/api/v1/blobs/batch`,
      { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ digests }) },
      what,
    );
    const body = Readable.fromWeb(response.body as WebReadableStream<Uint8Array>);
    // undici's words for a cut-short body become E_UNAVAILABLE; a consumer that stops early ends the request.
    const out = new PassThrough({ highWaterMark: 1024 * 1024 });
    body.on("error", (error) => out.destroy(asStreamError(error, what) as Error));
    out.on("close", () => body.destroy());
    return body.pipe(out);
  }

  /** One request with the token that works: the one that worked last first, then the others on 401. */
  private async request(url: string, init: RequestInit, what: string): Promise<Response> {
    // The token that worked last goes first: one request per blob, not one refusal and a retry.
    const tokens = [...new Set([this.working, ...this.tokens()])].filter((t): t is string => t !== undefined);
    let response: Response | undefined;
    for (const token of tokens) {
      try {
        response = await fetch(url, {
          ...init,
          headers: {
            ...(init.headers as Record<string, string> | undefined),
            authorization: `Bearer ${token}`,
          },
        });
      } catch (error) {
        throw new TurnoutError("E_UNAVAILABLE", `cannot fetch ${what}: ${causeOf(error)}`);
      }
      // A host token the blob endpoint does not take: the enrollment token may still be valid.
      if (response.status !== 401) {
        if (response.ok) this.working = token;
        break;
      }
      await response.body?.cancel();
    }
    if (!response) throw new TurnoutError("E_UNAUTHORIZED", "no token to fetch blobs with");
    if (!response.ok || !response.body) {
      const message = await errorMessage(response);
      const code =
        response.status === 404
          ? "E_NOT_FOUND"
          : response.status === 401
            ? "E_UNAUTHORIZED"
            : "E_UNAVAILABLE";
      throw new TurnoutError(code, `${what}: HTTP ${response.status}${message ? `: ${message}` : ""}`);
    }
    return response;
  }
}

/** A body cut short (the server went away, the connection reset) is "unavailable"; ours stay as they are. */
function asStreamError(error: unknown, what: string): unknown {
  if (error instanceof TurnoutError) return error;
  return new TurnoutError("E_UNAVAILABLE", `${what}: the stream broke off (${causeOf(error)})`);
}

async function errorMessage(response: Response): Promise<string> {
  try {
    const text = (await response.text()).slice(0, 2000);
    const parsed = JSON.parse(text) as { error?: { message?: unknown } };
    return typeof parsed.error?.message === "string" ? parsed.error.message : "";
  } catch {
    return "";
  }
}

function causeOf(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (error as Error).message;
}
