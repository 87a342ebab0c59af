import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A stand-in for GitHub's REST API, just the part Turnout reads: the combined
 * status and the check runs of a commit, with GitHub's pagination (per_page,
 * page, Link header), bearer-token checks and error bodies. A path prefix makes
 * the same server pass for GitHub Enterprise (`/api/v3`).
 *
 * Like GitHub, the combined status lists only the newest status of each
 * context (newest first), and check runs are listed with `filter=latest` by
 * default (the newest run of each name); `filter=all` lists every run.
 */
export type FakeStatusState = "error" | "failure" | "pending" | "success";
export type FakeCheckRunStatus = "queued" | "in_progress" | "completed";

export interface FakeGithubOptions {
  /** When set, every request must carry `Authorization: Bearer <token>` (or `token <token>`). */
  token?: string;
  /** "" for github.com, "/api/v3" for GitHub Enterprise. */
  prefix?: string;
  /** Repositories (owner/name) that exist before anything is set on them. */
  repos?: string[];
}

export interface FakeRequest {
  method: string;
  /** Path and query as received, prefix included. */
  path: string;
  authorization: string | undefined;
  headers: IncomingHttpHeaders;
}

export interface FakeGithub {
  /** API base URL, prefix included: what goes into github.api_url. */
  url: string;
  /** Makes an owner/name exist (it also exists once anything is set on it). */
  addRepo(repo: string): void;
  /** Adds a status, which becomes the newest of its context. */
  setStatus(repo: string, sha: string, context: string, state: FakeStatusState, description?: string): void;
  /** Adds a check run (a new run each call, as a re-run is); returns its id. */
  setCheckRun(
    repo: string,
    sha: string,
    name: string,
    status: FakeCheckRunStatus,
    conclusion?: string | null,
  ): number;
  requests: FakeRequest[];
  /** The next `times` requests get `status` (502 by default: GitHub having a bad minute). */
  failNext(status?: number, times?: number): void;
  /** Stops the server; calling it again does nothing. */
  close(): Promise<void>;
}

interface Status {
  id: number;
  context: string;
  state: FakeStatusState;
  description: string | null;
  target_url: string;
  created_at: string;
  updated_at: string;
}

interface CheckRun {
  id: number;
  name: string;
  head_sha: string;
  status: FakeCheckRunStatus;
  conclusion: string | null;
  started_at: string;
  completed_at: string | null;
  html_url: string;
}

interface Commit {
  statuses: Status[];
  checkRuns: CheckRun[];
}

const ROUTE = /^\/repos\/([^/]+)\/([^/]+)\/commits\/([^/]+)\/(status|check-runs)$/;

export async function startFakeGithub(options: FakeGithubOptions = {}): Promise<FakeGithub> {
  const prefix = (options.prefix ?? "").replace(/\/+$/, "");
  // GitHub treats owner/name case-insensitively.
  const repos = new Map<string, Map<string, Commit>>();
  const requests: FakeRequest[] = [];
  const failures: { status: number; times: number } = { status: 502, times: 0 };
  let nextId = 1;
  let lastTime = 0;
  let origin = "";

  // Strictly increasing timestamps, so "newest" is well defined even within a millisecond.
  const stamp = () => {
    lastTime = Math.max(Date.now(), lastTime + 1);
    return new Date(lastTime).toISOString();
  };
  const repoOf = (repo: string) => {
    const key = repo.toLowerCase();
    const commits = repos.get(key) ?? new Map<string, Commit>();
    repos.set(key, commits);
    return commits;
  };
  const commitOf = (repo: string, sha: string) => {
    const commits = repoOf(repo);
    const commit = commits.get(sha) ?? { statuses: [], checkRuns: [] };
    commits.set(sha, commit);
    return commit;
  };
  for (const repo of options.repos ?? []) repoOf(repo);

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { "content-type": "application/json; charset=utf-8", ...headers });
    res.end(JSON.stringify(body));
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", origin);
    requests.push({
      method: req.method ?? "",
      path: url.pathname + url.search,
      authorization: req.headers.authorization,
      headers: req.headers,
    });
    if (failures.times > 0) {
      failures.times--;
      return send(res, failures.status, { message: "Server Error" });
    }
    if (options.token !== undefined) {
      const auth = req.headers.authorization ?? "";
      if (auth !== `Bearer ${options.token}` && auth !== `token ${options.token}`) {
        return send(res, 401, {
          message: "Bad credentials",
          documentation_url: "https://docs.github.com/rest",
        });
      }
    }
    const route = url.pathname.startsWith(`${prefix}/`)
      ? ROUTE.exec(url.pathname.slice(prefix.length))
      : null;
    if (req.method !== "GET" || !route) return send(res, 404, { message: "Not Found" });
    const [, owner, name, ref, what] = route as unknown as [string, string, string, string, string];
    const commits = repos.get(`${decodeURIComponent(owner)}/${decodeURIComponent(name)}`.toLowerCase());
    if (!commits) return send(res, 404, { message: "Not Found" });
    const sha = decodeURIComponent(ref);
    const commit = commits.get(sha) ?? { statuses: [], checkRuns: [] };

    const perPage = Math.min(100, Math.max(1, Number(url.searchParams.get("per_page") ?? 30) || 30));
    const page = Math.max(1, Number(url.searchParams.get("page") ?? 1) || 1);
    if (what === "status") {
      const latest = latestBy(commit.statuses, (s) => s.context);
      const states = latest.map((s) => s.state);
      const state =
        states.length === 0 || states.includes("pending")
          ? "pending"
          : states.some((s) => s === "failure" || s === "error")
            ? "failure"
            : "success";
      return send(
        res,
        200,
        { state, sha, total_count: latest.length, statuses: slice(latest, page, perPage) },
        linkHeader(url, page, perPage, latest.length),
      );
    }
    const runs =
      url.searchParams.get("filter") === "all"
        ? newestFirst(commit.checkRuns)
        : latestBy(commit.checkRuns, (r) => r.name);
    return send(
      res,
      200,
      { total_count: runs.length, check_runs: slice(runs, page, perPage) },
      linkHeader(url, page, perPage, runs.length),
    );
  };

  const server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url: origin + prefix,
    addRepo: (repo) => void repoOf(repo),
    setStatus(repo, sha, context, state, description) {
      const at = stamp();
      const id = nextId++;
      commitOf(repo, sha).statuses.push({
        id,
        context,
        state,
        description: description ?? null,
        target_url: `https://ci.example.com/${encodeURIComponent(context)}/${id}`,
        created_at: at,
        updated_at: at,
      });
    },
    setCheckRun(repo, sha, name, status, conclusion) {
      const at = stamp();
      const id = nextId++;
      commitOf(repo, sha).checkRuns.push({
        id,
        name,
        head_sha: sha,
        status,
        conclusion: status === "completed" ? (conclusion ?? "success") : null,
        started_at: at,
        completed_at: status === "completed" ? at : null,
        html_url: `https://github.example.com/${repo}/runs/${id}`,
      });
      return id;
    },
    requests,
    failNext(status = 502, times = 1) {
      failures.status = status;
      failures.times = times;
    },
    // Closing twice is fine: a test may close it early to play an unreachable GitHub.
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function newestFirst<T extends { id: number }>(items: T[]): T[] {
  return [...items].sort((a, b) => b.id - a.id);
}

/** The newest item of each key, newest first. */
function latestBy<T extends { id: number }>(items: T[], key: (item: T) => string): T[] {
  const seen = new Set<string>();
  return newestFirst(items).filter((item) => !seen.has(key(item)) && seen.add(key(item)));
}

function slice<T>(items: T[], page: number, perPage: number): T[] {
  return items.slice((page - 1) * perPage, page * perPage);
}

/** GitHub's Link header: absolute URLs to the next, last, first and prev pages, other parameters kept. */
function linkHeader(url: URL, page: number, perPage: number, total: number): Record<string, string> {
  const last = Math.max(1, Math.ceil(total / perPage));
  if (last === 1) return {};
  const at = (n: number) => {
    const target = new URL(url);
    target.searchParams.set("per_page", String(perPage));
    target.searchParams.set("page", String(n));
    return `<${target.href}>`;
  };
  const links: string[] = [];
  if (page > 1) links.push(`${at(page - 1)}; rel="prev"`);
  if (page < last) links.push(`${at(page + 1)}; rel="next"`, `${at(last)}; rel="last"`);
  if (page > 1) links.push(`${at(1)}; rel="first"`);
  return { link: links.join(", ") };
}
