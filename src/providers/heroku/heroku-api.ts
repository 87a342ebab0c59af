/**
 * The few endpoints of Heroku's Platform API v3 a deploy uses, over Node's
 * own fetch: five JSON calls and one streamed GET do not call for a client
 * library (the official one is unmaintained; generic ones add nothing here).
 * https://devcenter.heroku.com/articles/platform-api-reference
 *
 * The key goes into the Authorization header of API calls only: never to
 * the presigned source URLs (they carry their own signature), never into an
 * error message.
 */
export interface HerokuSource {
  getUrl: string;
  putUrl: string;
}

export interface HerokuBuild {
  id: string;
  status: "pending" | "succeeded" | "failed";
  outputStreamUrl: string | null;
  releaseId: string | null;
}

export interface HerokuRelease {
  id: string;
  version: number;
  status: "pending" | "succeeded" | "failed" | "expired";
}

/** A refusal or failure of the Platform API, with Heroku's own error id when it sent one. */
export class HerokuApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly id: string | null,
  ) {
    super(message);
    this.name = "HerokuApiError";
  }
}

const ACCEPT = "application/vnd.heroku+json; version=3";

export class HerokuApi {
  constructor(
    private readonly options: { apiUrl: string; apiKey: string; signal: AbortSignal; userAgent?: string },
  ) {}

  /** POST /apps/{app}/sources: where to put the tarball, and where Heroku reads it. */
  async createSource(app: string): Promise<HerokuSource> {
    const body = await this.call("POST", `/apps/${encodeURIComponent(app)}/sources`);
    const blob = (body as { source_blob?: { get_url?: unknown; put_url?: unknown } }).source_blob;
    if (typeof blob?.get_url !== "string" || typeof blob.put_url !== "string")
      throw new HerokuApiError("Heroku answered the source request without URLs", 502, null);
    return { getUrl: blob.get_url, putUrl: blob.put_url };
  }

  /** PUT the tarball to the presigned URL (no Authorization, no Content-Type: the signature covers the request). */
  async upload(putUrl: string, tarball: Uint8Array): Promise<void> {
    // A byte body: fetch sets no Content-Type for it (the presigned URL was signed without one).
    const body = tarball as unknown as NonNullable<RequestInit["body"]>;
    const response = await fetch(putUrl, { method: "PUT", body, signal: this.options.signal });
    await response.arrayBuffer().catch(() => undefined);
    if (!response.ok)
      throw new HerokuApiError(`the source upload failed (HTTP ${response.status})`, response.status, null);
  }

  /** POST /apps/{app}/builds from the uploaded source, named by the commit it holds. */
  async createBuild(app: string, source: { url: string; version: string }): Promise<HerokuBuild> {
    return toBuild(
      await this.call("POST", `/apps/${encodeURIComponent(app)}/builds`, { source_blob: source }),
    );
  }

  async build(app: string, id: string): Promise<HerokuBuild> {
    return toBuild(
      await this.call("GET", `/apps/${encodeURIComponent(app)}/builds/${encodeURIComponent(id)}`),
    );
  }

  async release(app: string, id: string): Promise<HerokuRelease> {
    return toRelease(
      await this.call("GET", `/apps/${encodeURIComponent(app)}/releases/${encodeURIComponent(id)}`),
    );
  }

  /** POST /apps/{app}/releases {release}: Heroku's rollback, a new release with the slug and config of `id`. */
  async rollback(app: string, id: string): Promise<HerokuRelease> {
    return toRelease(await this.call("POST", `/apps/${encodeURIComponent(app)}/releases`, { release: id }));
  }

  /** Streams a build's output as it comes (the stream ends when the build does). */
  async streamOutput(url: string, onText: (text: string) => void): Promise<void> {
    const response = await fetch(url, { signal: this.options.signal });
    if (!response.ok || !response.body) {
      await response.arrayBuffer().catch(() => undefined);
      throw new HerokuApiError(
        `the build output could not be read (HTTP ${response.status})`,
        response.status,
        null,
      );
    }
    const decoder = new TextDecoder();
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      const text = decoder.decode(chunk, { stream: true });
      if (text) onText(text);
    }
    const rest = decoder.decode();
    if (rest) onText(rest);
  }

  private async call(method: string, path: string, body?: unknown): Promise<unknown> {
    const response = await fetch(this.options.apiUrl + path, {
      method,
      headers: {
        accept: ACCEPT,
        authorization: `Bearer ${this.options.apiKey}`,
        "user-agent": this.options.userAgent ?? "turnout",
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: this.options.signal,
    });
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : {};
    } catch {
      parsed = undefined;
    }
    if (!response.ok) {
      const error = parsed as { id?: unknown; message?: unknown } | undefined;
      const message =
        typeof error?.message === "string" ? error.message.slice(0, 500) : `HTTP ${response.status}`;
      throw new HerokuApiError(
        `Heroku refused ${method} ${path}: ${message}`,
        response.status,
        typeof error?.id === "string" ? error.id : null,
      );
    }
    if (parsed === undefined)
      throw new HerokuApiError(`Heroku sent no JSON for ${method} ${path}`, 502, null);
    return parsed;
  }
}

function toBuild(body: unknown): HerokuBuild {
  const b = body as {
    id?: unknown;
    status?: unknown;
    output_stream_url?: unknown;
    release?: { id?: unknown } | null;
  };
  if (typeof b.id !== "string" || typeof b.status !== "string")
    throw new HerokuApiError("Heroku sent a build without id or status", 502, null);
  return {
    id: b.id,
    status: b.status as HerokuBuild["status"],
    outputStreamUrl: typeof b.output_stream_url === "string" ? b.output_stream_url : null,
    releaseId: typeof b.release?.id === "string" ? b.release.id : null,
  };
}

function toRelease(body: unknown): HerokuRelease {
  const r = body as { id?: unknown; version?: unknown; status?: unknown };
  if (typeof r.id !== "string") throw new HerokuApiError("Heroku sent a release without id", 502, null);
  return {
    id: r.id,
    version: typeof r.version === "number" ? r.version : 0,
    status: (typeof r.status === "string" ? r.status : "succeeded") as HerokuRelease["status"],
  };
}
