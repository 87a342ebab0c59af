import { Pool } from "undici";

/**
 * One POST over a pool of kept-alive connections to the receiver's origin,
 * with undici's `Pool.request` (the package, pinned to a line that supports
 * Node 20). Not `fetch` and not `node:http`: the notification thread sends
 * many small requests beside running deploys on a machine of two cores, and
 * on loopback `Pool.request` costs about half the CPU of `http.request`
 * (119 against 234 µs per signed request, docs/benchmarks.md
 * "Notifications"), and `fetch` about three times `http.request`. Redirects
 * are not followed (a receiver that moves must be reconfigured, not trusted
 * to forward signed events elsewhere).
 */
export class HttpPoster {
  private readonly pool: Pool;
  private readonly path: string;
  /** Credentials in the URL (`https://user:pass@host/…`) become Basic authentication, as with `http.request`. */
  private readonly authorization: string | undefined;

  constructor(readonly url: URL) {
    this.pool = new Pool(url.origin, { connections: 32 });
    this.path = `${url.pathname}${url.search}`;
    this.authorization = url.username
      ? `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString("base64")}`
      : undefined;
  }

  async post(
    body: string,
    headers: Record<string, string>,
    signal: AbortSignal,
  ): Promise<{ status: number; header(name: string): string | null }> {
    const response = await this.pool.request({
      path: this.path,
      method: "POST",
      headers: this.authorization ? { ...headers, authorization: this.authorization } : headers,
      body,
      signal,
    });
    // The body is not read, only drained, so the connection goes back to the pool.
    await response.body.dump();
    return {
      status: response.statusCode,
      header: (name) => {
        const value = response.headers[name.toLowerCase()];
        return typeof value === "string" ? value : null;
      },
    };
  }

  close(): void {
    void this.pool.destroy();
  }
}
