import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import path from "node:path";
import { type AppConfig, type ComponentConfig, hostedRepoName } from "../domain/app-config.js";
import { SecretMasker } from "../domain/secrets.js";
import { baseGitEnv } from "./git-env.js";
import { runGit } from "./run-git.js";

/**
 * The bare repositories Turnout hosts itself (push-to-deploy). The manifest
 * loader decides where each lives (`<dataDir>/hosted/<app>.git`, or
 * `<app>/<component>.git`: domain hostedRepoName); this module creates them
 * on first use, reads their refs, and moves repositories of the old layout.
 */
const GIT_TIMEOUT_MS = 30_000;
const NO_SECRETS = new SecretMasker([]);

// Settings of a new hosted repository. Force pushes stay allowed: the
// branches belong to the app's owners, not to Turnout.
const REPO_CONFIG: Array<[string, string]> = [
  // A corrupt or malicious pack is refused instead of stored.
  ["receive.fsckObjects", "true"],
  // Bare repositories keep no reflog by default; with it, every ref update
  // records who pushed (http-backend names the committer after REMOTE_USER).
  ["core.logAllRefUpdates", "true"],
];

const creating = new Map<string, Promise<void>>();

/** Whether `repoPath` already holds a bare repository. */
function looksLikeBareRepo(repoPath: string): boolean {
  return existsSync(path.join(repoPath, "HEAD")) && existsSync(path.join(repoPath, "objects"));
}

/**
 * Creates the bare repository at `repoPath` unless it exists. Concurrent calls
 * in this process share one creation; across processes, the repository is
 * built under a temporary name and renamed into place, so nobody ever sees a
 * half-initialised one and the loser of a race simply discards its copy.
 */
export function ensureHostedRepo(repoPath: string): Promise<void> {
  if (looksLikeBareRepo(repoPath)) return Promise.resolve();
  const pending = creating.get(repoPath);
  if (pending) return pending;
  const created = createRepo(repoPath).finally(() => creating.delete(repoPath));
  creating.set(repoPath, created);
  return created;
}

async function createRepo(repoPath: string): Promise<void> {
  const parent = path.dirname(repoPath);
  await mkdir(parent, { recursive: true, mode: 0o700 });
  const temp = path.join(parent, `.${path.basename(repoPath)}.${randomBytes(6).toString("hex")}.tmp`);
  const env = baseGitEnv();
  try {
    await runGit(["init", "--quiet", "--bare", "--initial-branch=main", "--", temp], {
      what: `creating the hosted repository ${repoPath}`,
      env,
      timeoutMs: GIT_TIMEOUT_MS,
      masker: NO_SECRETS,
    });
    for (const [key, value] of REPO_CONFIG) {
      await runGit(["config", "--file", path.join(temp, "config"), key, value], {
        what: `configuring the hosted repository ${repoPath}`,
        env,
        timeoutMs: GIT_TIMEOUT_MS,
        masker: NO_SECRETS,
      });
    }
    try {
      await rename(temp, repoPath);
    } catch (error) {
      // Another process created it meanwhile: theirs is as good as ours.
      if (!looksLikeBareRepo(repoPath)) throw error;
    }
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
}

/** Every ref of a hosted repository → its object id. */
export async function readRefs(repoPath: string): Promise<Map<string, string>> {
  const out = await runGit(["for-each-ref", "--format=%(objectname) %(refname)"], {
    what: `listing the refs of ${repoPath}`,
    env: { ...baseGitEnv(), GIT_DIR: repoPath },
    timeoutMs: GIT_TIMEOUT_MS,
    masker: NO_SECRETS,
  });
  const refs = new Map<string, string>();
  for (const line of out.split("\n")) {
    const space = line.indexOf(" ");
    if (space > 0) refs.set(line.slice(space + 1), line.slice(0, space));
  }
  return refs;
}

/**
 * Hosted components used to live at `hosted/<app>-<component>.git`, where app
 * `col`'s component `web` and app `col-web` met. On start, each such
 * repository moves to `hosted/<app>/<component>.git` when exactly one hosted
 * component of the current configuration claims it and no app is named
 * like the old file; otherwise it is left where it is and reported, for the
 * operator to move by hand. Returns one line per repository looked at.
 */
export async function moveLegacyHostedRepos(hostedDir: string, apps: Iterable<AppConfig>): Promise<string[]> {
  const all = [...apps];
  const names = new Set(all.map((a) => a.name));
  const claims = new Map<string, ComponentConfig[]>();
  for (const app of all) {
    for (const c of app.components) {
      // Only components of multi-repo apps (`<app>/<component>.git`) ever had a legacy name.
      if (!c.hosted || c.hostedAs !== hostedRepoName(app.name, c.name)) continue;
      const legacy = `${app.name}-${c.name}`;
      claims.set(legacy, [...(claims.get(legacy) ?? []), c]);
    }
  }
  const lines: string[] = [];
  for (const [legacy, claimants] of claims) {
    const from = path.join(hostedDir, `${legacy}.git`);
    if (!looksLikeBareRepo(from)) continue;
    const wanted = claimants.map((c) => c.hostedAs).join(", ");
    if (claimants.length > 1 || names.has(legacy)) {
      const others = names.has(legacy) ? [`${legacy}.git (app '${legacy}')`, wanted] : [wanted];
      lines.push(
        `hosted: left ${legacy}.git where it is: it may belong to ${others.join(" or ")}; move it by hand (see docs/operations.md)`,
      );
      continue;
    }
    const to = claimants[0]!.repo;
    if (existsSync(to)) {
      lines.push(
        `hosted: left ${legacy}.git where it is: ${claimants[0]!.hostedAs} exists already; merge them by hand`,
      );
      continue;
    }
    await mkdir(path.dirname(to), { recursive: true, mode: 0o700 });
    await rename(from, to);
    lines.push(`hosted: moved ${legacy}.git to ${claimants[0]!.hostedAs}`);
  }
  return lines;
}
