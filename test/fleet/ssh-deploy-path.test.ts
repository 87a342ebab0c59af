import { existsSync } from "node:fs";
import { mkdtemp, readFile, readlink, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StageSpec } from "../../src/providers/fleet/host-ops.js";
import { SshHostOps } from "../../src/providers/fleet/ssh/ssh-host-ops.js";
import { type MemoryRelease, memoryRelease, type SshdInstance, startSshd } from "../helpers/sshd.js";

/**
 * An environment's own deploy path on an SSH host (issue 15), against a real
 * sshd: the remote script gets the path as one argument, stages and switches
 * there, keeps the cache under <root>/.turnout and reports each layout with
 * its path in the inventory.
 */
let sshd: SshdInstance;
let host: SshHostOps;
let www: string;
const never = new AbortController().signal;

beforeAll(async () => {
  sshd = await startSshd();
  host = new SshHostOps(sshd.config("web-1"));
  www = await mkdtemp(path.join(tmpdir(), "turnout-ssh-www-"));
});
afterAll(async () => {
  await host?.close();
  await sshd?.stop();
  if (www) await rm(www, { recursive: true, force: true });
});

const spec = (release: MemoryRelease, place?: string, extra: Partial<StageSpec> = {}): StageSpec => ({
  app: "shop",
  ...(place ? { path: place } : {}),
  releaseId: release.id,
  manifest: release.manifest,
  shared: [],
  env: {},
  timeoutMs: 30_000,
  ...extra,
});

describe("SshHostOps at a deploy path", () => {
  const v1 = memoryRelease({ "index.html": "v1\n", "log/.keep": "" });
  const v2 = memoryRelease({ "index.html": "v2\n" });
  const v3 = memoryRelease({ "index.html": "v3\n" });

  it("stages, switches, runs and reports there, with the cache under the root (hard links)", async () => {
    const staging = path.join(www, "shop-staging");
    const logs: string[] = [];
    const result = await host.stage(
      spec(v1, staging, { shared: ["log"] }),
      v1.source,
      (l) => logs.push(l),
      never,
    );
    expect(result.staged).toBe(true);
    expect(await host.switchTo({ app: "shop", path: staging }, v1.id, "current")).toEqual({ previous: null });
    expect(await readlink(path.join(staging, "current"))).toBe(`releases/${v1.id}`);
    expect(await readFile(path.join(staging, "current/index.html"), "utf8")).toBe("v1\n");
    expect(await readlink(path.join(staging, "releases", v1.id, "log"))).toBe("../../shared/log");
    expect(existsSync(path.join(sshd.root, "shop"))).toBe(false);
    const digest = v1.manifest.entries.find((e) => e.path === "index.html")!;
    if (digest.type !== "file") throw new Error("no file");
    const cached = path.join(sshd.root, ".turnout/blobs", digest.sha256.slice(0, 2), digest.sha256);
    expect((await stat(cached)).ino).toBe((await stat(path.join(staging, "current/index.html"))).ino);
    expect(await readFile(path.join(sshd.root, ".turnout/paths"), "utf8")).toBe(`shop ${staging}\n`);

    const out: string[] = [];
    const code = await host.run(
      { app: "shop", path: staging },
      ["sh", "-c", 'echo "in $PWD shared $TURNOUT_SHARED_DIR"'],
      {},
      30_000,
      (l) => out.push(l),
      never,
    );
    expect(code).toBe(0);
    // The job's directory, as the shell sees it (the temp dir may be behind a symlink).
    expect(out.join("\n")).toContain(`shared ${staging}/shared`);
    expect(out.join("\n")).toContain(`/releases/${v1.id}`);
    const healthy = await host.health(
      { app: "shop", path: staging },
      { command: ["test", "-f", "index.html"], retries: 0, intervalMs: 0, timeoutMs: 10_000 },
      () => {},
      never,
    );
    expect(healthy).toBe(true);
    expect((await host.inventory()).filter((i) => i.app === "shop")).toEqual([
      { app: "shop", path: staging, releases: [v1.id], current: v1.id, slots: {} },
    ]);
  });

  it("keeps two environments of one app apart on one host: releases, rollback, slots, prune", async () => {
    const staging = path.join(www, "shop-staging");
    const production = path.join(sshd.root, "shop-production");
    for (const r of [v2, v3]) await host.stage(spec(r, staging), r.source, () => {}, never);
    for (const r of [v1, v3]) await host.stage(spec(r, production), r.source, () => {}, never);
    await host.stage(spec(v2), v2.source, () => {}, never);
    const atStaging = { app: "shop", path: staging };
    const atProduction = { app: "shop", path: production };
    await host.switchTo(atStaging, v3.id, "current");
    await host.switchTo(atStaging, v2.id, "previous");
    await host.switchTo(atProduction, v1.id, "current");
    await host.switchTo("shop", v2.id, "current");

    const inventory = (await host.inventory()).filter((i) => i.app === "shop");
    // Sorted by app, then path (the default place first), as agents sort theirs.
    const expected = [
      { app: "shop", path: production, releases: [v1.id, v3.id], current: v1.id, slots: {} },
      {
        app: "shop",
        path: staging,
        releases: [v1.id, v2.id, v3.id],
        current: v3.id,
        slots: { previous: v2.id },
      },
    ].sort((a, b) => (a.path < b.path ? -1 : 1));
    expect(inventory).toEqual([{ app: "shop", releases: [v2.id], current: v2.id, slots: {} }, ...expected]);
    // Rollback (a switch back) and slot promotion at the path touch nothing else.
    expect(await host.switchTo(atStaging, v1.id, "current")).toEqual({ previous: v3.id });
    expect(await host.promoteSlot(atStaging, "previous")).toEqual({ previous: v1.id, current: v2.id });
    expect(await readFile(path.join(staging, "current/index.html"), "utf8")).toBe("v2\n");
    expect(await readFile(path.join(production, "current/index.html"), "utf8")).toBe("v1\n");
    expect(await readFile(path.join(sshd.root, "shop/current/index.html"), "utf8")).toBe("v2\n");
    // Prune keeps what this layout's pointers name (current and the slot: v2), and nothing else.
    expect((await host.prune(atStaging, 0)).removed.sort()).toEqual([v1.id, v3.id].sort());
    expect(existsSync(path.join(staging, "releases", v2.id))).toBe(true);
    expect(await host.prune(atProduction, 1)).toEqual({ removed: [] });
    expect(existsSync(path.join(production, "releases", v3.id))).toBe(true);
  });

  it("refuses a layout at, around or inside another app's, before writing anything", async () => {
    const place = path.join(www, "taken");
    const as = (app: string, where?: string): StageSpec => ({ ...spec(v1, where), app });
    expect((await host.stage(as("taken", place), v1.source, () => {}, never)).staged).toBe(true);
    expect((await host.stage(as("other"), v1.source, () => {}, never)).staged).toBe(true);
    for (const [app, where, why] of [
      ["blog", place, `overlaps ${place}, the place of app taken`],
      ["blog", path.join(place, "blog"), `overlaps ${place}, the place of app taken`],
      ["blog", path.join(sshd.root, "other", "blog"), `the place of app other`],
    ] as const) {
      await expect(
        host.stage(as(app, where), v1.source, () => {}, never),
        where,
      ).rejects.toMatchObject({
        code: "E_CONFLICT",
        message: expect.stringContaining(why),
      });
      if (where !== place) expect(existsSync(path.join(where, "releases")), where).toBe(false);
    }
    expect(await readFile(path.join(sshd.root, ".turnout", "paths"), "utf8")).not.toContain("blog");
    // An app whose default place would hold another app's deploy path.
    const inner = path.join(sshd.root, "docs", "site");
    expect((await host.stage(as("wiki", inner), v1.source, () => {}, never)).staged).toBe(true);
    await expect(host.stage(as("docs"), v1.source, () => {}, never)).rejects.toMatchObject({
      code: "E_CONFLICT",
      message: expect.stringContaining(`overlaps ${inner}, the place of app wiki`),
    });
    expect((await host.stage(as("taken", place), v1.source, () => {}, never)).staged).toBe(false);
  });

  it("refuses bad deploy paths before ssh starts", async () => {
    for (const bad of [
      "relative",
      "/a/../b",
      "/a//b",
      "/a/b/",
      "/",
      "/a b",
      "/$(id)",
      sshd.root,
      `${sshd.root}/.turnout/x`,
    ]) {
      await expect(host.switchTo({ app: "shop", path: bad }, v1.id, "current"), bad).rejects.toMatchObject({
        code: "E_VALIDATION",
      });
      await expect(
        host.stage(spec(v1, bad), v1.source, () => {}, never),
        bad,
      ).rejects.toMatchObject({
        code: "E_VALIDATION",
      });
    }
  });
});
