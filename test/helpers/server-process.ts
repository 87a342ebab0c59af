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
  return spawnServer(
    [
      process.execPath,
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
      env: { TURNOUT_CONFIG_STARTUP_WAIT: "60s", ...options.env },
    },
  );
}

/**
 * Any command line that runs `turnout server` (a packed copy, the README's
 * `npm start`), as a real process; resolves once the server says where it
 * listens, rejects if it exits first. No deadline of its own: on a loaded
 * machine a start takes what it takes, and the test's timeout bounds it.
 */
export function spawnServer(
  command: string[],
  options: { cwd: string; env: Record<string, string | undefined> },
): Promise<ServerProcess> {
  const child = spawn(command[0]!, command.slice(1), {
    cwd: options.cwd,
    env: options.env as NodeJS.ProcessEnv,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  // A test that timed out never stops its server: the worker's exit does.
  const orphan = () => child.kill("SIGKILL");
  process.once("exit", orphan);
  const exited = new Promise<number | null>((resolve) =>
    child.on("close", (code) => {
      process.off("exit", orphan);
      resolve(code);
    }),
  );
  return new Promise<ServerProcess>((resolve, reject) => {
    const onOutput = (chunk: string) => {
      output += chunk;
      const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1];
      if (url) resolve({ url, child, output: () => output, exited });
    };
    child.stdout!.setEncoding("utf8").on("data", onOutput);
    child.stderr!.setEncoding("utf8").on("data", onOutput);
    child.on("error", reject);
    void exited.then((code) => reject(new Error(`server exited (${code}) before listening:\n${output}`)));
  });
}

/** One line of a server's JSON log (stdout is not a terminal in tests, so the server logs JSON). */
export interface LogRecord {
  level: number;
  time: string;
  msg: string;
  event?: string;
  [field: string]: unknown;
}

/** The JSON log lines of `output`, in order; other lines (a crash's stack on stderr) are skipped. */
export function logRecords(output: string): LogRecord[] {
  const records: LogRecord[] = [];
  for (const line of output.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      records.push(JSON.parse(line) as LogRecord);
    } catch {
      // not a log line
    }
  }
  return records;
}
