import { describe, expect, it } from "vitest";
import { type LoadOptions, parseManifest } from "../../src/config/manifest-loader.js";

/** deploy_windows, max_commits_per_deploy and min_interval as a manifest gives them, and their mistakes. */
const FILE = "/etc/turnout.d/shop.yaml";
const LOAD: LoadOptions = {
  defaultTimeoutMs: 3_600_000,
  defaultIdleTimeoutMs: 1_800_000,
  environment: {},
  hostedReposDir: "/var/lib/turnout/hosted",
};

const manifest = (lines: string) => `repo: https://example.com/x.git
environments:
  production:
    auto_deploy: true
${lines}
    deploy:
      provider: shell
      command: [echo]
`;

function parse(lines: string) {
  return parseManifest(FILE, manifest(lines), LOAD);
}

describe("deploy windows and limits in a manifest", () => {
  it("reads windows, the commit limit and the interval", () => {
    const result = parse(`    deploy_windows:
      timezone: Europe/Berlin
      allow:
        - { days: [mon-fri], from: "09:00", to: "17:00" }
        - { days: sat, from: "22:00", to: "02:00" }
    max_commits_per_deploy: 3
    min_interval: 10m`);
    if (!("app" in result)) throw new Error(JSON.stringify(result.problems));
    expect(result.app.environments["production"]).toMatchObject({
      windows: {
        timezone: "Europe/Berlin",
        allow: [
          { days: [1, 2, 3, 4, 5], from: 540, to: 1020 },
          { days: [6], from: 1320, to: 120 },
        ],
      },
      maxCommitsPerDeploy: 3,
      minIntervalMs: 600_000,
    });
  });

  it("defaults the zone to UTC and leaves environments without windows unguarded", () => {
    const result = parse(`    deploy_windows:
      allow: [{ days: daily, from: "00:00", to: "24:00" }]`);
    if (!("app" in result)) throw new Error(JSON.stringify(result.problems));
    expect(result.app.environments["production"]!.windows?.timezone).toBe("UTC");
    const plain = parse("");
    if (!("app" in plain)) throw new Error(JSON.stringify(plain.problems));
    expect(plain.app.environments["production"]!.windows).toBeUndefined();
  });

  it.each([
    [
      "    deploy_windows: { timezone: Mars/Olympus, allow: [{ days: mon, from: '09:00', to: '17:00' }] }",
      "unknown time zone",
    ],
    ["    deploy_windows: { allow: [{ days: [monday], from: '09:00', to: '17:00' }] }", "days are mon"],
    ["    deploy_windows: { allow: [{ days: mon, from: '9am', to: '17:00' }] }", 'a time like "09:00"'],
    ["    deploy_windows: { allow: [{ days: mon, from: '09:00', to: '09:00' }] }", "different from `from`"],
    ["    deploy_windows: { allow: [] }", "at least one window"],
    ["    deploy_windows: { allow: [{ days: mon, from: '09:00', to: '17:00', tz: x }] }", "tz"],
    ["    max_commits_per_deploy: 0", ""],
    ["    min_interval: soon", "duration"],
  ])("refuses %s, naming the field", (line, message) => {
    const result = parse(line);
    expect("app" in result).toBe(false);
    if ("app" in result) return;
    expect(result.problems[0]).toMatchObject({ file: FILE, message: expect.stringContaining(message) });
    expect(result.problems[0]!.field).toMatch(
      /^environments\.production\.(deploy_windows|max_commits|min_interval)/,
    );
  });
});
