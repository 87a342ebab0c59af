import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blobFiles } from "../artifacts/helpers.js";
import { createTestDatabase, type TestDatabase } from "../helpers/databases.js";
import { type FakeS3, startFakeS3 } from "../helpers/fake-s3.js";
import {
  type AgentProcess,
  assertConsistent,
  currentOf,
  startAgent,
  waitForHosts,
} from "../helpers/fleet.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";

/**
 * The same as shared-artifacts-fleet.test.ts with the S3 artifact store (a
 * local S3 server checking SigV4): an artifact uploaded to A is deployed by B
 * to an agent connected to B, which downloads every blob from B, which reads
 * them through from the bucket (the database holds only their index).
 */
const manifest = `repo: "{repo}"
environments:
  production:
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
`;

let database: TestDatabase;
let a: TestTurnout;
let b: TestTurnout;
let work: string;
let agent: AgentProcess | undefined;
let s3: FakeS3;

function s3Environment(): Record<string, string> {
  return {
    TURNOUT_ARTIFACT_STORE: "s3",
    TURNOUT_S3_BUCKET: s3.bucket,
    TURNOUT_S3_ENDPOINT: s3.url,
    TURNOUT_S3_REGION: s3.region,
    TURNOUT_S3_ACCESS_KEY_ID: s3.accessKeyId,
    TURNOUT_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
  };
}

beforeAll(async () => {
  s3 = await startFakeS3();
  database = await createTestDatabase("postgres");
  const shared: TestDatabase = { ...database, drop: async () => undefined };
  a = await startTurnout({ database: shared, manifest, environment: s3Environment() });
  work = await mkdtemp(path.join(tmpdir(), "turnout-s3-fleet-"));
  await mkdir(path.join(work, "b", "data"), { recursive: true });
  await writeFile(path.join(work, "b", "data", "admin-token"), `${a.adminToken}\n`);
  b = await startTurnout({
    reuse: { root: path.join(work, "b"), database: shared },
    manifest,
    environment: s3Environment(),
  });
}, 180_000);

afterAll(async () => {
  await agent?.kill().catch(() => undefined);
  await a?.stop();
  await b?.stop();
  await database?.drop();
  await s3?.close();
  await rm(work, { recursive: true, force: true });
});

describe("fleet deploys with artifacts from another server, S3 store", () => {
  it("deploys on B an artifact uploaded to A; the agent on B gets every blob from the bucket through B", async () => {
    const token = (
      await b.api("POST", "/api/v1/tokens", {
        name: "enroll",
        role: "agent",
        apps: ["shop"],
        labels: ["role=web"],
      })
    ).body.token;
    agent = startAgent({
      serverUrl: b.url,
      token,
      name: "web-1",
      root: path.join(work, "web-1"),
      labels: { role: "web" },
    });
    await waitForHosts(b.api, ["web-1"]);

    const tree = path.join(work, "tree");
    mkdirSync(path.join(tree, "bin"), { recursive: true });
    await writeFile(path.join(tree, "VERSION"), "from-a\n");
    await writeFile(path.join(tree, "big.bin"), Buffer.alloc(2 * 1024 * 1024 + 5, 7));
    await writeFile(path.join(tree, "bin", "run"), "#!/bin/sh\necho run\n", { mode: 0o755 });
    const tarball = execFileSync("tar", ["-czf", "-", "-C", tree, "."]);
    const upload = await fetch(`${a.url}/api/v1/apps/shop/artifacts`, {
      method: "POST",
      headers: { authorization: `Bearer ${a.adminToken}`, "content-type": "application/gzip" },
      body: tarball,
    });
    expect(upload.status).toBe(201);
    const digest = ((await upload.json()) as { artifact: { digest: string } }).artifact.digest;
    expect(await blobFiles(path.join(b.dataDir, "artifacts"))).not.toContain(digest);
    expect(s3.objects.has(`turnout/blobs/${digest}`)).toBe(true);

    // Only B's workers run deploys here (routing a deploy to the server holding the agents is not this test's).
    await a.engine.stop();
    // B's data directory was made by hand (a second server): its copy of the app's repository needs a commit.
    await b.repo.commit({ VERSION: "1.0.0\n" }, "first");
    const res = await b.api("POST", "/api/v1/apps/shop/environments/production/deploys", {
      artifact: digest,
    });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const done = await b.waitForDeploy(res.body.deploy.id, 90_000);
    const log = (await b.store.logs.read(done.id, 0)).chunks.map((c) => c.text).join("");
    expect(done.status, log).toBe("succeeded");
    expect(await currentOf(agent.root, "shop")).toBe(digest.slice(0, 16));
    expect(readFileSync(path.join(agent.root, "shop", "current", "VERSION"), "utf8")).toBe("from-a\n");
    expect(readFileSync(path.join(agent.root, "shop", "current", "big.bin")).length).toBe(
      2 * 1024 * 1024 + 5,
    );
    // B read it through from the bucket and keeps it; every request to the bucket was signed.
    expect(await blobFiles(path.join(b.dataDir, "artifacts"))).toContain(digest);
    expect(s3.requests.filter((r) => r.operation === "GetObject").length).toBeGreaterThanOrEqual(4);
    expect(s3.requests.filter((r) => r.error)).toEqual([]);
    await assertConsistent([agent.root]);
  });
});
