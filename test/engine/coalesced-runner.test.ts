import { describe, expect, it } from "vitest";
import { CoalescedRunner } from "../../src/engine/coalesced-runner.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("CoalescedRunner", () => {
  it("runs at once for a lone event, and folds a burst into one run after the interval", async () => {
    const starts: number[] = [];
    let release: (() => void) | undefined;
    const runner = new CoalescedRunner(
      async () => {
        starts.push(Date.now());
        await new Promise<void>((resolve) => {
          release = resolve;
        });
      },
      100,
      () => undefined,
    );
    runner.kick();
    expect(starts).toHaveLength(1);
    for (let i = 0; i < 50; i++) runner.kick();
    await sleep(20);
    expect(starts).toHaveLength(1); // still running: the burst waits
    release!();
    await sleep(30);
    expect(starts).toHaveLength(1); // within the interval
    await sleep(120);
    expect(starts).toHaveLength(2); // one run for all fifty
    expect(starts[1]! - starts[0]!).toBeGreaterThanOrEqual(95);
    release!();
    await sleep(150);
    expect(starts).toHaveLength(2); // nothing more was asked
    await runner.stop();
  });

  it("reports a failing run and keeps going; after stop nothing runs", async () => {
    const errors: unknown[] = [];
    let runs = 0;
    const runner = new CoalescedRunner(
      async () => {
        runs++;
        throw new Error("boom");
      },
      10,
      (error) => errors.push(error),
    );
    runner.kick();
    await sleep(30);
    runner.kick();
    await sleep(30);
    expect(runs).toBe(2);
    expect(errors.map((e) => (e as Error).message)).toEqual(["boom", "boom"]);
    await runner.stop();
    runner.kick();
    await sleep(30);
    expect(runs).toBe(2);
  });
});
