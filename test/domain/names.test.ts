import { describe, expect, it } from "vitest";
import { assertName, assertParams } from "../../src/domain/names.js";

describe("assertParams", () => {
  it("takes variable names and any value without NUL", () => {
    expect(assertParams({ REGION: "eu; $(x)", _x1: "" })).toEqual({ REGION: "eu; $(x)", _x1: "" });
  });

  // Found by test/property/names.property.test.ts: `__proto__` passed the name rule, and assigning
  // it to the result set the prototype instead, so the parameter vanished without an error.
  it("refuses __proto__ as a parameter name instead of dropping it", () => {
    const params = JSON.parse('{"__proto__": "../../xmain~1", "a": "b"}') as Record<string, unknown>;
    expect(() => assertParams(params)).toThrow(expect.objectContaining({ code: "E_INVALID_PARAM" }));
  });
});

describe("assertName", () => {
  // Found by test/property/names.property.test.ts (FC_SEED=4): describing a non-string value
  // called String() on it, which throws for an object whose toString is not a function.
  it.each([{ toString: "" }, Object.create(null), 10n, Symbol("x"), ["shop"], 7, null])(
    "refuses %s as E_INVALID_NAME, never with another error",
    (value) => {
      expect(() => assertName("app", value)).toThrow(expect.objectContaining({ code: "E_INVALID_NAME" }));
    },
  );
});
