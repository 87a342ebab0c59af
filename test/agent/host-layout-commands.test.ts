import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { assertHostConsistent, EXIT_TIMEOUT, LocalHostOps } from "../../src/agent/host-layout/index.js";
import { type ArtifactManifest, hostReleaseId, manifestDigest } from "../../src/domain/artifact.js";
import type { BlobSource } from "../../src/providers/fleet/host-ops.js";

/** A one-script release: `check.sh` exits with the code in $1. */
function scriptRelease() {
  const script = Buffer.from('#!/bin/sh\necho "checking $TURNOUT_APP"\nexit "$1"\n');
  const digest = createHash("sha256").update(script).digest("hex");
  const manifest: ArtifactManifest = {
    version: 1,
    entries: [{ path: "check.sh", type: "file", mode: 0o755, size: script.length, sha256: digest }],
  };
  const source: BlobSource = { open: async () => Readable.from([script]) };
  return { manifest, source, id: hostReleaseId(manifestDigest(manifest)) };
}

const live = () => new AbortController().signal;
let root: string;
let host: LocalHostOps;
let lines: string[];
const log = (line: string) => lines.push(line);

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "turnout-host-cmd-"));
  // fsyncs on: the durable path is exercised here, with a hook that writes files.
  host = new LocalHostOps({ name: "h1", root, killGraceMs: 300 });
  lines = [];
  const r = scriptRelease();
  await host.stage(
    {
      app: "web",
      releaseId: r.id,
      manifest: r.manifest,
      shared: ["log"],
      beforeSwitch: ["sh", "-c", "mkdir -p build && echo ok > build/out.txt"],
      env: {},
      timeoutMs: 10_000,
    },
    r.source,
    log,
    live(),
  );
  await host.switchTo("web", r.id, "current");
  lines = [];
});

afterEach(async () => {
  await assertHostConsistent(root);
  await rm(root, { recursive: true, force: true });
});

describe("run", () => {
  it("runs argv in the current release with the deploy's env, forwarding output and the exit code", async () => {
    const code = await host.run(
      "web",
      ["sh", "-c", 'echo "$GREETING in $PWD"; cat build/out.txt; echo "$TURNOUT_RELEASE_DIR" >&2; exit 4'],
      { GREETING: "hi" },
      10_000,
      log,
      live(),
    );
    expect(code).toBe(4);
    const release = (await host.inventory())[0]!.current!;
    const dir = join(root, "web", "releases", release);
    expect(lines).toEqual(expect.arrayContaining([`hi in ${dir}`, "ok", dir]));
  });

  it("stops a command past its timeout and says so", async () => {
    const started = Date.now();
    const code = await host.run("web", ["sleep", "30"], {}, 300, log, live());
    expect(code).toBe(EXIT_TIMEOUT);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(lines.join("\n")).toMatch(/timed out after 300 ms/);
  });

  it("runs in the app directory when there is no current release yet", async () => {
    const code = await host.run(
      "fresh",
      ["sh", "-c", 'echo "[$TURNOUT_RELEASE_DIR] $PWD"'],
      {},
      5000,
      log,
      live(),
    );
    expect(code).toBe(0);
    expect(lines).toContain(`[] ${join(root, "fresh")}`);
  });
});

describe("health", () => {
  let server: Server;
  let base: string;
  let flaky = 0;
  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === "/flaky") {
        flaky++;
        res.statusCode = flaky <= 2 ? 503 : 200;
      } else if (req.url === "/broken") {
        res.statusCode = 500;
      } else if (req.url === "/redirect") {
        res.statusCode = 302;
        res.setHeader("location", "/ok");
      } else if (req.url === "/slow") {
        return; // never answers
      }
      res.end("body");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const check = (extra: object) => ({ retries: 2, intervalMs: 20, timeoutMs: 1000, ...extra });

  it("passes once the endpoint answers 2xx within the retries", async () => {
    flaky = 0;
    expect(await host.health("web", check({ http: `${base}/flaky` }), log, live())).toBe(true);
    expect(flaky).toBe(3);
    expect(lines.filter((l) => l.includes("HTTP 503"))).toHaveLength(2);
  });

  it("fails when every try fails, after exactly 1 + retries tries", async () => {
    expect(await host.health("web", check({ http: `${base}/broken` }), log, live())).toBe(false);
    expect(lines.filter((l) => /try \d\/3 failed: HTTP 500/.test(l))).toHaveLength(3);
    flaky = 0;
    expect(await host.health("web", check({ http: `${base}/flaky`, retries: 1 }), log, live())).toBe(false);
    expect(await host.health("web", check({ http: `${base}/redirect`, retries: 0 }), log, live())).toBe(
      false,
    );
  });

  it("gives each try its timeout", async () => {
    const started = Date.now();
    expect(
      await host.health("web", check({ http: `${base}/slow`, retries: 1, timeoutMs: 200 }), log, live()),
    ).toBe(false);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(lines.join("\n")).toMatch(/no answer within 200 ms/);
  });

  it("runs a command check in the current release: exit 0 healthy, else not", async () => {
    expect(await host.health("web", check({ command: ["./check.sh", "0"] }), log, live())).toBe(true);
    expect(lines).toContain("checking web");
    lines = [];
    expect(await host.health("web", check({ command: ["./check.sh", "1"], retries: 1 }), log, live())).toBe(
      false,
    );
    expect(lines.filter((l) => l.includes("exit code 1"))).toHaveLength(2);
  });

  it("is unhealthy without a current release, and refuses a malformed check", async () => {
    expect(await host.health("none", check({ command: ["true"], retries: 0 }), log, live())).toBe(false);
    await expect(host.health("web", check({}), log, live())).rejects.toMatchObject({ code: "E_VALIDATION" });
    await expect(
      host.health("web", check({ http: "file:///etc/passwd" }), log, live()),
    ).rejects.toMatchObject({
      code: "E_VALIDATION",
    });
  });
});

it("keeps what the before_switch hook built, durably staged, with shared links", async () => {
  expect(await readFile(join(root, "web", "current", "build", "out.txt"), "utf8")).toBe("ok\n");
});
