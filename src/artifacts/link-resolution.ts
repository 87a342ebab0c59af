import type { ArtifactEntry } from "../domain/artifact.js";

/** Linux gives up after 40 links in one lookup; a tree needing more is refused, not guessed at. */
const MAX_HOPS = 40;

/**
 * Whether following the symlink at `linkPath` can leave the tree when other
 * symlinks of the same tree are followed too. `linkProblem` judges a target
 * on its own text, which is not enough: with `d/up -> ..` (fine on its own)
 * a second link `x -> d/up/..` reads as inside but resolves to the parent of
 * the tree. Here every component that is itself a link of the tree is
 * replaced by its target, as the kernel would, before `..` is applied.
 * Components the tree does not contain are taken as plain names (a dangling
 * link is harmless); a `..` after a regular file is refused although the
 * kernel would answer ENOTDIR, which errs on the safe side.
 */
export function linkEscapeProblem(
  entries: ReadonlyMap<string, ArtifactEntry>,
  linkPath: string,
): string | undefined {
  const start = entries.get(linkPath);
  if (start?.type !== "symlink") return undefined;
  const resolved = linkPath.split("/").slice(0, -1);
  const pending = start.target.split("/").reverse();
  let hops = 0;
  while (pending.length > 0) {
    const part = pending.pop()!;
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (resolved.length === 0) return "following its target leaves the tree";
      resolved.pop();
      continue;
    }
    resolved.push(part);
    const entry = entries.get(resolved.join("/"));
    if (entry?.type !== "symlink") continue;
    if (++hops > MAX_HOPS) return "too many levels of symbolic links";
    if (entry.target.startsWith("/")) return "it leads to an absolute symlink";
    resolved.pop();
    for (const next of entry.target.split("/").reverse()) pending.push(next);
  }
  return undefined;
}
