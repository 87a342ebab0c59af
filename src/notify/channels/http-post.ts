import http from "node:http";
import https from "node:https";

/**
 * One POST with Node's own HTTP client over a kept-alive connection pool.
 * Not `fetch`: the dispatcher sends many small requests beside running
 * deploys, and undici's fetch costs about three times the CPU per request
 * (measured: 0.47 against 0.13 ms on loopback, docs/benchmarks.md
 * "Notifications"). Redirects are not followed (a receiver that moves must
 * be reconfigured, not trusted to forward signed events elsewhere).
 */
export class HttpPoster {
  private readonly agent: http.Agent;
  private readonly request: typeof http.request;

  constructor(readonly url: URL) {
    const secure = url.protocol === "https:";
    this.agent = secure ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true });
    this.request = secure ? https.request : http.request;
  }

  post(
    body: string,
    headers: Record<string, string>,
    signal: AbortSignal,
  ): Promise<{ status: number; header(name: string): string | null }> {
    return new Promise((resolve, reject) => {
      const request = this.request(
        this.url,
        {
          method: "POST",
          agent: this.agent,
          signal,
          headers: { ...headers, "content-length": String(Buffer.byteLength(body)) },
        },
        (response) => {
          // The body is not read, only drained, so the connection goes back to the pool.
          response.resume();
          response.on("end", () =>
            resolve({
              status: response.statusCode ?? 0,
              header: (name) => {
                const value = response.headers[name.toLowerCase()];
                return typeof value === "string" ? value : null;
              },
            }),
          );
          response.on("error", reject);
        },
      );
      request.on("error", reject);
      request.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
