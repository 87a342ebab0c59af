import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { TurnoutError } from "../domain/errors.js";

/**
 * Where the command-line client sends its requests and with which token:
 * flag > environment > saved credentials > the local server's own admin token.
 * Like settings.ts, this is a config/ module so the rest of the CLI never reads
 * process.env itself.
 */
export const DEFAULT_SERVER = "http://127.0.0.1:7700";

export interface ClientFlags {
  server?: string | undefined;
  token?: string | undefined;
  /** A local server's data directory (as given to `turnout server --data-dir`), for its admin token. */
  dataDir?: string | undefined;
}

export interface ClientSettings {
  /** Normalized: no trailing slash. */
  server: string;
  token: string;
  /** Where the token came from, for messages (never the token itself). */
  tokenSource: "flag" | "env" | "credentials" | "data-dir";
}

export interface Credentials {
  servers: Record<string, { token: string }>;
  default?: string | undefined;
}

/** Thrown for a value the user gave that cannot be used: the CLI exits with 2. */
export class InvalidSettingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidSettingError";
  }
}

export function resolveClientSettings(
  flags: ClientFlags,
  env: Record<string, string | undefined> = process.env,
  homeDir: string = os.homedir(),
  cwd: string = process.cwd(),
): ClientSettings {
  const credentials = readCredentials(credentialsPath(env, homeDir));
  const server = normalizeServerUrl(
    flags.server || env["TURNOUT_SERVER"] || credentials.default || DEFAULT_SERVER,
  );

  if (flags.token) return { server, token: flags.token, tokenSource: "flag" };
  const envToken = env["TURNOUT_TOKEN"];
  if (envToken) return { server, token: envToken, tokenSource: "env" };
  const saved = credentials.servers[server]?.token;
  if (saved) return { server, token: saved, tokenSource: "credentials" };

  // The quick start: a server on this machine wrote its admin token into its
  // data directory, which only the user who started it can read.
  if (isLocalServer(server)) {
    const local = readAdminToken(dataDir(flags, env, cwd));
    if (local) return { server, token: local, tokenSource: "data-dir" };
  }

  const where = isLocalServer(server)
    ? `, or --data-dir DIR / TURNOUT_HOME where the server keeps its data (found no admin token in ${dataDir(flags, env, cwd)})`
    : "";
  throw new TurnoutError(
    "E_UNAUTHORIZED",
    `no API token for ${server}: run \`turnout login --server ${server} --token TOKEN\`, or pass --token / set TURNOUT_TOKEN${where}`,
  );
}

/** `http://host:port[/prefix]` without a trailing slash; anything else is a usage error. */
export function normalizeServerUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidSettingError(`invalid server URL ${JSON.stringify(value)}: expected http://HOST:PORT`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new InvalidSettingError(`invalid server URL ${JSON.stringify(value)}: use http:// or https://`);
  }
  if (url.username || url.password || url.search || url.hash) {
    throw new InvalidSettingError(
      `invalid server URL ${JSON.stringify(value)}: no credentials, query or fragment`,
    );
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}

export function isLocalServer(server: string): boolean {
  const host = new URL(server).hostname;
  return host === "127.0.0.1" || host === "localhost" || host === "[::1]" || host === "::1";
}

/** The server's data directory, by the server's own rules (settings.ts): --data-dir, TURNOUT_HOME, ./.turnout. */
function dataDir(flags: ClientFlags, env: Record<string, string | undefined>, cwd: string): string {
  return path.resolve(cwd, flags.dataDir || env["TURNOUT_HOME"] || ".turnout");
}

function readAdminToken(dir: string): string | undefined {
  try {
    return readFileSync(path.join(dir, "admin-token"), "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

export function credentialsPath(
  env: Record<string, string | undefined> = process.env,
  homeDir: string = os.homedir(),
): string {
  const base = env["XDG_CONFIG_HOME"] || path.join(homeDir, ".config");
  return path.join(base, "turnout", "credentials.json");
}

export function readCredentials(file: string): Credentials {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { servers: {} };
    throw new TurnoutError("E_CONFIG", `cannot read ${file}: ${(error as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new TurnoutError("E_CONFIG", `${file} is not valid JSON: fix or delete it, then run turnout login`);
  }
  const servers: Credentials["servers"] = {};
  const object = (raw ?? {}) as { servers?: unknown; default?: unknown };
  if (object.servers && typeof object.servers === "object") {
    for (const [url, entry] of Object.entries(object.servers as Record<string, unknown>)) {
      const token = (entry as { token?: unknown } | null)?.token;
      if (typeof token === "string" && token) servers[url] = { token };
    }
  }
  return { servers, default: typeof object.default === "string" ? object.default : undefined };
}

/**
 * Saves a token for a server and makes that server the default. The file is
 * written to a temporary name and renamed, so a crash never leaves half a
 * file, and it is created 0600 inside a 0700 directory: it holds secrets.
 */
export function saveCredentials(file: string, server: string, token: string): void {
  const dir = path.dirname(file);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const current = readCredentials(file);
  const next: Credentials = {
    servers: { ...current.servers, [server]: { token } },
    default: server,
  };
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, `${JSON.stringify(next, null, 2)}\n`, { mode: 0o600 });
  chmodSync(temp, 0o600);
  renameSync(temp, file);
}
