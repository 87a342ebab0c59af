import { gzipSync } from "node:zlib";
import tar from "tar-stream";
import { cachedFileMode } from "../../../agent/host-layout/blob-cache.js";
import { type ReleasePlan, sharedLinkTarget } from "../../../agent/host-layout/release-plan.js";

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
 * The `missing` question, gzipped (hex digests and paths compress well):
 *
 *   B <name> <size>     a cache name the release needs
 *   R <entry>           the release as `find` prints it on the host (d, f, l lines)
 *   END
 */
export function missingInput(plan: ReleasePlan, needed: ReadonlyMap<string, { size: number }>): Buffer {
  const lines: string[] = [];
  for (const [name, { size }] of needed) lines.push(`B ${name} ${size}`);
  for (const line of expectedTree(plan)) lines.push(`R ${line}`);
  lines.push("END", "");
  return gzipSync(lines.join("\n"), { level: 6 });
}

/**
 * What a whole release looks like on the host, one line per planned entry in
 * the form the host's `find -printf` gives (directories by kind only, as the
 * agent checks them: a before_switch hook may change their modes). A link
 * whose target holds a line break cannot be compared as a line: only its
 * kind is then left to chance.
 */
function expectedTree(plan: ReleasePlan): string[] {
  const lines: string[] = [];
  for (const dir of plan.dirs) lines.push(`d ${dir.path}`);
  for (const file of plan.files)
    lines.push(`f ${cachedFileMode(file.mode).toString(8)} ${file.size} ${file.path}`);
  for (const link of plan.links)
    if (!/[\r\n]/.test(link.target)) lines.push(`l ${link.path} -> ${link.target}`);
  for (const path of plan.shared) lines.push(`l ${path} -> ${sharedLinkTarget(path)}`);
  return lines;
}

/**
 * The `stage` input: the before_switch command and the shared paths as lines,
 *
 *   E <base64 NAME=value>          environment of the command
 *   A <base64 argument>            argv of the command, in order
 *   S <mode|-> <sha256|-> <path>   shared path; mode and digest of the file that seeds it, if any
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
): Promise<Buffer> {
  const lines: string[] = beforeSwitch ? commandLines(beforeSwitch, env) : [];
  // The script links each to `../` × (depth + 2) + `shared/<path>`, as sharedLinkTarget does.
  for (const path of plan.shared) {
    const seed = plan.seeds.get(path);
    lines.push(seed ? `S ${octal((seed.mode & 0o777) | 0o600)} ${seed.sha256} ${path}` : `S - - ${path}`);
  }
  lines.push("TAR", "");
  return Buffer.concat([Buffer.from(lines.join("\n"), "utf8"), gzipSync(await treeTar(plan), { level: 6 })]);
}

async function treeTar(plan: ReleasePlan): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on("data", (chunk: unknown) => chunks.push(chunk as Buffer));
  const ended = new Promise<void>((resolve, reject) => {
    pack.on("end", resolve);
    pack.on("error", reject);
  });
  const mtime = new Date(0);
  for (const dir of plan.dirs)
    pack.entry({ name: `T/${dir.path}`, type: "directory", mode: dir.mode & 0o777, mtime });
  for (const file of plan.files) {
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
