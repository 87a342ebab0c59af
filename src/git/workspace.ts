import { access, cp, lstat, mkdir, readFile, rm, writeFile } from "node:fs/promises";
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
 * A workspace is what `git clone --shared --no-checkout <mirror>` followed by
 * `git checkout --detach <sha>` makes, but its repository skeleton is written
 * here instead of by `git clone`: the deploy request → first command path has
 * a 50 ms budget, and clone's own start-up and ref copying cost most of it.
 * The skeleton is git's documented layout: objects borrowed from the mirror
 * through `objects/info/alternates` (no copy; the mirror only prunes
 * unreachable objects after gc's two-week grace, far longer than a workspace
 * lives), the mirror's tags (so `git describe` works), `origin` pointing at
 * the real origin (without URL credentials), and a detached HEAD.
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
    await writeSkeleton(path.join(dir, ".git"), job.mirror, origin, job.sha);
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

async function writeSkeleton(gitDir: string, mirror: string, origin: string, sha: string): Promise<void> {
  await mkdir(path.join(gitDir, "objects", "info"), { recursive: true });
  await mkdir(path.join(gitDir, "refs", "heads"), { recursive: true });
  await writeFile(
    path.join(gitDir, "objects", "info", "alternates"),
    `${path.join(path.resolve(mirror), "objects")}\n`,
  );
  await writeFile(
    path.join(gitDir, "config"),
    [
      "[core]",
      "\trepositoryformatversion = 0",
      "\tfilemode = true",
      "\tbare = false",
      "\tlogallrefupdates = true",
      '[remote "origin"]',
      `\turl = ${configValue(origin)}`,
      "\tfetch = +refs/heads/*:refs/remotes/origin/*",
      "",
    ].join("\n"),
  );
  await writeFile(path.join(gitDir, "HEAD"), `${sha}\n`);
  await copyTags(mirror, gitDir);
}

/** The mirror's tags, packed and loose (refs are written by git with lock-and-rename, so a copy never sees half a ref). */
async function copyTags(mirror: string, gitDir: string): Promise<void> {
  const packed = await readFile(path.join(mirror, "packed-refs"), "utf8").catch(() => "");
  const lines: string[] = [];
  let keepPeel = false;
  for (const line of packed.split("\n")) {
    if (line.startsWith("^")) {
      if (keepPeel) lines.push(line);
      continue;
    }
    keepPeel = / refs\/tags\//.test(line);
    if (keepPeel) lines.push(line);
  }
  if (lines.length > 0)
    await writeFile(
      path.join(gitDir, "packed-refs"),
      `# pack-refs with: peeled fully-peeled sorted \n${lines.join("\n")}\n`,
    );
  await cp(path.join(mirror, "refs", "tags"), path.join(gitDir, "refs", "tags"), { recursive: true }).catch(
    (error) => {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    },
  );
}

/** A value in git's config syntax: quoted, with backslash and quote escaped (the URL has no control characters). */
function configValue(value: string): string {
  return `"${value.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}
