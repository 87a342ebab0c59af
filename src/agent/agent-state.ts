import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import path from "node:path";
import { isValidName } from "../domain/names.js";
import { HOST_TOKEN_FILE, HOST_TOKEN_PREFIX } from "./protocol.js";

/**
 * What the agent keeps between runs (its host token) and the small rules of
 * its connection loop (backoff, default name).
 */

export function hostTokenPath(root: string): string {
  return path.join(root, HOST_TOKEN_FILE);
}

export function readHostToken(root: string): string | undefined {
  try {
    const token = readFileSync(hostTokenPath(root), "utf8").trim();
    return token.startsWith(HOST_TOKEN_PREFIX) ? token : undefined;
  } catch {
    return undefined;
  }
}

/** Written to a temporary name and renamed, 0600 in a 0700 directory: it is this host's credential. */
export function saveHostToken(root: string, token: string): string {
  const file = hostTokenPath(root);
  const dir = path.dirname(file);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, `${token}\n`, { mode: 0o600 });
  chmodSync(temp, 0o600);
  renameSync(temp, file);
  return file;
}

export interface Backoff {
  minMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { minMs: 500, maxMs: 30_000 };

/**
 * Delay before reconnect attempt `attempt` (0-based): doubling from minMs up
 * to maxMs, jittered within the upper half (never below minMs) so a fleet that lost its server
 * does not come back in one stampede.
 */
export function backoffDelay(
  attempt: number,
  backoff: Backoff = DEFAULT_BACKOFF,
  random = Math.random,
): number {
  const ceiling = Math.min(backoff.maxMs, backoff.minMs * 2 ** Math.min(attempt, 30));
  return Math.round(Math.max(backoff.minMs, ceiling / 2 + random() * (ceiling / 2)));
}

/**
 * The machine's host name as a Turnout name: lowercased, anything else than
 * letters, digits and '-' turned into '-' (`Web-1.example.com` →
 * `web-1-example-com`). Undefined when nothing usable is left.
 */
export function defaultHostName(raw: string = hostname()): string | undefined {
  const name = raw
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/-+/g, "-")
    .replace(/^-+/, "")
    .slice(0, 63)
    .replace(/-+$/, "");
  return isValidName(name) ? name : undefined;
}
