import { cachedFileMode } from "../../../agent/host-layout/blob-cache.js";
import type { ReleasePlan } from "../../../agent/host-layout/release-plan.js";
import type { StageTree } from "./stage-trees.js";

/**
 * What the remote script reads on stdin for staging (remote-staging.ts).
 * Paths are sent as they are (the artifact rules exclude control characters
 * and backslashes, so a path is one line); text that may hold anything
 * (argv elements, env values) is base64. Every message ends with END (or
 * TAR and a gzip stream, which has its own end): input cut short by a broken
 * connection is refused rather than taken for a smaller release.
 */

/** The cache name of a blob with a file mode: `<sha256>` for 0444, else `<sha256>.<octal mode>` (as BlobCache.path). */
export function cacheName(sha256: string, entryMode: number): string {
  const mode = cachedFileMode(entryMode);
  return mode === 0o444 ? sha256 : `${sha256}.${mode.toString(8)}`;
}

/**
 * Every cache name the release needs with its size: the plain (0444) inode of
 * each blob, as the agent keeps it, its (digest, mode) siblings, and the
 * blobs that seed shared paths.
 */
export function neededBlobs(plan: ReleasePlan): Map<string, { sha256: string; size: number }> {
  const needed = new Map<string, { sha256: string; size: number }>();
  for (const file of plan.files) {
    needed.set(file.sha256, { sha256: file.sha256, size: file.size });
    needed.set(cacheName(file.sha256, file.mode), { sha256: file.sha256, size: file.size });
  }
  for (const seed of plan.seeds.values()) needed.set(seed.sha256, { sha256: seed.sha256, size: seed.size });
  return needed;
}

/**
 * The `stage` input: the before_switch command, the shared paths and the
 * tree (stage-trees.ts) as lines,
 *
 *   E <base64 NAME=value>          environment of the command
 *   A <base64 argument>            argv of the command, in order
 *   S <mode|-> <sha256|-> <path>   shared path; mode and digest of the file that seeds it, if any
 *   K <artifact> <tar digest>      the stage tar's sha256, and the artifact to keep it under (if kept)
 *   P <base tar digest>            the tree is a patch of the stage tar kept with that digest, made of
 *   C <start> <count>              records of the base tar (512 bytes each), and
 *   L <count>                      the next new records, in order
 *   TAR
 *
 * then gzipped: the stage tar (stage-tar.ts), or the new records of the
 * patch. The host unpacks the tar, whole or rebuilt, with one `tar -x`.
 */
export function stageInput(
  plan: ReleasePlan,
  beforeSwitch: readonly string[] | null,
  env: Record<string, string>,
  tree: StageTree,
  artifact: string | undefined,
): Buffer {
  const lines: string[] = beforeSwitch ? commandLines(beforeSwitch, env) : [];
  // The script links each to `../` × (depth + 2) + `shared/<path>`, as sharedLinkTarget does.
  for (const path of plan.shared) {
    const seed = plan.seeds.get(path);
    lines.push(seed ? `S ${octal((seed.mode & 0o777) | 0o600)} ${seed.sha256} ${path}` : `S - - ${path}`);
  }
  lines.push(`K ${artifact ?? "-"} ${tree.digest}`);
  if (tree.patch) {
    lines.push(`P ${tree.base.digest}`);
    for (const range of tree.patch.ranges)
      lines.push(range.copy === undefined ? `L ${range.count}` : `C ${range.copy} ${range.count}`);
  }
  lines.push("TAR", "");
  return Buffer.concat([Buffer.from(lines.join("\n"), "utf8"), tree.gzipped]);
}

export function commandInput(argv: readonly string[], env: Record<string, string>): string {
  return [...commandLines(argv, env), "END", ""].join("\n");
}

function commandLines(argv: readonly string[], env: Record<string, string>): string[] {
  return [
    ...Object.entries(env).map(([name, value]) => `E ${b64(`${name}=${value}`)}`),
    ...argv.map((arg) => `A ${b64(arg)}`),
  ];
}

/** Permission bits as three octal digits. */
function octal(mode: number): string {
  return (mode & 0o777).toString(8).padStart(3, "0");
}

function b64(text: string): string {
  return Buffer.from(text, "utf8").toString("base64");
}
