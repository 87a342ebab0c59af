import type { AppConfig, ConfigSnapshot } from "../../domain/app-config.js";
import { notFound, TurnoutError } from "../../domain/errors.js";
import { assertName } from "../../domain/names.js";
import type { RepositoryIdentity } from "./payload.js";
import { repositoryKey } from "./repository-url.js";

/**
 * Which apps a webhook is for. First the candidates: the app the hook URL
 * names (`?app=`), or else the apps whose repository the (not yet verified)
 * payload names. Then only the candidates whose own secret verifies the
 * request: two apps may track one repository with different secrets, and a
 * hook signed for one must not move the other.
 */
export function candidateApps(
  config: ConfigSnapshot,
  requested: string | undefined,
  identify: () => RepositoryIdentity,
): AppConfig[] {
  if (requested !== undefined) {
    assertName("app", requested);
    const app = config.apps.get(requested);
    if (!app) throw notFound(`app '${requested}'`, { app: requested });
    return [app];
  }
  const identity = identify();
  if (identity.fullName === undefined && identity.urls.length === 0) {
    throw new TurnoutError(
      "E_BAD_REQUEST",
      "the payload names no repository: add ?app=NAME to the webhook URL",
    );
  }
  const matches = [...config.apps.values()].filter((app) => tracks(app, identity));
  if (matches.length === 0) {
    const shown = identity.fullName ?? identity.urls[0]!;
    throw notFound(`app tracking repository '${shown}'`, { repository: shown });
  }
  return matches;
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

export interface Credential {
  /** The header that carries it, for messages. */
  header: string;
  /** Its value as received; undefined when the header is missing. */
  presented: string | undefined;
  /** Whether it proves knowledge of `secret`. */
  matches(secret: string, presented: string): boolean;
}

/** The candidates whose webhook secret verifies the request; throws E_UNAUTHORIZED when none does. */
export function verifiedApps(candidates: AppConfig[], named: boolean, credential: Credential): AppConfig[] {
  const withSecret = candidates.filter((app) => app.webhook !== undefined);
  if (withSecret.length === 0) {
    // Named only when the caller named the app: otherwise this would list apps to anyone who asks.
    throw new TurnoutError(
      "E_UNAUTHORIZED",
      named
        ? `app '${candidates[0]!.name}' has no webhook secret: set webhook.secret_env in its manifest`
        : "no app tracking this repository has a webhook secret: set webhook.secret_env in its manifest",
    );
  }
  const { presented } = credential;
  if (presented === undefined || presented === "") {
    throw new TurnoutError("E_UNAUTHORIZED", `missing ${credential.header} header`);
  }
  // Every candidate is checked (no early exit): all the apps the request verifies for are acted on.
  const verified = withSecret.filter((app) => credential.matches(app.webhook!.secret, presented));
  if (verified.length === 0) {
    throw new TurnoutError("E_UNAUTHORIZED", `${credential.header} does not match the webhook secret`);
  }
  return verified;
}
