import { describe, expect, it } from "vitest";
import { BACKENDS, useTestStore } from "../helpers/databases.js";

const SHA = "a".repeat(40);

describe.each(BACKENDS)("commit locks on %s", (backend) => {
  const store = useTestStore(backend);

  it("locks, relocks with a new reason, unlocks into history, and audits each", async () => {
    const locks = store().commitLocks;
    const first = await locks.lock("shop", SHA, "alice", "bad merge");
    expect(first).toMatchObject({
      app: "shop",
      sha: SHA,
      lockedBy: "alice",
      reason: "bad merge",
      unlockedAt: null,
    });
    const again = await locks.lock("shop", SHA, "alice", "bad merge, revert follows");
    expect(again).toMatchObject({ reason: "bad merge, revert follows", lockedAt: first.lockedAt });
    expect(await locks.inForce("shop")).toHaveLength(1);
    expect(await locks.inForce("other")).toEqual([]);

    const lifted = await locks.unlock("shop", SHA, "bob");
    expect(lifted).toMatchObject({ sha: SHA, unlockedBy: "bob" });
    expect(lifted!.unlockedAt).not.toBeNull();
    expect(await locks.unlock("shop", SHA, "bob")).toBeUndefined();
    expect(await locks.inForce("shop")).toEqual([]);
    // Locked again after an unlock: a new lock, the old one stays as history.
    await locks.lock("shop", SHA, "carol", "again");
    const history = await locks.list("shop", { history: true });
    expect(history.map((l) => [l.lockedBy, l.unlockedBy])).toEqual([
      ["carol", null],
      ["alice", "bob"],
    ]);
    const audit = await store().audit.list({ app: "shop", limit: 10 });
    expect(audit.map((e) => e.action).reverse()).toEqual([
      "commit.lock",
      "commit.lock",
      "commit.unlock",
      "commit.lock",
    ]);
  });

  it("does not let someone else take a lock over, even when both lock at once", async () => {
    const locks = store().commitLocks;
    const results = await Promise.allSettled([
      locks.lock("shop", SHA, "alice", "mine"),
      locks.lock("shop", SHA, "bob", "theirs"),
    ]);
    const won = results.filter((r) => r.status === "fulfilled");
    const lost = results.filter((r) => r.status === "rejected");
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect((lost[0] as PromiseRejectedResult).reason).toMatchObject({ code: "E_CONFLICT" });
    expect(await locks.inForce("shop")).toHaveLength(1);
  });
});
