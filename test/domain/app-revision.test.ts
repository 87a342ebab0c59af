import { describe, expect, it } from "vitest";
import { parseManifest } from "../../src/config/manifest-loader.js";
import type { AppConfig, EnvironmentConfig } from "../../src/domain/app-config.js";
import { appRevision, environmentRevision } from "../../src/domain/app-revision.js";

/** An app as the manifest loader builds it: staging (shell) and production (shell). */
function app(edit: (a: AppConfig) => void = () => undefined): AppConfig {
  const shell = (command: string[]): EnvironmentConfig["deploy"] => ({
    provider: "shell",
    command,
    timeoutMs: 600_000,
    idleTimeoutMs: 300_000,
    env: { LEVEL: "info" },
  });
  const a: AppConfig = {
    name: "shop",
    repo: "https://git.example.com/acme/shop.git",
    auth: { tokenEnv: "GIT_TOKEN", token: "t0ken-1" },
    components: [
      {
        name: "app",
        repo: "https://git.example.com/acme/shop.git",
        auth: { tokenEnv: "GIT_TOKEN", token: "t0ken-1" },
        hosted: false,
      },
    ],
    pollIntervalMs: 60_000,
    webhook: { secret: "hook-secret", secretEnv: "SHOP_HOOK" },
    github: { apiUrl: "https://api.github.com", repository: "acme/shop" },
    secretEnv: { API_KEY: "s3cret-value" },
    environments: {
      staging: {
        name: "staging",
        branch: "main",
        branches: { app: "main" },
        autoDeploy: true,
        selfHeal: false,
        deploy: shell(["./deploy.sh", "{env}"]),
      },
      production: {
        name: "production",
        branch: "main",
        branches: { app: "main" },
        autoDeploy: false,
        selfHeal: false,
        deploy: shell(["./deploy.sh", "{env}", "--careful"]),
      },
    },
    source: "/etc/turnout/turnout.d/shop.yaml",
  };
  edit(a);
  return a;
}

const staging = (a: AppConfig) => environmentRevision(a, "staging")!;

describe("the per-app revision", () => {
  it("is pinned: changing what goes into it changes every app's revision, so it must be on purpose", () => {
    // If this fails, every auto_deploy environment will be redeployed once
    // after the upgrade that ships the change. Update it only knowingly, and
    // say so in the release notes.
    expect(staging(app())).toBe("app-80ae3f386fde3afefa77a47e9bdaf3aa");
  });

  it("is pinned for manifests as the loader builds them (a new defaulted setting changes it)", () => {
    const manifest = `repo: https://git.example.com/acme/shop.git
secret_env: [API_KEY]
environments:
  staging:
    auto_deploy: true
    deploy: { provider: shell, command: [./deploy.sh, "{env}"] }
  production:
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
      build: [make, dist]
      artifact: dist
      restart: [systemctl, restart, shop]
      strategy: { canary: 1, batch: 25% }
`;
    const loaded = parseManifest("/etc/turnout/turnout.d/shop.yaml", manifest, {
      defaultTimeoutMs: 3_600_000,
      defaultIdleTimeoutMs: 600_000,
      environment: { API_KEY: "s3cret-value" },
      hostedReposDir: "/var/lib/turnout/hosted",
    });
    if (!("app" in loaded)) throw new Error(JSON.stringify(loaded.problems));
    // As above: a change here redeploys every auto_deploy environment once after the upgrade.
    expect([
      environmentRevision(loaded.app, "staging"),
      environmentRevision(loaded.app, "production"),
    ]).toEqual(["app-236bde6e13cc1d6ff33bfc785f31df77", "app-3a4076ee7d4481839a8fc996b17fa57c"]);
  });

  it("changes with anything a deploy of the environment runs with", () => {
    const base = staging(app());
    const changes: [string, (a: AppConfig) => void][] = [
      ["the command", (a) => ((a.environments["staging"]!.deploy as any).command = ["./deploy.sh", "x"])],
      ["the deploy env", (a) => ((a.environments["staging"]!.deploy as any).env = { LEVEL: "debug" })],
      ["a timeout", (a) => ((a.environments["staging"]!.deploy as any).timeoutMs = 1)],
      ["a secret's value (rotation)", (a) => (a.secretEnv["API_KEY"] = "rotated")],
      ["a new secret", (a) => (a.secretEnv["OTHER"] = "v")],
      ["a component's repository", (a) => (a.components[0]!.repo = "https://git.example.com/acme/fork.git")],
      [
        "a new component",
        (a) => a.components.push({ name: "theme", repo: "/srv/theme", auth: {}, hosted: false }),
      ],
      ["the app's name", (a) => (a.name = "shop2")],
    ];
    for (const [what, edit] of changes) expect(staging(app(edit)), what).not.toBe(base);
  });

  it("does not change with anything else: other environments, branches, gates, polling, credentials, the file", () => {
    const base = staging(app());
    const unrelated: [string, (a: AppConfig) => void][] = [
      [
        "another environment's deploy",
        (a) => ((a.environments["production"]!.deploy as any).command = ["x"]),
      ],
      ["a new environment", (a) => (a.environments["qa"] = { ...a.environments["staging"]!, name: "qa" })],
      ["the branch", (a) => (a.environments["staging"]!.branch = "release")],
      ["checks", (a) => (a.environments["staging"]!.checks = { required: ["ci"], timeoutMs: 1, pollMs: 1 })],
      ["auto_deploy", (a) => (a.environments["staging"]!.autoDeploy = false)],
      ["poll_interval", (a) => (a.pollIntervalMs = 1)],
      ["the webhook secret", (a) => (a.webhook = { secret: "other", secretEnv: "X" })],
      ["github", (a) => delete a.github],
      ["the git token", (a) => (a.components[0]!.auth = { token: "rotated-token" })],
      ["the manifest's path", (a) => (a.source = "/elsewhere/shop.yml")],
      [
        "the order keys were written in",
        (a) => {
          const d = a.environments["staging"]!.deploy as any;
          a.environments["staging"]!.deploy = Object.fromEntries(Object.entries(d).reverse()) as any;
        },
      ],
    ];
    for (const [what, edit] of unrelated) expect(staging(app(edit)), what).toBe(base);
  });

  it("counts a hosted repository by name, not by the server's data directory", () => {
    const hosted = (dir: string) =>
      staging(
        app((a) => {
          a.components[0] = { name: "app", repo: `${dir}/hosted/shop.git`, auth: {}, hosted: true };
        }),
      );
    expect(hosted("/var/lib/turnout-1")).toBe(hosted("/var/lib/turnout-2"));
  });

  it("never holds a secret value", () => {
    const a = app();
    expect(appRevision(a, a.environments["staging"]!)).not.toContain("s3cret");
    expect(appRevision(a, a.environments["staging"]!)).toMatch(/^app-[0-9a-f]{32}$/);
  });
});
