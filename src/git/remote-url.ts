import { createHash } from "node:crypto";
import { TurnoutError } from "../domain/errors.js";

/**
 * Which repository URLs Turnout accepts, decided in one place for manifests
 * (at load, naming the field), the configuration repository setting (at
 * start) and every git call (at run time):
 *
 * - `https://` and `http://`, `ssh://` (also `git+ssh://`, `ssh+git://`),
 *   `git://` and `file://` URLs, with a host that cannot be read as an option;
 * - scp-like `[user@]host:path`;
 * - an absolute local path.
 *
 * Everything else is refused: transport helpers (`ext::…` runs any command,
 * `fd::…` talks to an inherited file descriptor), anything starting with '-'
 * (git would read it as an option, `--upload-pack=…`), control characters,
 * other schemes, and relative paths (relative to what? the server's working
 * directory is no place to look for a repository; settings resolve theirs
 * when they are read). Git's own transport policy (git-env.ts) refuses the
 * helpers again at run time, whatever URL reaches it.
 */
export type RemoteKind = "http" | "ssh" | "git" | "file" | "local";

export const ALLOWED_REMOTE_FORMS =
  "https://…, ssh://…, git://…, file:///…, user@host:path or an absolute path";

const SCHEME = /^([a-z][a-z0-9+.-]*):\/\//i;
// Git reads `<name>::<address>` as "run the transport helper git-remote-<name>".
const TRANSPORT_HELPER = /^[a-z][a-z0-9+.-]*::/i;
// scp-like syntax: [user@]host:path, where the colon comes before any slash.
const SCP_LIKE = /^(?:([^@/]*)@)?(\[[^\]/]*\]|[^:/[\]]*):(.*)$/s;
const HOST_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const IPV6_LITERAL = /^\[[0-9A-Fa-f:.]+\]$/;
const USER_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.+%~-]*$/;

/** What is wrong with `url` as a repository URL, or undefined when it is acceptable. */
export function remoteUrlProblem(url: string): string | undefined {
  try {
    classify(url);
    return undefined;
  } catch (error) {
    if (error instanceof UrlProblem) return error.message;
    throw error;
  }
}

/** The kind of an acceptable repository URL; throws E_CONFIG naming the problem otherwise. */
export function remoteKind(url: string): RemoteKind {
  try {
    return classify(url);
  } catch (error) {
    if (!(error instanceof UrlProblem)) throw error;
    throw new TurnoutError(
      "E_CONFIG",
      `unsupported repository URL ${JSON.stringify(redactUrl(url))}: it ${error.message}`,
    );
  }
}

/**
 * A relative local path (`config`, `./config`, `../repos/x.git`): refused in
 * manifests, but a setting may give one, resolved from where the server starts.
 */
export function isRelativeRemotePath(url: string): boolean {
  if (url.length === 0 || url.startsWith("/") || url.startsWith("-")) return false;
  if (/[\u0000-\u001f\u007f]/.test(url) || TRANSPORT_HELPER.test(url) || SCHEME.test(url)) return false;
  return !SCP_LIKE.test(url);
}

class UrlProblem extends Error {}

function refuse(problem: string): never {
  throw new UrlProblem(problem);
}

function classify(url: string): RemoteKind {
  if (url.length === 0) refuse("is empty");
  if (url.startsWith("-")) refuse("starts with '-' (git would read it as an option)");
  if (/[\u0000-\u001f\u007f]/.test(url)) refuse("contains control characters");
  if (TRANSPORT_HELPER.test(url)) refuse("uses a git transport helper ('<name>::'), which can run commands");
  const scheme = SCHEME.exec(url)?.[1]?.toLowerCase();
  if (scheme !== undefined) {
    if (/\s/.test(url)) refuse("contains white space");
    const kind = schemeKind(scheme) ?? refuse(`uses the unsupported scheme ${scheme}://`);
    checkAuthority(url, scheme, kind);
    return kind;
  }
  if (url.startsWith("/")) return "local";
  const scp = SCP_LIKE.exec(url);
  if (!scp) refuse("is a relative path; give an absolute path");
  const [, user, host, repoPath] = scp as unknown as [string, string | undefined, string, string];
  if (/\s/.test(url)) refuse("contains white space");
  if (user !== undefined && !USER_NAME.test(user)) refuse(`has an invalid user name ${JSON.stringify(user)}`);
  if (!validHost(host)) refuse(`has an invalid host ${JSON.stringify(host)}`);
  if (repoPath.length === 0 || repoPath.startsWith("-")) refuse("has no repository path after ':'");
  return "ssh";
}

function schemeKind(scheme: string): RemoteKind | undefined {
  if (scheme === "https" || scheme === "http") return "http";
  if (scheme === "ssh" || scheme === "git+ssh" || scheme === "ssh+git") return "ssh";
  if (scheme === "git") return "git";
  if (scheme === "file") return "file";
  return undefined;
}

function validHost(host: string): boolean {
  return HOST_NAME.test(host) || IPV6_LITERAL.test(host);
}

/** Host and user of a scheme URL: present where needed, never option-like. */
function checkAuthority(url: string, scheme: string, kind: RemoteKind): void {
  let parsed: URL;
  try {
    // ssh:// and git:// are not "special" schemes for WHATWG URL, but parse the same way.
    parsed = new URL(url);
  } catch {
    refuse("is not a valid URL");
  }
  if (kind === "file") {
    if (parsed.hostname !== "" && parsed.hostname !== "localhost")
      refuse("names a host; file:// URLs are local");
    return;
  }
  if (parsed.hostname === "") refuse(`has no host after ${scheme}://`);
  if (!validHost(parsed.hostname)) refuse(`has an invalid host ${JSON.stringify(parsed.hostname)}`);
  if (kind === "ssh" && parsed.username !== "" && !USER_NAME.test(parsed.username)) {
    refuse("has an invalid user name");
  }
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
