import { createRequire } from "node:module";
import { pino } from "pino";
import type { prettyFactory as PrettyFactory } from "pino-pretty";

import type { LogLevel } from "./log-levels.js";

export type { Logger } from "pino";

import type { Logger } from "pino";

/**
 * Field paths pino replaces with "[redacted]" wherever a log call passes
 * them: tokens, passwords, secrets, authorization and cookie headers. Log
 * calls never pass such values on purpose; this is the net under them.
 */
export const REDACT_PATHS = [
  "token",
  "*.token",
  "hostToken",
  "*.hostToken",
  "enrollmentToken",
  "password",
  "*.password",
  "secret",
  "*.secret",
  "secrets",
  "*.secrets",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "headers.cookie",
  "req.headers.authorization",
  "req.headers.cookie",
  'res.headers["set-cookie"]',
];

export interface LoggerOptions {
  level: LogLevel;
  /** Readable lines (a terminal) instead of JSON lines. */
  pretty: boolean;
  /** Where the lines go (default: stdout). Written synchronously: a line is out before the next statement. */
  write?: (text: string) => void;
  /** A field every line carries, e.g. the agent's host name. */
  base?: Record<string, unknown>;
}

/**
 * The one logger of a process (`turnout server` or `turnout agent`): JSON
 * lines for machines, or with `pretty` the message alone per line for a
 * person at a terminal (the structured fields stay in the JSON). Messages are
 * whole sentences, so either form reads on its own.
 */
export function createLogger(options: LoggerOptions): Logger {
  const write = options.write ?? ((text: string) => process.stdout.write(text));
  const format = options.pretty
    ? loadPrettyFactory()({
        colorize: false,
        hideObject: true,
        translateTime: "SYS:HH:MM:ss.l",
        ignore: "pid,hostname",
        // The fields are hidden on a terminal; an error's message is worth showing.
        messageFormat: (log, key) => {
          const err = log["err"] as { message?: string } | undefined;
          return err?.message ? `${String(log[key])}: ${err.message}` : String(log[key]);
        },
      })
    : undefined;
  return pino(
    {
      level: options.level,
      base: { pid: process.pid, ...options.base },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      serializers: { err: pino.stdSerializers.err },
    },
    { write: (line: string) => write(format ? format(line) : line) },
  );
}

/**
 * pino-pretty (some 9 MB and 50 ms to load) only for readable lines: a server
 * logging JSON (under a service manager, the usual case) never loads it.
 * Synchronous, as createLogger is: pino-pretty is a CommonJS module.
 */
function loadPrettyFactory(): typeof PrettyFactory {
  return (createRequire(import.meta.url)("pino-pretty") as { prettyFactory: typeof PrettyFactory })
    .prettyFactory;
}

/** A destination for tests and embedders: each line's message alone, as the server printed before it logged JSON. */
export function messagesTo(print: (line: string) => void): (text: string) => void {
  return (text) => print((JSON.parse(text) as { msg: string }).msg);
}
