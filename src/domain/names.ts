import { TurnoutError } from "./errors.js";

/**
 * Names that end up in paths, URLs, log prefixes and command placeholders.
 * Restricting them at the edge is what lets the rest of the code use them
 * without quoting.
 */
const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

export function isValidName(value: string): boolean {
  return NAME.test(value);
}

export type NameKind = "app" | "environment" | "token" | "slot" | "host";

export function assertName(kind: NameKind, value: unknown): string {
  if (typeof value !== "string" || !NAME.test(value)) {
    // Whatever the value is (a number, an object from a JSON body), saying what it is cannot throw.
    const shown = typeof value === "string" ? JSON.stringify(value) : `of type ${typeof value}`;
    throw new TurnoutError(
      "E_INVALID_NAME",
      `invalid ${kind} name ${shown}: use lowercase letters, digits and '-', starting with a letter or digit (at most 63 characters)`,
      { kind, value: typeof value === "string" ? value : typeof value },
    );
  }
  return value;
}

const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const MAX_PARAM_VALUE = 4096;

/**
 * A parameter name becomes a variable name (TURNOUT_PARAM_<NAME>). `__proto__`
 * would be one too, but assigning it to a plain object sets the prototype
 * instead of a key: the parameter would vanish without a word.
 */
export function isValidParamName(name: string): boolean {
  return PARAM_NAME.test(name) && name !== "__proto__";
}

/**
 * Deploy parameters only ever reach commands as environment variables
 * (TURNOUT_PARAM_<NAME>), so their values may be any text without NUL; the
 * names must make valid variable names.
 */
export function assertParams(params: Record<string, unknown> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!params) return out;
  for (const [name, value] of Object.entries(params)) {
    if (!isValidParamName(name)) {
      throw new TurnoutError("E_INVALID_PARAM", `invalid parameter name ${JSON.stringify(name)}`, { name });
    }
    if (typeof value !== "string" || value.includes("\0") || value.length > MAX_PARAM_VALUE) {
      throw new TurnoutError("E_INVALID_PARAM", `invalid value for parameter ${name}`, { name });
    }
    out[name] = value;
  }
  return out;
}
