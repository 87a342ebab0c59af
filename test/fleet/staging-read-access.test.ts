import { describe, expect, it } from "vitest";
import type { WebSocket } from "ws";
import { ArtifactReadAccess } from "../../src/artifacts/read-access.js";
import type { Principal } from "../../src/domain/roles.js";
import { AgentConnection } from "../../src/providers/fleet/agent-connection.js";

/**
 * A host downloading the artifact this server asked it to stage is let in
 * without the store's record being read (one statement per host and deploy
 * fewer); before that call and once it has ended, the record decides again.
 */
const sha = (n: number) => n.toString(16).padStart(64, "0");
const ARTIFACT = sha(1);
const FILE = sha(2);

function openSocket() {
  const sent: { id: number }[] = [];
  const socket = {
    OPEN: 1,
    readyState: 1,
    send(data: Buffer | string) {
      sent.push(JSON.parse(String(data)) as { id: number });
    },
  };
  return { socket: socket as unknown as WebSocket, sent };
}

const hostPrincipal = (id: number, name: string): Principal => ({
  tokenId: -id,
  name: `host:${name}`,
  role: "agent",
  apps: ["shop"],
  host: { id, name },
});

const stageArgs = (artifact: string | undefined) =>
  ({
    spec: {
      app: "shop",
      releaseId: "r1",
      ...(artifact ? { artifact } : {}),
      manifest: { version: 1, entries: [] },
      shared: [],
      env: {},
      timeoutMs: 1000,
    },
  }) as never;

describe("read access while this server waits for a host to stage", () => {
  function setUp() {
    const { socket, sent } = openSocket();
    const connection = new AgentConnection(7, "web-7", "test", socket, 3);
    let lookups = 0;
    const access = new ArtifactReadAccess({
      // The store's record: never written here, so only the stage call can let the host in.
      wasSent: async () => {
        lookups++;
        return false;
      },
      staging: (host, digest) =>
        host.name === connection.name && host.id === connection.hostId && connection.isStaging(digest),
      findArtifact: async () => undefined,
      manifest: async () => ({
        version: 1,
        entries: [{ path: "VERSION", type: "file", mode: 0o644, size: 2, sha256: FILE }],
      }),
    });
    return { connection, sent, access, lookups: () => lookups };
  }

  it("lets the host read that artifact's blobs during the call, without a look-up, and not after", async () => {
    const { connection, sent, access, lookups } = setUp();
    const host = hostPrincipal(7, "web-7");
    await expect(access.assertBlobs(host, ARTIFACT, [FILE])).rejects.toMatchObject({ code: "E_NOT_FOUND" });
    expect(lookups()).toBe(1);

    const call = connection.call("stage", stageArgs(ARTIFACT), { timeoutMs: 5000, cancelGraceMs: 100 });
    await expect(access.assertBlobs(host, ARTIFACT, [FILE])).resolves.toBeUndefined();
    expect(lookups()).toBe(1);
    // Only that artifact's blobs, and only that artifact.
    await expect(access.assertBlobs(host, ARTIFACT, [sha(3)])).rejects.toMatchObject({ code: "E_NOT_FOUND" });
    await expect(access.assertBlobs(host, sha(4), [FILE])).rejects.toMatchObject({ code: "E_NOT_FOUND" });
    // Another host, and a namesake with another id (the host enrolled again), are not let in by this call.
    await expect(access.assertBlobs(hostPrincipal(8, "web-8"), ARTIFACT, [FILE])).rejects.toMatchObject({
      code: "E_NOT_FOUND",
    });
    await expect(access.assertBlobs(hostPrincipal(9, "web-7"), ARTIFACT, [FILE])).rejects.toMatchObject({
      code: "E_NOT_FOUND",
    });

    connection.receive({
      type: "result",
      id: sent[0]!.id,
      ok: true,
      result: { staged: true, blobsFetched: 1, bytesFetched: 2 },
    });
    await call;
    const before = lookups();
    await expect(access.assertBlobs(host, ARTIFACT, [FILE])).rejects.toMatchObject({ code: "E_NOT_FOUND" });
    expect(lookups()).toBe(before + 1);
  });

  it("ends with the call however it ends: failed, cancelled, or the host disconnected", async () => {
    const { connection, sent, access } = setUp();
    const host = hostPrincipal(7, "web-7");
    const failed = connection.call("stage", stageArgs(ARTIFACT), { timeoutMs: 5000, cancelGraceMs: 100 });
    const second = connection.call("stage", stageArgs(ARTIFACT), { timeoutMs: 5000, cancelGraceMs: 100 });
    connection.receive({
      type: "result",
      id: sent[0]!.id,
      ok: false,
      error: { code: "E_INTERNAL", message: "x" },
    });
    await expect(failed).rejects.toMatchObject({ code: "E_INTERNAL" });
    // The other call naming the artifact still waits: still let in.
    expect(connection.isStaging(ARTIFACT)).toBe(true);
    connection.closedWith("gone");
    await expect(second).rejects.toMatchObject({ code: "E_UNAVAILABLE" });
    expect(connection.isStaging(ARTIFACT)).toBe(false);
    await expect(access.assertBlobs(host, ARTIFACT, [FILE])).rejects.toMatchObject({ code: "E_NOT_FOUND" });

    const controller = new AbortController();
    const cancelled = connection.call("stage", stageArgs(ARTIFACT), {
      timeoutMs: 5000,
      cancelGraceMs: 10,
      signal: controller.signal,
    });
    // A closed connection refuses at once; no call is left waiting, and nothing is let in.
    await expect(cancelled).rejects.toMatchObject({ code: "E_UNAVAILABLE" });
    expect(connection.isStaging(ARTIFACT)).toBe(false);
  });

  it("a stage call that names no artifact (an older server's spec) lets nothing in", () => {
    const { connection } = setUp();
    void connection
      .call("stage", stageArgs(undefined), { timeoutMs: 5000, cancelGraceMs: 100 })
      .catch(() => {});
    expect(connection.isStaging(ARTIFACT)).toBe(false);
    connection.closedWith("done");
  });
});
