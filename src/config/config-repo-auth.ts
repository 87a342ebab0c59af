import type { RepoAuth } from "../domain/app-config.js";
import { TurnoutError } from "../domain/errors.js";
import type { ServerSettings } from "./settings.js";

/**
 * Credentials of a private configuration repository, the way manifests give
 * theirs: settings name the variable holding the token (so the token is
 * never in a settings file), or the SSH key file. A named variable that is
 * not set stops the server: without it the configuration cannot be read.
 */
export function configRepoAuth(
  settings: Pick<ServerSettings, "configRepoTokenEnv" | "configRepoSshKey" | "environment">,
): RepoAuth {
  const auth: RepoAuth = {};
  if (settings.configRepoSshKey) auth.sshKeyFile = settings.configRepoSshKey;
  const tokenEnv = settings.configRepoTokenEnv;
  if (tokenEnv) {
    const token = settings.environment[tokenEnv];
    if (!token) {
      throw new TurnoutError(
        "E_CONFIG",
        `TURNOUT_CONFIG_REPO_TOKEN_ENV names ${tokenEnv}, but that variable is not set`,
      );
    }
    auth.token = token;
    auth.tokenEnv = tokenEnv;
  }
  return auth;
}
