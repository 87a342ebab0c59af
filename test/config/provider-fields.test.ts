import { describe, expect, it } from "vitest";
import { type LoadOptions, parseManifest } from "../../src/config/manifest-loader.js";
import { appSecrets } from "../../src/domain/app-config.js";

/** The Heroku provider's fields and `allow_emergency`, as a manifest loads them. */
const FILE = "/etc/turnout.d/shop.yaml";
const KEY = "heroku-key-0123456789abcdef";
const load = (text: string, environment: Record<string, string> = { HEROKU_API_KEY: KEY }) =>
  parseManifest(FILE, text, {
    defaultTimeoutMs: 3_600_000,
    defaultIdleTimeoutMs: 1_800_000,
    environment,
    hostedReposDir: "/var/lib/turnout/hosted",
  } satisfies LoadOptions);

const heroku = (lines = "") => `repo: https://example.com/x.git
environments:
  production:
    deploy:
      provider: heroku
      app: shop-prod
      api_key_env: HEROKU_API_KEY
${lines}`;

const withEmergency = (value: string) => `repo: https://example.com/x.git
environments:
  production:
    allow_emergency: ${value}
    deploy: { provider: fleet, hosts: { labels: { role: web } } }
`;

describe("heroku fields", () => {
  it("keeps the key apart from the environment's settings (which releases record), and masks it", () => {
    const result = load(heroku("      timeout: 20m\n"));
    if (!("app" in result)) throw new Error(JSON.stringify(result.problems));
    const deploy = result.app.environments["production"]!.deploy;
    expect(deploy).toEqual({
      provider: "heroku",
      herokuApp: "shop-prod",
      apiKeyEnv: "HEROKU_API_KEY",
      apiUrl: "https://api.heroku.com",
      timeoutMs: 20 * 60_000,
      idleTimeoutMs: 1_800_000,
      env: {},
    });
    expect(JSON.stringify(result.app.environments)).not.toContain(KEY);
    expect(result.app.providerSecrets).toEqual({ HEROKU_API_KEY: KEY });
    expect(appSecrets(result.app)).toContain(KEY);
  });

  it("refuses a variable the server does not have, a key written into the manifest, and bad names or URLs", () => {
    const missing = load(heroku(), {});
    expect("problems" in missing && missing.problems).toEqual([
      expect.objectContaining({
        field: "environments.production.deploy.api_key_env",
        message: expect.stringContaining("HEROKU_API_KEY"),
      }),
    ]);
    for (const lines of [`      api_key: ${KEY}\n`, "      api_url: ftp://example.com\n"]) {
      const result = load(heroku(lines));
      expect("problems" in result, lines).toBe(true);
    }
    const badApp = load(heroku().replace("app: shop-prod", "app: Shop_Prod"));
    expect("problems" in badApp && badApp.problems[0]!.message).toContain("Heroku app name");
  });
});

describe("allow_emergency", () => {
  it.each([
    ["true", "admin"],
    ["admin", "admin"],
    ["deployer", "deployer"],
    ["false", undefined],
  ])("allow_emergency: %s → %s", (value, policy) => {
    const result = load(withEmergency(value));
    if (!("app" in result)) throw new Error(JSON.stringify(result.problems));
    expect(result.app.environments["production"]!.allowEmergency).toBe(policy);
  });

  it("refuses any other value", () => {
    const result = load(withEmergency("viewer"));
    expect("problems" in result && result.problems[0]!.field).toBe("environments.production.allow_emergency");
  });
});

describe("heroku and multi-repo apps", () => {
  it("refuses a heroku environment of an app with several repositories", () => {
    const result = load(`components:
  api: { repo: https://example.com/api.git }
  web: { repo: https://example.com/web.git }
environments:
  production:
    deploy: { provider: heroku, app: shop-prod, api_key_env: HEROKU_API_KEY }
`);
    expect("problems" in result && result.problems).toEqual([
      expect.objectContaining({
        field: "environments.production.deploy.provider",
        message: "the heroku provider deploys single-repository apps only",
      }),
    ]);
  });
});

describe("fleet path (an environment's own deploy path)", () => {
  const fleet = (path: string, root = "") => `repo: https://example.com/x.git
environments:
  staging:
    deploy:
      provider: fleet
      path: ${JSON.stringify(path)}
      ssh:
        - { name: box-1, address: 10.0.0.1, user: deploy, key_file: /k, known_hosts_file: /kh${root} }
`;

  it("loads an absolute, normalized path into the environment's fleet settings", () => {
    const result = load(fleet("/var/www/shop-staging"));
    if (!("app" in result)) throw new Error(JSON.stringify(result.problems));
    expect(result.app.environments["staging"]!.deploy).toMatchObject({
      provider: "fleet",
      path: "/var/www/shop-staging",
    });
    // Without one, none: the layout stays <root>/<app>.
    const plain = load(fleet("/x").replace('      path: "/x"\n', ""));
    if (!("app" in plain)) throw new Error(JSON.stringify(plain.problems));
    expect(plain.app.environments["staging"]!.deploy).not.toHaveProperty("path");
  });

  it.each([
    ["www/shop", "", "an absolute path"],
    ["/srv/../etc", "", "a normalized path"],
    ["/srv/./www", "", "a normalized path"],
    ["/srv//www", "", "a normalized path"],
    ["/srv/www/", "", "a normalized path"],
    ["/", "", "not '/' itself"],
    ["/srv/w w", "", "an absolute path"],
    ["/srv/$(id)", "", "an absolute path"],
    ["/srv/turnout/.turnout", "", "not inside /srv/turnout/.turnout (Turnout's own state) (host box-1)"],
    ["/opt/t/.turnout/blobs/x", ", root: /opt/t", "not inside /opt/t/.turnout"],
    ["/opt/t", ", root: /opt/t", "not the release root /opt/t itself"],
  ])("refuses path %s%s with the field and why", (path, root, why) => {
    const result = load(fleet(path, root));
    expect("problems" in result && result.problems).toEqual([
      expect.objectContaining({
        field: "environments.staging.deploy.path",
        line: 6,
        message: expect.stringContaining(why),
      }),
    ]);
  });
});
