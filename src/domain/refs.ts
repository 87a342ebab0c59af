import { TurnoutError } from "./errors.js";

/**
 * A ref a user asks to deploy: a branch, a tag, a full or short SHA. It is
 * checked here, before git ever sees it, against git's own ref-name rules
 * (git-check-ref-format) plus our own: no leading '-', so it can never be
 * read as an option, and no shell or control characters at all.
 */
const MAX_REF_LENGTH = 200;
const ALLOWED = /^[A-Za-z0-9._/+=@-]+$/;

export function refProblem(ref: string): string | undefined {
  if (ref.length === 0) return "is empty";
  if (ref.length > MAX_REF_LENGTH) return `is longer than ${MAX_REF_LENGTH} characters`;
  if (!ALLOWED.test(ref)) return "contains characters not allowed in a ref";
  if (ref.startsWith("-")) return "starts with '-'";
  if (ref.includes("..")) return "contains '..'";
  if (ref.includes("@{")) return "contains '@{'";
  if (ref === "@") return "is '@'";
  if (ref.startsWith("/") || ref.endsWith("/") || ref.includes("//")) return "has an empty path component";
  if (ref.endsWith(".")) return "ends with '.'";
  for (const part of ref.split("/")) {
    if (part.startsWith(".")) return "has a component starting with '.'";
    if (part.endsWith(".lock")) return "has a component ending with '.lock'";
  }
  return undefined;
}

export function assertRef(ref: unknown): string {
  if (typeof ref !== "string") {
    throw new TurnoutError("E_INVALID_REF", "ref must be a string");
  }
  const problem = refProblem(ref);
  if (problem) {
    throw new TurnoutError("E_INVALID_REF", `invalid ref ${JSON.stringify(ref)}: it ${problem}`, { ref });
  }
  return ref;
}

/**
 * What a user may ask to deploy: a ref (as above: branch, tag, full or short
 * SHA) optionally followed by ancestry steps, `~`, `~N`, `^` or `^N` (`main~1`,
 * `v1.2^`, `v2^2~3`), the forms of gitrevisions(7) that only walk back from a
 * commit. `^` and `~` may not appear in a ref name, so the first of them ends
 * the name. Nothing else of git's revision syntax is accepted (`^{…}`, `@{…}`,
 * `:path`, `..`): those search, read files or name ranges.
 *
 * `HEAD` is refused: the server's mirrors have no checkout, so HEAD there
 * says nothing about what anyone means.
 */
export interface Revision {
  /** The whole text, as asked. */
  text: string;
  /** The ref it starts from. */
  ref: string;
  /** The ancestry steps after it ("" for none), e.g. `~1`, `^2~3`. */
  steps: string;
}

const STEPS = /^(?:[~^][0-9]{0,4})*$/;
const MAX_STEPS = 20;

export function revisionProblem(text: string): string | undefined {
  if (text.length > MAX_REF_LENGTH) return `is longer than ${MAX_REF_LENGTH} characters`;
  const cut = text.search(/[~^]/);
  const ref = cut === -1 ? text : text.slice(0, cut);
  const steps = cut === -1 ? "" : text.slice(cut);
  const problem = refProblem(ref);
  if (problem) return problem;
  if (ref === "HEAD")
    return "names HEAD, which means nothing on the server: name a branch, a tag or a commit (main~1)";
  if (!STEPS.test(steps)) return "has ancestry steps other than ~, ~N, ^ or ^N";
  if ((steps.match(/[~^]/g)?.length ?? 0) > MAX_STEPS) return `has more than ${MAX_STEPS} ancestry steps`;
  return undefined;
}

export function parseRevision(text: unknown): Revision {
  if (typeof text !== "string") throw new TurnoutError("E_INVALID_REF", "ref must be a string");
  const problem = revisionProblem(text);
  if (problem) {
    throw new TurnoutError("E_INVALID_REF", `invalid ref ${JSON.stringify(text)}: it ${problem}`, {
      ref: text,
    });
  }
  const cut = text.search(/[~^]/);
  return cut === -1
    ? { text, ref: text, steps: "" }
    : { text, ref: text.slice(0, cut), steps: text.slice(cut) };
}

/** A revision checked as above; returns the text. */
export function assertRevision(text: unknown): string {
  return parseRevision(text).text;
}

const FULL_SHA = /^[0-9a-f]{40}$|^[0-9a-f]{64}$/;

export function isFullSha(value: string): boolean {
  return FULL_SHA.test(value);
}

export function assertSha(value: string): string {
  if (!isFullSha(value))
    throw new TurnoutError("E_INVALID_REF", `not a full commit SHA: ${JSON.stringify(value)}`);
  return value;
}
