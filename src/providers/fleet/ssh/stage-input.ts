import type { ArtifactManifest } from "../../../domain/artifact.js";

/**
 * The line format the remote script reads on stdin. Paths are sent as they
 * are (the artifact rules exclude control characters and backslashes, so a
 * path is one line); text that may hold anything (argv elements, env values,
 * symlink targets) is base64. Every message ends with END: input cut short by
 * a broken connection is refused rather than taken for a smaller release.
 *
 *   E <base64 NAME=value>        environment of the command
 *   A <base64 argument>          argv of the command, in order
 *   D <mode> <path>              directory
 *   F <mode> <sha256> <path>     file, hard-linked from the blob cache
 *   L <base64 target> <path>     symlink
 *   S <path>                     shared path, linked to <app>/shared/<path>
 *   END
 */
export function stageInput(
  manifest: ArtifactManifest,
  shared: readonly string[],
  beforeSwitch: readonly string[] | null,
  env: Record<string, string>,
): string {
  const lines: string[] = beforeSwitch ? commandLines(beforeSwitch, env) : [];
  for (const entry of manifest.entries) {
    if (entry.type === "dir") lines.push(`D ${mode(entry.mode)} ${entry.path}`);
    else if (entry.type === "file") lines.push(`F ${mode(entry.mode)} ${entry.sha256} ${entry.path}`);
    else lines.push(`L ${b64(entry.target)} ${entry.path}`);
  }
  for (const path of shared) lines.push(`S ${path}`);
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

/** Permission bits only, as three octal digits: no setuid, setgid or sticky bit comes from an artifact. */
export function mode(value: number): string {
  return (value & 0o777).toString(8).padStart(3, "0");
}

function b64(text: string): string {
  return Buffer.from(text, "utf8").toString("base64");
}
