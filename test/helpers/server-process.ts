import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../bin/turnout.js");

/** `turnout server` as a real process on a free loopback port (call ensureBuilt() first). */
export interface ServerProcess {
  url: string;
  child: ChildProcess;
  output(): string;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
}

export async function startServerProcess(options: {
  dataDir: string;
  configDir: string;
  cwd: string;
  env: Record<string, string | undefined>;
  args?: string[];
  /** A fixed port (default: any free one), e.g. to restart a server where agents expect it. */
  port?: number;
}): Promise<ServerProcess> {
  const child = spawn(
    process.execPath,
    [
      BIN,
      "server",
      "--port",
      String(options.port ?? 0),
      "--data-dir",
      options.dataDir,
      "--config-dir",
      options.configDir,
      ...(options.args ?? []),
    ],
    {
      cwd: options.cwd,
      // Tests use the server right after start: it waits for every manifest, however loaded the machine.
      env: { TURNOUT_CONFIG_STARTUP_WAIT: "60s", ...options.env } as NodeJS.ProcessEnv,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let output = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    output += chunk;
  });
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    output += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  const deadline = Date.now() + 20_000;
  let url: string | undefined;
  while (!url) {
    url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1];
    if (child.exitCode !== null) throw new Error(`server exited:\n${output}`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`server did not start:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return { url, child, output: () => output, exited };
}
