import type { LogLevel } from "../observability/log-levels.js";

/**
 * The agent's log lines, in the shapes the server's pino logger writes
 * (observability/logger.ts): JSON lines `{"level":30,"time":…,"pid":…,"host":…,
 * "event":"agent","msg":…}`, or on a terminal `[HH:MM:ss.l] INFO: msg`.
 *
 * Not pino itself: the agent logs only whole sentences at info level, and
 * pino with pino-pretty and their dependencies was a few megabytes of the
 * memory of every host (an idle agent must stay under 50 MB, of which Node
 * itself takes about 40). The agent passes no objects, so there is nothing
 * for pino's redaction to catch.
 */
export interface AgentLoggerOptions {
  level: LogLevel;
  pretty: boolean;
  write: (text: string) => void;
  /** The host's name, a field of every JSON line. */
  host: string;
}

const INFO = 30;
const LEVELS: Record<LogLevel, number> = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
  silent: Number.POSITIVE_INFINITY,
};

/** A function that logs one line at info level (nothing when the level is above info). */
export function createAgentLogger(options: AgentLoggerOptions): (line: string) => void {
  if (LEVELS[options.level] > INFO) return () => undefined;
  const { pid } = process;
  return (line) => {
    const now = new Date();
    options.write(
      options.pretty
        ? `[${clock(now)}] INFO: ${line}\n`
        : `${JSON.stringify({ level: INFO, time: now.toISOString(), pid, host: options.host, event: "agent", msg: line })}\n`,
    );
  };
}

function clock(date: Date): string {
  const two = (n: number) => String(n).padStart(2, "0");
  return `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}.${String(date.getMilliseconds()).padStart(3, "0")}`;
}
