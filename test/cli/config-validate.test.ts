import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { aliasBomb } from "../config/hostile-manifests.js";
import { runInProcess, tempDir } from "./helpers.js";

/**
 * `turnout config validate [DIR]`: the server's checks, offline, with no
 * server. Exit 0 and each app when all is well; exit 1 and every problem as
 * file:line field: message otherwise.
 */
const VALID = `repo: git@github.com:acme/shop.git
secret_env: [SHOP_KEY]
environments:
  staging:
    deploy: { provider: shell, command: [echo, "{sha}"] }
  production:
    deploy: { provider: shell, command: [echo, "{sha}"] }
`;

// `timeout` on line 6 is not a duration.
const BAD_FIELD = `repo: /srv/git/blog.git
environments:
  staging:
    deploy:
      provider: shell
      timeout: soon
      command: [echo]
`;

function configDir(files: Record<string, string>): { cwd: string; dir: string } {
  const cwd = tempDir("turnout-validate-");
  const dir = path.join(cwd, "turnout.d");
  mkdirSync(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return { cwd, dir };
}

describe("turnout config validate", () => {
  it("checks ./turnout.d by default and lists each app when all is well (exit 0)", async () => {
    const { cwd } = configDir({ "shop.yaml": VALID, "README.md": "not a manifest\n" });
    const result = await runInProcess(["config", "validate"], { cwd });
    expect(result).toEqual({
      code: 0,
      stdout: "ok  shop  turnout.d/shop.yaml  (staging, production)\n1 app, no problems\n",
      stderr: "",
    });
  });

  it("reports every problem with file, line and field, and exits 1", async () => {
    const { cwd } = configDir({
      "shop.yaml": VALID,
      "blog.yaml": BAD_FIELD,
      "bomb.yaml": aliasBomb(VALID),
      "evil.yaml": VALID.replace("git@github.com:acme/shop.git", "ext::sh -c id"),
      "Bad_Name.yml": VALID,
    });
    const result = await runInProcess(["config", "validate", "turnout.d"], { cwd });
    expect(result.code).toBe(1);
    expect(result.stdout.split("\n")).toEqual([
      "ok  shop  turnout.d/shop.yaml  (staging, production)",
      "turnout.d/Bad_Name.yml (file name): app name 'Bad_Name' must use lowercase letters, digits and '-'",
      "turnout.d/blog.yaml:6 environments.staging.deploy.timeout: a duration like 90s, 30m or 1h",
      expect.stringMatching(/^turnout\.d\/bomb\.yaml:12 \(yaml\): aliases expand to more than 10000 nodes/),
      expect.stringMatching(/^turnout\.d\/evil\.yaml:1 repo: uses a git transport helper/),
      "4 problems in 4 files",
      "",
    ]);
  });

  it("checks the variables manifests name only with --check-env", async () => {
    const { cwd, dir } = configDir({ "shop.yaml": VALID });
    expect((await runInProcess(["config", "validate", dir], { cwd })).code).toBe(0);
    const unset = await runInProcess(["config", "validate", dir, "--check-env"], { cwd });
    expect(unset.code).toBe(1);
    expect(unset.stdout).toContain(
      `${path.join(dir, "shop.yaml")}:2 secret_env: environment variable SHOP_KEY is not set`,
    );
    const set = await runInProcess(["config", "validate", dir, "--check-env"], {
      cwd,
      env: { SHOP_KEY: "k" },
    });
    expect(set.code).toBe(0);
  });

  it("--json prints the apps and the problems", async () => {
    const { cwd } = configDir({ "shop.yaml": VALID, "blog.yaml": BAD_FIELD });
    const result = await runInProcess(["config", "validate", "--json"], { cwd });
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout)).toEqual({
      apps: [{ name: "shop", file: "turnout.d/shop.yaml", environments: ["staging", "production"] }],
      problems: [
        {
          app: "blog",
          file: "turnout.d/blog.yaml",
          line: 6,
          field: "environments.staging.deploy.timeout",
          message: "a duration like 90s, 30m or 1h",
        },
      ],
    });
  });

  it("a directory that cannot be read is an error (exit 1)", async () => {
    const cwd = tempDir("turnout-validate-");
    const result = await runInProcess(["config", "validate", "nowhere"], { cwd });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe("error: cannot read the configuration directory nowhere: ENOENT\n");
  });
});
