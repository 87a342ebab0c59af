import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { DirConfigSource } from "../../src/config/dir-config-source.js";
import type { LoadOptions } from "../../src/config/manifest-loader.js";
import { ManifestParser } from "../../src/config/manifest-parser.js";
import { ensureBuilt } from "../helpers/built-cli.js";
import { markers } from "./hostile-input.js";
import { manifestArbitraries } from "./manifest-arbitraries.js";
import { runs } from "./property-runs.js";

/**
 * Generated manifests through the server's own path: a configuration
 * directory read by DirConfigSource, parsed in the worker thread. Whatever
 * the other files hold, a good app is served; every other app is either
 * served or reported with file and field; the source never throws and
 * nothing runs.
 */
const root = mkdtempSync(path.join(tmpdir(), "turnout-prop-manifest-dir-"));
const markerDir = path.join(root, "markers");
mkdirSync(markerDir);
const LOAD: LoadOptions = {
  defaultTimeoutMs: 60_000,
  defaultIdleTimeoutMs: 30_000,
  environment: { SECRET_A: "s3cret", TOKEN: "t0ken", A_1: "x" },
  hostedReposDir: path.join(root, "hosted"),
};
const GOOD = `repo: /srv/git/good.git
environments:
  staging:
    deploy:
      provider: shell
      command: [echo, "{sha}"]
`;
const APPS = ["alpha", "beta", "gamma"];

let parser: ManifestParser;
let round = 0;

beforeAll(async () => {
  await ensureBuilt(); // the parser's worker runs dist/
  parser = new ManifestParser({ load: LOAD });
}, 180_000);
afterAll(async () => {
  await parser?.close();
  rmSync(root, { recursive: true, force: true });
});

const arbitraries = manifestArbitraries(markerDir);
const file = fc.oneof(
  { weight: 3, arbitrary: arbitraries.manifest.map((input) => stringify(input)) },
  { weight: 2, arbitrary: arbitraries.spliced },
);

describe("manifests in a directory (property)", () => {
  it("a good app is served whatever the other files hold; the others are served or reported", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(file, { minLength: 1, maxLength: APPS.length }), async (texts) => {
        const dir = path.join(root, `d${round++}`);
        mkdirSync(dir);
        writeFileSync(path.join(dir, "good.yaml"), GOOD);
        for (const [i, text] of texts.entries()) writeFileSync(path.join(dir, `${APPS[i]}.yaml`), text);
        const source = await DirConfigSource.open(dir, { parser, startupWaitMs: 60_000 });
        await source.loaded();
        const status = source.status();
        const served = source.current().apps;
        expect(status.loading).toEqual([]);
        expect(served.get("good")?.environments["staging"]?.deploy).toMatchObject({
          command: ["echo", "{sha}"],
        });
        expect(status.problems.filter((p) => p.app === "good")).toEqual([]);
        for (const app of APPS.slice(0, texts.length)) {
          const problems = status.problems.filter((p) => p.app === app);
          expect(served.has(app) !== problems.length > 0, app).toBe(true);
          for (const problem of problems) {
            expect(problem.file).toBe(path.join(dir, `${app}.yaml`));
            expect(problem.field.length).toBeGreaterThan(0);
            expect(problem.message.length).toBeGreaterThan(0);
          }
        }
        rmSync(dir, { recursive: true, force: true });
      }),
      runs(25),
    );
    expect(markers(markerDir)).toEqual([]);
  });
});
