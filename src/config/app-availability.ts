import { TurnoutError } from "../domain/errors.js";
import type { ConfigStatus } from "./config-provider.js";

/**
 * Why an app the caller named is not among the served apps, when there is
 * more to say than "not found": a manifest for it exists but has problems
 * (E_INVALID_MANIFEST, with every file:line:field problem), or it is still
 * being parsed (E_UNAVAILABLE: ask again in a moment). Undefined when no
 * manifest names the app at all. Consult it only after the caller's right
 * to the app was checked, so it says nothing about apps the caller may not see.
 */
const LISTED_IN_MESSAGE = 3;

export function configProblemFor(status: ConfigStatus, app: string): TurnoutError | undefined {
  const problems = status.problems.filter((p) => p.app === app);
  if (problems.length > 0) {
    const listed = problems
      .slice(0, LISTED_IN_MESSAGE)
      .map((p) => `${p.file}${p.line ? `:${p.line}` : ""}: ${p.field}: ${p.message}`);
    const more =
      problems.length > LISTED_IN_MESSAGE ? `; and ${problems.length - LISTED_IN_MESSAGE} more` : "";
    return new TurnoutError(
      "E_INVALID_MANIFEST",
      `app '${app}' is not available: its manifest is invalid: ${listed.join("; ")}${more}`,
      { app, problems },
    );
  }
  const loading = status.loading.find((l) => l.app === app);
  if (loading) {
    return new TurnoutError(
      "E_UNAVAILABLE",
      `app '${app}' is still being loaded (${loading.file}); try again in a moment`,
      { app, file: loading.file },
    );
  }
  return undefined;
}
