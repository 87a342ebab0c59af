import path from "node:path";
import { planRelease, type ReleasePlan } from "../../../agent/host-layout/release-plan.js";
import { linkEscapeProblem } from "../../../artifacts/link-resolution.js";
import { type ArtifactManifest, isHostReleaseId } from "../../../domain/artifact.js";
import { TurnoutError } from "../../../domain/errors.js";
import type { SshHostConfig } from "../../../domain/fleet.js";
import {
  deployPathProblem,
  deployPathRootProblem,
  healthUrlProblem,
  releaseRootProblem,
  sshAddressProblem,
  sshPathProblem,
  sshUserProblem,
} from "../../../domain/fleet-rules.js";
import { assertName } from "../../../domain/names.js";

/**
 * Checks on the server side, before ssh is started: whatever reaches the
 * remote command line must match a strict pattern, and whatever travels as
 * data must satisfy the artifact rules. The remote script checks again.
 */

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,255}$/;

function invalid(message: string, details?: Record<string, unknown>): TurnoutError {
  return new TurnoutError("E_VALIDATION", message, details);
}

export function assertAppName(app: string): string {
  return assertName("app", app);
}

export function assertSlotName(slot: string): string {
  return assertName("slot", slot);
}

export function assertReleaseId(id: string): string {
  if (typeof id !== "string" || !isHostReleaseId(id)) {
    throw invalid(`invalid release id ${JSON.stringify(id)}: 16 lowercase hex digits expected`, {
      releaseId: id,
    });
  }
  return id;
}

/** An environment's deploy path on a host whose root is `root` (the script checks again). */
export function assertDeployPathFor(path: string, root: string): string {
  const problem = deployPathProblem(path) ?? deployPathRootProblem(path, root);
  if (problem) throw invalid(`invalid deploy path ${JSON.stringify(path)}: ${problem}`, { path });
  return path;
}

export function assertRoot(root: string): string {
  if (typeof root !== "string" || releaseRootProblem(root)) {
    throw invalid(
      `invalid release root ${JSON.stringify(root)}: an absolute path of letters, digits, '/', '.', '_' and '-'`,
    );
  }
  return root;
}

/** The host's connection settings, with local file paths made absolute. */
export function checkHostConfig(host: SshHostConfig): SshHostConfig {
  if (sshAddressProblem(host.address))
    throw invalid(`invalid address ${JSON.stringify(host.address)} of host ${host.name}`);
  if (!Number.isInteger(host.port) || host.port < 1 || host.port > 65535) {
    throw invalid(`invalid port ${host.port} of host ${host.name}`);
  }
  if (sshUserProblem(host.user))
    throw invalid(`invalid user ${JSON.stringify(host.user)} of host ${host.name}`);
  for (const [field, value] of [
    ["key_file", host.keyFile],
    ["known_hosts_file", host.knownHostsFile],
  ] as const) {
    if (!value || sshPathProblem(value)) {
      throw invalid(`${field} of host ${host.name} must be a path without spaces, quotes, '%' or '~'`, {
        host: host.name,
      });
    }
  }
  assertRoot(host.root);
  return {
    ...host,
    keyFile: path.resolve(host.keyFile),
    knownHostsFile: path.resolve(host.knownHostsFile),
  };
}

/**
 * What a host will write, planned exactly as an agent plans it (planRelease:
 * the manifest rules, nothing below a file or a symlink, shared paths), and
 * refused, as the artifact builder does, when links leave the tree once
 * followed through each other.
 */
export function planForHost(manifest: ArtifactManifest, shared: readonly string[]): ReleasePlan {
  const plan = planRelease(manifest, shared);
  const entries = new Map(manifest.entries.map((entry) => [entry.path, entry]));
  for (const entry of manifest.entries) {
    if (entry.type === "symlink") {
      const problem = linkEscapeProblem(entries, entry.path);
      if (problem) throw invalid(`unsafe symlink ${entry.path}: ${problem}`, { path: entry.path });
    } else if (!Number.isInteger(entry.mode) || entry.mode < 0) {
      throw invalid(`bad mode of artifact entry ${JSON.stringify(entry.path)}`, { path: entry.path });
    }
  }
  return plan;
}

/** argv of a command run on a host: any text but NUL, which no process argument can hold. */
export function checkArgv(argv: readonly string[], what: string): string[] {
  if (!Array.isArray(argv) || argv.length === 0 || argv.some((a) => typeof a !== "string")) {
    throw invalid(`${what}: a non-empty argv array is needed`);
  }
  if (argv.some((a) => a.includes("\0"))) throw invalid(`${what}: arguments cannot contain NUL`);
  if (argv[0] === "") throw invalid(`${what}: the program name is empty`);
  return [...argv];
}

export function checkEnv(env: Record<string, string> | undefined): Record<string, string> {
  if (env === undefined || env === null) return {};
  if (typeof env !== "object" || Array.isArray(env)) throw invalid("env must be an object");
  for (const [name, value] of Object.entries(env)) {
    if (!ENV_NAME.test(name)) throw invalid(`invalid environment variable name ${JSON.stringify(name)}`);
    if (typeof value !== "string" || value.includes("\0")) {
      throw invalid(`invalid value of environment variable ${name}`);
    }
  }
  return env;
}

/** A health URL checked on the host with curl or wget: plain http(s), nothing a command line could misread. */
export function checkHealthUrl(url: string): string {
  const problem = healthUrlProblem(url);
  if (problem) throw invalid(`invalid health check URL ${JSON.stringify(url)}: ${problem}`);
  return url;
}

/** Whole seconds for the host's `timeout`, at least one. */
export function timeoutSeconds(ms: number): number {
  if (!Number.isFinite(ms) || ms <= 0) throw invalid(`invalid timeout ${ms}`);
  return Math.min(9_999_999, Math.max(1, Math.ceil(ms / 1000)));
}
