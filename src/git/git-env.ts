import type { RepoAuth } from "../domain/app-config.js";
import { httpOrigin, remoteKind, urlSecrets } from "./remote-url.js";

/**
 * The environment every git process runs with. Git must never wait for a human:
 * no terminal prompt, no askpass program (an empty GIT_ASKPASS also overrides
 * core.askPass), no credential-manager dialog. It must also not be steered by
 * whatever the server process inherited: no user or system gitconfig (a global
 * core.sshCommand or credential helper would bypass ours), and none of the
 * GIT_* variables that point git at another repository or trace its traffic.
 */
const NO_PROMPT: Record<string, string> = {
  GIT_TERMINAL_PROMPT: "0",
  GIT_ASKPASS: "",
  SSH_ASKPASS: "",
  GCM_INTERACTIVE: "never",
  LC_ALL: "C",
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
};

// Inherited GIT_* variables that are about the network and safe to keep.
const KEPT_GIT_VARS = /^GIT_(SSL_|PROXY_|HTTP_LOW_SPEED_|HTTP_PROXY_AUTHMETHOD$|EXEC_PATH$)/;
const DROPPED_VARS = new Set(["TURNOUT_SSH_KEY", "TURNOUT_KNOWN_HOSTS"]);

export function baseGitEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  // Child processes need PATH, HOME, proxies…: inheriting the environment is not reading settings.
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined || DROPPED_VARS.has(key)) continue;
    if (key.startsWith("GIT_") && !KEPT_GIT_VARS.test(key)) continue;
    env[key] = value;
  }
  return { ...env, ...NO_PROMPT };
}

/**
 * The transports git may use, enforced on every git process Turnout starts
 * (run-git.ts, tree-reader.ts, the push CGI): the URL check in remote-url.ts
 * refuses a bad URL before git sees it, and this refuses it again inside git,
 * so a URL that slipped past (or a submodule URL inside a repository, which
 * Turnout never sees) cannot use a transport helper such as `ext::` (runs any
 * command) or `fd::`. Unlisted transports are `never`. `file` (local paths
 * included) is `user`: allowed when Turnout asks, refused when git follows a
 * repository's own submodule URL (workspace.ts allows it explicitly for
 * local origins only).
 */
const TRANSPORT_POLICY: ReadonlyArray<readonly [string, string]> = [
  ["protocol.allow", "never"],
  ["protocol.https.allow", "always"],
  ["protocol.http.allow", "always"],
  ["protocol.ssh.allow", "always"],
  ["protocol.git.allow", "always"],
  ["protocol.file.allow", "user"],
];
// Variables that would override that policy: GIT_ALLOW_PROTOCOL replaces it
// whole, GIT_CONFIG_PARAMETERS (`-c`) is read after environment config, and
// GIT_PROTOCOL_FROM_USER=0 would refuse local paths Turnout itself asked for.
const POLICY_OVERRIDES = ["GIT_ALLOW_PROTOCOL", "GIT_CONFIG_PARAMETERS", "GIT_PROTOCOL_FROM_USER"];

/** `env` with the transport policy appended to its environment config, and nothing that overrides it. */
export function withTransportPolicy(env: Record<string, string>): Record<string, string> {
  const out = { ...env };
  for (const name of POLICY_OVERRIDES) delete out[name];
  return withGitConfig(out, TRANSPORT_POLICY);
}

/** Appends `pairs` to the environment config (GIT_CONFIG_COUNT/KEY_n/VALUE_n) already in `env`; later entries win. */
export function withGitConfig(
  env: Record<string, string>,
  pairs: ReadonlyArray<readonly [string, string]>,
): Record<string, string> {
  const out = { ...env };
  const count = Number(out["GIT_CONFIG_COUNT"] ?? "0");
  const start = Number.isInteger(count) && count > 0 ? count : 0;
  pairs.forEach(([key, value], i) => {
    out[`GIT_CONFIG_KEY_${start + i}`] = key;
    out[`GIT_CONFIG_VALUE_${start + i}`] = value;
  });
  out["GIT_CONFIG_COUNT"] = String(start + pairs.length);
  return out;
}

export function basicAuthHeader(token: string): string {
  return `Authorization: Basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}`;
}

/**
 * Credentials for one remote, as environment only: never argv (visible in ps),
 * never a config file (the mirror outlives the deploy). The token becomes an
 * env-config `http.<origin>.extraHeader`, the SSH key and known_hosts file reach
 * the fixed wrapper script as variables, never as shell text.
 */
export function credentialEnv(url: string, auth: RepoAuth, sshWrapper: string): Record<string, string> {
  const env: Record<string, string> = { GIT_SSH: sshWrapper, GIT_SSH_VARIANT: "ssh" };
  if (auth.sshKeyFile) env["TURNOUT_SSH_KEY"] = auth.sshKeyFile;
  if (auth.knownHostsFile) env["TURNOUT_KNOWN_HOSTS"] = auth.knownHostsFile;
  const configs: Array<[string, string]> = [];
  if (auth.token && remoteKind(url) === "http") {
    configs.push([`http.${httpOrigin(url)}.extraHeader`, basicAuthHeader(auth.token)]);
  }
  env["GIT_CONFIG_COUNT"] = String(configs.length);
  configs.forEach(([key, value], i) => {
    env[`GIT_CONFIG_KEY_${i}`] = key;
    env[`GIT_CONFIG_VALUE_${i}`] = value;
  });
  return env;
}

/** Every secret value git might echo for this remote: the token in all its encodings, URL credentials. */
export function remoteSecrets(url: string, auth: RepoAuth): string[] {
  const out = urlSecrets(url);
  if (auth.token) {
    const header = basicAuthHeader(auth.token);
    out.push(auth.token, header.slice("Authorization: Basic ".length));
  }
  return out;
}
