import { execFile, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { parseCgiHeaders } from "../../src/http/git-http/cgi.js";

const execFileAsync = promisify(execFile);

/**
 * Real git repositories and a real smart-HTTP git server for tests. Git runs
 * hermetically here (no user or system gitconfig, fixed author), so tests do
 * not depend on the machine's configuration (commit signing, default branch…).
 */
export function fixtureGitEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith("GIT_")) env[key] = value;
  }
  return {
    ...env,
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_AUTHOR_NAME: "t",
    GIT_AUTHOR_EMAIL: "t@example.com",
    GIT_COMMITTER_NAME: "t",
    GIT_COMMITTER_EMAIL: "t@example.com",
    GIT_TERMINAL_PROMPT: "0",
  };
}

/** Runs git in `cwd` and returns its trimmed stdout. */
export async function git(cwd: string, ...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync("git", args, {
    cwd,
    env: fixtureGitEnv(),
    maxBuffer: 64 * 1024 * 1024,
  });
  return stdout.trim();
}

export interface TestRepo {
  /** The repository's working tree (usable as a local-path remote). */
  path: string;
  /** SHA of HEAD after the last commit made through this object ("" before any). */
  readonly head: string;
  /** Writes the files (null deletes one), commits everything, returns the new SHA. */
  commit(files: Record<string, string | null>, message?: string): Promise<string>;
  /** Creates (or moves) a branch at HEAD without switching to it. */
  branch(name: string): Promise<void>;
  /** Switches to a branch, creating it at HEAD if needed. */
  checkout(name: string): Promise<void>;
  /** Tags HEAD (or `target`); annotated tags get a message of their own. */
  tag(name: string, annotated?: boolean, target?: string): Promise<void>;
  /** Adds a submodule (url may be relative to this repo's remote/path) and commits; returns the SHA. */
  addSubmodule(url: string, subPath: string, message?: string): Promise<string>;
  git(...args: string[]): Promise<string>;
  /** Deletes the repository directory. */
  remove(): Promise<void>;
}

/** A new repository (branch `main`, no commits) in `dir`, or in a fresh temp directory. */
export async function makeRepo(dir?: string): Promise<TestRepo> {
  const repoPath = dir ?? mkdtempSync(path.join(tmpdir(), "turnout-repo-"));
  await mkdir(repoPath, { recursive: true });
  await git(repoPath, "init", "--quiet", "--initial-branch=main");
  let head = "";
  const run = (...args: string[]) => git(repoPath, ...args);
  // Add, commit and read HEAD in one process: each spawn from a test worker (a large
  // Node process) costs some 10 ms of CPU, and fixtures make thousands of commits per
  // suite run. Git's automatic maintenance after a commit (another two processes) is
  // off: a fixture repository never grows enough to need it.
  const commitAll = async (message: string) => {
    const { stdout } = await execFileAsync(
      "sh",
      [
        "-c",
        'git add --all && git commit --quiet --allow-empty -m "$1" && git rev-parse HEAD',
        "sh",
        message,
      ],
      {
        cwd: repoPath,
        env: {
          ...fixtureGitEnv(),
          GIT_CONFIG_COUNT: "1",
          GIT_CONFIG_KEY_0: "maintenance.auto",
          GIT_CONFIG_VALUE_0: "false",
        },
      },
    );
    head = stdout.trim();
    return head;
  };
  let counter = 0;
  return {
    path: repoPath,
    get head() {
      return head;
    },
    async commit(files, message) {
      for (const [name, content] of Object.entries(files)) {
        const file = path.join(repoPath, name);
        if (content === null) {
          await rm(file, { force: true });
        } else {
          await mkdir(path.dirname(file), { recursive: true });
          await writeFile(file, content);
        }
      }
      counter += 1;
      return commitAll(message ?? `commit ${counter}`);
    },
    async branch(name) {
      await run("branch", "--force", name);
    },
    async checkout(name) {
      const exists = await run("rev-parse", "--verify", "--quiet", `refs/heads/${name}`).then(
        () => true,
        () => false,
      );
      await run("checkout", "--quiet", ...(exists ? [name] : ["-b", name]));
      head = await run("rev-parse", "HEAD");
    },
    async tag(name, annotated = false, target = "HEAD") {
      await run("tag", "--force", ...(annotated ? ["-a", "-m", `tag ${name}`] : []), name, target);
    },
    async addSubmodule(url, subPath, message) {
      await run("-c", "protocol.file.allow=always", "submodule", "add", "--quiet", "--", url, subPath);
      return commitAll(message ?? `add submodule ${subPath}`);
    },
    git: run,
    remove: () => rm(repoPath, { recursive: true, force: true }),
  };
}

export interface GitHttpServer {
  /** Base URL without a trailing slash: `${url}/<repo dir under root>`. */
  url: string;
  /** Every request served: method, path, the status answered, and whether it carried credentials. */
  requests: Array<{ method: string; path: string; status: number; authorization: boolean }>;
  close(): Promise<void>;
}

/**
 * Git's smart-HTTP protocol over node:http, by running `git http-backend` as a
 * CGI program for each request. With a token, every request must carry
 * `Authorization: Basic` whose password is that token (any user name), as
 * GitHub-style hosts do; anything else gets 401.
 */
export async function startGitHttpServer(options: { root: string; token?: string }): Promise<GitHttpServer> {
  const requests: GitHttpServer["requests"] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    const record = (status: number) =>
      requests.push({
        method: req.method ?? "",
        path: url.pathname,
        status,
        authorization: req.headers.authorization !== undefined,
      });
    if (options.token !== undefined && basicPassword(req.headers.authorization) !== options.token) {
      record(401);
      res.writeHead(401, { "WWW-Authenticate": 'Basic realm="git"' });
      res.end();
      return;
    }
    const env: Record<string, string> = {
      ...fixtureGitEnv(),
      GIT_PROJECT_ROOT: options.root,
      GIT_HTTP_EXPORT_ALL: "1",
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.slice(1),
      REQUEST_METHOD: req.method ?? "GET",
      CONTENT_TYPE: req.headers["content-type"] ?? "",
      REMOTE_ADDR: req.socket.remoteAddress ?? "127.0.0.1",
    };
    if (req.headers["content-length"]) env["CONTENT_LENGTH"] = req.headers["content-length"];
    if (req.headers["content-encoding"]) env["HTTP_CONTENT_ENCODING"] = req.headers["content-encoding"];
    const protocol = req.headers["git-protocol"];
    if (typeof protocol === "string") env["HTTP_GIT_PROTOCOL"] = protocol;

    const child = spawn("git", ["http-backend"], { env, stdio: ["pipe", "pipe", "ignore"] });
    req.pipe(child.stdin);
    child.stdin.on("error", () => {});
    let head = Buffer.alloc(0);
    let headersSent = false;
    child.stdout.on("data", (chunk: Buffer) => {
      if (headersSent) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const crlf = head.indexOf("\r\n\r\n");
      const lf = head.indexOf("\n\n");
      const end = crlf >= 0 && (lf < 0 || crlf < lf) ? crlf : lf;
      if (end < 0) return;
      const sep = end === crlf ? 4 : 2;
      const { status, headers } = parseCgiHeaders(head.subarray(0, end).toString("latin1"));
      record(status);
      res.writeHead(status, headers);
      headersSent = true;
      res.write(head.subarray(end + sep));
    });
    child.on("close", () => {
      if (!headersSent) {
        record(500);
        res.writeHead(500);
      }
      res.end();
    });
    child.on("error", () => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function basicPassword(header: string | undefined): string | undefined {
  const match = /^Basic\s+(\S+)$/i.exec(header ?? "");
  if (!match?.[1]) return undefined;
  const decoded = Buffer.from(match[1], "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  return colon < 0 ? undefined : decoded.slice(colon + 1);
}
