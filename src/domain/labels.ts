import { TurnoutError } from "./errors.js";

/**
 * Host labels (`role=web`): what fleet deploys select hosts by. Keys and
 * values are restricted so they can be shown, logged and matched without
 * quoting. No zod here: the CLI checks `--label` with this before loading
 * anything heavy.
 */
const LABEL_KEY = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/;
const LABEL_VALUE = /^[A-Za-z0-9._:/@+-]{0,128}$/;
export const MAX_LABELS = 64;

export function labelProblem(key: string, value: string): string | undefined {
  if (!LABEL_KEY.test(key)) {
    return `invalid label key ${JSON.stringify(key)}: use letters, digits, '.', '_', '/' and '-'`;
  }
  if (!LABEL_VALUE.test(value)) {
    return `invalid value ${JSON.stringify(value)} for label ${key}: use letters, digits and . _ : / @ + -`;
  }
  return undefined;
}

export function assertLabels(labels: Record<string, string>): Record<string, string> {
  const entries = Object.entries(labels);
  if (entries.length > MAX_LABELS) throw new TurnoutError("E_VALIDATION", `at most ${MAX_LABELS} labels`);
  for (const [key, value] of entries) {
    const problem = labelProblem(key, value);
    if (problem) throw new TurnoutError("E_VALIDATION", problem, { key });
  }
  return labels;
}
