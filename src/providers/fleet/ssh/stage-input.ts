import { gzipSync } from "node:zlib";
import tar from "tar-stream";
import { cachedFileMode } from "../../../agent/host-layout/blob-cache.js";
import type { ReleasePlan } from "../../../agent/host-layout/release-plan.js";

/**
 * What the remote script reads on stdin for staging (remote-staging.ts).
 * Paths are sent as they are (the artifact rules exclude control characters
 * and backslashes, so a path is one line); text that may hold anything
 * (argv elements, env values) is base64. Every message ends with END (or
 * TAR and an archive, which has its own end): input cut short by a broken
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
 * The `stage` input: the before_switch command and the shared paths as lines,
 *
 *   E <base64 NAME=value>          environment of the command
 *   A <base64 argument>            argv of the command, in order
 *   S <mode|-> <sha256|-> <path>   shared path; mode and digest of the file that seeds it, if any
 *   D <base artifact> <base listing> <artifact> <listing>   staged from a kept base (StageDelta)
 *   TAR
 *
 * then one gzipped tar of the tree: directories (parents first, final
 * modes), files as hard links to `C/<aa>/<cache name>` (C is the cache on
 * the host) and symlinks, all under `T/` (the tree being staged). One
 * `tar -x` on the host writes it all, however many files.
 */
export async function stageInput(
  plan: ReleasePlan,
  beforeSwitch: readonly string[] | null,
  env: Record<string, string>,
  delta?: StageDelta,
): Promise<Buffer> {
  const lines: string[] = beforeSwitch ? commandLines(beforeSwitch, env) : [];
  if (delta) lines.push(`D ${delta.baseArtifact} ${delta.baseDigest} ${delta.artifact} ${delta.digest}`);
  // The script links each to `../` × (depth + 2) + `shared/<path>`, as sharedLinkTarget does.
  for (const path of plan.shared) {
    const seed = plan.seeds.get(path);
    lines.push(seed ? `S ${octal((seed.mode & 0o777) | 0o600)} ${seed.sha256} ${path}` : `S - - ${path}`);
  }
  lines.push("TAR", "");
  const tree = await treeTar(plan, delta?.paths);
  return Buffer.concat([Buffer.from(lines.join("\n"), "utf8"), gzipSync(tree, { level: 6 })]);
}

/**
 * A stage from a base release the host keeps (remote-listings.ts): the
 * `D <base artifact> <base listing digest> <artifact> <listing digest>`
 * line, and a tree tar of only the files and symlinks the base lacks or has
 * otherwise (`paths`); the host makes the directories and takes the rest
 * from the base, then checks the whole tree against the listing.
 */
export interface StageDelta {
  baseArtifact: string;
  baseDigest: string;
  artifact: string;
  digest: string;
  paths: ReadonlySet<string>;
}

/** Directories, files and links of the plan; only the files and links in `only` when given (no directories then). */
async function treeTar(plan: ReleasePlan, only?: ReadonlySet<string>): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on("data", (chunk: unknown) => chunks.push(chunk as Buffer));
  const ended = new Promise<void>((resolve, reject) => {
    pack.on("end", resolve);
    pack.on("error", reject);
  });
  const mtime = new Date(0);
  if (!only)
    for (const dir of plan.dirs)
      pack.entry({ name: `T/${dir.path}`, type: "directory", mode: dir.mode & 0o777, mtime });
  for (const file of plan.files) {
    if (only && !only.has(file.path)) continue;
    const name = cacheName(file.sha256, file.mode);
    pack.entry({
      name: `T/${file.path}`,
      type: "link",
      linkname: `C/${name.slice(0, 2)}/${name}`,
      mode: 0o444,
      mtime,
    });
  }
  for (const link of plan.links)
    if (!only || only.has(link.path))
      pack.entry({ name: `T/${link.path}`, type: "symlink", linkname: link.target, mode: 0o777, mtime });
  pack.finalize();
  await ended;
  return Buffer.concat(chunks);
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
