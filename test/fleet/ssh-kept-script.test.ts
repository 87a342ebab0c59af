import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { StageSpec } from "../../src/providers/fleet/host-ops.js";
import { REMOTE_SCRIPT, REMOTE_SCRIPT_DIGEST } from "../../src/providers/fleet/ssh/remote-script.js";
import { type KeptScripts, SshConnection } from "../../src/providers/fleet/ssh/ssh-connection.js";
import { SshHostOps } from "../../src/providers/fleet/ssh/ssh-host-ops.js";
import { type MemoryRelease, memoryRelease, type SshdInstance, startSshd } from "../helpers/sshd.js";

/**
 * The remote script kept on the SSH host (issue 15: a few bytes for a small
 * change): installed by the first operation that finds no good copy, run by
 * a launcher of a few hundred bytes afterwards, never run when damaged, and
 * sent whole in the command line where it cannot be kept.
 */
let sshd: SshdInstance;
const never = new AbortController().signal;
const kept = () => path.join(sshd.root, ".turnout", "bin", `turnout-host-${REMOTE_SCRIPT_DIGEST}`);

beforeAll(async () => {
  sshd = await startSshd();
});
afterAll(async () => {
  await sshd?.stop();
});
beforeEach(async () => {
  await rm(path.join(sshd.root, ".turnout", "bin"), { recursive: true, force: true });
});

/** An ssh that records each invocation's remote command (its last argument), then runs the real one. */
async function recordingSsh(): Promise<{ command: string; commands: () => Promise<string[]> }> {
  const log = path.join(sshd.dir, `ssh-commands-${Math.random().toString(16).slice(2)}`);
  const command = `${log}.sh`;
  // One line per call: the byte count of the remote command, then its first 200 bytes (no line breaks).
  await writeFile(
    command,
    `#!/bin/sh\nfor last; do :; done\nprintf "%s %s\\n" "$(printf %s "$last" | wc -c)" "$(printf %s "$last" | head -c 200 | tr "\\n" " ")" >> ${log}\nexec ssh "$@"\n`,
    { mode: 0o755 },
  );
  return {
    command,
    // Sessions only: `ssh -O exit` (closing the shared connection) has no remote command.
    commands: async () =>
      existsSync(log)
        ? (await readFile(log, "utf8")).split("\n").filter((line) => line.includes(" sh -c "))
        : [],
  };
}

const spec = (release: MemoryRelease): StageSpec => ({
  app: "kept",
  releaseId: release.id,
  manifest: release.manifest,
  shared: [],
  env: {},
  timeoutMs: 30_000,
});
const bytesOf = (line: string) => Number(line.split(" ")[0]);

describe("the remote script kept on an SSH host", () => {
  it("is installed once, then every session's command line is the launcher, not the script", async () => {
    const spy = await recordingSsh();
    const known: KeptScripts = new Set();
    const ops = new SshHostOps(sshd.config("web-1"), { sshCommand: spy.command, keptScripts: known });
    const v1 = memoryRelease({ "index.html": "v1\n" });
    try {
      expect((await ops.stage(spec(v1), v1.source, () => {}, never)).staged).toBe(true);
      expect(await ops.switchTo("kept", v1.id, "current")).toEqual({ previous: null });
    } finally {
      await ops.close();
    }
    expect(await readFile(kept(), "utf8")).toBe(REMOTE_SCRIPT);
    const lines = await spy.commands();
    // The question, the install (the script on stdin, not in the command line), then the operations.
    expect(lines.length).toBeGreaterThan(3);
    for (const line of lines) expect(bytesOf(line), line).toBeLessThan(2_000);
    expect(REMOTE_SCRIPT.length).toBeGreaterThan(10_000);

    // The next deploy (another connection, the server's shared knowledge) asks nothing; a server
    // that does not know yet asks once (and installs nothing: the copy is good).
    const sessions = async (keptScripts: KeptScripts) => {
      const again = await recordingSsh();
      const next = new SshHostOps(sshd.config("web-1"), { sshCommand: again.command, keptScripts });
      try {
        expect((await next.inventory()).find((a) => a.app === "kept")?.current).toBe(v1.id);
      } finally {
        await next.close();
      }
      return again.commands();
    };
    const told = await sessions(known);
    const asked = await sessions(new Set());
    expect(asked.length).toBe(told.length + 1);
    for (const line of [...told, ...asked]) {
      expect(bytesOf(line), line).toBeLessThan(1_000);
      expect(line).not.toContain("mkdir");
    }
  });

  it("installs it again when it was removed or damaged, and never runs a damaged copy", async () => {
    const known: KeptScripts = new Set();
    const v1 = memoryRelease({ "index.html": "one\n" });
    const first = new SshHostOps(sshd.config("web-1"), { keptScripts: known });
    try {
      await first.stage(spec(v1), v1.source, () => {}, never);
    } finally {
      await first.close();
    }
    expect(existsSync(kept())).toBe(true);

    // Removed by hand while the server believes it is there.
    await rm(kept());
    const second = new SshHostOps(sshd.config("web-1"), { keptScripts: known });
    try {
      expect(await second.switchTo("kept", v1.id, "current")).toMatchObject({});
      expect(await readFile(kept(), "utf8")).toBe(REMOTE_SCRIPT);
    } finally {
      await second.close();
    }

    // Damaged: a copy that would do something else is not run (it no longer hashes to its name).
    const marker = path.join(sshd.dir, "damaged-copy-ran");
    await chmod(kept(), 0o600);
    await writeFile(kept(), `touch ${marker}\n`);
    const third = new SshHostOps(sshd.config("web-1"), { keptScripts: known });
    try {
      expect((await third.inventory()).find((a) => a.app === "kept")?.current).toBe(v1.id);
    } finally {
      await third.close();
    }
    expect(existsSync(marker)).toBe(false);
    expect(await readFile(kept(), "utf8")).toBe(REMOTE_SCRIPT);
  });

  it("says so when the copy goes away under an operation whose input is a stream, and installs it again", async () => {
    const known: KeptScripts = new Set();
    const connection = new SshConnection(sshd.config("web-1"), { keptScripts: known });
    try {
      expect((await connection.exec("hello", [], { timeoutMs: 30_000 })).exitCode).toBe(0);
      expect(existsSync(kept())).toBe(true);
      await rm(kept());
      // A stream cannot be given twice: the operation fails, with a message that says why.
      const streamed = await connection.exec("hello", [], {
        timeoutMs: 30_000,
        input: async (stdin) => {
          stdin.end("data\n");
        },
      });
      expect(streamed.exitCode).toBe(96);
      const error = connection.failure(streamed, "receive");
      expect(error.code).toBe("E_UNAVAILABLE");
      expect(error.message).toContain("script kept on the host");
      expect(error.message).toContain("installed again");
      // The next operation installs it again and runs.
      expect((await connection.exec("hello", [], { timeoutMs: 30_000 })).exitCode).toBe(0);
      expect(await readFile(kept(), "utf8")).toBe(REMOTE_SCRIPT);
    } finally {
      await connection.close();
    }
  });

  it("sends the script in every command line where it cannot be kept", async () => {
    // `.turnout/bin` is a file: nothing can be installed there.
    await mkdir(path.join(sshd.root, ".turnout"), { recursive: true });
    await writeFile(path.join(sshd.root, ".turnout", "bin"), "not a directory\n");
    const spy = await recordingSsh();
    const ops = new SshHostOps(sshd.config("web-1"), { sshCommand: spy.command });
    const v2 = memoryRelease({ "index.html": "two\n" });
    try {
      expect((await ops.stage(spec(v2), v2.source, () => {}, never)).staged).toBe(true);
    } finally {
      await ops.close();
      await rm(path.join(sshd.root, ".turnout", "bin"), { force: true });
    }
    const lines = await spy.commands();
    // The question and the failed install, then the operations with the whole script.
    expect(lines.length, lines.join("\n")).toBeGreaterThan(3);
    expect(lines.slice(2).every((l) => bytesOf(l) > REMOTE_SCRIPT.length)).toBe(true);
    expect(lines.slice(0, 2).every((l) => bytesOf(l) < 2_000)).toBe(true);
  });
});
