import { TurnoutError } from "../../domain/errors.js";

/**
 * Webhook bodies arrive as raw bytes (the signature covers exactly those
 * bytes); this turns them into JSON once they are needed. GitHub may send
 * `application/x-www-form-urlencoded` with the JSON in a `payload` field.
 */
export function rawBodyOf(body: unknown): Buffer {
  return Buffer.isBuffer(body) ? body : Buffer.alloc(0);
}

/** The JSON of a webhook body; undefined for an empty one. Throws E_BAD_REQUEST when it is not JSON. */
export function parsePayload(raw: Buffer, contentType: string | undefined): unknown {
  let text = raw.toString("utf8");
  if (contentType?.toLowerCase().startsWith("application/x-www-form-urlencoded")) {
    const field = new URLSearchParams(text).get("payload");
    if (field === null)
      throw new TurnoutError("E_BAD_REQUEST", "form-encoded webhook without a 'payload' field");
    text = field;
  }
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text, (key, value) => {
      if (key === "__proto__") throw new SyntaxError("'__proto__' is not allowed as a key");
      return value;
    });
  } catch (error) {
    throw new TurnoutError("E_BAD_REQUEST", `malformed webhook payload: ${(error as Error).message}`);
  }
}

/** Like parsePayload, for details that are nice to have: undefined instead of an error. */
export function tryParsePayload(raw: Buffer, contentType: string | undefined): unknown {
  try {
    return parsePayload(raw, contentType);
  } catch {
    return undefined;
  }
}

/** What a payload says about its repository: `owner/name` (GitHub) and clone/web URLs. */
export interface RepositoryIdentity {
  fullName?: string;
  urls: string[];
}

const GITHUB_URL_FIELDS = ["clone_url", "ssh_url", "git_url", "html_url"];
// `project` in current GitLab payloads; `repository` in older ones and in some events.
const GITLAB_PROJECT_URL_FIELDS = ["git_http_url", "git_ssh_url", "web_url", "http_url", "ssh_url"];
const GITLAB_REPOSITORY_URL_FIELDS = ["git_http_url", "git_ssh_url", "homepage", "url"];

export function githubRepository(payload: unknown): RepositoryIdentity {
  const repository = objectField(payload, "repository");
  const fullName = stringField(repository, "full_name");
  return {
    ...(fullName !== undefined ? { fullName } : {}),
    urls: stringFields(repository, GITHUB_URL_FIELDS),
  };
}

export function gitlabRepository(payload: unknown): RepositoryIdentity {
  return {
    urls: [
      ...stringFields(objectField(payload, "project"), GITLAB_PROJECT_URL_FIELDS),
      ...stringFields(objectField(payload, "repository"), GITLAB_REPOSITORY_URL_FIELDS),
    ],
  };
}

/** The pushed ref and new head, for the audit trail (GitHub and GitLab name them alike). */
export function pushSummary(payload: unknown): { ref?: string; after?: string } {
  const ref = stringField(payload, "ref");
  const after = stringField(payload, "after");
  return { ...(ref !== undefined ? { ref } : {}), ...(after !== undefined ? { after } : {}) };
}

function objectField(value: unknown, key: string): Record<string, unknown> | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const field = (value as Record<string, unknown>)[key];
  return typeof field === "object" && field !== null && !Array.isArray(field)
    ? (field as Record<string, unknown>)
    : undefined;
}

function stringField(value: unknown, key: string): string | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const field = (value as Record<string, unknown>)[key];
  // Bounded: these end up in lookups and the audit log, never trusted further.
  return typeof field === "string" && field.length > 0 && field.length <= 1000 ? field : undefined;
}

function stringFields(value: unknown, keys: string[]): string[] {
  return keys.map((key) => stringField(value, key)).filter((url): url is string => url !== undefined);
}
