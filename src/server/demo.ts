import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Deploy } from "../domain/deploy.js";
import type { Principal } from "../domain/roles.js";
import type { EngineApi } from "../engine/api.js";

/** The demo repository's two versions: `main` is at the second. */
export const DEMO_FIRST_VERSION = "v1.0.0";

/**
 * The demo of the quick start: when the configuration directory has no app
 * yet, create a local git repository and an app `demo` deploying it, so that
 * `turnout deploy demo staging --follow` works on a fresh clone within a
 * minute, with no network and nothing to configure.
 */
export function ensureDemo(dataDir: string, configDir: string): { created: boolean } {
  mkdirSync(configDir, { recursive: true });
  const hasApps = readdirSync(configDir).some((n) => /\.ya?ml$/.test(n));
  if (hasApps) return { created: false };
  const repo = path.join(dataDir, "demo", "repo");
  if (!existsSync(path.join(repo, ".git"))) createDemoRepo(repo);
  writeFileSync(path.join(configDir, "demo.yaml"), demoManifest(repo));
  return { created: true };
}

function createDemoRepo(repo: string): void {
  mkdirSync(repo, { recursive: true });
  const git = (...args: string[]) =>
    execFileSync("git", args, {
      cwd: repo,
      stdio: "ignore",
      env: {
        ...process.env,
        GIT_AUTHOR_NAME: "Turnout demo",
        GIT_AUTHOR_EMAIL: "demo@turnout.invalid",
        GIT_COMMITTER_NAME: "Turnout demo",
        GIT_COMMITTER_EMAIL: "demo@turnout.invalid",
      },
    });
  git("init", "--quiet", "--initial-branch=main");
  writeFileSync(path.join(repo, "VERSION"), "1.0.0\n");
  writeFileSync(path.join(repo, "index.html"), "<h1>Hello from the Turnout demo</h1>\n");
  writeFileSync(
    path.join(repo, "deploy.sh"),
    [
      "#!/usr/bin/env bash",
      "# Called by the demo's production environment as: bash deploy.sh ENV SHA",
      "set -euo pipefail",
      'echo "deploy.sh: releasing version $(cat VERSION) ($2) to $1"',
      'for host in web-1 web-2; do echo "  $host: switched"; sleep 0.5; done',
      "",
    ].join("\n"),
  );
  git("add", "--all");
  git("commit", "--quiet", "-m", "Demo app, version 1.0.0");
  git("tag", DEMO_FIRST_VERSION);
  writeFileSync(path.join(repo, "VERSION"), "1.1.0\n");
  git("commit", "--quiet", "-am", "Release 1.1.0");
  git("tag", "v1.1.0");
}

/**
 * Right after the demo is created, its staging gets version 1.0.0, so that
 * the quick start's own deploy (the branch head, 1.1.0) is a second release:
 * there is then something live to move from, a history of two, and a
 * release for `turnout rollback` to bring back. It is an ordinary deploy,
 * queued like any other: a deploy asked for meanwhile waits its turn.
 */
export async function releaseDemoFirstVersion(engine: EngineApi): Promise<Deploy> {
  const demo: Principal = { tokenId: 0, name: "turnout (demo)", role: "admin", apps: null };
  return engine.requestDeploy(demo, { app: "demo", env: "staging", ref: DEMO_FIRST_VERSION, trigger: "api" });
}

function demoManifest(repo: string): string {
  return `# The demo app, created by \`turnout server --demo\` (npm start) because this
# directory had no app. Edit it, or add your own <app>.yaml next to it; the
# server picks up changes within a few seconds.
repo: ${JSON.stringify(repo)}
environments:
  staging:
    branch: main
    deploy:
      provider: shell
      # A script gets the deploy's values only as TURNOUT_* variables.
      script: |
        echo "Deploying $TURNOUT_APP $(cat VERSION) ($TURNOUT_SHA) to $TURNOUT_ENV, deploy #$TURNOUT_DEPLOY_NUMBER by $TURNOUT_USER"
        for step in "installing dependencies" "running migrations" "warming caches" "switching traffic"; do
          echo "  - $step"
          sleep 1
        done
        echo "staging is now on $(cat VERSION)"
      timeout: 5m
      idle_timeout: 1m
  production:
    branch: main
    deploy:
      provider: shell
      # A command is an argv array: placeholders fill single arguments, no shell.
      command: [bash, deploy.sh, "{env}", "{sha}"]
      timeout: 10m
`;
}
