import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, readlink, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LocalHostOps } from "../../src/agent/host-layout/index.js";
import { SimHostOps } from "../../src/agent/simulator/sim-host-ops.js";
import { type ArtifactManifest, hostReleaseId, manifestDigest } from "../../src/domain/artifact.js";
import type { BlobSource, HostOps, StageSpec } from "../../src/providers/fleet/host-ops.js";

/**
 * An environment's own deploy path (issue 15): the layout at <path>/ instead
 * of <root>/<app>/, the blob cache still under <root>/.turnout, and the
 * inventory reporting each layout with its path.
 */
const sha = (data: string) => createHash("sha256").update(data).digest("hex");

function artifact(files: Record<string, string>) {
  const blobs = new Map<string, Buffer>();
  const entries = Object.entries(files)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([path, content]) => {
      blobs.set(sha(content), Buffer.from(content));
      return {
        path,
        type: "file" as const,
        mode: 0o644,
        size: Buffer.byteLength(content),
        sha256: sha(content),
      };
    });
  const manifest: ArtifactManifest = { version: 1, entries };
  return { manifest, blobs, id: hostReleaseId(manifestDigest(manifest)) };
}
type Artifact = ReturnType<typeof artifact>;

class MemorySource implements BlobSource {
  readonly blobs = new Map<string, Buffer>();
  add(a: Artifact): this {
    for (const [k, v] of a.blobs) this.blobs.set(k, v);
    return this;
  }
  async open(digest: string): Promise<Readable> {
    const blob = this.blobs.get(digest);
    if (!blob) throw new Error(`no blob ${digest}`);
    return Readable.from([blob]);
  }
}

const live = () => new AbortController().signal;
const spec = (a: Artifact, path?: string): StageSpec => ({
  app: "web",
  ...(path ? { path } : {}),
  releaseId: a.id,
  manifest: a.manifest,
  shared: [],
  env: {},
  timeoutMs: 10_000,
});
const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

let dir: string;
let root: string;
let host: LocalHostOps;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "turnout-deploy-path-"));
  root = join(dir, "root");
  host = new LocalHostOps({ name: "h1", root, fsyncs: false });
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("a deploy path on an agent's host layout", () => {
  it("stages, switches and reports the release at the path; the cache stays under <root>/.turnout, hard-linked", async () => {
    const staging = join(dir, "www", "web-staging");
    const a = artifact({ "index.html": "hello" });
    const result = await host.stage(spec(a, staging), new MemorySource().add(a), () => {}, live());
    expect(result.staged).toBe(true);
    await host.switchTo({ app: "web", path: staging }, a.id, "current");

    expect(await readlink(join(staging, "current"))).toBe(`releases/${a.id}`);
    expect(await readFile(join(staging, "current", "index.html"), "utf8")).toBe("hello");
    // Nothing of the app under the root; the cache is there, and the release's file is its inode.
    expect(await exists(join(root, "web"))).toBe(false);
    const cached = join(root, ".turnout", "blobs", sha("hello").slice(0, 2), sha("hello"));
    expect((await stat(cached)).ino).toBe((await stat(join(staging, "releases", a.id, "index.html"))).ino);
    expect(await readFile(join(root, ".turnout", "paths"), "utf8")).toBe(`web ${staging}\n`);
    expect(await host.inventory()).toEqual([
      { app: "web", path: staging, releases: [a.id], current: a.id, slots: {} },
    ]);
    // Commands run in the release at the path, with its shared directory.
    const out: string[] = [];
    const code = await host.run(
      { app: "web", path: staging },
      ["sh", "-c", 'echo "$PWD $TURNOUT_SHARED_DIR"'],
      {},
      10_000,
      (line) => out.push(line),
      live(),
    );
    expect(code).toBe(0);
    expect(out.join("\n")).toContain(`${join(staging, "releases", a.id)} ${join(staging, "shared")}`);
  });

  it("keeps two environments of one app on one host apart: their own releases, current, slots and prune", async () => {
    const staging = join(dir, "www", "web-staging");
    // A path inside the root is an environment's place, not an app of its own name.
    const production = join(root, "web-production");
    const a = artifact({ "v.txt": "a" });
    const b = artifact({ "v.txt": "b" });
    const c = artifact({ "v.txt": "c" });
    const source = new MemorySource().add(a).add(b).add(c);
    for (const x of [a, b]) await host.stage(spec(x, staging), source, () => {}, live());
    for (const x of [a, c]) await host.stage(spec(x, production), source, () => {}, live());
    await host.stage(spec(c), source, () => {}, live());
    await host.switchTo({ app: "web", path: staging }, b.id, "current");
    await host.switchTo({ app: "web", path: staging }, a.id, "previous");
    await host.switchTo({ app: "web", path: production }, c.id, "current");
    await host.switchTo("web", c.id, "current");

    expect(await host.inventory()).toEqual([
      { app: "web", releases: [c.id], current: c.id, slots: {} },
      { app: "web", path: production, releases: [a.id, c.id], current: c.id, slots: {} },
      { app: "web", path: staging, releases: [a.id, b.id], current: b.id, slots: { previous: a.id } },
    ]);
    // Prune works on its own layout only.
    expect(await host.prune({ app: "web", path: production }, 1)).toEqual({ removed: [a.id] });
    expect((await readdir(join(staging, "releases"))).sort()).toEqual([a.id, b.id].sort());
    // Rollback and slot promotion at the path.
    expect(await host.promoteSlot({ app: "web", path: staging }, "previous")).toEqual({
      previous: b.id,
      current: a.id,
    });
    expect(await host.switchTo({ app: "web", path: staging }, b.id, "current")).toEqual({ previous: a.id });
    expect(await readFile(join(staging, "current", "v.txt"), "utf8")).toBe("b");
    expect(await readFile(join(production, "current", "v.txt"), "utf8")).toBe("c");
    expect(await readFile(join(root, "web", "current", "v.txt"), "utf8")).toBe("c");
  });

  it("refuses bad deploy paths before writing anything", async () => {
    const a = artifact({ "x.txt": "x" });
    const bad = [
      "relative/path",
      "/srv/../etc",
      "/srv/./www",
      "/srv//www",
      "/srv/www/",
      "/",
      "/srv/$(touch marker)",
      root,
      join(root, ".turnout"),
      join(root, ".turnout", "blobs"),
    ];
    for (const path of bad) {
      await expect(
        host.stage(spec(a, path), new MemorySource().add(a), () => {}, live()),
        path,
      ).rejects.toMatchObject({
        code: "E_VALIDATION",
        message: expect.stringContaining("invalid deploy path"),
      });
      await expect(host.switchTo({ app: "web", path }, a.id, "current"), path).rejects.toMatchObject({
        code: "E_VALIDATION",
      });
    }
    expect(await exists(root)).toBe(false);
    expect(await exists("marker")).toBe(false);
  });

  it("refuses a layout at, around or inside another app's, before writing anything (E_CONFLICT)", async () => {
    const a = artifact({ "x.txt": "x" });
    const source = new MemorySource().add(a);
    const www = join(dir, "www");
    const asApp = (app: string, path?: string): StageSpec => ({ ...spec(a, path), app });
    expect((await host.stage(asApp("web", www), source, () => {}, live())).staged).toBe(true);
    expect((await host.stage(asApp("api"), source, () => {}, live())).staged).toBe(true);
    const refused = [
      ["blog", www, `overlaps ${www}, the place of app web`],
      ["blog", join(www, "blog"), `overlaps ${www}, the place of app web`],
      ["blog", dir, `overlaps ${www}, the place of app web`],
      // api's default place, <root>/api, holds its releases.
      ["blog", join(root, "api", "blog"), `overlaps ${join(root, "api")}, the place of app api`],
    ] as const;
    for (const [app, path, why] of refused) {
      await expect(
        host.stage(asApp(app, path), source, () => {}, live()),
        path,
      ).rejects.toMatchObject({
        code: "E_CONFLICT",
        message: expect.stringContaining(why),
      });
      if (path !== www) expect(await exists(join(path, "releases")), path).toBe(false);
    }
    expect(await readFile(join(root, ".turnout", "paths"), "utf8")).not.toContain("blog");
    // An app whose default place would hold another app's deploy path.
    const inner = join(root, "docs", "site");
    expect((await host.stage(asApp("wiki", inner), source, () => {}, live())).staged).toBe(true);
    await expect(host.stage(asApp("docs"), source, () => {}, live())).rejects.toMatchObject({
      code: "E_CONFLICT",
      message: expect.stringContaining(`overlaps ${inner}, the place of app wiki`),
    });
    expect(await exists(join(root, "docs", "releases"))).toBe(false);
    // Neighbours are fine, and so is the app's own place again.
    expect((await host.stage(asApp("blog", join(dir, "www-blog")), source, () => {}, live())).staged).toBe(
      true,
    );
    expect((await host.stage(asApp("web", www), source, () => {}, live())).staged).toBe(false);
  });

  it("copies files into a path on another file system than the cache (no hard links across file systems)", async () => {
    const shm = await mkdtemp("/dev/shm/turnout-path-");
    try {
      if ((await stat(shm)).dev === (await stat(dir)).dev)
        throw new Error("/dev/shm is on the same file system");
      const a = artifact({ "one.txt": "one", "two.txt": "two" });
      const b = artifact({ "one.txt": "one", "two.txt": "three" });
      const lines: string[] = [];
      const source = new MemorySource().add(a).add(b);
      await host.stage(spec(a, shm), source, (l) => lines.push(l), live());
      const second = await host.stage(spec(b, shm), source, (l) => lines.push(l), live());
      expect(second.blobsFetched).toBe(1); // one.txt from the cache, copied
      expect(lines.some((l) => l.includes("copied (the cache cannot be hard-linked from the release)"))).toBe(
        true,
      );
      await host.switchTo({ app: "web", path: shm }, b.id, "current");
      expect(await readFile(join(shm, "current", "one.txt"), "utf8")).toBe("one");
      expect(await readFile(join(shm, "current", "two.txt"), "utf8")).toBe("three");
      const cached = join(root, ".turnout", "blobs", sha("one").slice(0, 2), sha("one"));
      expect(await readFile(cached, "utf8")).toBe("one");
      expect((await stat(cached)).ino).not.toBe((await stat(join(shm, "current", "one.txt"))).ino);
    } finally {
      await rm(shm, { recursive: true, force: true });
    }
  });

  it("the simulator keeps layouts per path as a real host does", async () => {
    const sim: HostOps = new SimHostOps("sim-1", { fetchBlobs: false });
    const a = artifact({ "v.txt": "a" });
    await sim.stage(spec(a, "/var/www/web-staging"), new MemorySource(), () => {}, live());
    await sim.switchTo({ app: "web", path: "/var/www/web-staging" }, a.id, "current");
    expect(await sim.inventory()).toEqual([
      { app: "web", path: "/var/www/web-staging", releases: [a.id], current: a.id, slots: {} },
    ]);
    await expect(sim.switchTo("web", a.id, "current")).rejects.toMatchObject({ code: "E_NOT_FOUND" });
    // Another app in web's place, or around it, is refused as on a real host.
    for (const place of ["/var/www/web-staging", "/var/www/web-staging/blog", "/var/www"]) {
      await expect(
        sim.stage({ ...spec(a, place), app: "blog" }, new MemorySource(), () => {}, live()),
        place,
      ).rejects.toMatchObject({
        code: "E_CONFLICT",
        message: expect.stringContaining("the place of app web"),
      });
    }
    expect(
      (await sim.stage({ ...spec(a, "/var/www/blog"), app: "blog" }, new MemorySource(), () => {}, live()))
        .staged,
    ).toBe(true);
    await expect(
      sim.stage(spec(a, "/srv/turnout/.turnout/x"), new MemorySource(), () => {}, live()),
    ).rejects.toMatchObject({ code: "E_VALIDATION" });
  });
});
