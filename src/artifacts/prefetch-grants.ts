import { randomBytes } from "node:crypto";

/**
 * What hosts may read before an artifact exists. A host reads the blobs of
 * artifacts the server sent it (read-access.ts), but while a release is
 * still being built there is no artifact yet: the deploy opens a grant for
 * its target hosts, and each blob it offers a host in a `prefetch` call is
 * added to that host's set. The blob endpoint takes the grant's id where it
 * takes an artifact's digest (a random 64-hex id, so no digest is ever
 * mistaken for it) and allows exactly those blobs to exactly that host.
 *
 * In memory, per server process: grants live as long as the deploy's
 * prefetching does, and a host reached through another server gets no
 * prefetch at all (its downloads would go to that server).
 */
export class PrefetchGrants {
  private readonly grants = new Map<string, Map<number, Set<string>>>();

  /** A new grant; nothing is readable under it until offer() says so. */
  open(): PrefetchGrant {
    const id = randomBytes(32).toString("hex");
    const hosts = new Map<number, Set<string>>();
    this.grants.set(id, hosts);
    return {
      id,
      offer: (hostId, digests) => {
        const set = hosts.get(hostId) ?? new Set<string>();
        hosts.set(hostId, set);
        for (const digest of digests) set.add(digest);
      },
      close: () => {
        this.grants.delete(id);
      },
    };
  }

  /** Whether `grant` lets host `hostId` read every one of `digests`. */
  allows(hostId: number, grant: string, digests: readonly string[]): boolean {
    const offered = this.grants.get(grant)?.get(hostId);
    return offered !== undefined && digests.every((digest) => offered.has(digest));
  }

  /** Grants open now (tests: a finished deploy leaves none). */
  get size(): number {
    return this.grants.size;
  }
}

export interface PrefetchGrant {
  readonly id: string;
  /** Lets host `hostId` read `digests` under this grant (before the call that names them is sent). */
  offer(hostId: number, digests: readonly string[]): void;
  close(): void;
}
