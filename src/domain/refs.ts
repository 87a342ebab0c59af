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

const FULL_SHA = /^[0-9a-f]{40}$|^[0-9a-f]{64}$/;

export function isFullSha(value: string): boolean {
  return FULL_SHA.test(value);
}

export function assertSha(value: string): string {
  if (!isFullSha(value))
    throw new TurnoutError("E_INVALID_REF", `not a full commit SHA: ${JSON.stringify(value)}`);
  return value;
}
