import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { gunzipSync } from "node:zlib";
import { extract } from "tar-stream";

/**
 * A small local stand-in for Heroku's Platform API v3, speaking the
 * documented endpoints a deploy uses and CHECKING what it receives: the
 * Accept and Authorization headers of API calls, the absence of the key on
 * the presigned source URLs, the build's source URL and version, a real
 * gzipped tarball, and the order of the calls (a build only from an
 * uploaded source). Anything off is answered with Heroku's error shape and
 * recorded in `problems`.
 */
export interface FakeHerokuRequest {
  method: string;
  path: string;
  headers: IncomingMessage["headers"];
  body: Buffer;
}

export interface FakeHeroku {
  url: string;
  requests: FakeHerokuRequest[];
  /** What the fake found wrong in a request (a test asserts it stays empty). */
  problems: string[];
  /** Files of each uploaded tarball, by source id. */
  uploads: Map<string, Map<string, string>>;
  releases: { id: string; version: number; status: string; description: string }[];
  /** The next build fails (prints an error, status failed). */
  failNextBuild(): void;
  close(): Promise<void>;
}

const ACCEPT = "application/vnd.heroku+json; version=3";

export async function startFakeHeroku(options: { app: string; apiKey: string }): Promise<FakeHeroku> {
  const requests: FakeHerokuRequest[] = [];
  const problems: string[] = [];
  const uploads = new Map<string, Map<string, string>>();
  const sources = new Map<string, { uploaded: boolean }>();
  const builds = new Map<
    string,
    { id: string; status: string; releaseId: string | null; fail: boolean; version: string }
  >();
  const releases: FakeHeroku["releases"] = [];
  let failNext = false;
  let base = "";

  const send = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
  };
  const refuse = (res: ServerResponse, status: number, id: string, message: string) => {
    problems.push(message);
    send(res, status, { id, message });
  };
  const newRelease = (description: string) => {
    const release = { id: randomUUID(), version: releases.length + 1, status: "succeeded", description };
    releases.push(release);
    return release;
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const url = new URL(req.url ?? "/", base);
      requests.push({ method: req.method ?? "", path: url.pathname, headers: req.headers, body });
      void handle(req, res, url, body).catch((error: Error) => refuse(res, 500, "internal", error.message));
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse, url: URL, body: Buffer) {
    const path = url.pathname;
    // Presigned source URLs: no key, no content type (the signature covers the request).
    const blob = /^\/source-blobs\/([\w-]+)$/.exec(path);
    if (blob) {
      const source = sources.get(blob[1]!);
      if (!source) return refuse(res, 404, "not_found", `no source ${blob[1]}`);
      if (req.headers.authorization)
        return refuse(res, 403, "forbidden", "the API key was sent to the source URL");
      if (url.searchParams.get("signature") !== "ok" && req.method === "PUT")
        return refuse(res, 403, "forbidden", "unsigned source upload");
      if (req.method === "PUT") {
        if (req.headers["content-type"])
          return refuse(res, 400, "bad_request", "a content type on the source upload");
        uploads.set(blob[1]!, await untar(body));
        source.uploaded = true;
        return res.writeHead(200).end();
      }
      return refuse(res, 405, "method", `${req.method} on a source URL`);
    }
    const stream = /^\/streams\/([\w-]+)$/.exec(path);
    if (stream) {
      const build = builds.get(stream[1]!);
      if (!build) return refuse(res, 404, "not_found", "no such build stream");
      res.writeHead(200, { "content-type": "text/plain" });
      res.write("-----> Building on the Heroku-24 stack\n");
      await new Promise((r) => setTimeout(r, 50));
      res.write(`-----> Fetching source ${build.version.slice(0, 7)}\n`);
      await new Promise((r) => setTimeout(r, 50));
      if (build.fail) {
        res.end(" !     Push rejected, failed to compile app.\n");
        build.status = "failed";
        return;
      }
      res.end("-----> Launching...\n       Released\n");
      build.status = "succeeded";
      build.releaseId = newRelease(`Deploy ${build.version.slice(0, 8)}`).id;
      return;
    }

    // The Platform API proper.
    if (req.headers.accept !== ACCEPT)
      return refuse(res, 400, "bad_request", `Accept was ${req.headers.accept}`);
    if (req.headers.authorization !== `Bearer ${options.apiKey}`)
      return refuse(res, 401, "unauthorized", "Invalid credentials provided.");
    const appPath = `/apps/${options.app}`;
    if (!path.startsWith(`${appPath}/`))
      return refuse(res, 404, "not_found", `Couldn't find that app: ${path}`);
    const rest = path.slice(appPath.length);
    const json = body.length > 0 ? JSON.parse(body.toString("utf8")) : {};
    if (req.method === "POST" && rest === "/sources") {
      const id = randomUUID();
      sources.set(id, { uploaded: false });
      return send(res, 201, {
        source_blob: {
          get_url: `${base}/source-blobs/${id}`,
          put_url: `${base}/source-blobs/${id}?signature=ok`,
        },
      });
    }
    if (req.method === "POST" && rest === "/builds") {
      const sourceUrl: unknown = json.source_blob?.url;
      const version: unknown = json.source_blob?.version;
      const id = typeof sourceUrl === "string" ? /\/source-blobs\/([\w-]+)$/.exec(sourceUrl)?.[1] : undefined;
      if (!id || !sources.get(id)?.uploaded)
        return refuse(res, 422, "invalid_params", "source_blob.url is not an uploaded source");
      if (typeof version !== "string" || !/^[0-9a-f]{40}$/.test(version))
        return refuse(res, 422, "invalid_params", "source_blob.version is not a commit");
      const build = { id: randomUUID(), status: "pending", releaseId: null, fail: failNext, version };
      failNext = false;
      builds.set(build.id, build);
      return send(res, 201, buildJson(build));
    }
    const buildMatch = /^\/builds\/([\w-]+)$/.exec(rest);
    if (req.method === "GET" && buildMatch) {
      const build = builds.get(buildMatch[1]!);
      return build ? send(res, 200, buildJson(build)) : refuse(res, 404, "not_found", "no such build");
    }
    const releaseMatch = /^\/releases\/([\w-]+)$/.exec(rest);
    if (req.method === "GET" && releaseMatch) {
      const release = releases.find((r) => r.id === releaseMatch[1]);
      return release ? send(res, 200, release) : refuse(res, 404, "not_found", "no such release");
    }
    if (req.method === "POST" && rest === "/releases") {
      const target = releases.find((r) => r.id === json.release);
      if (!target) return refuse(res, 404, "not_found", `no release ${json.release} to roll back to`);
      return send(res, 201, newRelease(`Rollback to v${target.version}`));
    }
    return refuse(res, 404, "not_found", `${req.method} ${path}`);
  }

  function buildJson(build: { id: string; status: string; releaseId: string | null }) {
    return {
      id: build.id,
      status: build.status,
      output_stream_url: `${base}/streams/${build.id}`,
      release: build.releaseId ? { id: build.releaseId } : null,
    };
  }

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: base,
    requests,
    problems,
    uploads,
    releases,
    failNextBuild: () => {
      failNext = true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The files of a gzipped tarball, by path (throws on anything that is not one). */
async function untar(gz: Buffer): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const reader = extract();
  const done = new Promise<void>((resolve, reject) => {
    reader.on("entry", (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on("data", (c: unknown) => chunks.push(c as Buffer));
      stream.on("end", () => {
        if (header.type === "file") files.set(header.name, Buffer.concat(chunks).toString("utf8"));
        next();
      });
    });
    reader.on("finish", resolve);
    reader.on("error", reject);
  });
  reader.end(gunzipSync(gz));
  await done;
  return files;
}
