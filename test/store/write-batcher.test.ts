import { describe, expect, it } from "vitest";
import { WriteBatcher } from "../../src/store/write-batcher.js";

/**
 * Writes grouped by turn of the event loop and by the round trip of the
 * group before: what arrives while a group is written is the next group.
 */
describe("WriteBatcher", () => {
  it("writes a turn's items as one group, and what arrives during that write as the next", async () => {
    const groups: number[][] = [];
    let release: (() => void) | undefined;
    const batcher = new WriteBatcher<number>(async (items) => {
      groups.push(items);
      // The first group's round trip is held until the test lets it end.
      if (groups.length === 1) await new Promise<void>((resolve) => (release = resolve));
    });
    const first = [batcher.add(1), batcher.add(2)];
    await new Promise((resolve) => setImmediate(resolve));
    expect(groups).toEqual([[1, 2]]);
    // Three more, in different turns, while the first group is being written.
    const more: Promise<void>[] = [];
    for (const n of [3, 4, 5]) {
      more.push(batcher.add(n));
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(groups).toEqual([[1, 2]]);
    release!();
    await Promise.all([...first, ...more]);
    expect(groups).toEqual([
      [1, 2],
      [3, 4, 5],
    ]);
    expect(batcher.stats).toEqual({ groups: 2, items: 5 });
  });

  it("a failed group fails each of its items and none of the next group's", async () => {
    const batcher = new WriteBatcher<string>(async (items) => {
      if (items.includes("bad")) throw new Error("refused");
    });
    const a = batcher.add("ok");
    const b = batcher.add("bad");
    await expect(a).rejects.toThrow("refused");
    await expect(b).rejects.toThrow("refused");
    await expect(batcher.add("fine")).resolves.toBeUndefined();
  });

  it("never writes two groups at once", async () => {
    let writing = 0;
    let most = 0;
    const batcher = new WriteBatcher<number>(async () => {
      writing++;
      most = Math.max(most, writing);
      await new Promise((resolve) => setTimeout(resolve, 1));
      writing--;
    });
    const all: Promise<void>[] = [];
    for (let i = 0; i < 20; i++) {
      all.push(batcher.add(i));
      if (i % 3 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(all);
    expect(most).toBe(1);
    expect(batcher.stats.items).toBe(20);
  });
});
