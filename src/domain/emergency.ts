import { TurnoutError } from "./errors.js";
import type { Principal } from "./roles.js";

/**
 * Emergency deploys: a working tree deployed past review (git-deploy's "live
 * hack", recorded instead of hidden). The release keeps the commit the tree
 * started from, the files that differ from it, who and why; status and
 * history say the environment runs an unreviewed change until a normal (git)
 * deploy replaces it.
 */
export interface Emergency {
  /** The commit the tree started from (null: the tree was not a git work tree). */
  base: string | null;
  /** Paths changed from `base` (modified, added, deleted, untracked); empty without a base. */
  files: string[];
  reason: string;
  /** On releases: who deployed the change and under which deploy number (a rollback may bring it back later). */
  by?: string;
  deployNumber?: number;
}

/**
 * Who may deploy one where: the environment's `allow_emergency` (`false`:
 * nobody, the default; `admin`: admins; `deployer`: deployers and admins).
 */
export type EmergencyPolicy = false | "admin" | "deployer";

export const MAX_EMERGENCY_FILES = 10_000;
export const MAX_REASON_LENGTH = 1000;
const MAX_PATH_LENGTH = 4096;
const SHA = /^[0-9a-f]{40}$|^[0-9a-f]{64}$/;

/** The emergency part of a deploy request, checked: E_VALIDATION names the field. */
export function assertEmergency(input: {
  base?: string | null;
  files?: string[];
  reason?: string;
}): Emergency {
  const reason = (input.reason ?? "").trim();
  if (reason === "")
    throw new TurnoutError("E_VALIDATION", "an emergency deploy needs a reason", { field: "reason" });
  if (reason.length > MAX_REASON_LENGTH)
    throw new TurnoutError("E_VALIDATION", `the reason is at most ${MAX_REASON_LENGTH} characters`, {
      field: "reason",
    });
  const base = input.base ?? null;
  if (base !== null && !SHA.test(base))
    throw new TurnoutError("E_VALIDATION", "the base must be a full commit SHA", { field: "base" });
  const files = input.files ?? [];
  if (files.length > MAX_EMERGENCY_FILES)
    throw new TurnoutError("E_VALIDATION", `at most ${MAX_EMERGENCY_FILES} changed files are recorded`, {
      field: "files",
    });
  for (const file of files) {
    // Paths as git prints them, relative to the tree: recorded and shown, never opened.
    if (
      file === "" ||
      file.length > MAX_PATH_LENGTH ||
      file.startsWith("/") ||
      file.split("/").includes("..") ||
      /[\u0000-\u001f\u007f]/.test(file)
    )
      throw new TurnoutError("E_VALIDATION", "changed files are relative paths inside the tree", {
        field: "files",
      });
  }
  return { base, files: [...new Set(files)].sort(), reason };
}

/** Refuses (E_EMERGENCY_NOT_ALLOWED) unless the environment permits the caller an emergency deploy. */
export function assertEmergencyAllowed(policy: EmergencyPolicy, principal: Principal, target: string): void {
  if (policy === false) {
    throw new TurnoutError(
      "E_EMERGENCY_NOT_ALLOWED",
      `${target} does not allow emergency deploys (set allow_emergency in its manifest)`,
      { reason: "environment" },
    );
  }
  const allowed = principal.role === "admin" || (policy === "deployer" && principal.role === "deployer");
  if (!allowed) {
    throw new TurnoutError(
      "E_EMERGENCY_NOT_ALLOWED",
      `only ${policy === "admin" ? "admins" : "deployers and admins"} may deploy an emergency change to ${target}`,
      { reason: "role", required: policy },
    );
  }
}
