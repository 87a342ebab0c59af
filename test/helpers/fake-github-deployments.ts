import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A stand-in for GitHub's Deployments REST API (docs.github.com/rest/deployments):
 * POST /repos/{owner}/{repo}/deployments, GET the same (filtered by sha and
 * environment), POST …/deployments/{id}/statuses. It checks what Turnout
 * sends: the token, JSON bodies, the fields GitHub requires or Turnout
 * promises (auto_merge false, required_contexts [], a log_url), states
 * GitHub knows, descriptions of at most 140 characters. Like GitHub, a
 * success status with auto_inactive (the default) marks the environment's
 * earlier successful deployments inactive. A path prefix passes for GitHub
 * Enterprise (`/api/v3`).
 */
export interface FakeDeployment {
  id: number;
  repo: string;
  ref: string;
  sha: string;
  environment: string;
  payload: unknown;
  description: string | null;
  body: Record<string, unknown>;
  statuses: Array<{
    state: string;
    log_url?: string;
    environment_url?: string;
    description?: string;
    auto?: true;
  }>;
}

export interface FakeGithubDeployments {
  /** The API base (what the channel's api_url is). */
  url: string;
  deployments: FakeDeployment[];
  /** Every request, in order: `METHOD path`. */
  calls: string[];
  /** What was wrong with requests (asserted empty by tests). */
  problems: string[];
  /** Makes a deployment as someone else would (chat, CI); returns it. */
  addDeployment(repo: string, sha: string, environment: string): FakeDeployment;
  /** The next `times` requests get `status`; `lose` answers nothing useful after doing the work (a lost answer). */
  failNext(status: number, times?: number, options?: { afterWork?: boolean }): void;
  close(): Promise<void>;
}

const STATES = new Set(["error", "failure", "inactive", "in_progress", "queued", "pending", "success"]);

export async function startFakeGithubDeployments(options: {
  token: string;
  prefix?: string;
  repos: string[];
}): Promise<FakeGithubDeployments> {
  const prefix = options.prefix ?? "";
  const deployments: FakeDeployment[] = [];
  const calls: string[] = [];
  const problems: string[] = [];
  let nextId = 1000;
  let failures: { status: number; times: number; afterWork: boolean } | undefined;

  const addDeployment = (
    repo: string,
    sha: string,
    environment: string,
    body: Record<string, unknown> = {},
  ) => {
    const deployment: FakeDeployment = {
      id: nextId++,
      repo,
      ref: String(body["ref"] ?? sha),
      sha,
      environment,
      payload: body["payload"] ?? {},
      description: typeof body["description"] === "string" ? body["description"] : null,
      body,
      statuses: [],
    };
    deployments.push(deployment);
    return deployment;
  };

  const handle = (method: string, url: URL, body: Record<string, unknown>): [number, unknown] => {
    const path = url.pathname.slice(prefix.length);
    const list = /^\/repos\/([^/]+\/[^/]+)\/deployments$/.exec(path);
    const statuses = /^\/repos\/([^/]+\/[^/]+)\/deployments\/([0-9]+)\/statuses$/.exec(path);
    const repo = (list ?? statuses)?.[1];
    if (!repo || !options.repos.includes(repo)) return [404, { message: "Not Found" }];
    if (list && method === "POST") {
      if (typeof body["ref"] !== "string") problems.push("deployment without ref");
      if (body["auto_merge"] !== false) problems.push(`auto_merge ${JSON.stringify(body["auto_merge"])}`);
      if (!Array.isArray(body["required_contexts"]) || body["required_contexts"].length !== 0) {
        problems.push(`required_contexts ${JSON.stringify(body["required_contexts"])}`);
      }
      if (typeof body["environment"] !== "string") problems.push("deployment without environment");
      if (typeof body["description"] === "string" && body["description"].length > 140) {
        problems.push("deployment description over 140 characters");
      }
      if (!/^[0-9a-f]{40}$/.test(String(body["ref"]))) {
        return [422, { message: "No ref found for: " + String(body["ref"]) }];
      }
      const created = addDeployment(repo, String(body["ref"]), String(body["environment"]), body);
      return [201, json(created)];
    }
    if (list && method === "GET") {
      const sha = url.searchParams.get("sha");
      const environment = url.searchParams.get("environment");
      return [
        200,
        deployments
          .filter(
            (d) =>
              d.repo === repo &&
              (sha === null || d.sha === sha) &&
              (environment === null || d.environment === environment),
          )
          .reverse()
          .map(json),
      ];
    }
    if (statuses && method === "POST") {
      const deployment = deployments.find((d) => d.id === Number(statuses[2]) && d.repo === repo);
      if (!deployment) return [404, { message: "Not Found" }];
      const state = String(body["state"]);
      if (!STATES.has(state)) return [422, { message: `invalid state ${state}` }];
      for (const key of ["log_url", "environment_url"]) {
        if (body[key] !== undefined && !/^https?:\/\//.test(String(body[key])))
          problems.push(`${key} not a URL`);
      }
      if (typeof body["description"] === "string" && body["description"].length > 140) {
        problems.push("status description over 140 characters");
      }
      deployment.statuses.push({
        state,
        ...(typeof body["log_url"] === "string" ? { log_url: body["log_url"] } : {}),
        ...(typeof body["environment_url"] === "string" ? { environment_url: body["environment_url"] } : {}),
        ...(typeof body["description"] === "string" ? { description: body["description"] } : {}),
      });
      if (state === "success" && body["auto_inactive"] !== false) {
        for (const other of deployments) {
          const last = other.statuses.at(-1)?.state;
          if (
            other !== deployment &&
            other.repo === repo &&
            other.environment === deployment.environment &&
            last === "success"
          ) {
            other.statuses.push({ state: "inactive", auto: true });
          }
        }
      }
      return [
        201,
        { id: nextId++, state, url: `${prefix}/repos/${repo}/deployments/${deployment.id}/statuses` },
      ];
    }
    return [404, { message: "Not Found" }];
  };

  const server = createServer(async (request: IncomingMessage, response: ServerResponse) => {
    const text = await readBody(request);
    const method = request.method ?? "GET";
    const url = new URL(request.url ?? "/", "http://localhost");
    calls.push(`${method} ${url.pathname}`);
    const send = (status: number, value: unknown) => {
      response.writeHead(status, { "content-type": "application/json; charset=utf-8" });
      response.end(JSON.stringify(value));
    };
    const auth = request.headers.authorization ?? "";
    if (auth !== `token ${options.token}` && auth !== `Bearer ${options.token}`) {
      return send(401, { message: "Bad credentials" });
    }
    if (!/json/.test(request.headers.accept ?? "")) problems.push(`accept ${request.headers.accept}`);
    if (!url.pathname.startsWith(`${prefix}/`)) return send(404, { message: "Not Found" });
    let body: Record<string, unknown> = {};
    if (method === "POST") {
      if (!/^application\/json/.test(request.headers["content-type"] ?? "")) {
        problems.push(`content-type ${request.headers["content-type"]}`);
      }
      try {
        body = JSON.parse(text);
      } catch {
        return send(400, { message: "Problems parsing JSON" });
      }
    }
    if (failures && failures.times > 0) {
      failures.times -= 1;
      if (failures.afterWork) handle(method, url, body);
      return send(failures.status, { message: "Server Error" });
    }
    const [status, value] = handle(method, url, body);
    send(status, value);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${prefix}`;
  let closed: Promise<void> | undefined;
  return {
    url,
    deployments,
    calls,
    problems,
    addDeployment: (repo, sha, environment) => addDeployment(repo, sha, environment, { payload: {} }),
    failNext(status, times = 1, opts = {}) {
      failures = { status, times, afterWork: opts.afterWork === true };
    },
    close() {
      closed ??= new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
      return closed;
    },
  };
}

function json(d: FakeDeployment) {
  return {
    id: d.id,
    sha: d.sha,
    ref: d.ref,
    environment: d.environment,
    payload: d.payload,
    description: d.description,
    task: "deploy",
    creator: { login: "turnout-bot" },
  };
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    request.on("error", reject);
  });
}
