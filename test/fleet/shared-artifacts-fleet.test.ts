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
 * A fleet deploy on one server of an artifact uploaded to another (two real
 * servers on one PostgreSQL database, a real agent connected to the first):
 * the deploying server finds the artifact whole in the shared store, and the
 * agent downloads its manifest and blobs from the server it is connected to,
 * which reads them through from the shared store: PostgreSQL itself, or an
 * S3 bucket (a local S3 server checking SigV4) whose index is in PostgreSQL.
 */
const manifest = `repo: "{repo}"
environments:
  production:
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
`;

for (const store of ["postgres", "s3"] as const) {
  describe(`fleet deploys with artifacts from another server (${store} store)`, () => {
    let database: TestDatabase;
    let a: TestTurnout;
    let b: TestTurnout;
    let work: string;
    let agent: AgentProcess | undefined;
    let s3: FakeS3 | undefined;

    const environment = (): Record<string, string> =>
      s3
        ? {
            TURNOUT_ARTIFACT_STORE: "s3",
            TURNOUT_S3_BUCKET: s3.bucket,
            TURNOUT_S3_ENDPOINT: s3.url,
            TURNOUT_S3_REGION: s3.region,
            TURNOUT_S3_ACCESS_KEY_ID: s3.accessKeyId,
            TURNOUT_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
          }
        : {};

    beforeAll(async () => {
      if (store === "s3") s3 = await startFakeS3();
      database = await createTestDatabase("postgres");
      const shared: TestDatabase = { ...database, drop: async () => undefined };
      a = await startTurnout({ database: shared, manifest, environment: environment() });
      work = await mkdtemp(path.join(tmpdir(), "turnout-shared-fleet-"));
      await mkdir(path.join(work, "b", "data"), { recursive: true });
      await writeFile(path.join(work, "b", "data", "admin-token"), `${a.adminToken}\n`);
      b = await startTurnout({
        reuse: { root: path.join(work, "b"), database: shared },
        manifest,
        environment: environment(),
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

    it("deploys on A an artifact uploaded to B; the agent on A gets every blob through A", async () => {
      const token = (
        await a.api("POST", "/api/v1/tokens", {
          name: "enroll",
          role: "agent",
          apps: ["shop"],
          labels: ["role=web"],
        })
      ).body.token;
      agent = startAgent({
        serverUrl: a.url,
        token,
        name: "web-1",
        root: path.join(work, "web-1"),
        labels: { role: "web" },
      });
      await waitForHosts(a.api, ["web-1"]);

      const tree = path.join(work, "tree");
      mkdirSync(path.join(tree, "bin"), { recursive: true });
      await writeFile(path.join(tree, "VERSION"), "from-b\n");
      await writeFile(path.join(tree, "big.bin"), Buffer.alloc(2 * 1024 * 1024 + 5, 7));
      await writeFile(path.join(tree, "bin", "run"), "#!/bin/sh\necho run\n", { mode: 0o755 });
      const tarball = execFileSync("tar", ["-czf", "-", "-C", tree, "."]);
      const upload = await fetch(`${b.url}/api/v1/apps/shop/artifacts`, {
        method: "POST",
        headers: { authorization: `Bearer ${b.adminToken}`, "content-type": "application/gzip" },
        body: tarball,
      });
      expect(upload.status).toBe(201);
      const digest = ((await upload.json()) as { artifact: { digest: string } }).artifact.digest;
      expect(await blobFiles(path.join(a.dataDir, "artifacts"))).not.toContain(digest);
      if (s3) expect(s3.objects.has(`turnout/blobs/${digest}`)).toBe(true);

      // Only A's workers run deploys here (routing a deploy to the server holding the agents is not this test's).
      await b.engine.stop();
      const res = await a.api("POST", "/api/v1/apps/shop/environments/production/deploys", {
        artifact: digest,
      });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      const done = await a.waitForDeploy(res.body.deploy.id, 90_000);
      const log = (await a.store.logs.read(done.id, 0)).chunks.map((c) => c.text).join("");
      expect(done.status, log).toBe("succeeded");
      expect(await currentOf(agent.root, "shop")).toBe(digest.slice(0, 16));
      expect(readFileSync(path.join(agent.root, "shop", "current", "VERSION"), "utf8")).toBe("from-b\n");
      expect(readFileSync(path.join(agent.root, "shop", "current", "big.bin")).length).toBe(
        2 * 1024 * 1024 + 5,
      );
      // A read it through from the shared store and keeps it.
      expect(await blobFiles(path.join(a.dataDir, "artifacts"))).toContain(digest);
      if (s3) {
        // From the bucket, every request signed.
        expect(s3.requests.filter((r) => r.operation === "GetObject").length).toBeGreaterThanOrEqual(4);
        expect(s3.requests.filter((r) => r.error)).toEqual([]);
      }
      await assertConsistent([agent.root]);
    });
  });
}
