// Helpers of the tests with two real servers sharing one artifact store
// (shared-store.test.ts on PostgreSQL, s3-shared-store.test.ts on S3).
import { expect } from "vitest";
import { raw } from "../engine/retention-fixtures.js";
import type { TestTurnout } from "../helpers/turnout.js";
import { packTar } from "./helpers.js";

/** Uploads a tar of `files` to `t` as app shop's artifact. */
export async function upload(t: TestTurnout, files: Record<string, string>): Promise<{ digest: string }> {
  const body = await packTar(Object.entries(files).map(([name, content]) => ({ name, content })));
  const res = await fetch(`${t.url}/api/v1/apps/shop/artifacts`, {
    method: "POST",
    headers: { authorization: `Bearer ${t.adminToken}`, "content-type": "application/x-tar" },
    body,
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { artifact: { digest: string } }).artifact;
}

/** A GET with the admin token, the body as bytes. */
export async function get(t: TestTurnout, urlPath: string, init: RequestInit = {}) {
  const res = await fetch(`${t.url}${urlPath}`, {
    ...init,
    headers: { authorization: `Bearer ${t.adminToken}`, ...(init.headers ?? {}) },
  });
  return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()) };
}

/** Makes an artifact look a week old to retention: its record and its shared blobs. */
export async function age(t: TestTurnout, digests: string[]): Promise<void> {
  const old = new Date(Date.now() - 7 * 24 * 3_600_000).toISOString();
  const db = raw(t.store);
  await db
    .updateTable("artifact_blobs")
    .set({ touched_at: old, created_at: old })
    .where("digest", "in", digests)
    .execute();
  await db
    .updateTable("artifacts")
    .set({ created_at: old, stored_at: old })
    .where("digest", "in", digests)
    .execute();
}
