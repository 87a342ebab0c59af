import { resolveClientSettings } from "../config/client-settings.js";
import { ApiClient } from "./api-client.js";
import { CONTROLS, joinLines, jsonText, type TerminalText } from "./terminal-text.js";

/**
 * What a command may touch of the outside world. main.ts passes the real
 * process streams and environment; tests pass buffers and temp directories.
 * An Output takes only TerminalText: text from the server reaches a terminal
 * only through the escaping of terminal-text.ts.
 */
export interface Output {
  write(text: TerminalText): unknown;
  isTTY?: boolean | undefined;
}

export interface CliContext {
  stdout: Output;
  stderr: Output;
  env: Record<string, string | undefined>;
  homeDir: string;
  cwd: string;
  /** Resolves when the user asks the process to stop (SIGINT, SIGTERM). */
  waitForStop(): Promise<string>;
}

export interface GlobalOptions {
  server?: string | undefined;
  token?: string | undefined;
  json?: boolean | undefined;
  /** A local server's data directory: where its admin token is (also `server --data-dir`). */
  dataDir?: string | undefined;
}

/** A command's outcome that is not an API error but still not a success (exit 1). */
export class CommandFailed extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CommandFailed";
  }
}

export function clientFor(ctx: CliContext, options: GlobalOptions): ApiClient {
  const settings = resolveClientSettings(options, ctx.env, ctx.homeDir, ctx.cwd);
  return new ApiClient({ server: settings.server, token: settings.token });
}

export function println(out: Output, text: TerminalText): void {
  out.write(text.endsWith("\n") ? text : joinLines([text, CONTROLS.newline], ""));
}

/**
 * `--json`: the server's body, as one document on its own line(s): the same
 * JSON value, with the controls JSON leaves unescaped escaped (jsonText).
 */
export function printJson(ctx: CliContext, text: string): void {
  println(ctx.stdout, jsonText(text === "" ? "{}" : text));
}

export function path(...segments: (string | number)[]): string {
  return segments.map((s) => encodeURIComponent(String(s))).join("/");
}

export function envPath(app: string, env: string, ...rest: string[]): string {
  return `/api/v1/apps/${path(app)}/environments/${path(env)}${rest.map((r) => `/${r}`).join("")}`;
}
