import { TurnoutError } from "../domain/errors.js";
import { isFullSha } from "../domain/refs.js";

/**
 * Turning a (validated) ref into a commit with one `git cat-file --batch-check`
 * over a list of candidates, in order of preference:
 *
 *   1. refs/heads/<ref>  — a branch wins when a tag has the same name: deploying
 *      "main" means the branch everyone pushes to, not a tag someone made once;
 *   2. refs/tags/<ref>   — peeled, so an annotated tag gives its commit;
 *   3. <ref> itself when it is fully qualified (refs/…);
 *   4. a full or short (>= 7 hex) commit SHA.
 *
 * Nothing else of git's DWIM (refs/remotes, HEAD~2, @{…}) is tried.
 */
const SHORT_SHA = /^[0-9a-f]{7,64}$/i;

export interface RefCandidates {
  /** Lines for cat-file's stdin. */
  input: string;
  count: number;
  /** Index of the SHA candidate, if any: the one line whose ambiguity matters. */
  shaIndex: number | undefined;
}

export function refCandidates(ref: string): RefCandidates {
  const lines = [`refs/heads/${ref}^{commit}`, `refs/tags/${ref}^{commit}`];
  if (ref.startsWith("refs/")) lines.push(`${ref}^{commit}`);
  let shaIndex: number | undefined;
  if (SHORT_SHA.test(ref)) {
    // Bare (no ^{commit}) so that cat-file reports "ambiguous"; core.disambiguate=commit
    // keeps a blob or tree that shares the prefix from making it ambiguous.
    shaIndex = lines.length;
    lines.push(ref.toLowerCase());
  }
  return { input: `${lines.join("\n")}\n`, count: lines.length, shaIndex };
}

/** Picks the first candidate that is a commit; throws E_INVALID_REF / E_REF_NOT_FOUND. */
export function pickResolved(ref: string, candidates: RefCandidates, stdout: string, where: string): string {
  const lines = stdout.split("\n").slice(0, candidates.count);
  for (const [i, line] of lines.entries()) {
    const [sha, type] = line.split(" ");
    if (sha !== undefined && isFullSha(sha) && type === "commit") return sha;
    if (i === candidates.shaIndex && line.endsWith(" ambiguous")) {
      throw new TurnoutError(
        "E_INVALID_REF",
        `short SHA ${JSON.stringify(ref)} is ambiguous in ${where}: give more characters`,
        { ref },
      );
    }
  }
  throw new TurnoutError(
    "E_REF_NOT_FOUND",
    `ref ${JSON.stringify(ref)} not found in ${where} (no such branch, tag or commit)`,
    { ref },
  );
}
