import pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { HostCallMessage } from "../../src/store/host-calls.js";
import type { Store } from "../../src/store/store.js";
import { createTestDatabase, type TestDatabase } from "../helpers/databases.js";
import { until } from "../helpers/wait.js";

/**
 * Routed host calls in groups (docs/benchmarks.md, "Control plane at scale"):
 * many calls recorded in one statement wake each target once; outcomes
 * recorded together carry the calls' last output lines in their
 * notifications, or leave them to be read when they do not fit.
 */
describe("host calls in groups (PostgreSQL)", () => {
  let database: TestDatabase;
  let store: Store;
  let listener: pg.Client;
  let heard: HostCallMessage[];

  beforeEach(async () => {
    database = await createTestDatabase("postgres");
    store = await database.open();
    listener = new pg.Client({ connectionString: database.url });
    await listener.connect();
    heard = [];
    listener.on("notification", (n) => heard.push(JSON.parse(n.payload!) as HostCallMessage));
    await listener.query(`LISTEN ${await store.hostCalls.channel()}`);
  });

  afterEach(async () => {
    await listener.end();
    await store.close();
    await database.drop();
  });

  const call = (id: string, target: string) => ({
    id,
    deployId: 1,
    host: `host-${id}`,
    caller: "caller",
    target,
    op: "switchTo",
    args: JSON.stringify({ app: "shop", releaseId: "r1", slot: "current" }),
    timeoutMs: 1000,
  });

  it("records many calls in one statement and wakes each target once", async () => {
    const before = store.queries();
    await store.hostCalls.createMany([call("a", "s1"), call("b", "s2"), call("c", "s1")]);
    expect(store.queries() - before).toBe(1);
    for (const id of ["a", "b", "c"]) expect((await store.hostCalls.get(id))?.status).toBe("pending");
    await until(() => heard.length >= 2, 5000);
    await new Promise((r) => setTimeout(r, 200));
    expect(heard.map((m) => m.to).sort()).toEqual(["s1", "s2"]);
    expect(heard.every((m) => m.k === "call")).toBe(true);
  });

  it("records several calls' output lines in one statement and tells each caller", async () => {
    await store.hostCalls.createMany([call("a", "s1"), call("b", "s1")]);
    await until(() => heard.length >= 1, 5000);
    heard = [];
    const huge = "y".repeat(8000);
    const before = store.queries();
    await store.hostCalls.appendLinesMany([
      {
        callId: "a",
        caller: "one",
        firstSeq: 0,
        lines: [
          { line: "staging", continued: false },
          { line: "half", continued: true },
        ],
      },
      { callId: "b", caller: "two", firstSeq: 3, lines: [{ line: huge, continued: false }] },
      { callId: "a", caller: "one", firstSeq: 2, lines: [] },
    ]);
    expect(store.queries() - before).toBe(1);
    expect(await store.hostCalls.linesSince("a", 0)).toEqual([
      { seq: 0, line: "staging", continued: false },
      { seq: 1, line: "half", continued: true },
    ]);
    expect(await store.hostCalls.linesSince("b", 0)).toEqual([{ seq: 3, line: huge, continued: false }]);
    await until(() => heard.length >= 2, 5000);
    const byId = Object.fromEntries(heard.map((m) => [(m as { id: string }).id, m]));
    expect(byId["a"]).toEqual({
      to: "one",
      k: "log",
      id: "a",
      s: 0,
      l: [
        ["staging", 0],
        ["half", 1],
      ],
    });
    // Too big for a notification: the caller is told where to read from.
    expect(byId["b"]).toEqual({ to: "two", k: "log", id: "b", s: 3 });
  });

  it("records outcomes with their last lines in one statement; the notification carries what fits", async () => {
    await store.hostCalls.createMany([call("a", "s1"), call("b", "s1"), call("c", "s1")]);
    await until(() => heard.length >= 1, 5000);
    heard = [];
    const huge = "x".repeat(8000);
    const before = store.queries();
    await store.hostCalls.finishMany([
      {
        callId: "a",
        caller: "caller",
        outcome: { ok: true, result: { previous: null } },
        lines: 4,
        last: {
          firstSeq: 1,
          lines: [
            { line: "switched", continued: false },
            { line: "ok", continued: true },
            // An activation's progress report travels as a line of its own kind (2).
            { line: '{"previous":null}', continued: false, progress: true },
          ],
        },
      },
      {
        callId: "b",
        caller: "caller",
        outcome: { ok: false, code: "E_NOT_FOUND", message: "no such release" },
        lines: 1,
        last: { firstSeq: 0, lines: [{ line: huge, continued: false }] },
      },
      { callId: "c", caller: "caller", outcome: { ok: true, result: null }, lines: 0 },
    ]);
    expect(store.queries() - before).toBe(1);
    expect(await store.hostCalls.get("a")).toMatchObject({ status: "done", result: '{"previous":null}' });
    expect(await store.hostCalls.get("b")).toMatchObject({ status: "failed", error_code: "E_NOT_FOUND" });
    expect((await store.hostCalls.get("c"))?.status).toBe("done");
    expect(await store.hostCalls.linesSince("a", 0)).toEqual([
      { seq: 1, line: "switched", continued: false },
      { seq: 2, line: "ok", continued: true },
      { seq: 3, line: '{"previous":null}', continued: false, progress: true },
    ]);
    expect((await store.hostCalls.linesSince("b", 0))[0]?.line).toBe(huge);

    await until(() => heard.length >= 3, 5000);
    const byId = Object.fromEntries(heard.map((m) => [(m as { id: string }).id, m]));
    expect(byId["a"]).toMatchObject({
      k: "done",
      n: 4,
      s: 1,
      l: [
        ["switched", 0],
        ["ok", 1],
        ['{"previous":null}', 2],
      ],
      r: { ok: true, result: { previous: null } },
    });
    // Too big for a notification: the outcome goes, the line is read from the table.
    expect(byId["b"]).toMatchObject({ k: "done", n: 1, r: { ok: false, code: "E_NOT_FOUND" } });
    expect(byId["b"]).not.toHaveProperty("l");
    expect(byId["c"]).toMatchObject({ k: "done", n: 0, r: { ok: true, result: null } });

    // A settled call is not settled again (the row stays as the first outcome left it).
    heard = [];
    await store.hostCalls.finishMany([
      {
        callId: "a",
        caller: "caller",
        outcome: { ok: false, code: "E_INTERNAL", message: "late" },
        lines: 0,
      },
    ]);
    expect((await store.hostCalls.get("a"))?.status).toBe("done");
    await new Promise((r) => setTimeout(r, 300));
    expect(heard).toEqual([]);
  });
});
