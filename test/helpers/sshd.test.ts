import { execFile } from "node:child_process";
import { readdir } from "node:fs/promises";
import net from "node:net";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { type SshdInstance, startSshd } from "./sshd.js";

const run = promisify(execFile);

/** The test sshd is part of what the SSH fleet tests measure: it must be hermetic and start reliably. */
describe("the test sshd", () => {
  let sshd: SshdInstance | undefined;
  afterEach(async () => {
    await sshd?.stop();
    sshd = undefined;
  });

  it("starts sessions in an empty HOME of its own, so no startup file of the test user runs", async () => {
    sshd = await startSshd();
    const { stdout } = await run("ssh", [
      "-F",
      "/dev/null",
      "-T",
      "-o",
      "BatchMode=yes",
      "-o",
      "StrictHostKeyChecking=yes",
      "-o",
      `UserKnownHostsFile=${sshd.knownHostsFile}`,
      "-o",
      "IdentitiesOnly=yes",
      "-o",
      `IdentityFile=${sshd.keyFile}`,
      "-p",
      String(sshd.port),
      "-l",
      sshd.user,
      "--",
      "127.0.0.1",
      'printf "%s\\n" "$HOME"',
    ]);
    expect(stdout.trim()).toBe(sshd.home);
    expect(await readdir(sshd.home)).toEqual([]);
  });

  it("is ready only when sshd itself listens, not when something else answers on its port", async () => {
    const squatter = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => squatter.listen(0, "127.0.0.1", resolve));
    const { port } = squatter.address() as net.AddressInfo;
    try {
      await expect(startSshd({ port })).rejects.toThrow(/sshd exited/);
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
  });
});
