import { randomBytes } from "node:crypto";
import type { HostGrant } from "../../src/domain/host-grant.js";
import type { Store } from "../../src/store/store.js";
import { hashToken } from "../../src/store/tokens.js";

/**
 * An agent host enrolled the way a hello enrolls one (store.hosts.enrollAgent),
 * with a host token of its own, for tests of what a host token may read
 * without running an agent. What the server sent it is recorded as a fleet
 * deploy records it (store.fleet.sendArtifact).
 */
export async function enrollHost(
  store: Store,
  name: string,
  grant: HostGrant,
): Promise<{ id: number; token: string }> {
  const token = `tnh_${randomBytes(32).toString("base64url")}`;
  const host = await store.hosts.enrollAgent({
    name,
    labels: {},
    owner: "test:0:host",
    tokenHash: hashToken(token),
    grant,
  });
  return { id: host.id, token };
}
