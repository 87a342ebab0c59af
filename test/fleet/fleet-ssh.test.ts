import { afterEach, describe, expect, it } from "vitest";
import { assertConsistent, currentOf } from "../helpers/fleet.js";
import { type SshdInstance, startSshd } from "../helpers/sshd.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";

/**
 * SSH hosts through the whole engine: a real sshd per host on a loopback
 * port, pinned host keys, the same staging, switch, health, rollback and
 * prune as agents.
 */
describe("fleet deploys to SSH hosts", () => {
  let t: TestTurnout;
  let hosts: SshdInstance[] = [];
  afterEach(async () => {
    await assertConsistent(hosts.map((h) => h.root));
    await t?.stop();
    for (const h of hosts) await h.stop();
    hosts = [];
  });

  const manifest = () => `repo: "{repo}"
environments:
  production:
    deploy:
      provider: fleet
      ssh:
${hosts
  .map(
    (h, i) => `        - name: box-${i + 1}
          address: 127.0.0.1
          port: ${h.port}
          user: ${h.user}
          key_file: ${h.keyFile}
          known_hosts_file: ${h.knownHostsFile}
          root: ${h.root}`,
  )
  .join("\n")}
      health: { command: [sh, -c, '! grep -q bad VERSION'], retries: 0 }
      strategy: { canary: 1, batch: 1 }
      keep_releases: 2
`;

  it("stages, switches, health-checks and rolls back over SSH with strict host keys", async () => {
    hosts = [await startSshd(), await startSshd()];
    t = await startTurnout({
      manifest:
        'repo: "{repo}"\nenvironments:\n  x:\n    deploy:\n      provider: shell\n      command: ["true"]\n',
    });
    await t.writeManifest("shop", manifest());
    const deploy = async () =>
      t.waitForDeploy(
        (await t.api("POST", "/api/v1/apps/shop/environments/production/deploys", {})).body.deploy.id,
        60_000,
      );
    const logOf = async (id: number) => (await t.store.logs.read(id, 0)).chunks.map((c) => c.text).join("");

    const first = await deploy();
    expect(first.status, await logOf(first.id)).toBe("succeeded");
    const r1 = (await t.store.releases.current("shop", "production"))!.artifact!.slice(0, 16);
    for (const h of hosts) expect(await currentOf(h.root, "shop")).toBe(r1);

    // Drift on an SSH host is seen when the server next talks to it (here: the next deploy).
    const driftOf = async () =>
      Object.fromEntries(
        (await t.api("GET", "/api/v1/apps/shop/environments/production/hosts")).body.hosts.map((h: any) => [
          h.name,
          [h.current, h.drifted],
        ]),
      );
    expect(await driftOf()).toEqual({ "box-1": [r1, false], "box-2": [r1, false] });
    const { rmSync } = await import("node:fs");
    rmSync(`${hosts[1]!.root}/shop/releases/${r1}`, { recursive: true });

    await t.repo.commit({ VERSION: "bad\n" }, "broken");
    const broken = await deploy();
    expect(broken).toMatchObject({ status: "failed", errorCode: "E_ROLLED_BACK" });
    expect(await currentOf(hosts[0]!.root, "shop")).toBe(r1);
    // The canary (box-1) failed and was switched back; box-2 was left as it was: its release gone.
    expect(await driftOf()).toEqual({ "box-1": [r1, false], "box-2": [null, true] });
    const listed = (await t.api("GET", "/api/v1/hosts/box-2")).body.host;
    expect(listed.lastSeenAt).not.toBeNull();
    expect(listed.apps.map((a: any) => [a.app, a.current])).toEqual([["shop", null]]);

    let last = first;
    for (const v of ["2", "3", "4"]) {
      // A few more files first: a difference as large as the tree is not worth sending.
      const more: Record<string, string> =
        v === "2" ? { "a.txt": "a\n", "b.txt": "b\n", "lib/c.txt": "c\n", "lib/d.txt": "d\n" } : {};
      await t.repo.commit({ VERSION: `${v}\n`, ...more }, v);
      last = await deploy();
      expect(last.status).toBe("succeeded");
    }
    // A one-file change goes to each host as the difference from the listing it keeps of current.
    const lastLog = await logOf(last.id);
    for (const name of ["box-1", "box-2"])
      expect(lastLog).toMatch(
        new RegExp(`\\[${name}\\] staged \\(1 blobs, [0-9]+ bytes fetched; manifest: difference\\)`),
      );
    const { readdirSync } = await import("node:fs");
    for (const h of hosts) {
      const kept = readdirSync(`${h.root}/shop/releases`).filter((n) => !n.startsWith("."));
      expect(kept).toHaveLength(2);
    }
    const drift = (await t.api("GET", "/api/v1/apps/shop/environments/production/hosts")).body.hosts;
    expect(drift.map((h: any) => [h.name, h.kind, h.drifted])).toEqual([
      ["box-1", "ssh", false],
      ["box-2", "ssh", false],
    ]);
  });

  it("refuses a host whose key does not match the pinned one, and switches nothing", async () => {
    hosts = [await startSshd(), await startSshd()];
    // box-2's known_hosts pins box-1's key: strict checking must refuse it.
    const { readFileSync, writeFileSync } = await import("node:fs");
    const otherKey = readFileSync(hosts[0]!.knownHostsFile, "utf8").replace(
      `:${hosts[0]!.port}]`,
      `:${hosts[1]!.port}]`,
    );
    writeFileSync(hosts[1]!.knownHostsFile, otherKey);
    t = await startTurnout({
      manifest:
        'repo: "{repo}"\nenvironments:\n  x:\n    deploy:\n      provider: shell\n      command: ["true"]\n',
      // Agents get a grace to reconnect; an SSH host has no connection to come back, so
      // its failure must not wait for one (it did: the whole grace, for every failed host).
      fleetReconnectGraceMs: 24 * 3_600_000,
    });
    await t.writeManifest("shop", manifest());
    const res = await t.api("POST", "/api/v1/apps/shop/environments/production/deploys", {});
    const done = await t.waitForDeploy(res.body.deploy.id, 60_000);
    const log = (await t.store.logs.read(done.id, 0)).chunks.map((c) => c.text).join("");
    expect(done, log).toMatchObject({ status: "failed", errorCode: "E_STAGE_FAILED" });
    expect(log).toMatch(/box-2.*host key/i);
    for (const h of hosts) expect(await currentOf(h.root, "shop")).toBeNull();
  });
});
