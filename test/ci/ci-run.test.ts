import { execFile } from "node:child_process";
import { chmodSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const run = promisify(execFile);

/**
 * .ci/run on a bare machine and on a ready one. The machine's package
 * managers are replaced by recorders on PATH (npm ci would replace this
 * checkout's node_modules, apt-get would install): what is checked is what
 * the script asks of them, in which order.
 */
describe(".ci/run", () => {
  let dir: string;
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function ciRun(present: string[]): Promise<string[][]> {
    dir = await mkdtemp(path.join(tmpdir(), "turnout-ci-"));
    const log = path.join(dir, "calls");
    writeFileSync(log, "");
    for (const name of ["apt-get", "npm", "pg_isready", ...present]) {
      const file = path.join(dir, name);
      writeFileSync(file, `#!/bin/sh\nprintf '%s\\n' "${name} $*" >> '${log}'\n`);
      chmodSync(file, 0o755);
    }
    // The only real tool the script needs on the way.
    symlinkSync("/usr/bin/dirname", path.join(dir, "dirname"));
    await run("/bin/bash", [path.join(ROOT, ".ci", "run")], { env: { PATH: dir } });
    return readFileSync(log, "utf8")
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => line.split(" "));
  }

  it("on a bare machine: apt-get update, then installs every missing tool (chromium too), then npm ci", async () => {
    const calls = await ciRun([]);
    const apt = calls.filter((c) => c[0] === "apt-get");
    expect(apt[0]).toEqual(["apt-get", "update", "-qq"]);
    expect(apt[1]!.slice(0, 4)).toEqual(["apt-get", "install", "-y", "-qq"]);
    expect(apt[1]!.slice(4)).toEqual(
      expect.arrayContaining(["git", "openssh-server", "openssh-client", "curl", "chromium"]),
    );
    expect(calls.filter((c) => c[0] === "npm").map((c) => c.slice(1, 3))).toEqual([
      ["ci", "--no-fund"],
      ["test"],
      ["run", "typecheck"],
      ["run", "lint"],
    ]);
  });

  it("on a machine that has everything: installs nothing", async () => {
    const calls = await ciRun(["git", "bash", "ssh", "curl", "chromium"]);
    expect(calls.filter((c) => c[0] === "apt-get")).toEqual([]);
    expect(calls.find((c) => c[0] === "npm")).toEqual(["npm", "ci", "--no-fund", "--no-audit"]);
  });
});
