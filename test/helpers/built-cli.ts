import { execFile, spawn } from "node:child_process";
import { statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = path.join(ROOT, "bin", "turnout.js");
const MAIN = path.join(ROOT, "dist", "main.js");
const BUILD = path.join(ROOT, "bin", "build-if-changed.js");

/**
 * The tests run the executable exactly as users do, from dist/. `npm test`
 * builds first; when vitest is run directly, build here: the same script as
 * `npm start` (bin/build-if-changed.js), which costs one Node start when
 * nothing changed and serializes parallel workers itself.
 *
 * Once per worker process: startTurnout() calls this for every server a test
 * starts, and the check's Node start (some 0.2 s of CPU, 0.3 s on a loaded
 * machine) hundreds of times over was a noticeable part of the suite. A run
 * tests the tree as it was built when the run began; a failed check is not
 * remembered (the next caller tries again).
 */
let built: Promise<void> | undefined;
export function ensureBuilt(): Promise<void> {
  built ??= runBuildCheck().catch((error: unknown) => {
    built = undefined;
    throw error;
  });
  return built;
}

/** bin/build-if-changed.js now, whatever ran before in this process (what `npm start` runs first). */
export async function runBuildCheck(): Promise<void> {
  try {
    await promisify(execFile)(process.execPath, [BUILD], { cwd: ROOT });
  } catch (error) {
    // Type errors elsewhere in the tree still emit JavaScript; only a missing entry point is fatal.
    if (!statSync(MAIN, { throwIfNoEntry: false })) {
      const output = error as { stdout?: string; stderr?: string };
      throw new Error(
        `build produced no dist/main.js\n${output.stdout ?? ""}${output.stderr ?? String(error)}`,
      );
    }
  }
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `node bin/turnout.js ...argv` as a real process; resolves when it exits. */
export function turnout(
  argv: string[],
  options: { env?: Record<string, string | undefined>; cwd?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...argv], {
      cwd: options.cwd ?? ROOT,
      env: { PATH: process.env["PATH"], ...options.env } as NodeJS.ProcessEnv,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(`turnout ${argv.join(" ")} did not exit in time\nstdout: ${stdout}\nstderr: ${stderr}`),
      );
    }, options.timeoutMs ?? 45_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
