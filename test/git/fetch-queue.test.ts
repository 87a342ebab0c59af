import { describe, expect, it } from "vitest";
import { FetchQueue } from "../../src/git/fetch-queue.js";

function deferred() {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe("FetchQueue", () => {
  it("runs one task at a time per key and lets late callers share the next run", async () => {
    const queue = new FetchQueue();
    const gates = [deferred(), deferred(), deferred()];
    let started = 0;
    let running = 0;
    let maxRunning = 0;
    const task = async () => {
      const gate = gates[started++]!;
      running++;
      maxRunning = Math.max(maxRunning, running);
      await gate.promise;
      running--;
    };
    const a = queue.run("k", task);
    const b = queue.run("k", task);
    const c = queue.run("k", task);
    expect(b).toBe(c);
    await Promise.resolve();
    expect(started).toBe(1);
    gates[0]!.resolve();
    await a;
    await new Promise((r) => setTimeout(r, 0));
    expect(started).toBe(2);
    gates[1]!.resolve();
    await b;
    expect(maxRunning).toBe(1);
    // Idle again: the next caller starts at once.
    const d = queue.run("k", task);
    await Promise.resolve();
    expect(started).toBe(3);
    gates[2]!.resolve();
    await d;
  });

  it("runs different keys in parallel and survives a failure", async () => {
    const queue = new FetchQueue();
    const gate = deferred();
    let started = 0;
    const slow = queue.run("a", async () => {
      started++;
      await gate.promise;
    });
    const other = queue.run("b", async () => {
      started++;
    });
    await other;
    expect(started).toBe(2);
    const next = queue.run("a", async () => {
      started++;
    });
    gate.reject(new Error("boom"));
    await expect(slow).rejects.toThrow("boom");
    await next;
    expect(started).toBe(3);
  });
});
