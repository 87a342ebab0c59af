import type { Deploy } from "./deploy.js";
import { TurnoutError } from "./errors.js";

/**
 * Placeholders in an argv command. They are substituted inside single
 * arguments only: an argument stays one argument whatever the value holds, and
 * no shell ever parses it. Values are still validated (names, SHAs, refs were
 * checked on the way in; this is the last line of defence).
 */
export const PLACEHOLDERS = ["app", "env", "sha", "ref", "previous_sha", "deploy"] as const;
export type Placeholder = (typeof PLACEHOLDERS)[number];
export type PlaceholderValues = Record<Placeholder, string>;

// `~` and `^`: a ref may walk back from a branch or tag (main~1, v1.2^); argv elements are never parsed by a shell.
const SAFE_VALUE = /^[A-Za-z0-9._/+=@#~^-]*$/;

export function substitute(argv: readonly string[], values: PlaceholderValues): string[] {
  for (const [key, value] of Object.entries(values)) {
    if (!SAFE_VALUE.test(value) || value.startsWith("-")) {
      throw new TurnoutError("E_VALIDATION", `placeholder {${key}} has an unsafe value`, {
        placeholder: key,
      });
    }
  }
  return argv.map((arg) =>
    arg.replace(/\{([a-z_]+)\}/g, (whole, key: string) =>
      (PLACEHOLDERS as readonly string[]).includes(key) ? values[key as Placeholder] : whole,
    ),
  );
}

/** Placeholders used in a command that Turnout does not know: a manifest error. */
export function unknownPlaceholders(argv: readonly string[], extra: readonly string[] = []): string[] {
  const known: readonly string[] = [...PLACEHOLDERS, ...extra];
  const unknown = new Set<string>();
  for (const arg of argv) {
    for (const match of arg.matchAll(/\{([a-z_]+)\}/g)) {
      if (!known.includes(match[1]!)) unknown.add(match[1]!);
    }
  }
  return [...unknown];
}

/** The placeholder values of a deploy. */
export function placeholderValues(deploy: Deploy): PlaceholderValues {
  return {
    app: deploy.app,
    env: deploy.env,
    sha: deploy.sha,
    ref: deploy.ref,
    previous_sha: deploy.previousSha ?? "",
    deploy: String(deploy.id),
  };
}

/** The variable holding a component's commit: `web-api` → `TURNOUT_SHA_WEB_API`. */
export function componentShaVariable(component: string): string {
  return `TURNOUT_SHA_${component.toUpperCase().replaceAll("-", "_")}`;
}

/** The variable holding a deploy parameter: `note` → `TURNOUT_PARAM_NOTE`. */
export function paramVariable(name: string): string {
  return `TURNOUT_PARAM_${name.toUpperCase()}`;
}
