import { access, lstat, mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { TurnoutError } from "../domain/errors.js";
import type { SecretMasker } from "../domain/secrets.js";
import { isLocalRemote, redactUrl } from "./remote-url.js";
import { type GitOutput, runGit } from "./run-git.js";

/** A checkout of one commit for a build; remove() deletes it and may be called any number of times. */
export interface Workspace {
  path: string;
  remove(): Promise<void>;
}

export interface WorkspaceJob {
  mirror: string;
  /** The origin's real URL: relative submodule URLs resolve against it. */
  url: string;
  sha: string;
  dir: string;
  /** Base environment for local commands, and with credentials for submodule fetches. */
  localEnv: Record<string, string>;
  remoteEnv: Record<string, string>;
  masker: SecretMasker;
  timeoutMs: number;
  output?: GitOutput;
}

/**
 * Clones the mirror with --shared (objects stay in the mirror, so this costs no
 * copy; the mirror only prunes unreachable objects after gc's two-week grace,
 * far longer than a workspace lives), detaches HEAD at the commit, then brings
 * in submodules from their own origins with the origin's credentials.
 */
export async function createWorkspaceFromMirror(job: WorkspaceJob): Promise<Workspace> {
  const dir = path.resolve(job.dir);
  if (
    await lstat(dir).then(
      () => true,
      () => false,
    )
  ) {
    throw new TurnoutError("E_CONFLICT", `workspace directory ${dir} already exists`);
  }
  await mkdir(path.dirname(dir), { recursive: true });
  const workspace: Workspace = { path: dir, remove: () => rm(dir, { recursive: true, force: true }) };
  const origin = redactUrl(job.url);
  const run = (args: string[], what: string, env = job.localEnv, cwd = dir) =>
    runGit(args, { what, env, cwd, timeoutMs: job.timeoutMs, masker: job.masker, output: job.output });
  try {
    await run(
      ["clone", "--quiet", "--no-checkout", "--shared", "--", job.mirror, dir],
      `git clone of the mirror of ${origin}`,
      job.localEnv,
      path.dirname(dir),
    );
    // The real origin (without URL credentials, which must not stay in .git/config),
    // so that relative submodule URLs and any later `git remote -v` make sense.
    await run(["config", "remote.origin.url", origin], "git config in the workspace");
    await run(["checkout", "--quiet", "--detach", job.sha, "--"], `git checkout of ${job.sha}`);
    if (await exists(path.join(dir, ".gitmodules"))) {
      job.output?.("updating submodules");
      // Git refuses file:// and local-path submodules by default since 2.38.1 (a
      // hostile repo could make it copy any local repository). An origin that is a
      // local path is the operator's own machine, so its submodules may be too;
      // for remote origins the default stays.
      const allowFile = isLocalRemote(job.url) ? ["-c", "protocol.file.allow=always"] : [];
      await run(
        [...allowFile, "submodule", "update", "--init", "--recursive", "--checkout", "--force"],
        "git submodule update",
        job.remoteEnv,
      );
    }
    return workspace;
  } catch (err) {
    await workspace.remove().catch(() => {});
    throw err;
  }
}

function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}
