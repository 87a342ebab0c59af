import { describe, expect, it } from "vitest";
import { type LoadOptions, parseManifest } from "../../src/config/manifest-loader.js";

/**
 * Fields a manifest loaded although what they hold could never run: found by
 * the property tests (test/property/manifest.property.test.ts) and kept here
 * as plain cases. The rule they stand for: a manifest that loads is one that
 * can run, so every field is held at load to the check its value meets where
 * it is used, and the problem names the file, the line and the field.
 */
const FILE = "/etc/turnout.d/shop.yaml";
const LOAD: LoadOptions = {
  defaultTimeoutMs: 3_600_000,
  defaultIdleTimeoutMs: 1_800_000,
  environment: {},
  hostedReposDir: "/var/lib/turnout/hosted",
};

function problemsOf(text: string) {
  const result = parseManifest(FILE, text, LOAD);
  if ("app" in result) throw new Error("the manifest was accepted");
  return result.problems;
}

const shell = (lines: string) =>
  `repo: https://example.com/x.git
environments:
  staging:
    deploy:
      provider: shell
      command: [echo]
${lines}`;

const fleet = (lines: string) =>
  `repo: https://example.com/x.git
environments:
  staging:
    deploy:
      provider: fleet
${lines}`;

describe("manifest fields", () => {
  // A timer longer than 2^31-1 ms fires at once, and 0 ends at once: the deploy stopped as it started.
  it.each([
    ["timeout: 600h", "environments.staging.deploy.timeout", 7],
    ["idle_timeout: 0s", "environments.staging.deploy.idle_timeout", 7],
    ['timeout: "0"', "environments.staging.deploy.timeout", 7],
    ["timeout: 1000000000000", "environments.staging.deploy.timeout", 7],
  ])("refuses a duration no timer can wait (%s)", (line, field, lineNumber) => {
    expect(problemsOf(shell(`      ${line}\n`))).toEqual([
      expect.objectContaining({
        file: FILE,
        field,
        line: lineNumber,
        message: expect.stringContaining("596h"),
      }),
    ]);
  });

  it("takes 0 where it means no wait (bake, the pause between health tries)", () => {
    const result = parseManifest(
      FILE,
      fleet(
        "      hosts: { labels: { role: web } }\n" +
          "      strategy: { bake: 0s }\n" +
          "      health: { http: 'http://127.0.0.1:8080/', interval: 0 }\n",
      ),
      LOAD,
    );
    expect("app" in result).toBe(true);
  });

  // Refused only at deploy time (E_INVALID_REF), so a manifest with a hopeless branch looked fine.
  it.each(["main\u0000", "main[", "-x", "a..b", "HEAD:x", "feature/.hidden"])(
    "refuses branch %j as not a branch name, with its line",
    (branch) => {
      const text = `repo: https://example.com/x.git
environments:
  staging:
    branch: ${JSON.stringify(branch)}
    deploy: { provider: shell, command: [echo] }
`;
      expect(problemsOf(text)).toEqual([
        expect.objectContaining({
          field: "environments.staging.branch",
          line: 4,
          message: expect.stringContaining("not a branch name"),
        }),
      ]);
    },
  );

  // Agents' labels are held to the label rule; a manifest label outside it can only select nothing.
  it("refuses labels no host can have, naming the label", () => {
    const problems = problemsOf(fleet('      hosts: { labels: { "v1:2": web, role: "a b" } }\n'));
    expect(problems.map((p) => [p.field, p.line])).toEqual([
      ["environments.staging.deploy.hosts.labels.v1:2", 6],
      ["environments.staging.deploy.hosts.labels.role", 6],
    ]);
  });

  // ssh-validate.ts refused these before ssh started: the deploy failed, the manifest had loaded.
  it.each([
    ["address", "-v"],
    ["address", "-oProxyCommand"],
    ["user", "-oX"],
    ["key_file", "/a b"],
    ["key_file", "~/.ssh/id"],
    ["known_hosts_file", "%d/known_hosts"],
    ["root", "/srv/../etc"],
  ])("refuses an SSH host's %s %j at load", (field, value) => {
    const host = {
      name: "web-1",
      address: "127.0.0.1",
      user: "deploy",
      key_file: "/etc/turnout/key",
      known_hosts_file: "/etc/turnout/known_hosts",
      [field]: value,
    };
    const problems = problemsOf(fleet(`      ssh: [${JSON.stringify(host)}]\n`));
    expect(problems).toEqual([
      expect.objectContaining({ field: `environments.staging.deploy.ssh.0.${field}`, line: 6 }),
    ]);
  });

  // The agent and the SSH host fetch only http(s); any other URL failed on the host, at deploy time.
  it.each(["file:///etc/passwd", "javascript:alert(1)", "ftp://example.com/", "http://x/ -o /tmp/x"])(
    "refuses health URL %j at load",
    (url) => {
      const problems = problemsOf(
        fleet(`      hosts: { labels: { role: web } }\n      health: { http: ${JSON.stringify(url)} }\n`),
      );
      expect(problems).toEqual([
        expect.objectContaining({ field: "environments.staging.deploy.health.http", line: 7 }),
      ]);
    },
  );

  // A missing variable was reported with no line although its field is in the file.
  it("gives the line of the field that names a missing variable", () => {
    const text = `repo: https://example.com/x.git
webhook:
  secret_env: MISSING_VAR
environments:
  staging:
    deploy: { provider: shell, command: [echo] }
`;
    expect(problemsOf(text)).toEqual([
      expect.objectContaining({
        field: "webhook.secret_env",
        line: 3,
        message: expect.stringContaining("MISSING_VAR"),
      }),
    ]);
  });
});

describe("manifest parsing", () => {
  // Seen while running test/property/manifest.property.test.ts: a collection used as a key made the
  // YAML library print a warning (with the manifest's text) on the server's stderr at every parse.
  it("reports a collection used as a key as a problem, and prints nothing", async () => {
    const warnings: string[] = [];
    const listener = (warning: Error) => warnings.push(warning.message);
    process.on("warning", listener);
    try {
      const text =
        "repo: /srv/git/x.git\n? [a, b]\n: 1\nenvironments:\n  s:\n    deploy: {provider: shell, command: [echo]}\n";
      const result = parseManifest(FILE, text, LOAD);
      await new Promise((resolve) => setImmediate(resolve));
      expect("problems" in result && result.problems[0]?.message).toContain("[ a, b ]");
      expect(warnings).toEqual([]);
    } finally {
      process.off("warning", listener);
    }
  });
});

/** Fleet-wide SSH settings (issue 15): what every SSH host would repeat is said once, and a host may differ. */
describe("ssh_defaults", () => {
  const defaults = `      ssh_defaults:
        user: deploy
        key_file: /etc/turnout/keys/fleet
        known_hosts_file: /etc/turnout/fleet_known_hosts
        root: /srv/apps
        port: 2222
`;

  it("fills in what a host leaves out, and a host's own field wins", () => {
    const result = parseManifest(
      FILE,
      fleet(`${defaults}      ssh:
        - { name: web-1, address: 10.0.0.1 }
        - { name: web-2, address: 10.0.0.2, user: other, root: /opt/turnout, port: 22 }
`),
      LOAD,
    );
    if (!("app" in result)) throw new Error(JSON.stringify(result.problems));
    const deploy = result.app.environments["staging"]!.deploy;
    if (deploy.provider !== "fleet") throw new Error("not a fleet");
    expect(deploy.ssh).toEqual([
      {
        name: "web-1",
        address: "10.0.0.1",
        port: 2222,
        user: "deploy",
        keyFile: "/etc/turnout/keys/fleet",
        knownHostsFile: "/etc/turnout/fleet_known_hosts",
        root: "/srv/apps",
        labels: {},
      },
      {
        name: "web-2",
        address: "10.0.0.2",
        port: 22,
        user: "other",
        keyFile: "/etc/turnout/keys/fleet",
        knownHostsFile: "/etc/turnout/fleet_known_hosts",
        root: "/opt/turnout",
        labels: {},
      },
    ]);
  });

  it("still needs user, key_file and known_hosts_file from one or the other, naming the host's field", () => {
    const problems = problemsOf(
      fleet(`      ssh_defaults: { user: deploy }
      ssh:
        - { name: web-1, address: 10.0.0.1, key_file: /k }
`),
    );
    expect(problems).toEqual([
      expect.objectContaining({
        field: "environments.staging.deploy.ssh.0.known_hosts_file",
        message: expect.stringContaining("give it for this host or in ssh_defaults"),
      }),
    ]);
  });

  it("holds the defaults to the same rules as a host's fields", () => {
    const problems = problemsOf(
      fleet(`      ssh_defaults: { user: "-oX", key_file: /k, known_hosts_file: /h }
      ssh: [{ name: web-1, address: 10.0.0.1 }]
`),
    );
    expect(problems).toEqual([
      expect.objectContaining({ field: "environments.staging.deploy.ssh_defaults.user" }),
    ]);
  });
});
