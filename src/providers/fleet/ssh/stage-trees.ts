import { gzipSync } from "node:zlib";
import type { ReleasePlan } from "../../../agent/host-layout/release-plan.js";
import type { StageSpec } from "../host-ops.js";
import type { ChosenBase } from "./listing-bases.js";
import { type StageTar, stageTar } from "./stage-tar.js";
import { type TarPatch, tarPatch } from "./tar-patch.js";

/**
 * What the `stage` session sends after its lines (stage-input.ts): the
 * release's stage tar gzipped whole, or, for a host that keeps the stage
 * tar of a base release, a patch of it (tar-patch.ts) and the new records
 * gzipped. Either way the host ends with the same tar (checked against
 * `digest`) and unpacks it with the same one `tar -x`.
 */
export type StageTree =
  | { digest: string; gzipped: Buffer; patch?: undefined }
  | {
      digest: string;
      gzipped: Buffer;
      patch: TarPatch;
      base: { artifact: string; digest: string };
    };

/** Digits of a kept tar's digest the host names in its answer to `bases` (it checks the whole digest when it uses one). */
export const KEPT_PREFIX = 16;

interface SpecTrees {
  tar: Promise<StageTar>;
  /** Gzipped only when a host needs the whole tree. */
  whole?: Promise<StageTree>;
  patches: Map<string, Promise<StageTree | undefined>>;
}

/**
 * Per deploy, not per host: hosts of a fleet mostly hold the same base, so
 * the tar, its gzip and each patch are made once (the cache hangs off the
 * stage spec, which lives as long as the deploy, as listing-bases.ts does).
 */
const perSpec = new WeakMap<StageSpec, SpecTrees>();

function trees(spec: StageSpec, plan: ReleasePlan): SpecTrees {
  let found = perSpec.get(spec);
  if (!found) {
    const tar = stageTar(plan);
    tar.catch(() => undefined);
    found = { tar, patches: new Map() };
    perSpec.set(spec, found);
  }
  return found;
}

export function wholeTree(spec: StageSpec, plan: ReleasePlan): Promise<StageTree> {
  const own = trees(spec, plan);
  own.whole ??= own.tar.then((tar) => ({ digest: tar.digest, gzipped: gzipSync(tar.bytes, { level: 6 }) }));
  return own.whole;
}

/**
 * The tree as a patch of the base's stage tar, made again from the base
 * manifest; undefined when the host keeps no tar of that digest (`kept`:
 * the first KEPT_PREFIX digits of each, as the host names them; another
 * version of the tar, or none) or the patch is not worth it.
 */
export async function patchTree(
  spec: StageSpec,
  plan: ReleasePlan,
  base: ChosenBase,
  kept: ReadonlySet<string>,
): Promise<StageTree | undefined> {
  if (kept.size === 0) return undefined;
  const own = trees(spec, plan);
  let found = own.patches.get(base.artifact);
  if (!found) {
    found = (async () => {
      const [tar, baseTar] = await Promise.all([own.tar, stageTar(base.plan)]);
      const patch = tarPatch(baseTar.bytes, tar.bytes);
      if (!patch) return undefined;
      return {
        digest: tar.digest,
        gzipped: gzipSync(patch.literal, { level: 6 }),
        patch,
        base: { artifact: base.artifact, digest: baseTar.digest },
      };
    })().catch(() => undefined); // a base whose tar cannot be made is no base: the whole tree goes
    own.patches.set(base.artifact, found);
  }
  const tree = await found;
  return tree?.patch && kept.has(tree.base.digest.slice(0, KEPT_PREFIX)) ? tree : undefined;
}
