import { bearerToken } from "../auth.js";

/**
 * The token a git client sends. Git speaks HTTP Basic (the password is the
 * Turnout token, the user name is ignored: `http://x:TOKEN@host/git/app.git`);
 * other clients may send the API's `Authorization: Bearer`.
 */
export function gitToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const bearer = bearerToken(header);
  if (bearer) return bearer;
  const match = /^Basic[ \t]+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!match?.[1]) return undefined;
  const decoded = Buffer.from(match[1], "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  const password = colon < 0 ? "" : decoded.slice(colon + 1);
  return password === "" ? undefined : password;
}

/** What a 401 carries so that git asks for (or reports missing) credentials. */
export const BASIC_CHALLENGE = 'Basic realm="Turnout", charset="UTF-8"';
