import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { CliContext } from "../../src/cli/context.js";
import { runCli } from "../../src/cli/program.js";

/** A captured stream for runCli. */
export class Buffer {
  text = "";
  isTTY = false;
  write(chunk: string): boolean {
    this.text += chunk;
    return true;
  }
}

export function tempDir(prefix = "turnout-cli-"): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Runs the CLI in-process with captured output and a private home and environment. */
export async function runInProcess(
  argv: string[],
  options: { env?: Record<string, string | undefined>; homeDir?: string; cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new Buffer();
  const stderr = new Buffer();
  const home = options.homeDir ?? tempDir();
  const ctx: CliContext = {
    stdout,
    stderr,
    env: options.env ?? {},
    homeDir: home,
    cwd: options.cwd ?? home,
    waitForStop: () => Promise.resolve("SIGTERM"),
  };
  const code = await runCli(argv, ctx, {
    startServer: () => Promise.reject(new Error("no server in unit tests")),
  });
  return { code, stdout: stdout.text, stderr: stderr.text };
}
