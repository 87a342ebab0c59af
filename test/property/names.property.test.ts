import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { assertHostName } from "../../src/agent/protocol.js";
import { type ErrorCode, isTurnoutError } from "../../src/domain/errors.js";
import { parseAppGrant, parseLabelGrant } from "../../src/domain/host-grant.js";
import { assertLabels, labelProblem } from "../../src/domain/labels.js";
import { assertName, assertParams, isValidName } from "../../src/domain/names.js";
import { hostileString, OBJECT_KEYS, VALID_LOOKING } from "./hostile-input.js";
import { runs } from "./property-runs.js";

/**
 * The name validators against hostile and random text. Names end up in
 * paths, URLs, log prefixes, placeholders and store keys, so what they accept
 * must be usable in all of those without quoting; what they refuse is
 * refused with their one error code, never another exception.
 */
const markerDir = mkdtempSync(path.join(tmpdir(), "turnout-prop-names-"));
afterAll(() => rmSync(markerDir, { recursive: true, force: true }));

const anyText = fc.oneof(
  { weight: 4, arbitrary: hostileString(markerDir) },
  { weight: 1, arbitrary: fc.constantFrom(...VALID_LOOKING) },
  { weight: 2, arbitrary: fc.string({ unit: fc.constantFrom(..."az09-._/A:=@ "), maxLength: 70 }) },
);

function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  return undefined;
}

function expectCode(error: unknown, code: ErrorCode): void {
  expect(isTurnoutError(error) ? error.code : error).toBe(code);
}

/** What every accepted name must be: the same text as a path segment, a URL segment, a file name. */
function expectPlainSegment(name: string): void {
  expect(name.length).toBeGreaterThan(0);
  expect(name.length).toBeLessThanOrEqual(63);
  expect(encodeURIComponent(name)).toBe(name);
  expect(path.basename(name)).toBe(name);
  expect(path.normalize(name)).toBe(name);
  expect(name).not.toMatch(/^[-.]/);
  expect(name).not.toContain(".");
  expect(name).toBe(name.toLowerCase());
}

describe("names (property)", () => {
  it("apps, environments, tokens, slots and hosts: accepted names are plain segments, the rest E_INVALID_NAME", () => {
    const kinds = ["app", "environment", "token", "slot"] as const;
    fc.assert(
      fc.property(
        fc.oneof(anyText, fc.anything()),
        fc.constantFrom(...kinds, "host" as const),
        (value, kind) => {
          const check = () => (kind === "host" ? assertHostName(value) : assertName(kind, value));
          const error = thrownBy(check);
          const valid = typeof value === "string" && isValidName(value);
          if (valid) {
            expect(error).toBeUndefined();
            expectPlainSegment(value);
          } else {
            expectCode(error, "E_INVALID_NAME");
          }
        },
      ),
      runs(300),
    );
  });

  it("app grants take only valid names; label grants only KEY=VALUE labels", () => {
    fc.assert(
      fc.property(fc.array(anyText, { maxLength: 4 }), (values) => {
        const apps = thrownBy(() => parseAppGrant(values));
        if (values.every(isValidName)) expect(apps).toBeUndefined();
        else expectCode(apps, "E_INVALID_NAME");
        const labels = thrownBy(() => parseLabelGrant(values));
        if (labels === undefined) {
          for (const value of values) {
            const eq = value.indexOf("=");
            expect(eq).toBeGreaterThan(0);
            expect(labelProblem(value.slice(0, eq), value.slice(eq + 1))).toBeUndefined();
          }
        } else {
          expectCode(labels, "E_VALIDATION");
        }
      }),
      runs(200),
    );
  });

  it("labels: accepted keys and values hold nothing a shell, a log line or a terminal would read", () => {
    fc.assert(
      fc.property(fc.dictionary(anyText, anyText, { maxKeys: 3 }), (labels) => {
        const error = thrownBy(() => assertLabels(labels));
        if (error !== undefined) {
          expectCode(error, "E_VALIDATION");
          return;
        }
        for (const [key, value] of Object.entries(labels)) {
          expect(key).toMatch(/^[A-Za-z0-9]/);
          for (const text of [key, value]) {
            expect(text).not.toMatch(/[\s\u0000-\u001f\u007f-\u{10ffff}$`;|&<>()'"\\*?[\]{}!#%,=]/u);
            expect(text.length).toBeLessThanOrEqual(128);
          }
        }
      }),
      runs(200),
    );
  });

  it("deploy parameters: names are variable names, values any text but NUL; the rest E_INVALID_PARAM", () => {
    const value = fc.oneof(anyText, fc.anything());
    // Built as JSON.parse builds a body: every key an own property, `__proto__` included.
    const key = fc.oneof(
      anyText,
      fc.constantFrom(...OBJECT_KEYS),
      fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,10}$/),
    );
    const params = fc.array(fc.tuple(key, value), { maxLength: 3 }).map((e) => Object.fromEntries(e));
    fc.assert(
      fc.property(params, (params) => {
        let accepted: Record<string, string> | undefined;
        const error = thrownBy(() => {
          accepted = assertParams(params);
        });
        if (error !== undefined) {
          expectCode(error, "E_INVALID_PARAM");
          return;
        }
        expect(accepted).toEqual(params);
        for (const [name, v] of Object.entries(accepted!)) {
          expect(name).toMatch(/^[A-Za-z_][A-Za-z0-9_]*$/);
          expect(typeof v).toBe("string");
          expect(v).not.toContain("\0");
        }
      }),
      runs(200),
    );
  });
});
