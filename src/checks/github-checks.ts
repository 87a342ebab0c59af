import type { GithubConfig } from "../domain/app-config.js";
import { formatDuration } from "../domain/duration.js";
import { TurnoutError } from "../domain/errors.js";
import { type CheckReport, type GithubCheckRun, type GithubStatus, reduceChecks } from "./check-report.js";

export type { CheckReport, CheckResult, CheckState } from "./check-report.js";
export { summarize } from "./check-report.js";

/**
 * Reads the commit statuses and check runs of a commit from GitHub's REST API
 * (github.com or GitHub Enterprise: everything hangs off `apiUrl`).
 *
 * Errors are TurnoutErrors whose `details.retryable` tells the gate what to do:
 * GitHub being down, slow or rate limiting us (E_UNAVAILABLE, retryable) must
 * not fail a deploy; GitHub refusing the repository or the token (E_CONFIG,
 * not retryable) will not fix itself by asking again.
 */
export interface GithubChecksOptions {
  fetch?: typeof fetch;
  userAgent?: string;
  /** per HTTP request, default 10 s */
  timeoutMs?: number;
}

export interface ReportOptions {
  /** Stops the requests in flight (cancel, or the gate's deadline). */
  signal?: AbortSignal;
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** 100 pages of 100: far more check runs than any commit has; a loop guard, not a limit anyone meets. */
const MAX_PAGES = 100;
const REPOSITORY = /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/;

export class GithubChecks {
  private readonly fetch: typeof fetch;
  private readonly userAgent: string;
  private readonly timeoutMs: number;

  constructor(options: GithubChecksOptions = {}) {
    this.fetch = options.fetch ?? globalThis.fetch;
    this.userAgent = options.userAgent ?? "turnout";
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** One look at GitHub: the combined status and the check runs of `sha`, reduced to the required checks. */
  async report(
    github: GithubConfig,
    sha: string,
    required: string[],
    options: ReportOptions = {},
  ): Promise<CheckReport> {
    if (required.length === 0) return { state: "success", checks: [], missing: [] };
    const commit = `${repositoryUrl(github)}/commits/${encodeURIComponent(sha)}`;
    // One failing endpoint makes the whole look worthless: stop the other one too.
    const both = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, both.signal]) : both.signal;
    try {
      const [statuses, checkRuns] = await Promise.all([
        this.pages<GithubStatus>(github, `${commit}/status?per_page=100`, "statuses", signal),
        this.pages<GithubCheckRun>(github, `${commit}/check-runs?per_page=100`, "check_runs", signal),
      ]);
      return reduceChecks(required, statuses, checkRuns);
    } finally {
      both.abort();
    }
  }

  /** Every page of a list, following the Link header's rel="next". */
  private async pages<T>(
    github: GithubConfig,
    first: string,
    field: string,
    signal: AbortSignal,
  ): Promise<T[]> {
    const origin = new URL(first).origin;
    const items: T[] = [];
    let url: string | undefined = first;
    for (let page = 0; url !== undefined && page < MAX_PAGES; page++) {
      const { body, link } = await this.get(github, url, signal);
      const list = (body as Record<string, unknown> | null)?.[field];
      if (!Array.isArray(list)) {
        throw unavailable(github, `GitHub's answer for ${github.repository} has no \`${field}\` list`);
      }
      items.push(...(list as T[]));
      url = nextPage(link);
      // The token goes only where the configuration sends it, never to a host a response names.
      if (url !== undefined && new URL(url).origin !== origin) {
        throw new TurnoutError("E_CONFIG", `GitHub sent the next page of ${field} to another host`, {
          repository: github.repository,
          retryable: false,
        });
      }
    }
    return items;
  }

  private async get(
    github: GithubConfig,
    url: string,
    signal: AbortSignal,
  ): Promise<{ body: unknown; link: string | null }> {
    const headers: Record<string, string> = {
      Accept: "application/vnd.github+json",
      "X-GitHub-Api-Version": "2022-11-28",
      "User-Agent": this.userAgent,
    };
    if (github.token) headers["Authorization"] = `Bearer ${github.token}`;
    const timeout = AbortSignal.timeout(this.timeoutMs);
    let response: Response;
    try {
      response = await this.fetch(url, { headers, signal: AbortSignal.any([signal, timeout]) });
    } catch (error) {
      throw unavailable(github, requestFailure(github, error, signal, timeout, this.timeoutMs));
    }
    if (!response.ok) throw await httpError(github, response);
    try {
      return { body: await response.json(), link: response.headers.get("link") };
    } catch {
      throw unavailable(github, `GitHub sent an unreadable answer for ${github.repository}`);
    }
  }
}

function repositoryUrl(github: GithubConfig): string {
  // "." and ".." would climb out of /repos/ once the URL is normalised.
  if (!REPOSITORY.test(github.repository) || github.repository.split("/").some((p) => /^\.+$/.test(p))) {
    throw new TurnoutError(
      "E_CONFIG",
      `github.repository must be owner/name, not ${JSON.stringify(github.repository)}`,
      {
        retryable: false,
      },
    );
  }
  let protocol = "";
  try {
    protocol = new URL(github.apiUrl).protocol;
  } catch {
    // reported below
  }
  if (protocol !== "https:" && protocol !== "http:") {
    throw new TurnoutError("E_CONFIG", "github.api_url must be an http(s) URL", {
      repository: github.repository,
      retryable: false,
    });
  }
  const [owner, name] = github.repository.split("/") as [string, string];
  return `${github.apiUrl.replace(/\/+$/, "")}/repos/${encodeURIComponent(owner)}/${encodeURIComponent(name)}`;
}

/** `<https://…&page=2>; rel="next", <https://…&page=5>; rel="last"` → the next page's URL. */
export function nextPage(link: string | null): string | undefined {
  if (!link) return undefined;
  for (const part of link.split(",")) {
    const match = /^\s*<([^>]+)>(.*)$/.exec(part);
    if (!match) continue;
    const rel = /;\s*rel\s*=\s*"?([^";]*)"?/.exec(match[2]!)?.[1] ?? "";
    if (rel.split(/\s+/).includes("next")) return match[1];
  }
  return undefined;
}

function requestFailure(
  github: GithubConfig,
  error: unknown,
  signal: AbortSignal,
  timeout: AbortSignal,
  timeoutMs: number,
): string {
  if (signal.aborted) return `request to GitHub for ${github.repository} was stopped`;
  if (timeout.aborted)
    return `GitHub did not answer within ${formatDuration(timeoutMs)} for ${github.repository}`;
  // fetch() says "fetch failed"; the cause says why (ECONNREFUSED, ENOTFOUND, …).
  const cause = (error as { cause?: { message?: unknown } })?.cause?.message;
  const why = typeof cause === "string" ? cause : error instanceof Error ? error.message : String(error);
  return `could not reach GitHub at ${safeOrigin(github.apiUrl)} for ${github.repository}: ${why}`;
}

async function httpError(github: GithubConfig, response: Response): Promise<TurnoutError> {
  const said = await githubMessage(response);
  const status = response.status;
  const rateLimited =
    status === 429 ||
    (status === 403 &&
      (response.headers.get("x-ratelimit-remaining") === "0" || response.headers.has("retry-after")));
  const base = `GitHub answered ${status}${said ? ` (${said})` : ""} for ${github.repository}`;
  if (rateLimited || status >= 500 || status === 408) {
    return unavailable(github, rateLimited ? `${base}: rate limited` : base, status);
  }
  const hint =
    status === 401 || status === 403 || status === 404
      ? `: check github.repository and the token${github.tokenEnv ? ` (${github.tokenEnv})` : ""}`
      : "";
  return new TurnoutError("E_CONFIG", mask(github, base + hint), {
    repository: github.repository,
    status,
    retryable: false,
  });
}

/** GitHub's `{"message": …}`, short and single-line, for the log. */
async function githubMessage(response: Response): Promise<string | undefined> {
  try {
    const text = await response.text();
    const message = (JSON.parse(text) as { message?: unknown }).message;
    if (typeof message !== "string") return undefined;
    const line = message.replace(/\s+/g, " ").trim();
    return line.length > 200 ? `${line.slice(0, 200)}…` : line || undefined;
  } catch {
    return undefined;
  }
}

function unavailable(github: GithubConfig, message: string, status?: number): TurnoutError {
  return new TurnoutError("E_UNAVAILABLE", mask(github, message), {
    repository: github.repository,
    ...(status !== undefined ? { status } : {}),
    retryable: true,
  });
}

function safeOrigin(apiUrl: string): string {
  try {
    return new URL(apiUrl).origin;
  } catch {
    return "the configured api_url";
  }
}

/** Nothing we write should carry the token, but error texts come from elsewhere too. */
function mask(github: GithubConfig, message: string): string {
  return github.token && github.token.length >= 4 ? message.split(github.token).join("********") : message;
}
