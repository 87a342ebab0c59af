import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import {
  hostileString,
  markers,
  OBJECT_KEYS,
  optionPayloads,
  REVISION_SYNTAX,
  shellPayloads,
  VALID_LOOKING,
} from "./hostile-input.js";
import { expectNoServerError } from "./http-assertions.js";
import { runs } from "./property-runs.js";

/**
 * `POST /apps/:app/environments/:env/deploys {ref, params}` on a real server
 * with a real repository, with hostile and random refs and parameters: the
 * answer is 202 or a refusal in Turnout's format, never a 5xx; every
 * accepted deploy runs to success on a commit of the repository (a ref that
 * passes the checks must also deploy); and nothing a value holds ever runs
 * (each shell payload and option writes into a marker directory, which stays
 * empty). `staging` runs a bash script that prints the values it gets as
 * variables, `production` an argv command with {ref} in it.
 */
const MANIFEST = `repo: "{repo}"
environments:
  staging:
    deploy:
      provider: shell
      script: |
        echo "ref=$TURNOUT_REF sha=$TURNOUT_SHA"
        env | grep '^TURNOUT_PARAM_' || true
      timeout: 2m
  production:
    deploy:
      provider: shell
      command: [bash, deploy.sh, "{env}", "{sha}", "{ref}"]
      timeout: 2m
`;

const markerDir = mkdtempSync(path.join(tmpdir(), "turnout-prop-deploy-refs-"));
let t: TestTurnout;
const accepted: number[] = [];

beforeAll(async () => {
  t = await startTurnout({ manifest: MANIFEST, concurrency: 2 });
  // Something for every valid-looking ref to find: tags, branches with slashes, history to walk back.
  await t.repo.tag("v1");
  await t.repo.tag("v1.2", true);
  await t.repo.tag("v1.0.0");
  await t.repo.commit({ VERSION: "1.1.0\n" }, "second");
  await t.repo.branch("feature/x");
  await t.repo.branch("release/2024-06");
  await t.repo.commit({ VERSION: "1.2.0\n" }, "third");
}, 120_000);

afterAll(async () => {
  await t?.stop();
  rmSync(markerDir, { recursive: true, force: true });
});

const hostile = hostileString(markerDir);
const ref = fc.oneof(
  { weight: 4, arbitrary: hostile },
  { weight: 2, arbitrary: fc.constantFrom(...REVISION_SYNTAX, ...VALID_LOOKING) },
  { weight: 1, arbitrary: fc.constant(undefined) },
);
const paramName = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom("NOTE", "region", "_x", ...OBJECT_KEYS) },
  { weight: 1, arbitrary: hostile },
  { weight: 2, arbitrary: fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,8}$/) },
);
// Often no parameters at all: a refused parameter would hide what the ref does.
const paramValue = fc.oneof(
  fc.constantFrom(...shellPayloads(markerDir), ...optionPayloads(markerDir)),
  hostile,
);
const params = fc.option(
  fc.array(fc.tuple(paramName, paramValue), { maxLength: 2 }).map((entries) => Object.fromEntries(entries)),
  { nil: undefined, freq: 2 },
);

describe("deploy refs (property)", () => {
  it("any ref and params: 202 or a refusal in Turnout's format, never a 5xx, and nothing runs", async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom("staging", "production"), ref, params, async (env, value, values) => {
        // Sent as JSON text so that keys such as __proto__ travel as they would from any client.
        const body = JSON.stringify({ ...(value !== undefined ? { ref: value } : {}), params: values });
        const response = await fetch(`${t.url}/api/v1/apps/shop/environments/${env}/deploys`, {
          method: "POST",
          headers: { authorization: `Bearer ${t.adminToken}`, "content-type": "application/json" },
          body,
        });
        const answer = (await response.json()) as any;
        expectNoServerError(response.status, answer, `POST ${env} ${body}`);
        if (response.status === 202) accepted.push(answer.deploy.id);
        else expect(response.status).toBeGreaterThanOrEqual(400);
        expect(markers(markerDir)).toEqual([]);
      }),
      runs(50),
    );
    // The generator must reach both sides: accepted refs that deploy, and refusals.
    expect(accepted.length).toBeGreaterThan(3);
  });

  it("every accepted deploy succeeds on a commit of the repository, and nothing ran", async () => {
    const commits = new Set((await t.repo.git("rev-list", "--all")).split("\n"));
    for (const id of accepted) {
      const deploy = await t.waitForDeploy(id, 60_000);
      expect(deploy.status, `deploy ${id} of ${JSON.stringify(deploy.ref)}`).toBe("succeeded");
      expect(commits.has(deploy.sha), deploy.sha).toBe(true);
    }
    expect(markers(markerDir)).toEqual([]);
  });
});
