import { TurnoutError } from "../domain/errors.js";
import { isFullSha, type Revision } from "../domain/refs.js";

/**
 * Turning a (validated) revision into a commit. First its ref, with one
 * `git cat-file --batch-check` over a list of candidates, in order of
 * preference:
 *
 *   1. refs/heads/<ref>  — a branch wins when a tag has the same name: deploying
 *      "main" means the branch everyone pushes to, not a tag someone made once;
 *   2. refs/tags/<ref>   — peeled, so an annotated tag gives its commit;
 *   3. <ref> itself when it is fully qualified (refs/…);
 *   4. a full or short (>= 7 hex) commit SHA.
 *
 * Then its ancestry steps (`~1`, `^2`), applied to that commit by
 * `git rev-parse --verify --end-of-options <sha><steps>^{commit}`: the ref was
 * already chosen above, so git's own DWIM never picks between a branch and a
 * tag. Nothing else of git's DWIM (refs/remotes, HEAD, @{…}) is tried.
 */
const SHORT_SHA = /^[0-9a-f]{7,64}$/i;

/** How many commits an "ambiguous" answer lists. */
export const MAX_CANDIDATES = 10;

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

export type Picked = { sha: string } | { ambiguous: true } | { missing: true };

/** The first candidate that is a commit; or why there is none. */
export function pickResolved(candidates: RefCandidates, stdout: string): Picked {
  const lines = stdout.split("\n").slice(0, candidates.count);
  for (const [i, line] of lines.entries()) {
    const [sha, type] = line.split(" ");
    if (sha !== undefined && isFullSha(sha) && type === "commit") return { sha };
    if (i === candidates.shaIndex && line.endsWith(" ambiguous")) return { ambiguous: true };
  }
  return { missing: true };
}

/** `git rev-parse` arguments that apply a revision's steps to a commit already resolved. */
export function stepsArgs(sha: string, steps: string): string[] {
  if (!isFullSha(sha)) throw new TurnoutError("E_INTERNAL", `not a full SHA: ${JSON.stringify(sha)}`);
  return ["rev-parse", "--verify", "--quiet", "--end-of-options", `${sha}${steps}^{commit}`];
}

export interface CandidateCommit {
  sha: string;
  /** Committer date, YYYY-MM-DD. */
  date: string;
  subject: string;
}

export function ambiguousError(ref: string, where: string, candidates: CandidateCommit[]): TurnoutError {
  const listed = candidates
    .slice(0, MAX_CANDIDATES)
    .map((c) => `${c.sha.slice(0, 12)} (${c.date} ${JSON.stringify(c.subject)})`);
  const more = candidates.length > MAX_CANDIDATES ? `, and ${candidates.length - MAX_CANDIDATES} more` : "";
  const which = listed.length > 0 ? `: it could be ${listed.join(", ")}${more}` : "";
  return new TurnoutError(
    "E_INVALID_REF",
    `short SHA ${JSON.stringify(ref)} is ambiguous in ${where}${which}; give more characters`,
    { ref, candidates: candidates.slice(0, MAX_CANDIDATES) },
  );
}

export function notFoundError(revision: Revision, where: string, base?: string): TurnoutError {
  const why =
    base === undefined
      ? "no such branch, tag or commit"
      : `${revision.ref} is ${base.slice(0, 12)}, which has no ancestor ${revision.steps}`;
  return new TurnoutError(
    "E_REF_NOT_FOUND",
    `ref ${JSON.stringify(revision.text)} not found in ${where} (${why})`,
    {
      ref: revision.text,
    },
  );
}
