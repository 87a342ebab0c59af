import type { ServerResponse } from "node:http";
import { Writable } from "node:stream";

/**
 * Git's answer to a push, kept in memory instead of sent: with hosted
 * repositories shared between servers, the client may hear "ok" only once
 * the push is in the database (git/shared-hosted-repos.ts). A receive-pack
 * answer is a status report and some progress lines, small however large
 * the push. `release` sends it; `refuse` sends an error instead.
 */
export class HeldResponse extends Writable {
  headersSent = false;
  private status = 200;
  private headers: Record<string, string> = {};
  private readonly chunks: Buffer[] = [];

  constructor() {
    super();
    // Written after a shutdown destroyed it: nobody reads it any more, nothing to report.
    this.on("error", () => undefined);
  }

  writeHead(status: number, headers: Record<string, string> = {}): this {
    this.status = status;
    this.headers = headers;
    this.headersSent = true;
    return this;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.chunks.push(Buffer.from(chunk));
    done();
  }

  /** Sends what git answered (or cuts the connection when git gave no answer). */
  release(response: ServerResponse): void {
    if (response.destroyed) return;
    if (!this.headersSent) {
      response.destroy();
      return;
    }
    response.writeHead(this.status, this.headers);
    response.end(Buffer.concat(this.chunks));
  }

  /** Answers `status` with a message git prints ("error: RPC failed; HTTP 503"), dropping git's answer. */
  static refuse(response: ServerResponse, status: number, message: string): void {
    if (response.destroyed) return;
    if (response.headersSent) {
      response.destroy();
      return;
    }
    response.writeHead(status, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-cache" });
    response.end(`${message}\n`);
  }
}
