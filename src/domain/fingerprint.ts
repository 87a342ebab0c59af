import { createHash } from "node:crypto";
import type { Components } from "./deploy.js";

/**
 * sha256 over the sorted component SHAs and the settings revision (and, for
 * fleet releases, the artifact's digest): two deploys with the same
 * fingerprint install the same thing. The settings revision is the per-app
 * revision (domain/app-revision.ts), so only what this app's release depends
 * on is in it; deploys recorded before it existed used the global revision.
 * (Hashing is pure computation, so it belongs to the domain even though it
 * uses node:crypto.)
 */
export function releaseFingerprint(
  components: Components,
  settingsRevision: string,
  artifact?: string | null,
): string {
  const lines = Object.keys(components)
    .sort()
    .map((name) => `${name}=${components[name]}`);
  lines.push(`config=${settingsRevision}`);
  // Fleet releases install an artifact: an uploaded one may differ from what
  // the commits would build, so it is part of what "the same thing" means.
  if (artifact) lines.push(`artifact=${artifact}`);
  return createHash("sha256").update(lines.join("\n")).digest("hex");
}
