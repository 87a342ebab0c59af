import { createHash } from "node:crypto";
import type { Components } from "./deploy.js";

/**
 * sha256 over the sorted component SHAs and the configuration revision: two
 * deploys with the same fingerprint install the same thing. (Hashing is pure
 * computation, so it belongs to the domain even though it uses node:crypto.)
 */
export function releaseFingerprint(components: Components, configRevision: string): string {
  const lines = Object.keys(components)
    .sort()
    .map((name) => `${name}=${components[name]}`);
  lines.push(`config=${configRevision}`);
  return createHash("sha256").update(lines.join("\n")).digest("hex");
}
