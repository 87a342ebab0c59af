import { createHash } from "node:crypto";
import { request } from "node:http";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ArtifactStore } from "../../src/artifacts/artifact-store.js";
import { canonicalManifest } from "../../src/domain/artifact.js";
import { enrollHost } from "../helpers/hosts.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { blobFiles, makeTree, packTar, realTar, tempDir } from "./helpers.js";

let t: TestTurnout;
let scratch: { dir: string; cleanup(): Promise<void> };
const tokens: Record<string, string> = {};
const APP_JS = "console.log('served');\n".repeat(50);
const sha = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");

beforeAll(async () => {
  t = await startTurnout();
  scratch = await tempDir("artifact-http");
  for (const [name, role] of [
    ["viewer", "viewer"],
    ["deployer", "deployer"],
    ["agent", "agent"],
  ] as const) {
    tokens[name] = (await t.store.tokens.create({ name, role, apps: null, createdBy: "test" })).token;
  }
  tokens["other-app"] = (
    await t.store.tokens.create({ name: "other-app", role: "deployer", apps: ["blog"], createdBy: "test" })
  ).token;
  await makeTree(path.join(scratch.dir, "tree"), {
    "app.js": APP_JS,
    "bin/serve": { content: "#!/bin/sh\nnode app.js\n", mode: 0o755 },
    "public/index.html": "<p>hi</p>\n",
    "public/current": { link: "index.html" },
  });
}, 30_000);

afterAll(async () => {
  await t?.stop();
  await scratch?.cleanup();
});

async function upload(body: Buffer, token = t.adminToken, contentType = "application/gzip") {
  const res = await fetch(`${t.url}/api/v1/apps/shop/artifacts`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": contentType },
    body,
  });
  return { status: res.status, body: (await res.json()) as any };
}

async function download(urlPath: string, token: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${t.url}${urlPath}`, {
    headers: { authorization: `Bearer ${token}`, ...headers },
  });
  return { res, bytes: Buffer.from(await res.arrayBuffer()) };
}

describe("artifact uploads", () => {
  let digest: string;

  it("stores an uploaded tar.gz as fromDirectory would, and records it (201)", async () => {
    const tree = path.join(scratch.dir, "tree");
    const expected = await new ArtifactStore({ dir: path.join(scratch.dir, "reference") }).fromDirectory(
      tree,
    );
    const res = await upload(await realTar(tree, true));
    expect(res.status).toBe(201);
    expect(res.body.artifact).toMatchObject({
      digest: expected.digest,
      app: "shop",
      files: 3,
      bytes: expected.bytes,
      source: "uploaded",
    });
    expect(typeof res.body.artifact.createdAt).toBe("string");
    digest = res.body.artifact.digest;
    expect((await t.store.artifacts.get(digest)).source).toBe("uploaded");
    expect(await blobFiles(path.join(t.dataDir, "artifacts"))).toContain(sha(APP_JS));
  });

  it("takes a plain tar as application/x-tar too, and a repeated upload is the same artifact", async () => {
    const res = await upload(
      await realTar(path.join(scratch.dir, "tree"), false),
      t.adminToken,
      "application/x-tar",
    );
    expect(res.status).toBe(201);
    expect(res.body.artifact.digest).toBe(digest);
    const list = await t.api("GET", "/api/v1/apps/shop/artifacts", undefined, tokens["viewer"]);
    expect(list.status).toBe(200);
    expect(list.body.artifacts.map((a: any) => a.digest)).toEqual([digest]);
  });

  it("shows an artifact with its manifest to readers of its app", async () => {
    const res = await t.api("GET", `/api/v1/artifacts/${digest}`, undefined, tokens["viewer"]);
    expect(res.status).toBe(200);
    expect(res.body.artifact.digest).toBe(digest);
    expect(res.body.manifest.entries.find((e: any) => e.path === "bin/serve")).toMatchObject({ mode: 0o755 });
    // Another app's artifact is not there for a token limited to other apps.
    const other = await t.api("GET", `/api/v1/artifacts/${digest}`, undefined, tokens["other-app"]);
    expect(other.status).toBe(404);
    expect((await t.api("GET", `/api/v1/artifacts/${"e".repeat(64)}`)).status).toBe(404);
    expect((await t.api("GET", "/api/v1/artifacts/not-a-digest")).status).toBe(400);
  });

  it("refuses uploads from viewers (403), and to unknown apps or apps the token may not see (404)", async () => {
    const archive = await realTar(path.join(scratch.dir, "tree"), true);
    const viewer = await upload(archive, tokens["viewer"]);
    expect(viewer.status).toBe(403);
    expect(viewer.body.error.code).toBe("E_FORBIDDEN");
    expect((await upload(archive, tokens["other-app"])).status).toBe(404);
    expect((await upload(archive, tokens["deployer"])).status).toBe(201);
    const unknown = await fetch(`${t.url}/api/v1/apps/nope/artifacts`, {
      method: "POST",
      headers: { authorization: `Bearer ${t.adminToken}`, "content-type": "application/gzip" },
      body: archive,
    });
    expect(unknown.status).toBe(404);
  });

  it("refuses a hostile archive with 422, naming the entry, and stores nothing of it", async () => {
    const before = await blobFiles(path.join(t.dataDir, "artifacts"));
    const archive = await packTar([
      { name: "fresh.txt", content: "never stored" },
      { name: "evil", type: "symlink", linkname: "../../../etc" },
    ]);
    const res = await upload(archive, t.adminToken, "application/x-tar");
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe("E_VALIDATION");
    expect(res.body.error.details.path).toBe("evil");
    expect(await blobFiles(path.join(t.dataDir, "artifacts"))).toEqual(before);
  });

  it("needs a token and a tar content type", async () => {
    const archive = await realTar(path.join(scratch.dir, "tree"), true);
    const anonymous = await fetch(`${t.url}/api/v1/apps/shop/artifacts`, {
      method: "POST",
      headers: { "content-type": "application/gzip" },
      body: archive,
    });
    expect(anonymous.status).toBe(401);
    expect((await upload(archive, t.adminToken, "text/plain")).status).toBe(415);
  });

  it("refuses a declared body above 1 GiB before reading it (413)", async () => {
    // fetch will not send a Content-Length it does not honour: a raw request that declares 2 GiB and sends 1 byte.
    const url = new URL(`${t.url}/api/v1/apps/shop/artifacts`);
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: url.hostname,
          port: url.port,
          path: url.pathname,
          method: "POST",
          headers: {
            authorization: `Bearer ${t.adminToken}`,
            "content-type": "application/x-tar",
            "content-length": String(2 * 1024 * 1024 * 1024),
          },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
          req.destroy();
        },
      );
      req.on("error", reject);
      req.write("x");
    });
    expect(status).toBe(413);
  });

  it("answers a refusal early in a large upload, after dropping the rest", async () => {
    const archive = await packTar([
      { name: "../escape", content: "x" },
      { name: "big.bin", content: "y".repeat(8 * 1024 * 1024) },
    ]);
    const res = await upload(archive, t.adminToken, "application/x-tar");
    expect(res.status).toBe(422);
    expect(res.body.error.details.path).toBe("../escape");
    // The connection is still usable for the next request.
    expect((await t.api("GET", "/api/v1/apps/shop/artifacts")).status).toBe(200);
  });
});

describe("downloads for agents", () => {
  let digest: string;
  /** A host the server sent the artifact to, and one it sent nothing. */
  let host: { id: number; token: string };
  let stranger: { id: number; token: string };
  const blob = (sha256: string, artifact?: string) =>
    `/api/v1/blobs/${sha256}${artifact === undefined ? "" : `?artifact=${artifact}`}`;
  beforeAll(async () => {
    digest = (await upload(await realTar(path.join(scratch.dir, "tree"), true))).body.artifact.digest;
    host = await enrollHost(t.store, "h-1", { apps: ["shop"], labels: [] });
    stranger = await enrollHost(t.store, "h-2", { apps: ["shop"], labels: [] });
    await t.store.fleet.sendArtifact([host.id], digest, "shop");
  });

  it("streams a blob to a host it was sent to, with length, ETag and immutable caching", async () => {
    const { res, bytes } = await download(blob(sha(APP_JS), digest), host.token);
    expect(res.status).toBe(200);
    expect(bytes.toString()).toBe(APP_JS);
    expect(res.headers.get("content-type")).toBe("application/octet-stream");
    expect(res.headers.get("content-length")).toBe(String(Buffer.byteLength(APP_JS)));
    expect(res.headers.get("etag")).toBe(`"${sha(APP_JS)}"`);
    expect(res.headers.get("cache-control")).toContain("immutable");
    const again = await download(blob(sha(APP_JS), digest), host.token, {
      "if-none-match": `"${sha(APP_JS)}"`,
    });
    expect(again.res.status).toBe(304);
  });

  it("admins may download; viewers and deployers may not (403)", async () => {
    expect((await download(blob(sha(APP_JS)), t.adminToken)).res.status).toBe(200);
    const viewer = await download(blob(sha(APP_JS)), tokens["viewer"]!);
    expect(viewer.res.status).toBe(403);
    expect(JSON.parse(viewer.bytes.toString()).error.code).toBe("E_FORBIDDEN");
    expect((await download(blob(sha(APP_JS)), tokens["deployer"]!)).res.status).toBe(403);
  });

  it("answers 400 for a malformed digest and 404 for an unknown one", async () => {
    for (const bad of ["abc", "..%2F..%2Fturnout.db", "A".repeat(64), `${"0".repeat(63)}g`]) {
      const { res } = await download(blob(bad, digest), host.token);
      expect(res.status, bad).toBe(400);
      expect((await download(blob(sha(APP_JS), bad), host.token)).res.status, bad).toBe(400);
    }
    const missing = await download(blob("0".repeat(64)), t.adminToken);
    expect(missing.res.status).toBe(404);
    expect(JSON.parse(missing.bytes.toString()).error.code).toBe("E_NOT_FOUND");
  });

  it("serves an artifact's manifest to a host it was sent to, as its canonical JSON", async () => {
    const { res, bytes } = await download(`/api/v1/artifacts/${digest}/manifest`, host.token);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("application/json");
    expect(sha(bytes)).toBe(digest);
    const manifest = JSON.parse(bytes.toString());
    expect(bytes.toString()).toBe(canonicalManifest(manifest));
    expect((await download(`/api/v1/artifacts/${digest}/manifest`, tokens["viewer"]!)).res.status).toBe(403);
    expect((await download(`/api/v1/artifacts/${digest}/manifest`, t.adminToken)).res.status).toBe(200);
  });

  it("a host token reads nothing it was not sent: the same 404 as for what does not exist", async () => {
    const body = async (urlPath: string, token: string) => {
      const { res, bytes } = await download(urlPath, token);
      return { status: res.status, error: JSON.parse(bytes.toString()).error };
    };
    const never = "1".repeat(64);
    // The manifest: never sent to this host, or never stored at all.
    const notSent = await body(`/api/v1/artifacts/${digest}/manifest`, stranger.token);
    const absent = await body(`/api/v1/artifacts/${never}/manifest`, stranger.token);
    expect(notSent.status).toBe(404);
    expect(notSent).toEqual({
      status: absent.status,
      error: { ...absent.error, message: absent.error.message.replace(never, digest), details: { digest } },
    });
    // A blob of an artifact never sent, or of one that does not exist.
    const blobNotSent = await body(blob(sha(APP_JS), digest), stranger.token);
    const blobAbsent = await body(blob(sha(APP_JS), never), stranger.token);
    expect(blobNotSent.status).toBe(404);
    expect(blobNotSent).toEqual(blobAbsent);
    // And the batch endpoint likewise.
    const batch = async (token: string, artifact: string) => {
      const res = await fetch(`${t.url}/api/v1/blobs/batch`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ digests: [sha(APP_JS)], artifact }),
      });
      return { status: res.status, error: res.ok ? undefined : ((await res.json()) as any).error };
    };
    expect(await batch(stranger.token, digest)).toEqual(blobAbsent);
    expect(await batch(stranger.token, never)).toEqual(blobAbsent);
    expect((await batch(host.token, digest)).status).toBe(200);
  });

  it("a host reads only the blobs of what it was sent, and must say which artifact they belong to", async () => {
    // A blob stored for another artifact: not part of the one sent.
    const other = await upload(
      await packTar([{ name: "secret.txt", content: "another app's file\n" }]),
      t.adminToken,
      "application/x-tar",
    );
    expect(other.status).toBe(201);
    const outside = await download(blob(sha("another app's file\n"), digest), host.token);
    expect(outside.res.status).toBe(404);
    expect(JSON.parse(outside.bytes.toString()).error.code).toBe("E_NOT_FOUND");
    // Once the server sends it, it is readable.
    await t.store.fleet.sendArtifact([host.id], other.body.artifact.digest, "shop");
    expect(
      (await download(blob(sha("another app's file\n"), other.body.artifact.digest), host.token)).res.status,
    ).toBe(200);
    const unnamed = await download(blob(sha(APP_JS)), host.token);
    expect(unnamed.res.status).toBe(400);
    expect(JSON.parse(unnamed.bytes.toString()).error.message).toContain("name the artifact");
  });

  it("an enrollment token reads nothing, and agent tokens read nothing else", async () => {
    for (const urlPath of [`/api/v1/artifacts/${digest}/manifest`, blob(sha(APP_JS), digest)]) {
      const { res, bytes } = await download(urlPath, tokens["agent"]!);
      expect(res.status, urlPath).toBe(403);
      expect(JSON.parse(bytes.toString()).error.message).toContain("enrollment token");
    }
    expect((await t.api("GET", `/api/v1/artifacts/${digest}`, undefined, tokens["agent"])).status).toBe(403);
    expect((await t.api("GET", "/api/v1/apps/shop/artifacts", undefined, tokens["agent"])).status).toBe(403);
    expect((await t.api("GET", `/api/v1/artifacts/${digest}`, undefined, host.token)).status).toBe(403);
  });
});
