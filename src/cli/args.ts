import { InvalidArgumentError } from "commander";
import { parseDeployLabel } from "../domain/deploy.js";
import { labelProblem } from "../domain/labels.js";
import { isValidName, isValidParamName } from "../domain/names.js";

/**
 * Parsers for command-line values. They throw commander's
 * InvalidArgumentError, which the program turns into a usage error (exit 2),
 * so a typo never reaches the server.
 */

/** A deploy as named on the command line: its id, or `APP/ENV#N`. */
export type DeployRef = { id: number } | { app: string; env: string; number: number };

export function parseDeployRef(value: string): DeployRef {
  if (/^[0-9]{1,15}$/.test(value)) {
    const id = Number(value);
    if (id > 0) return { id };
  }
  const label = parseDeployLabel(value);
  if (label) return label;
  throw new InvalidArgumentError(`expected a deploy id (17) or APP/ENV#N (shop/staging#4), got '${value}'`);
}

export function parseName(kind: string): (value: string) => string {
  return (value) => {
    if (!isValidName(value)) {
      throw new InvalidArgumentError(
        `invalid ${kind} name '${value}': use lowercase letters, digits and '-', starting with a letter or digit`,
      );
    }
    return value;
  };
}

export function parsePositiveInt(value: string): number {
  if (!/^[0-9]{1,9}$/.test(value) || Number(value) < 1) {
    throw new InvalidArgumentError(`expected a positive whole number, got '${value}'`);
  }
  return Number(value);
}

export function parsePort(value: string): number {
  if (!/^[0-9]{1,5}$/.test(value) || Number(value) > 65535) {
    throw new InvalidArgumentError(`expected a port from 0 to 65535, got '${value}'`);
  }
  return Number(value);
}

/**
 * One `--param k=v`: split at the first `=` only, so values may contain `=`
 * (`--param query=a=b`). Names follow the server's rule (they become
 * TURNOUT_PARAM_<NAME> variables).
 */
export function parseParam(value: string): [string, string] {
  const eq = value.indexOf("=");
  if (eq <= 0) throw new InvalidArgumentError(`expected NAME=VALUE, got '${value}'`);
  const name = value.slice(0, eq);
  if (!isValidParamName(name)) {
    throw new InvalidArgumentError(
      `invalid parameter name '${name}': use letters, digits and '_', not starting with a digit (not __proto__)`,
    );
  }
  return [name, value.slice(eq + 1)];
}

/** Commander reducer for repeated `--param`: a later value for the same name wins. */
export function collectParam(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const [name, paramValue] = parseParam(value);
  return { ...previous, [name]: paramValue };
}

/** Commander reducer for repeated name options (`--app a --app b`). */
export function collectName(kind: string): (value: string, previous?: string[]) => string[] {
  const parse = parseName(kind);
  return (value, previous = []) => [...previous, parse(value)];
}

/** `--component name=ref`, repeatable: component names follow app-name rules, refs are checked by the server. */
export function collectComponentRef(
  value: string,
  previous: Record<string, string> = {},
): Record<string, string> {
  const eq = value.indexOf("=");
  const name = eq > 0 ? value.slice(0, eq) : "";
  const ref = eq > 0 ? value.slice(eq + 1) : "";
  if (!isValidName(name) || ref.length === 0) {
    throw new InvalidArgumentError(`expected COMPONENT=REF (e.g. web-ui=v1.2.0), got '${value}'`);
  }
  return { ...previous, [name]: ref };
}

/**
 * `--label key=value` of a grant, repeatable (one key may be given several
 * values: `--label role=web --label role=worker`); the server's label rules.
 */
export function collectGrantLabel(value: string, previous: string[] = []): string[] {
  const eq = value.indexOf("=");
  if (eq <= 0) throw new InvalidArgumentError(`expected KEY=VALUE, got '${value}'`);
  const problem = labelProblem(value.slice(0, eq), value.slice(eq + 1));
  if (problem) throw new InvalidArgumentError(problem);
  return [...previous, value];
}
