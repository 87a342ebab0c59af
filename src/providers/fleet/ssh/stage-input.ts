import { cachedFileMode } from "../../../agent/host-layout/blob-cache.js";
import type { ReleasePlan } from "../../../agent/host-layout/release-plan.js";

/**
 * The line format the remote script reads on stdin. The release goes as the
 * agent's own plan of it (planRelease): directories with their final modes,
 * files with their cache modes, links, shared paths; so both write the same
 * tree. Paths are sent as they are (the artifact rules exclude control
 * characters and backslashes, so a path is one line); text that may hold
 * anything (argv elements, env values, symlink targets) is base64. Every
 * message ends with END: input cut short by a broken connection is refused
 * rather than taken for a smaller release.
 *
 *   E <base64 NAME=value>          environment of the command
 *   A <base64 argument>            argv of the command, in order
 *   D <mode> <path>                directory, parents first
 *   F <mode> <sha256> <path>       file, hard-linked from the blob cache
 *   L <base64 target> <path>       symlink
 *   S <mode|-> <sha256|-> <path>   shared path; mode and digest of the file that seeds it, if any
 *   END
 */
export function stageInput(
  plan: ReleasePlan,
  beforeSwitch: readonly string[] | null,
  env: Record<string, string>,
): string {
  const lines: string[] = beforeSwitch ? commandLines(beforeSwitch, env) : [];
  for (const dir of plan.dirs) lines.push(`D ${octal(dir.mode)} ${dir.path}`);
  for (const file of plan.files)
    lines.push(`F ${octal(cachedFileMode(file.mode))} ${file.sha256} ${file.path}`);
  for (const link of plan.links) lines.push(`L ${b64(link.target)} ${link.path}`);
  // The script links each to `../` × (depth + 2) + `shared/<path>`, as sharedLinkTarget does.
  for (const path of plan.shared) {
    const seed = plan.seeds.get(path);
    lines.push(seed ? `S ${octal((seed.mode & 0o777) | 0o600)} ${seed.sha256} ${path}` : `S - - ${path}`);
  }
  lines.push("END", "");
  return lines.join("\n");
}

export function commandInput(argv: readonly string[], env: Record<string, string>): string {
  return [...commandLines(argv, env), "END", ""].join("\n");
}

export function blobListInput(digests: Iterable<string>): string {
  const lines: string[] = [];
  for (const sha of digests) lines.push(`B ${sha}`);
  lines.push("END", "");
  return lines.join("\n");
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
