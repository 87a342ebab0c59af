import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { isTurnoutError } from "../../src/domain/errors.js";
import { assertRef, parseRevision, refProblem, revisionProblem } from "../../src/domain/refs.js";
import { fixtureGitEnv } from "../helpers/git-fixtures.js";
import { hostileString, REVISION_SYNTAX, VALID_LOOKING } from "./hostile-input.js";
import { runs } from "./property-runs.js";

/**
 * The ref validator (domain/refs.ts) against hostile and random text: it
 * never throws anything but E_INVALID_REF, and whatever it accepts is a plain
 * ref name (git itself agrees) or such a name followed by ancestry steps,
 * with nothing a shell, git's option parser or git's revision language would
 * read as more than a name.
 */
const markerDir = mkdtempSync(path.join(tmpdir(), "turnout-prop-refs-"));
afterAll(() => rmSync(markerDir, { recursive: true, force: true }));

const anyRef = fc.oneof(
  { weight: 4, arbitrary: hostileString(markerDir) },
  { weight: 1, arbitrary: fc.constantFrom(...REVISION_SYNTAX, ...VALID_LOOKING) },
  // Ref-shaped text: the characters a ref may have, in any order, so the structural rules are exercised.
  { weight: 2, arbitrary: fc.string({ unit: fc.constantFrom(..."ab1./-_+=@~^{}:"), maxLength: 16 }) },
);

/** Characters that mean something to a shell, to git's revision parser or to a terminal. */
const NEVER_IN_A_REF = /[\s\u0000-\u001f\u007f$`;|&<>()'"\\*?[\]{}:!#%,]/;

function gitAcceptsRefName(ref: string): boolean {
  const result = spawnSync("git", ["check-ref-format", `refs/heads/${ref}`], { env: fixtureGitEnv() });
  return result.status === 0;
}

describe("refs (property)", () => {
  it("the checks never throw and every answer is a reason or nothing", () => {
    fc.assert(
      fc.property(anyRef, (text) => {
        const ref = refProblem(text);
        const revision = revisionProblem(text);
        expect(ref === undefined || typeof ref === "string").toBe(true);
        expect(revision === undefined || typeof revision === "string").toBe(true);
        // A plain ref is a revision without steps.
        if (ref === undefined && !/[~^]/.test(text) && text !== "HEAD") expect(revision).toBeUndefined();
      }),
      runs(300),
    );
  });

  it("an accepted revision is a plain ref name git accepts, then only ~N and ^N steps", () => {
    fc.assert(
      fc.property(anyRef, (text) => {
        fc.pre(revisionProblem(text) === undefined);
        const revision = parseRevision(text);
        expect(revision.ref + revision.steps).toBe(text);
        expect(revision.ref).not.toMatch(NEVER_IN_A_REF);
        expect(revision.ref.startsWith("-")).toBe(false);
        expect(revision.ref).not.toBe("HEAD");
        expect(revision.ref).not.toContain("..");
        expect(revision.ref).not.toContain("@{");
        expect(revision.steps).toMatch(/^(?:[~^][0-9]*)*$/);
        expect(text.length).toBeLessThanOrEqual(200);
        expect(gitAcceptsRefName(revision.ref)).toBe(true);
      }),
      { ...runs(150), maxSkipsPerRun: 1000 },
    );
  });

  it("everything refused is refused as E_INVALID_REF, whatever its type", () => {
    fc.assert(
      fc.property(fc.oneof(anyRef, fc.anything()), (value) => {
        const refused = typeof value !== "string" || refProblem(value) !== undefined;
        fc.pre(refused);
        let thrown: unknown;
        try {
          assertRef(value);
        } catch (error) {
          thrown = error;
        }
        expect(isTurnoutError(thrown) && thrown.code === "E_INVALID_REF").toBe(true);
      }),
      { ...runs(300), maxSkipsPerRun: 1000 },
    );
    fc.assert(
      fc.property(fc.oneof(anyRef, fc.anything()), (value) => {
        fc.pre(typeof value !== "string" || revisionProblem(value) !== undefined);
        expect(() => parseRevision(value)).toThrow(expect.objectContaining({ code: "E_INVALID_REF" }));
      }),
      { ...runs(300), maxSkipsPerRun: 1000 },
    );
  });
});
