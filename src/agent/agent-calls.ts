import type { z } from "zod";
import type { ArtifactManifest } from "../domain/artifact.js";
import { isTurnoutError, TurnoutError } from "../domain/errors.js";
import type { BlobSource, HostLog, HostOps } from "../providers/fleet/host-ops.js";
import { type CallResult, callArgs, type HostOp } from "./protocol.js";

/** Operations that change what the host holds: the agent reports its inventory right after them. */
export const MUTATING_OPS: ReadonlySet<HostOp> = new Set(["stage", "switchTo", "promoteSlot", "prune"]);

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
): Promise<CallResult<HostOp>> {
  switch (op) {
    case "stage": {
      const { spec } = parse(op, raw);
      // The schema takes entries as they come: staging checks every one (planRelease →
      // assertManifest) before it writes anything.
      return ops.stage(
        { ...spec, manifest: spec.manifest as ArtifactManifest },
        blobsFor(spec.artifact),
        log,
        signal,
      );
    }
    case "switchTo": {
      const args = parse(op, raw);
      return ops.switchTo(args.app, args.releaseId, args.slot);
    }
    case "promoteSlot": {
      const args = parse(op, raw);
      return ops.promoteSlot(args.app, args.slot);
    }
    case "run": {
      const args = parse(op, raw);
      return { exitCode: await ops.run(args.app, args.argv, args.env, args.timeoutMs, log, signal) };
    }
    case "health": {
      const args = parse(op, raw);
      return { healthy: await ops.health(args.app, args.check, log, signal) };
    }
    case "prune": {
      const args = parse(op, raw);
      return ops.prune(args.app, args.keep);
    }
    case "inventory":
      parse(op, raw);
      return { inventory: await ops.inventory() };
  }
}

function parse<Op extends HostOp>(op: Op, raw: unknown): z.infer<(typeof callArgs)[Op]> {
  const parsed = (callArgs[op] as unknown as z.ZodType<z.infer<(typeof callArgs)[Op]>>).safeParse(raw);
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
