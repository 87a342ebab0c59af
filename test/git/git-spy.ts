import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

/** One git invocation as the spy saw it. */
export interface GitCall {
  argv: string[];
  env: Record<string, string>;
  /** What fd 0 pointed at ("/dev/null" when stdin is closed). */
  stdin: string;
}

const SPIED_ENV = [
  "GIT_TERMINAL_PROMPT",
  "GIT_ASKPASS",
  "SSH_ASKPASS",
  "GCM_INTERACTIVE",
  "LC_ALL",
  "GIT_SSH",
];

/**
 * Runs `fn` with a `git` earlier on PATH that records its argv, a few
 * environment variables and its stdin, then runs the real git. GitMirrors builds
 * each child's environment from process.env, so the spy sees every invocation.
 */
export async function withGitLog(fn: () => Promise<void>): Promise<GitCall[]> {
  const realGit = execFileSync("sh", ["-c", "command -v git"], { encoding: "utf8" }).trim();
  const bin = mkdtempSync(path.join(tmpdir(), "turnout-git-spy-"));
  const log = path.join(bin, "calls.log");
  const envLines = SPIED_ENV.map((name) => `printf 'ENV ${name}=%s\\n' "\${${name}-<unset>}"`).join("\n");
  writeFileSync(
    path.join(bin, "git"),
    `#!/bin/sh
{
  echo CALL
  for a in "$@"; do printf 'ARG %s\\n' "$a" | tr -d '\\r'; done
  ${envLines}
  printf 'STDIN %s\\n' "$(readlink /proc/$$/fd/0)"
} >> "${log}"
exec "${realGit}" "$@"
`,
  );
  chmodSync(path.join(bin, "git"), 0o755);
  const savedPath = process.env["PATH"];
  process.env["PATH"] = `${bin}:${savedPath}`;
  try {
    await fn();
  } finally {
    process.env["PATH"] = savedPath;
  }
  const calls = existsSync(log) ? parseLog(readFileSync(log, "utf8")) : [];
  rmSync(bin, { recursive: true, force: true });
  return calls;
}

function parseLog(text: string): GitCall[] {
  const calls: GitCall[] = [];
  for (const line of text.split("\n")) {
    if (line === "CALL") calls.push({ argv: [], env: {}, stdin: "" });
    const current = calls[calls.length - 1];
    if (!current) continue;
    if (line.startsWith("ARG ")) current.argv.push(line.slice(4));
    else if (line.startsWith("ENV ")) {
      const [name, ...value] = line.slice(4).split("=");
      current.env[name!] = value.join("=");
    } else if (line.startsWith("STDIN ")) current.stdin = line.slice(6);
  }
  return calls;
}
