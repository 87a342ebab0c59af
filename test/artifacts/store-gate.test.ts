import { setImmediate as turn } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { StoreGate } from "../../src/artifacts/store-gate.js";

/** A promise and the function that settles it. */
function latch(): { done: Promise<void>; open(): void } {
  let open!: () => void;
  const done = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { done, open };
}

describe("the artifact store's gate", () => {
  it("lets the collector in only when no shared section runs, and shared sections wait behind it", async () => {
    const gate = new StoreGate();
    const order: string[] = [];
    const first = latch();
    const writing = gate.runShared(async () => {
      order.push("write starts");
      await first.done;
      order.push("write ends");
    });
    const collecting = gate.runExclusive(async () => {
      order.push("collect");
    });
    const later = gate.runShared(async () => {
      order.push("later write");
    });
    await turn();
    await turn();
    expect(order).toEqual(["write starts"]);
    first.open();
    await Promise.all([writing, collecting, later]);
    expect(order).toEqual(["write starts", "write ends", "collect", "later write"]);
  });

  it("runs shared sections together, and nested ones at once even with a collector waiting", async () => {
    const gate = new StoreGate();
    const order: string[] = [];
    const hold = latch();
    const outer = gate.runShared(async () => {
      order.push("outer");
      await hold.done;
      // The collector is waiting now: a nested section must not wait behind it (it would wait forever).
      await gate.runShared(async () => {
        order.push("nested");
      });
    });
    const other = gate.runShared(async () => {
      order.push("other");
    });
    const collecting = gate.runExclusive(async () => {
      order.push("collect");
    });
    await turn();
    expect(order).toEqual(["outer", "other"]);
    hold.open();
    await Promise.all([outer, other, collecting]);
    expect(order).toEqual(["outer", "other", "nested", "collect"]);
  });

  it("refuses a collection started from inside a shared section, and frees the gate after a failure", async () => {
    const gate = new StoreGate();
    await expect(gate.runShared(() => gate.runExclusive(async () => undefined))).rejects.toThrow(
      /cannot start inside/,
    );
    await expect(
      gate.runExclusive(async () => {
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    await expect(gate.runShared(async () => "free")).resolves.toBe("free");
    await expect(gate.runExclusive(async () => "free too")).resolves.toBe("free too");
  });
});
