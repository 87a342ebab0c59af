import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

/**
 * Serves the built web UI (Vite's output, `dist/web`) at `/`. The files are
 * read into memory once at start — a few hundred kilobytes — and served
 * only under the exact paths found there, so no request path is ever
 * turned into a file path (no traversal to guard against) and gzip is done
 * once, not per request.
 *
 * Headers: hashed assets are immutable; `index.html` is revalidated (its
 * ETag), so a new version is picked up on the next load. The Content
 * Security Policy allows only this origin: no inline script or style, no
 * other host, no framing.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
  ".txt": "text/plain; charset=utf-8",
  ".woff2": "font/woff2",
};

interface WebFile {
  body: Buffer;
  gzipped: Buffer | undefined;
  type: string;
  etag: string;
  cacheControl: string;
}

/** Every file under `root`, by URL path (`/index.html`, `/assets/index-3f2a.js`). */
export function loadWebFiles(root: string): Map<string, WebFile> {
  const files = new Map<string, WebFile>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        walk(full);
        continue;
      }
      if (!entry.isFile()) continue;
      const urlPath = `/${path.relative(root, full).split(path.sep).join("/")}`;
      const body = readFileSync(full);
      const type = TYPES[path.extname(entry.name).toLowerCase()] ?? "application/octet-stream";
      const compressible = /^(text\/|image\/svg|application\/json)/.test(type) && body.length > 512;
      files.set(urlPath, {
        body,
        gzipped: compressible ? gzipSync(body, { level: 9 }) : undefined,
        type,
        etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`,
        // Vite names every asset after its content: a name never changes meaning.
        cacheControl: urlPath.startsWith("/assets/") ? "public, max-age=31536000, immutable" : "no-cache",
      });
    }
  };
  walk(root);
  return files;
}

function send(request: FastifyRequest, reply: FastifyReply, file: WebFile): FastifyReply {
  reply
    .header("content-type", file.type)
    .header("cache-control", file.cacheControl)
    .header("etag", file.etag)
    .header("x-content-type-options", "nosniff")
    .header("referrer-policy", "no-referrer")
    .header("vary", "accept-encoding");
  if (file.type.startsWith("text/html")) {
    reply.header("content-security-policy", CONTENT_SECURITY_POLICY).header("x-frame-options", "DENY");
  }
  if (request.headers["if-none-match"] === file.etag) return reply.code(304).send();
  const gzip = file.gzipped && /\bgzip\b/.test(String(request.headers["accept-encoding"] ?? ""));
  if (gzip) reply.header("content-encoding", "gzip");
  return reply.send(gzip ? file.gzipped : file.body);
}

/** `<package>/dist/web`, whether this file runs from src/ (tests) or dist/ (the package). */
export function defaultWebRoot(): string {
  return fileURLToPath(new URL("../../dist/web", import.meta.url));
}

/**
 * Registers the UI's routes: `/` (index.html) and every built file. Without
 * a build, `/` says how to make one instead of a bare 404.
 */
export function registerWebUi(app: FastifyInstance, root: string): void {
  const built = existsSync(path.join(root, "index.html")) && statSync(root).isDirectory();
  if (!built) {
    app.get("/", { schema: { hide: true } }, async (_request, reply) =>
      reply
        .code(503)
        .header("content-type", "text/plain; charset=utf-8")
        .send(`The web UI is not built (no ${path.join(root, "index.html")}). Run: npm run build\n`),
    );
    return;
  }
  const files = loadWebFiles(root);
  const index = files.get("/index.html")!;
  app.get("/", { schema: { hide: true } }, async (request, reply) => send(request, reply, index));
  for (const [urlPath, file] of files) {
    app.get(urlPath, { schema: { hide: true } }, async (request, reply) => send(request, reply, file));
  }
}
