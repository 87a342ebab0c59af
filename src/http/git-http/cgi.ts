import { type ChildProcess, spawn } from "node:child_process";
import type { IncomingMessage } from "node:http";
import type { Readable, Writable } from "node:stream";
import { baseGitEnv, withTransportPolicy } from "../../git/git-env.js";

/**
 * Git's smart-HTTP protocol is served by `git http-backend`, run as a CGI
 * program per request: request body → its stdin, its stdout (CGI headers, a
 * blank line, then the protocol stream) → the response, both streamed, so a
 * push of any size never sits in memory.
 */
export interface CgiRequest {
  /** Directory holding the repository (GIT_PROJECT_ROOT). */
  projectRoot: string;
  /** `/<repo>.git/<service path>`, built by the route, never taken from the URL as is. */
  pathInfo: string;
  method: "GET" | "POST";
  query: string;
  /** The token's name: http-backend enables receive-pack only for an authenticated REMOTE_USER. */
  remoteUser: string;
  remoteAddr: string;
}

export interface CgiOptions {
  /** Where the request body is read from (default: the request itself). */
  body?: Readable;
  /** Larger request bodies are cut off (413 if nothing was answered yet). */
  maxBodyBytes: number;
  /** Sees every chunk of the request body on its way to git. */
  onBodyChunk?: (chunk: Buffer) => void;
  /** For operators: http-backend's stderr when it fails. */
  log: (message: string) => void;
  /** Aborted when the server shuts down: a push in progress must not hold the shutdown. */
  signal?: AbortSignal;
}

/**
 * Where git's answer goes: the HTTP response itself, or a HeldResponse
 * (held-response.ts) that keeps it until the push is recorded.
 */
export type CgiResponse = Writable & {
  readonly headersSent: boolean;
  writeHead(status: number, headers?: Record<string, string>): unknown;
};

export interface CgiOutcome {
  /** null: killed (client gone, body too large) or could not start. */
  exitCode: number | null;
  /** The HTTP status answered. */
  status: number;
}

// Variables of the server's environment http-backend may see: enough to find
// git and a temp directory; baseGitEnv already dropped inherited GIT_* and
// added the no-prompt, no-user-config settings.
const KEPT = new Set([
  "PATH",
  "HOME",
  "TMPDIR",
  "LC_ALL",
  "GIT_EXEC_PATH",
  "GIT_TERMINAL_PROMPT",
  "GIT_CONFIG_NOSYSTEM",
  "GIT_CONFIG_GLOBAL",
]);
// The most http-backend buffers of a fetch negotiation (upload-pack requests are read whole).
const MAX_REQUEST_BUFFER = "64M";
const STDERR_KEEP = 4096;
// The protocol version header git sends (`version=2`); anything odd is dropped, not passed on.
const GIT_PROTOCOL = /^[A-Za-z0-9=:._-]{1,200}$/;

function cgiEnv(request: IncomingMessage, cgi: CgiRequest): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(baseGitEnv())) if (KEPT.has(key)) env[key] = value;
  Object.assign(env, {
    GIT_PROJECT_ROOT: cgi.projectRoot,
    GIT_HTTP_EXPORT_ALL: "1",
    GIT_HTTP_MAX_REQUEST_BUFFER: MAX_REQUEST_BUFFER,
    GATEWAY_INTERFACE: "CGI/1.1",
    PATH_INFO: cgi.pathInfo,
    REQUEST_METHOD: cgi.method,
    QUERY_STRING: cgi.query,
    REMOTE_USER: cgi.remoteUser,
    REMOTE_ADDR: cgi.remoteAddr,
    CONTENT_TYPE: request.headers["content-type"] ?? "",
  });
  const length = request.headers["content-length"];
  if (length !== undefined && /^\d+$/.test(length)) env["CONTENT_LENGTH"] = length;
  // http-backend inflates gzip-encoded requests itself.
  const encoding = request.headers["content-encoding"];
  if (encoding !== undefined) env["HTTP_CONTENT_ENCODING"] = encoding;
  const protocol = request.headers["git-protocol"];
  if (typeof protocol === "string" && GIT_PROTOCOL.test(protocol)) env["HTTP_GIT_PROTOCOL"] = protocol;
  return env;
}

function killGroup(child: ChildProcess): void {
  // http-backend runs upload-pack / receive-pack as its own children: end them all.
  try {
    if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/** Splits CGI headers from the body: `Status: 403 Forbidden`, other headers, a blank line. */
function headerEnd(buffer: Buffer): { at: number; skip: number } | undefined {
  const crlf = buffer.indexOf("\r\n\r\n");
  const lf = buffer.indexOf("\n\n");
  if (crlf >= 0 && (lf < 0 || crlf < lf)) return { at: crlf, skip: 4 };
  if (lf >= 0) return { at: lf, skip: 2 };
  return undefined;
}

/** The `Status:` and other header lines a CGI program (git http-backend) prints before its body. */
export function parseCgiHeaders(text: string): { status: number; headers: Record<string, string> } {
  let status = 200;
  const headers: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (name.toLowerCase() === "status") status = Number.parseInt(value, 10) || 200;
    else headers[name] = value;
  }
  return { status, headers };
}

/** Runs http-backend for one request and streams its answer; resolves once git has exited. */
export function runHttpBackend(
  request: IncomingMessage,
  response: CgiResponse,
  cgi: CgiRequest,
  options: CgiOptions,
): Promise<CgiOutcome> {
  return new Promise((resolve) => {
    const child = spawn("git", ["http-backend"], {
      // http-backend fetches nothing, but every git Turnout starts gets the same transport policy.
      env: withTransportPolicy(cgiEnv(request, cgi)),
      shell: false,
      detached: true,
      stdio: [cgi.method === "POST" ? "pipe" : "ignore", "pipe", "pipe"],
    });
    let status = 0;
    let stderr = "";
    let settled = false;
    const fail = (code: number, text: string) => {
      // Mid-answer there is no way to say what went wrong: cutting the connection is clearest.
      if (response.headersSent) {
        response.destroy();
        return;
      }
      status = code;
      response.writeHead(code, { "content-type": "text/plain; charset=utf-8" });
      response.end(`${text}\n`);
    };

    // The client hung up (or the body was cut off): git has nobody to talk to.
    response.on("close", () => {
      if (!response.writableFinished) killGroup(child);
    });
    const shutdown = () => {
      killGroup(child);
      response.destroy();
    };
    options.signal?.addEventListener("abort", shutdown, { once: true });

    if (cgi.method === "POST" && child.stdin) {
      const body = options.body ?? request;
      let received = 0;
      child.stdin.on("error", () => {}); // git may stop reading early; its exit status tells why
      body.on("data", (chunk: Buffer) => {
        received += chunk.length;
        if (received > options.maxBodyBytes) {
          killGroup(child);
          body.unpipe(child.stdin!);
          fail(413, "turnout: request body too large");
          request.destroy();
          return;
        }
        options.onBodyChunk?.(chunk);
      });
      // A body that stops arriving (request-timeouts.ts) or a client gone: git gets no more.
      body.on("error", () => {
        killGroup(child);
        body.unpipe(child.stdin!);
        if (response.headersSent || response.destroyed) {
          response.destroy();
          return;
        }
        status = 408;
        // Said, then the connection goes: the rest of the body is not waited for.
        response.writeHead(408, { "content-type": "text/plain; charset=utf-8", connection: "close" });
        response.end("turnout: the request body did not arrive in time\n");
      });
      body.pipe(child.stdin);
    }

    let head = Buffer.alloc(0);
    const onHead = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = headerEnd(head);
      if (!end) return;
      child.stdout!.off("data", onHead);
      child.stdout!.pause();
      const parsed = parseCgiHeaders(head.subarray(0, end.at).toString("latin1"));
      if (response.headersSent || response.destroyed) {
        child.stdout!.resume(); // drain, nobody is listening any more
        return;
      }
      status = parsed.status;
      response.writeHead(parsed.status, parsed.headers);
      response.write(head.subarray(end.at + end.skip));
      child.stdout!.pipe(response);
    };
    child.stdout!.on("data", onHead);
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (text: string) => {
      stderr = (stderr + text).slice(-STDERR_KEEP);
    });

    const finish = (exitCode: number | null) => {
      if (settled) return;
      settled = true;
      options.signal?.removeEventListener("abort", shutdown);
      if (exitCode !== 0 && stderr.trim() !== "") options.log(`git http-backend: ${stderr.trim()}`);
      if (!response.headersSent) fail(502, "turnout: git http-backend gave no answer");
      else if (!response.writableEnded) response.end();
      resolve({ exitCode, status });
    };
    child.on("error", (error) => {
      options.log(`could not start git http-backend: ${error.message}`);
      finish(null);
    });
    child.on("close", (code) => finish(code));
  });
}
