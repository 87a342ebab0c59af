import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { gzipSync } from "node:zlib";
import tar from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ArtifactManifest } from "../../src/domain/artifact.js";
import type { StageSpec } from "../../src/providers/fleet/host-ops.js";
import { REMOTE_SCRIPT, remoteCommand } from "../../src/providers/fleet/ssh/remote-script.js";
import { SshConnection } from "../../src/providers/fleet/ssh/ssh-connection.js";
import { SshHostOps } from "../../src/providers/fleet/ssh/ssh-host-ops.js";
import {
  blobSource,
  type MemoryRelease,
  memoryRelease,
  type SshdInstance,
  startSshd,
} from "../helpers/sshd.js";

/**
 * Host keys are pinned, hostile input never reaches a shell, and the remote
 * script checks again what the server already checked. Two sshd instances:
 * the second one's key stands in for an impostor.
 */
let sshd: SshdInstance;
let impostor: SshdInstance;
let host: SshHostOps;
const never = new AbortController().signal;

beforeAll(async () => {
  [sshd, impostor] = await Promise.all([startSshd(), startSshd()]);
  host = new SshHostOps(sshd.config("web-1"));
});
afterAll(async () => {
  await host?.close();
  await Promise.all([sshd?.stop(), impostor?.stop()]);
});

function spec(app: string, release: MemoryRelease, extra: Partial<StageSpec> = {}): StageSpec {
  return {
    app,
    releaseId: release.id,
    manifest: release.manifest,
    shared: [],
    env: {},
    timeoutMs: 30_000,
    ...extra,
  };
}

/** An ssh that writes a line for every invocation, then runs the real one. */
async function spySsh(): Promise<{ command: string; calls: () => Promise<number> }> {
  const log = path.join(sshd.dir, `ssh-calls-${Math.random().toString(16).slice(2)}`);
  const command = `${log}.sh`;
  await writeFile(command, `#!/bin/sh\necho call >> ${log}\nexec ssh "$@"\n`, { mode: 0o755 });
  return {
    command,
    calls: async () =>
      existsSync(log) ? (await readFile(log, "utf8")).split("\n").filter(Boolean).length : 0,
  };
}

describe("pinned host keys", () => {
  it("refuses a host whose key is not the pinned one, and changes nothing there", async () => {
    const knownHosts = path.join(sshd.dir, "known_hosts_wrong");
    await writeFile(knownHosts, `[127.0.0.1]:${sshd.port} ${impostor.hostPublicKey}\n`);
    const wrong = new SshHostOps({ ...sshd.config("web-9"), knownHostsFile: knownHosts });
    const r = memoryRelease({ "a.txt": "a\n" });
    try {
      await expect(wrong.stage(spec("keys", r), r.source, () => {}, never)).rejects.toMatchObject({
        code: "E_UNAVAILABLE",
        message: expect.stringMatching(/^host key verification failed for web-9/),
      });
      await expect(wrong.switchTo("keys", r.id, "current")).rejects.toThrow(
        /host key verification failed for web-9/,
      );
      await expect(wrong.inventory()).rejects.toThrow(/host key verification failed for web-9/);
      expect(r.source.opened).toEqual([]);
      expect(existsSync(path.join(sshd.root, "keys"))).toBe(false);
      expect(existsSync(path.join(sshd.root, ".turnout"))).toBe(false);
    } finally {
      await wrong.close();
    }
  });

  it("refuses a host whose key is not known at all (nothing is learned)", async () => {
    const knownHosts = path.join(sshd.dir, "known_hosts_empty");
    await writeFile(knownHosts, "");
    const unknown = new SshHostOps({ ...sshd.config("web-8"), knownHostsFile: knownHosts });
    try {
      await expect(unknown.inventory()).rejects.toMatchObject({
        code: "E_UNAVAILABLE",
        message: expect.stringMatching(/^host key verification failed for web-8/),
      });
      expect(await readFile(knownHosts, "utf8")).toBe("");
    } finally {
      await unknown.close();
    }
  });

  it("accepts the pinned key of each of two hosts", async () => {
    const other = new SshHostOps(impostor.config("web-2"));
    try {
      expect(await other.inventory()).toEqual([]);
      expect(await host.inventory()).toEqual([]);
    } finally {
      await other.close();
    }
  });
});

describe("hostile input is refused before ssh is invoked", () => {
  const r = memoryRelease({ "a.txt": "a\n" });
  const withEntries = (entries: ArtifactManifest["entries"]): StageSpec => ({
    ...spec("hostile", r),
    manifest: { version: 1, entries },
  });
  const file = { type: "file" as const, mode: 0o644, size: 2, sha256: [...r.blobs.keys()][0]! };

  it("refuses every hostile name, id, path, link and argument", async () => {
    const spy = await spySsh();
    const ops = new SshHostOps(sshd.config("web-1"), { sshCommand: spy.command });
    const refused = async (promise: Promise<unknown>, code: string | RegExp) => {
      const error = await promise.then(
        () => new Error("accepted"),
        (e: unknown) => e,
      );
      expect(error).toMatchObject({ code: expect.stringMatching(code) });
    };
    const src = r.source;
    await refused(
      ops.stage(withEntries([{ ...file, path: "../x" }]), src, () => {}, never),
      "E_VALIDATION",
    );
    await refused(
      ops.stage(withEntries([{ ...file, path: "/etc/passwd" }]), src, () => {}, never),
      "E_VALIDATION",
    );
    await refused(
      ops.stage(withEntries([{ ...file, path: "a\nF 644 x y" }]), src, () => {}, never),
      "E_VALIDATION",
    );
    await refused(
      ops.stage(withEntries([{ path: "evil", type: "symlink", target: "../../etc" }]), src, () => {}, never),
      "E_VALIDATION",
    );
    await refused(
      ops.stage(withEntries([{ path: "evil", type: "symlink", target: "/etc" }]), src, () => {}, never),
      "E_VALIDATION",
    );
    // Each link inside on its own, but followed through each other they leave the tree.
    await refused(
      ops.stage(
        withEntries([
          { path: "d", type: "dir", mode: 0o755 },
          { path: "d/up", type: "symlink", target: ".." },
          { path: "x", type: "symlink", target: "d/up/.." },
        ]),
        src,
        () => {},
        never,
      ),
      "E_VALIDATION",
    );
    // Writing below a symlink would write through it.
    await refused(
      ops.stage(
        withEntries([
          { path: "l", type: "symlink", target: "." },
          { ...file, path: "l/x" },
        ]),
        src,
        () => {},
        never,
      ),
      "E_VALIDATION",
    );
    await refused(
      ops.stage({ ...spec("hostile", r), app: "a;b" }, src, () => {}, never),
      "E_INVALID_NAME",
    );
    await refused(
      ops.stage({ ...spec("hostile", r), app: "../etc" }, src, () => {}, never),
      "E_INVALID_NAME",
    );
    await refused(
      ops.stage({ ...spec("hostile", r), releaseId: "$(id)" }, src, () => {}, never),
      "E_VALIDATION",
    );
    await refused(
      ops.stage({ ...spec("hostile", r), shared: ["../../etc"] }, src, () => {}, never),
      "E_VALIDATION",
    );
    await refused(
      ops.stage({ ...spec("hostile", r), env: { "A;B": "x" } }, src, () => {}, never),
      "E_VALIDATION",
    );
    await refused(
      ops.stage({ ...spec("hostile", r), beforeSwitch: ["a\0b"] }, src, () => {}, never),
      "E_VALIDATION",
    );
    await refused(ops.switchTo("a;b", r.id, "current"), "E_INVALID_NAME");
    await refused(ops.switchTo("shop", "$(id)", "current"), "E_VALIDATION");
    await refused(ops.switchTo("shop", r.id, "x y"), "E_INVALID_NAME");
    await refused(ops.switchTo("shop", r.id, "../current"), "E_INVALID_NAME");
    await refused(ops.promoteSlot("shop", "$(id)"), "E_INVALID_NAME");
    await refused(ops.prune("`id`", 5), "E_INVALID_NAME");
    await refused(ops.prune("shop", -1), "E_VALIDATION");
    await refused(
      ops.run("shop;id", ["true"], {}, 1000, () => {}, never),
      "E_INVALID_NAME",
    );
    await refused(
      ops.run("shop", [], {}, 1000, () => {}, never),
      "E_VALIDATION",
    );
    await refused(
      ops.health(
        "shop",
        { http: "file:///etc/passwd", retries: 0, intervalMs: 1, timeoutMs: 1000 },
        () => {},
        never,
      ),
      "E_VALIDATION",
    );
    await refused(
      ops.health(
        "shop",
        { http: "http://x/ -o /tmp/evil", retries: 0, intervalMs: 1, timeoutMs: 1000 },
        () => {},
        never,
      ),
      "E_VALIDATION",
    );
    expect(() => new SshHostOps({ ...sshd.config("x"), root: "/srv/$(id)" })).toThrow(/invalid release root/);
    expect(() => new SshHostOps({ ...sshd.config("x"), root: "/srv/../etc" })).toThrow(
      /invalid release root/,
    );
    expect(() => new SshHostOps({ ...sshd.config("x"), address: "-oProxyCommand=id" })).toThrow(
      /invalid address/,
    );
    expect(() => new SshHostOps({ ...sshd.config("x"), user: "root;id" })).toThrow(/invalid user/);
    expect(() => new SshHostOps({ ...sshd.config("x"), keyFile: "/k %d" })).toThrow(/key_file/);

    expect(await spy.calls()).toBe(0);
    expect(existsSync(path.join(sshd.root, "hostile"))).toBe(false);
    // The same ssh works for honest input.
    expect(await ops.inventory()).toBeInstanceOf(Array);
    expect(await spy.calls()).toBeGreaterThan(0);
    await ops.close();
  });

  it("builds the remote command from the constant script and plain arguments only", () => {
    expect(REMOTE_SCRIPT).not.toContain("'");
    const command = remoteCommand("switch", [
      "/srv/turnout",
      "shop",
      "-",
      "0123456789abcdef",
      "current",
      "00ff00ff00ff00ff",
    ]);
    expect(command).toBe(
      `sh -c '${REMOTE_SCRIPT}' turnout-host switch '/srv/turnout' 'shop' '-' '0123456789abcdef' 'current' '00ff00ff00ff00ff'`,
    );
    for (const bad of ["a;b", "$(id)", "a'b", "a b", "`id`", "x\ny", ""]) {
      expect(() => remoteCommand("switch", ["/srv/turnout", bad])).toThrow(/refusing to pass/);
    }
  });
});

describe("commands get their argv and env literally", () => {
  it("passes $(…), ;, quotes and newlines through to before_switch and run untouched", async () => {
    const marker = path.join(sshd.dir, "marker");
    const victim = path.join(sshd.dir, "victim");
    await writeFile(victim, "still here\n");
    const hostile = [
      `$(touch ${marker})`,
      `;rm -rf ${victim}`,
      `\`touch ${marker}\``,
      `' ; touch ${marker}; '`,
      `" && touch ${marker} && "`,
      "line one\nline two\n",
      "  spaced  ",
      "--help",
      "*",
      "$HOME",
    ];
    const r = memoryRelease({ "app.txt": "app\n" });
    await host.stage(
      spec("literal", r, {
        // A fixed little program writes its arguments, one per NUL-terminated record.
        beforeSwitch: [
          "sh",
          "-c",
          'printf "%s\\0" "$@" > args.bin; printf "%s" "$EVIL" > env.bin',
          "sh",
          ...hostile,
        ],
        env: { EVIL: `$(touch ${marker}); rm -rf ${victim}` },
      }),
      r.source,
      () => {},
      never,
    );
    const dir = path.join(sshd.root, "literal/releases", r.id);
    expect((await readFile(path.join(dir, "args.bin"), "utf8")).split("\0").slice(0, -1)).toEqual(hostile);
    expect(await readFile(path.join(dir, "env.bin"), "utf8")).toBe(`$(touch ${marker}); rm -rf ${victim}`);

    await host.switchTo("literal", r.id, "current");
    const logs: string[] = [];
    expect(
      await host.run(
        "literal",
        ["printf", "[%s]\\n", ...hostile.slice(0, 5)],
        {},
        5000,
        (l) => logs.push(l),
        never,
      ),
    ).toBe(0);
    expect(logs).toEqual(hostile.slice(0, 5).map((h) => `[${h}]`));
    expect(existsSync(marker)).toBe(false);
    expect(await readFile(victim, "utf8")).toBe("still here\n");
  });
});

describe("the host checks again", () => {
  it("refuses a blob that does not match its digest: nothing cached, nothing staged", async () => {
    const r = memoryRelease({ "good.txt": "good" });
    const shaOfGood = [...r.blobs.keys()][0]!;
    const forged = blobSource(new Map([[shaOfGood, Buffer.from("evil")]]));
    await expect(host.stage(spec("forged", r), forged, () => {}, never)).rejects.toMatchObject({
      code: "E_VALIDATION",
      message: expect.stringMatching(/does not match its digest/),
    });
    expect(existsSync(path.join(sshd.root, ".turnout/blobs", shaOfGood.slice(0, 2), shaOfGood))).toBe(false);
    expect(existsSync(path.join(sshd.root, "forged/releases", r.id))).toBe(false);
    expect(await readdir(path.join(sshd.root, ".turnout/blobs/tmp"))).toEqual([]);
    // The honest blob then goes through.
    expect(await host.stage(spec("forged", r), r.source, () => {}, never)).toMatchObject({ staged: true });
  });

  it("refuses hostile lines the server would never send (defence in depth)", async () => {
    type Entry = { name: string; type: "file" | "link" | "symlink"; size?: number; linkname?: string };
    const connection = new SshConnection(sshd.config("web-1"));
    const good = memoryRelease({ "ok.txt": "ok\n" });
    await host.stage(spec("direct", good), good.source, () => {}, never);
    const sha = [...good.blobs.keys()][0]!;
    const b64 = (s: string) => Buffer.from(s).toString("base64");
    const stage = (input: string | Buffer, id = "00000000000000aa") =>
      connection.exec("stage", [sshd.root, "direct", "-", id, "30", "00000000000000bb", "new"], {
        input,
        timeoutMs: 30_000,
      });
    /** A gzipped tar of the given headers, as the stage step reads it after TAR. */
    const archive = async (entries: Entry[]) => {
      const pack = tar.pack();
      const chunks: Buffer[] = [];
      pack.on("data", (chunk: unknown) => chunks.push(chunk as Buffer));
      const ended = new Promise<void>((resolve) => pack.on("end", () => resolve()));
      for (const entry of entries) {
        if (entry.type === "file") pack.entry({ ...entry, mode: 0o644 }, "x");
        else pack.entry({ ...entry, mode: 0o644 });
      }
      pack.finalize();
      await ended;
      return Buffer.concat(chunks);
    };
    // With the K line of the tar's digest (the host refuses a tree that is not what it says), as the server sends it.
    const withTar = async (lines: string, entries: Entry[]) => {
      const tarBytes = await archive(entries);
      const digest = createHash("sha256").update(tarBytes).digest("hex");
      const head = lines.endsWith("TAR\n") ? `${lines.slice(0, -4)}K - ${digest}\nTAR\n` : lines;
      return Buffer.concat([Buffer.from(head), gzipSync(tarBytes)]);
    };
    try {
      for (const input of [
        `E ${b64("A;B=1")}\nA ${b64("true")}\nTAR\n`,
        `S - - ../../escaped\nTAR\n`,
        `S 644 ${sha} /tmp/absolute\nTAR\n`,
        `X whatever\nTAR\n`,
        `F 644 ${sha} ok.txt\nTAR\n`,
        // Cut short: no TAR, so not a (smaller) release.
        `S - - log\n`,
      ]) {
        const result = await stage(await withTar(input, []));
        expect({ input, exitCode: result.exitCode }).toEqual({ input, exitCode: 10 });
        expect(result.stderr).toMatch(/turnout-host: /);
      }
      // Archives the server would never build: tar refuses what leaves the tree, and nothing
      // of an archive is written into the cache (only T/ is unpacked).
      for (const entries of [
        [{ name: "T/../escaped", type: "file", size: 1 }],
        [{ name: "T/x", type: "link", linkname: "C/../../escaped" }],
        [{ name: "T/x", type: "link", linkname: `/${sshd.root}/direct/escaped` }],
        [
          { name: "T/l", type: "symlink", linkname: "/tmp" },
          { name: "T/l/absolute", type: "file", size: 1 },
        ],
        [{ name: "T/missing-blob", type: "link", linkname: `C/00/${"0".repeat(64)}` }],
      ] as Entry[][]) {
        const result = await stage(await withTar("TAR\n", entries));
        expect({ entries, exitCode: result.exitCode }).toEqual({ entries, exitCode: 12 });
      }
      // A member outside T/ (here: straight into the cache) is left out; the release is empty.
      const intoCache = await stage(
        await withTar("TAR\n", [{ name: `C/${sha.slice(0, 2)}/${"0".repeat(64)}`, type: "file", size: 1 }]),
        "00000000000000cc",
      );
      expect(intoCache.exitCode).toBe(0);
      expect(existsSync(path.join(sshd.root, ".turnout/blobs", sha.slice(0, 2), "0".repeat(64)))).toBe(false);
      expect(await readdir(path.join(sshd.root, "direct/releases/00000000000000cc"))).toEqual([]);
      // The honest form first, so that the refusals below are refusals of their argument, not of the usage.
      const honest = [sshd.root, "direct", "-", good.id, "current", "00000000000000bb"];
      expect((await connection.exec("switch", honest, { timeoutMs: 30_000 })).exitCode).toBe(0);
      for (const args of [
        [sshd.root, "A..B", "-", "00000000000000aa", "current", "00000000000000bb"],
        [sshd.root, "direct", "-", "00000000000000aa", "Current", "00000000000000bb"],
        ["/tmp/../etc", "direct", "-", "00000000000000aa", "current", "00000000000000bb"],
        ["relative/root", "direct", "-", "00000000000000aa", "current", "00000000000000bb"],
        // Deploy paths the server would never send: not absolute, not normalized, the root, its state.
        [sshd.root, "direct", "relative/www", good.id, "current", "00000000000000bb"],
        [sshd.root, "direct", "/tmp/../etc", good.id, "current", "00000000000000bb"],
        [sshd.root, "direct", "/tmp//www", good.id, "current", "00000000000000bb"],
        [sshd.root, "direct", "/tmp/www/", good.id, "current", "00000000000000bb"],
        [sshd.root, "direct", "/", good.id, "current", "00000000000000bb"],
        [sshd.root, "direct", sshd.root, good.id, "current", "00000000000000bb"],
        [sshd.root, "direct", `${sshd.root}/.turnout`, good.id, "current", "00000000000000bb"],
        [sshd.root, "direct", `${sshd.root}/.turnout/blobs`, good.id, "current", "00000000000000bb"],
      ]) {
        const refused = await connection.exec("switch", args, { timeoutMs: 30_000 });
        expect({ args, exitCode: refused.exitCode }).toEqual({ args, exitCode: 10 });
        expect(refused.stderr).not.toContain("usage");
      }
      expect(existsSync(path.join(sshd.root, ".turnout/current"))).toBe(false);
      expect(existsSync(path.join(sshd.root, "current"))).toBe(false);
      expect(existsSync(path.join(sshd.root, "escaped"))).toBe(false);
      expect(existsSync(path.join(sshd.root, "direct/escaped"))).toBe(false);
      expect(existsSync(path.join(sshd.root, "direct/releases/00000000000000aa"))).toBe(false);
      expect(
        (await readdir(path.join(sshd.root, "direct/releases"))).filter((n) => n.startsWith(".")),
      ).toEqual([]);
      expect(existsSync("/tmp/absolute")).toBe(false);
    } finally {
      await connection.close();
    }
  });
});
