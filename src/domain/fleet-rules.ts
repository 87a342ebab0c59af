/**
 * The rules a fleet's settings must meet to be usable where they end up: an
 * SSH host's fields on an ssh command line, a health URL on the host's curl
 * or fetch. One set of rules serves the manifest loader (a problem naming the
 * field, at load) and the code that runs them (the last check before ssh or
 * the agent acts), so a manifest that loads is one that can run. Each returns
 * what is wrong, or undefined.
 */

// A leading '-' would make ssh read the address as an option.
const ADDRESS = /^[A-Za-z0-9.:][A-Za-z0-9.:-]{0,252}$/;
const USER = /^[A-Za-z_][A-Za-z0-9_-]{0,31}$/;
const ROOT = /^\/[A-Za-z0-9/._-]{0,4095}$/;
/** ssh reads -o values as config text: whitespace, quotes, `%` tokens and `~` would change their meaning. */
const SSH_PATH = /[\s"'\\%\u0000-\u001f\u007f]|^~/;

export function sshAddressProblem(address: string): string | undefined {
  return ADDRESS.test(address)
    ? undefined
    : "a host name or IP address (letters, digits, '.', ':' and '-', not starting with '-')";
}

export function sshUserProblem(user: string): string | undefined {
  return USER.test(user) ? undefined : "a user name (letters, digits, '_' and '-', not starting with '-')";
}

/** key_file and known_hosts_file: passed to ssh as `-o` values. */
export function sshPathProblem(file: string): string | undefined {
  return file.length > 0 && !SSH_PATH.test(file) ? undefined : "a path without spaces, quotes, '%' or '~'";
}

/** Where releases live on an SSH host: put on the remote command line, so plain characters only. */
export function releaseRootProblem(root: string): string | undefined {
  return ROOT.test(root) && !root.split("/").some((part) => part === "." || part === "..")
    ? undefined
    : "an absolute path of letters, digits, '/', '.', '_' and '-' (no '.' or '..' components)";
}

/** A health check URL, fetched from the host itself: plain http(s), nothing a command line could misread. */
export function healthUrlProblem(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "not a URL";
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return "an http or https URL";
  if (/[\s\u0000-\u001f\u007f]/.test(url)) return "a URL without spaces or control characters";
  return undefined;
}

/**
 * An environment's own deploy path on its hosts (issue 15): absolute,
 * normalized (no `.`/`..`/empty components, no trailing '/'), not `/`, and of
 * plain characters, since it goes on an SSH host's command line as an argument.
 */
export function deployPathProblem(path: string): string | undefined {
  if (path === "/") return "not '/' itself: releases need a directory of their own";
  if (!ROOT.test(path) || path.length > 1024) {
    return "an absolute path of letters, digits, '/', '.', '_' and '-'";
  }
  if (
    path.endsWith("/") ||
    path
      .split("/")
      .slice(1)
      .some((part) => part === "" || part === "." || part === "..")
  ) {
    return "a normalized path (no '.', '..' or empty components, no trailing '/')";
  }
  return undefined;
}

/**
 * Where a deploy path may not be on a host whose release root is `root`: the
 * root itself (its entries are apps) or inside `<root>/.turnout`, where the
 * host keeps its blob cache, manifests, token and jobs.
 */
export function deployPathRootProblem(path: string, root: string): string | undefined {
  const state = `${root === "/" ? "" : root}/.turnout`;
  if (path === root) return `not the release root ${root} itself`;
  if (path === state || path.startsWith(`${state}/`)) return `not inside ${state} (Turnout's own state)`;
  return undefined;
}

/**
 * Why `app` may not have its layout at `place` on a host where `others` are
 * the places of other apps' layouts (their recorded deploy paths, and
 * `<root>/<name>` default places that hold releases): a place equal to,
 * around or inside another app's would share `current` and `releases/`, so
 * one app's deploy would switch the other's service. Undefined when free.
 */
export function deployPathConflict(
  place: string,
  app: string,
  others: readonly { app: string; path: string }[],
): string | undefined {
  for (const other of others) {
    if (other.app === app) continue;
    if (place === other.path || place.startsWith(`${other.path}/`) || other.path.startsWith(`${place}/`))
      return `${place} overlaps ${other.path}, the place of app ${other.app} on this host`;
  }
  return undefined;
}

/** The name of the entry of `root` that `path` is inside (or is), if it is inside the root. */
export function rootEntryOf(path: string, root: string): string | undefined {
  const base = root === "/" ? "" : root;
  if (!path.startsWith(`${base}/`)) return undefined;
  return path.slice(base.length + 1).split("/")[0] || undefined;
}
