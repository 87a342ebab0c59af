import { randomBytes } from "node:crypto";
import type { AppConfig, ConfigSnapshot } from "../../domain/app-config.js";
import { TurnoutError } from "../../domain/errors.js";
import { assertName } from "../../domain/names.js";
import type { RepositoryIdentity } from "./payload.js";
import { repositoryKey } from "./repository-url.js";

/**
 * Which apps a webhook is for. First the candidates: the app the hook URL
 * names (`?app=`), or else the apps whose repository the (not yet verified)
 * payload names. Then only the candidates whose own secret verifies the
 * request: two apps may track one repository with different secrets, and a
 * hook signed for one must not move the other.
 *
 * The sender is anonymous until verified, so every way of not verifying
 * (no such app, no app tracking the repository, an app without a webhook
 * secret, a wrong signature) gets the same 401: the answer must not tell
 * which app names or repositories exist. The reason goes to the server's log.
 */
export interface Credential {
  /** The header that carries it, for messages. */
  header: string;
  /** Its value as received; undefined when the header is missing. */
  presented: string | undefined;
  /** Whether it proves knowledge of `secret`. */
  matches(secret: string, presented: string): boolean;
}

export interface WebhookTarget {
  /** The app named by `?app=`, if any. */
  requested: string | undefined;
  /** The repository the payload names (only asked when no app is named). */
  identify: () => RepositoryIdentity;
  credential: Credential;
  /** Why a request did not verify, for the operator's log (never the sender). */
  explain?: (reason: string) => void;
}

/** The apps the request verifies for; throws E_UNAUTHORIZED (always worded the same) when none. */
export function verifiedApps(config: ConfigSnapshot, target: WebhookTarget): AppConfig[] {
  const { requested, credential } = target;
  if (requested !== undefined) assertName("app", requested);
  const { presented } = credential;
  if (presented === undefined || presented === "") {
    throw new TurnoutError("E_UNAUTHORIZED", `missing ${credential.header} header`);
  }
  let candidates: AppConfig[];
  let refusal: string;
  if (requested !== undefined) {
    const app = config.apps.get(requested);
    candidates = app ? [app] : [];
    refusal = `${credential.header} does not verify for app '${requested}'`;
    if (!app) target.explain?.(`no app named '${requested}'`);
  } else {
    const identity = target.identify();
    if (identity.fullName === undefined && identity.urls.length === 0) {
      throw new TurnoutError(
        "E_BAD_REQUEST",
        "the payload names no repository: add ?app=NAME to the webhook URL",
      );
    }
    candidates = [...config.apps.values()].filter((app) => tracks(app, identity));
    const shown = identity.fullName ?? identity.urls[0]!;
    refusal = `${credential.header} does not verify for any app tracking repository '${shown}'`;
    if (candidates.length === 0) target.explain?.(`no app tracks repository '${shown}'`);
  }
  const withSecret = candidates.filter((app) => app.webhook !== undefined);
  for (const app of candidates) {
    if (!app.webhook)
      target.explain?.(`app '${app.name}' has no webhook secret: set webhook.secret_env in its manifest`);
  }
  // Every candidate is checked (no early exit): all the apps the request verifies for are acted on.
  const verified = withSecret.filter((app) => credential.matches(app.webhook!.secret, presented));
  // Without a secret to check, check one anyway: the answer's timing must not tell either.
  if (withSecret.length === 0) credential.matches(randomBytes(32).toString("hex"), presented);
  if (verified.length === 0) {
    if (withSecret.length > 0) target.explain?.(`${credential.header} does not match the webhook secret`);
    throw new TurnoutError("E_UNAUTHORIZED", refusal);
  }
  return verified;
}

function tracks(app: AppConfig, identity: RepositoryIdentity): boolean {
  const fullName = identity.fullName?.toLowerCase();
  if (fullName !== undefined && app.github?.repository.toLowerCase() === fullName) return true;
  const payloadKeys = new Set(identity.urls.map(repositoryKey).filter((key) => key !== undefined));
  return app.components.some((component) => {
    const key = repositoryKey(component.repo);
    return key !== undefined && payloadKeys.has(key);
  });
}
