import { describe, expect, it } from "vitest";
import { PrefetchGrants } from "../../src/artifacts/prefetch-grants.js";
import { ArtifactReadAccess } from "../../src/artifacts/read-access.js";
import type { Principal } from "../../src/domain/roles.js";

/**
 * Read access under a prefetch grant: a host reads exactly the blobs the
 * deploy offered that host, under that grant, while it is open; anything
 * else is answered like a missing blob (404 E_NOT_FOUND), as for artifacts.
 */
const sha = (n: number) => n.toString(16).padStart(64, "0");
const host = (id: number): Principal => ({
  tokenId: 100 + id,
  name: `host-${id}`,
  role: "agent",
  apps: ["shop"],
  host: { id, name: `web-${id}` },
});

describe("prefetch grants", () => {
  const grants = new PrefetchGrants();
  const access = new ArtifactReadAccess({
    // No artifact was sent to anyone: only grants can let a host read.
    wasSent: async () => false,
    findArtifact: async () => undefined,
    manifest: async () => {
      throw new Error("no manifest");
    },
    prefetched: (hostId, grant, digests) => grants.allows(hostId, grant, digests),
  });

  it("lets the offered host read the offered blobs, and nothing else, until it closes", async () => {
    const grant = grants.open();
    expect(grant.id).toMatch(/^[0-9a-f]{64}$/);
    grant.offer(1, [sha(1), sha(2)]);

    await expect(access.assertBlobs(host(1), grant.id, [sha(1), sha(2)])).resolves.toBeUndefined();
    // Another host of the same app, a blob not offered, a batch with one foreign blob, another grant id.
    await expect(access.assertBlobs(host(2), grant.id, [sha(1)])).rejects.toMatchObject({
      code: "E_NOT_FOUND",
    });
    await expect(access.assertBlobs(host(1), grant.id, [sha(3)])).rejects.toMatchObject({
      code: "E_NOT_FOUND",
    });
    await expect(access.assertBlobs(host(1), grant.id, [sha(1), sha(3)])).rejects.toMatchObject({
      code: "E_NOT_FOUND",
      details: { sha256: sha(1) },
    });
    await expect(access.assertBlobs(host(1), sha(9), [sha(1)])).rejects.toMatchObject({
      code: "E_NOT_FOUND",
    });

    grant.close();
    expect(grants.size).toBe(0);
    await expect(access.assertBlobs(host(1), grant.id, [sha(1)])).rejects.toMatchObject({
      code: "E_NOT_FOUND",
    });
  });

  it("two grants are separate, and an enrollment token reads nothing under either", async () => {
    const a = grants.open();
    const b = grants.open();
    expect(a.id).not.toBe(b.id);
    a.offer(1, [sha(1)]);
    b.offer(2, [sha(2)]);
    expect(grants.allows(1, a.id, [sha(1)])).toBe(true);
    expect(grants.allows(1, b.id, [sha(1)])).toBe(false);
    expect(grants.allows(2, a.id, [sha(2)])).toBe(false);
    const enrollment: Principal = { tokenId: 7, name: "enroll", role: "agent", apps: ["shop"] };
    await expect(access.assertBlobs(enrollment, a.id, [sha(1)])).rejects.toMatchObject({
      code: "E_FORBIDDEN",
    });
    a.close();
    b.close();
  });
});
