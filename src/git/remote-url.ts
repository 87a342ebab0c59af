import { createHash } from "node:crypto";
import { TurnoutError } from "../domain/errors.js";

/**
 * What kind of remote a repository URL names. Only the kinds our users need are
 * accepted: transport helpers (`ext::…`, `fd::…`) can run arbitrary commands and
 * a URL starting with '-' could be read as an option, so both are refused up
 * front rather than left to git's own policy.
 */
export type RemoteKind = "http" | "ssh" | "git" | "file" | "local";

const SCHEME = /^([a-z][a-z0-9+.-]*):\/\//i;
// scp-like syntax: [user@]host:path, where the colon comes before any slash.
const SCP_LIKE = /^(?:[^@/\s]+@)?[^:/\s]+:(?!\/\/)/;

export function remoteKind(url: string): RemoteKind {
  if (url.length === 0) throw unsupported(url, "is empty");
  if (url.startsWith("-")) throw unsupported(url, "starts with '-'");
  if (/[\u0000-\u001f\u007f]/.test(url)) throw unsupported(url, "contains control characters");
  if (url.includes("::")) throw unsupported(url, "uses a git transport helper");
  const scheme = SCHEME.exec(url)?.[1]?.toLowerCase();
  if (scheme !== undefined) {
    if (scheme === "https" || scheme === "http") return "http";
    if (scheme === "ssh" || scheme === "git+ssh" || scheme === "ssh+git") return "ssh";
    if (scheme === "git") return "git";
    if (scheme === "file") return "file";
    throw unsupported(url, `uses the unsupported scheme ${scheme}://`);
  }
  if (url.startsWith("/") || url.startsWith("./") || url.startsWith("../")) return "local";
  if (SCP_LIKE.test(url)) return "ssh";
  return "local";
}

function unsupported(url: string, problem: string): TurnoutError {
  return new TurnoutError(
    "E_CONFIG",
    `unsupported repository URL ${JSON.stringify(redactUrl(url))}: it ${problem}`,
  );
}

/** Local-path and file:// origins: the only ones whose submodules may use the file protocol. */
export function isLocalRemote(url: string): boolean {
  const kind = remoteKind(url);
  return kind === "local" || kind === "file";
}

const HTTP_USERINFO = /\b(https?:\/\/)[^/@\s]+@/gi;

/** The URL without credentials embedded in it (`https://user:pass@host/…` → `https://host/…`). */
export function redactUrl(text: string): string {
  return text.replace(HTTP_USERINFO, "$1");
}

/** Credentials embedded in an http(s) URL, in every form git might print them. */
export function urlSecrets(url: string): string[] {
  const match = /^https?:\/\/([^/@\s]+)@/i.exec(url);
  const userinfo = match?.[1];
  if (!userinfo) return [];
  const out = [userinfo];
  const colon = userinfo.indexOf(":");
  if (colon >= 0) {
    const password = userinfo.slice(colon + 1);
    out.push(password);
    try {
      out.push(decodeURIComponent(password));
    } catch {
      // not percent-encoded: the raw form is already listed
    }
  }
  return out.filter((s) => s.length > 0);
}

/**
 * `scheme://host[:port]/` of an http(s) URL: the scope of the token header, so a
 * token is only ever sent to the host it belongs to (submodules on the same host
 * get it, a submodule or redirect elsewhere does not).
 */
export function httpOrigin(url: string): string {
  const parsed = new URL(url);
  return `${parsed.protocol}//${parsed.host}/`;
}

/** Mirror directory name: derived from a hash, so no URL text (or credential) ends up in a path. */
export function mirrorName(url: string): string {
  return `${createHash("sha256").update(url).digest("hex").slice(0, 24)}.git`;
}
