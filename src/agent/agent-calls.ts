import type * as z from "zod/mini";
import { type ArtifactEntry, type ArtifactManifest, manifestDigest } from "../domain/artifact.js";
import { isTurnoutError, TurnoutError } from "../domain/errors.js";
import { appTarget } from "../domain/fleet.js";
import { applyManifestDiff } from "../domain/manifest-diff.js";
import { activationSpecOf, type OnSwitched, runActivation } from "../providers/fleet/activation.js";
import type { BlobSource, HostLog, HostOps } from "../providers/fleet/host-ops.js";
import type { KeptManifests } from "./kept-manifests.js";
import { type CallArgs, type CallResult, callArgs, type HostOp } from "./protocol.js";

/** Operations that change what the host holds: what they changed goes with their result (protocol 4), or in a heartbeat right after it. */
export const MUTATING_OPS: ReadonlySet<HostOp> = new Set([
  "stage",
  "switchTo",
  "promoteSlot",
  "prune",
  "activate",
]);

/**
 * Runs one `call` from the server on the local host. Arguments are validated
 * here before anything touches the disk (the server is trusted to be the
 * server, not to be right); the host layout validates names and paths again.
 */
export async function executeCall(
  ops: HostOps,
  /** Where the blobs of the artifact being staged come from (it names the artifact to the server). */
  blobsFor: (artifact: string | undefined) => BlobSource,
  op: HostOp,
  raw: unknown,
  log: HostLog,
  signal: AbortSignal,
  manifests?: StageManifests,
  /** `activate`: told as soon as the slot is switched (the agent sends `switched`). */
  onSwitched: OnSwitched = () => undefined,
): Promise<CallResult<HostOp>> {
  switch (op) {
    case "stage": {
      const { spec } = parse(op, raw);
      const { manifestDiff: _diff, ...rest } = spec;
      const { manifest, how } = await stageManifest(spec, manifests, log);
      // The schema takes entries as they come: staging checks every one (planRelease →
      // assertManifest) before it writes anything.
      const result = await ops.stage({ ...rest, manifest }, blobsFor(spec.artifact), log, signal);
      // Kept for the next release's difference (a whole manifest only if it hashes to the artifact).
      if (spec.artifact && manifests) manifests.kept.keep(spec.artifact, manifest);
      return { ...result, manifest: how };
    }
    case "switchTo": {
      const args = parse(op, raw);
      return ops.switchTo(appTarget(args.app, args.path), args.releaseId, args.slot);
    }
    case "promoteSlot": {
      const args = parse(op, raw);
      return ops.promoteSlot(appTarget(args.app, args.path), args.slot);
    }
    case "run": {
      const args = parse(op, raw);
      return {
        exitCode: await ops.run(
          appTarget(args.app, args.path),
          args.argv,
          args.env,
          args.timeoutMs,
          log,
          signal,
        ),
      };
    }
    case "health": {
      const args = parse(op, raw);
      return { healthy: await ops.health(appTarget(args.app, args.path), args.check, log, signal) };
    }
    case "prune": {
      const args = parse(op, raw);
      return ops.prune(appTarget(args.app, args.path), args.keep);
    }
    case "inventory":
      parse(op, raw);
      return { inventory: await ops.inventory() };
    case "prefetch": {
      // Protocol 3: the blob endpoint is told the grant where it is told an artifact otherwise.
      const args = parse(op, raw);
      const result = ops.prefetch
        ? await ops.prefetch(args.app, args.grant, args.blobs, blobsFor(args.grant), signal)
        : null;
      return result ?? { fetched: 0, bytes: 0, cached: 0 };
    }
    case "activate": {
      // Protocol 4: the three operations the server would otherwise call one by one, in the same order.
      const args = parse(op, raw);
      return runActivation(ops, activationSpecOf(args), log, signal, onSwitched);
    }
  }
}

/** What the agent needs to take a manifest as a difference (agent protocol 2). */
export interface StageManifests {
  kept: KeptManifests;
  /** The whole manifest from the server, checked against its digest. */
  fetch(digest: string): Promise<ArtifactManifest>;
}

/**
 * The manifest to stage: as sent, or rebuilt from a kept base and the
 * difference. A rebuilt manifest is used only if it hashes to the artifact's
 * digest, so a wrong or damaged base can never produce a wrong release; when
 * the base is not here, or the result does not add up, the whole manifest is
 * read from the server instead.
 */
async function stageManifest(
  spec: CallArgs<"stage">["spec"],
  manifests: StageManifests | undefined,
  log: HostLog,
): Promise<{ manifest: ArtifactManifest; how: "full" | "diff" | "fetched" }> {
  if (spec.manifest && spec.manifestDiff) {
    throw new TurnoutError("E_VALIDATION", "invalid stage arguments: both a manifest and a manifestDiff");
  }
  if (spec.manifest) return { manifest: spec.manifest as ArtifactManifest, how: "full" };
  const diff = spec.manifestDiff;
  if (!diff)
    throw new TurnoutError("E_VALIDATION", "invalid stage arguments: no manifest and no manifestDiff");
  if (!spec.artifact) {
    throw new TurnoutError(
      "E_VALIDATION",
      "invalid stage arguments: a manifestDiff needs the artifact digest",
    );
  }
  if (!manifests) throw new TurnoutError("E_VALIDATION", "this host cannot take a manifestDiff");
  const base = manifests.kept.read(diff.base);
  if (base) {
    if (
      !diff.entries.every(
        (e) => typeof e === "object" && e !== null && typeof (e as { path?: unknown }).path === "string",
      )
    ) {
      throw new TurnoutError("E_VALIDATION", "invalid stage arguments: a manifestDiff entry without a path");
    }
    const rebuilt = applyManifestDiff(base, {
      entries: diff.entries as ArtifactEntry[],
      removed: diff.removed,
    });
    if (manifestDigest(rebuilt) === spec.artifact) return { manifest: rebuilt, how: "diff" };
    log(
      `manifest: the difference from ${diff.base.slice(0, 12)} does not add up to ${spec.artifact.slice(0, 12)}: reading the whole manifest`,
    );
  } else {
    log(`manifest: base ${diff.base.slice(0, 12)} is not kept on this host: reading the whole manifest`);
  }
  return { manifest: await manifests.fetch(spec.artifact), how: "fetched" };
}

function parse<Op extends HostOp>(op: Op, raw: unknown): z.infer<(typeof callArgs)[Op]> {
  const parsed = (callArgs[op] as unknown as z.ZodMiniType<z.infer<(typeof callArgs)[Op]>>).safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new TurnoutError(
      "E_VALIDATION",
      `invalid ${op} arguments${issue?.path.length ? ` at ${issue.path.join(".")}` : ""}: ${issue?.message ?? "invalid"}`,
    );
  }
  return parsed.data;
}

/** What goes back in a failed `result`: the stable code and a message, never a stack. */
export function errorBody(error: unknown): { code: string; message: string } {
  if (isTurnoutError(error)) return { code: error.code, message: error.message.slice(0, 8000) };
  const message = error instanceof Error ? error.message : String(error);
  return { code: "E_INTERNAL", message: message.slice(0, 8000) };
}
