import type { ReleasePlan } from "../../../agent/host-layout/release-plan.js";
import { isSha256, manifestDigest } from "../../../domain/artifact.js";
import type { StageSpec } from "../host-ops.js";
import type { BaseManifestSource } from "../manifest-diffs.js";
import { type ListingBase, listingDelta, type ReleaseListing, releaseListing } from "./release-listing.js";
import { planForHost } from "./ssh-validate.js";

/** Bases tried per host before it gets the whole listing (each is one artifact read, cached per deploy). */
const MAX_BASES_TRIED = 3;

/** A base the host offered (op_bases): an artifact and the digest of the listing it keeps for it. */
export interface OfferedBase {
  artifact: string;
  digest: string;
}

/** The base chosen for one host, with what staging from it sends. */
export interface ChosenBase extends ListingBase {
  /** The base release as planned with this deploy's shared paths: its stage tar is made from it (stage-trees.ts). */
  plan: ReleasePlan;
  removed: number;
  added: number;
}

interface SpecListings {
  listing: ReleaseListing;
  /** The artifact digest the host keeps the listing under; undefined: not kept. */
  artifact: string | undefined;
  bases: Map<string, Promise<ChosenBase | undefined>>;
}

/**
 * The listings of a deploy's release and of the bases its SSH hosts offer.
 * Hosts of a fleet mostly hold the same base, so each listing and each
 * difference is computed once per deploy: the cache hangs off the stage
 * spec, which lives as long as the deploy (as ManifestDiffs does for agents).
 */
const perSpec = new WeakMap<StageSpec, SpecListings>();

export function specListing(spec: StageSpec, plan: ReleasePlan): SpecListings {
  let found = perSpec.get(spec);
  if (!found) {
    const listing = releaseListing(plan);
    const artifact = spec.artifact ?? manifestDigest(spec.manifest);
    const keepable = listing.complete && isSha256(artifact) && artifact.startsWith(spec.releaseId);
    found = { listing, artifact: keepable ? artifact : undefined, bases: new Map() };
    perSpec.set(spec, found);
  }
  return found;
}

/**
 * The first offered base (the host lists the one its `current` points at
 * first) that is an artifact of the same app (a host is never sent paths of
 * another app's tree), whose listing, made with this deploy's shared paths,
 * is the one the host keeps, and whose difference is smaller than the
 * listing itself. Undefined: send the whole listing.
 */
export async function chooseBase(
  spec: StageSpec,
  offered: readonly OfferedBase[],
  source: BaseManifestSource,
): Promise<ChosenBase | undefined> {
  const own = perSpec.get(spec);
  if (!own?.artifact) return undefined;
  let tried = 0;
  for (const base of offered) {
    if (base.artifact === own.artifact) continue;
    if (++tried > MAX_BASES_TRIED) break;
    let chosen = own.bases.get(base.artifact);
    if (!chosen) {
      chosen = build(spec, own.listing, base.artifact, source);
      own.bases.set(base.artifact, chosen);
    }
    const found = await chosen;
    if (found && found.digest === base.digest) return found;
  }
  return undefined;
}

async function build(
  spec: StageSpec,
  listing: ReleaseListing,
  artifact: string,
  source: BaseManifestSource,
): Promise<ChosenBase | undefined> {
  try {
    const found = await source(artifact);
    if (!found || found.app !== spec.app) return undefined;
    const plan = planForHost(found.manifest, spec.shared ?? []);
    const base = releaseListing(plan);
    if (!base.complete) return undefined;
    const delta = listingDelta(base, listing);
    if (delta.removed.length + delta.added.length >= listing.lines.length) return undefined;
    return {
      artifact,
      digest: base.digest,
      listing: base,
      plan,
      removed: delta.removed.length,
      added: delta.added.length,
    };
  } catch {
    // An artifact that cannot be read or planned is no base: the host gets the whole listing.
    return undefined;
  }
}
