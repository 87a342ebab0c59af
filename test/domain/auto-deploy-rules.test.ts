import { describe, expect, it } from "vitest";
import {
  type AutoFacts,
  type AutoWish,
  decideAutoDeploy,
  type FinishedFacts,
  type PendingFacts,
} from "../../src/domain/auto-deploy-rules.js";

const V1 = { app: "1".repeat(40) };
const V2 = { app: "2".repeat(40) };
const V3 = { app: "3".repeat(40) };
const T0 = "2026-01-01T00:00:00.000Z";
const T1 = "2026-01-01T00:01:00.000Z";
const T2 = "2026-01-01T00:02:00.000Z";

function facts(edit: Partial<AutoFacts> = {}): AutoFacts {
  return {
    locked: false,
    live: { components: V1, appRevision: "R1", rollback: null },
    desired: { appRevision: "R1", at: T0 },
    pending: [],
    finished: [{ status: "succeeded", components: V1, appRevision: "R1", createdAt: T0 }],
    ...edit,
  };
}
const wish = (edit: Partial<AutoWish> = {}): AutoWish => ({ components: V1, appRevision: "R1", ...edit });
const decided = (appRevision: string, at = T1) => ({ desired: { appRevision, at } });
const finished = (edit: Partial<FinishedFacts>): FinishedFacts => ({
  status: "succeeded",
  components: V1,
  appRevision: "R1",
  createdAt: T2,
  ...edit,
});
const pending = (edit: Partial<PendingFacts>): PendingFacts => ({
  id: 9,
  status: "queued",
  automatic: true,
  components: V1,
  appRevision: "R1",
  ...edit,
});

describe("auto-deploy rules", () => {
  it("leaves an environment that runs its desired state alone", () => {
    expect(decideAutoDeploy(facts(), wish())).toEqual({ action: "skip", why: "current" });
  });

  it("deploys new commits, and new settings on the same commits (once, by turnout (config))", () => {
    expect(decideAutoDeploy(facts(), wish({ components: V2 }))).toMatchObject({
      action: "create",
      components: V2,
      settingsOnly: false,
    });
    expect(decideAutoDeploy(facts(decided("R2")), wish({ appRevision: "R2" }))).toMatchObject({
      action: "create",
      components: V1,
      appRevision: "R2",
      settingsOnly: true,
    });
  });

  it("a locked environment gets nothing, whatever changed", () => {
    expect(
      decideAutoDeploy(
        facts({ locked: true, ...decided("R2") }),
        wish({ components: V2, appRevision: "R2" }),
      ),
    ).toEqual({ action: "skip", why: "locked" });
  });

  it("settings are reconciled only toward the decided ones, and only by a server that has them", () => {
    // No decision recorded: nothing to reconcile but commits.
    expect(decideAutoDeploy(facts({ desired: null }), wish({ appRevision: "R9" }))).toEqual({
      action: "skip",
      why: "current",
    });
    // This server still has the older settings: it cannot deploy the decided ones.
    expect(decideAutoDeploy(facts(decided("R2")), wish({ appRevision: "R1" }))).toEqual({
      action: "skip",
      why: "other-settings",
    });
    // A release recorded before per-app revisions: taken as the decided settings.
    expect(
      decideAutoDeploy(
        facts({ live: { components: V1, appRevision: null, rollback: null }, ...decided("R2") }),
        wish({ appRevision: "R2" }),
      ),
    ).toEqual({ action: "skip", why: "current" });
  });

  it("a decision is tried once: when a server with other settings ran it, the next decision settles it", () => {
    const ranElsewhere = facts({
      ...decided("R2"),
      finished: [finished({ appRevision: "R1", createdAt: T2 })],
    });
    expect(decideAutoDeploy(ranElsewhere, wish({ appRevision: "R2" }))).toEqual({
      action: "skip",
      why: "other-settings",
    });
    // A newer decision (the lagging server caught up) tries again.
    expect(
      decideAutoDeploy(
        { ...ranElsewhere, desired: { appRevision: "R2", at: "2026-01-01T00:03:00.000Z" } },
        wish({ appRevision: "R2" }),
      ),
    ).toMatchObject({ action: "create", settingsOnly: true });
  });

  it("queued or running deploys of the same commits are enough, unless one runs with older settings", () => {
    expect(decideAutoDeploy(facts({ pending: [pending({})] }), wish({ components: V1 }))).toMatchObject({
      action: "skip",
    });
    expect(
      decideAutoDeploy(
        facts({ ...decided("R2"), pending: [pending({ status: "queued", appRevision: "R1" })] }),
        wish({ appRevision: "R2" }),
      ),
    ).toEqual({ action: "skip", why: "queued" });
    expect(
      decideAutoDeploy(
        facts({ pending: [pending({ status: "running", components: V2 })] }),
        wish({ components: V2 }),
      ),
    ).toEqual({ action: "skip", why: "active" });
    expect(
      decideAutoDeploy(
        facts({ ...decided("R2"), pending: [pending({ status: "running", appRevision: "R1" })] }),
        wish({ appRevision: "R2" }),
      ),
    ).toMatchObject({ action: "create", settingsOnly: true });
    expect(
      decideAutoDeploy(
        facts({ ...decided("R2"), pending: [pending({ status: "running", appRevision: "R2" })] }),
        wish({ appRevision: "R2" }),
      ),
    ).toEqual({ action: "skip", why: "active" });
    // New commits running with the settings of before the decision: one more after them.
    expect(
      decideAutoDeploy(
        facts({
          ...decided("R2"),
          pending: [pending({ status: "running", components: V2, appRevision: "R1" })],
        }),
        wish({ components: V2, appRevision: "R2" }),
      ),
    ).toMatchObject({ action: "create", components: V2, settingsOnly: false });
  });

  it("coalesces into a queued automatic deploy, never into one someone asked for", () => {
    const queuedAuto = pending({ id: 4, components: V2, automatic: true });
    expect(decideAutoDeploy(facts({ pending: [queuedAuto] }), wish({ components: V3 }))).toMatchObject({
      action: "replace",
      deployId: 4,
      components: V3,
    });
    const queuedByHand = pending({ id: 5, components: V2, automatic: false });
    expect(decideAutoDeploy(facts({ pending: [queuedByHand] }), wish({ components: V3 }))).toMatchObject({
      action: "create",
    });
  });

  it("does not retry what failed with these settings, but does with new ones", () => {
    const failedV2 = facts({
      finished: [finished({ components: V2, status: "failed" }), ...facts().finished],
    });
    expect(decideAutoDeploy(failedV2, wish({ components: V2 }))).toEqual({ action: "skip", why: "failed" });
    expect(
      decideAutoDeploy({ ...failedV2, ...decided("R2") }, wish({ components: V2, appRevision: "R2" })),
    ).toMatchObject({ action: "create", components: V2 });
    // A failed settings redeploy is not retried by itself either.
    const failedSettings = facts({
      ...decided("R2"),
      finished: [finished({ status: "failed", appRevision: "R2" })],
    });
    expect(decideAutoDeploy(failedSettings, wish({ appRevision: "R2" }))).toEqual({
      action: "skip",
      why: "failed",
    });
    // Deploys recorded before per-app revisions count for any settings.
    const failedLegacy = facts({
      finished: [finished({ components: V2, status: "cancelled", appRevision: null })],
    });
    expect(decideAutoDeploy(failedLegacy, wish({ components: V2 }))).toEqual({
      action: "skip",
      why: "failed",
    });
  });

  it("rollbacks stick: neither the commits nor the settings they moved away from come back by themselves", () => {
    const rolledBack = facts({
      live: { components: V1, appRevision: "R1", rollback: { from: V2, at: T1 } },
      desired: { appRevision: "R2", at: T0 },
    });
    expect(decideAutoDeploy(rolledBack, wish({ components: V2, appRevision: "R2" }))).toEqual({
      action: "skip",
      why: "rolled-back",
    });
    // A newer commit goes ahead.
    expect(decideAutoDeploy(rolledBack, wish({ components: V3, appRevision: "R2" }))).toMatchObject({
      action: "create",
      components: V3,
      rolledBackFrom: null,
    });
    // A settings decision made after the rollback applies to the commits it holds, and keeps them held.
    expect(
      decideAutoDeploy(
        { ...rolledBack, desired: { appRevision: "R3", at: T2 } },
        wish({ components: V2, appRevision: "R3" }),
      ),
    ).toMatchObject({
      action: "create",
      components: V1,
      appRevision: "R3",
      settingsOnly: true,
      rolledBackFrom: V2,
    });
  });
});

describe("auto-deploy rules with deploy limits", () => {
  it("keeps a rollback sticky when max_commits_per_deploy stops short of the heads it moved away from", () => {
    const rolledBack = facts({ live: { components: V1, appRevision: "R1", rollback: { from: V3, at: T1 } } });
    // The limit would take V2 (between V1 and the heads V3): still the rollback holds.
    expect(decideAutoDeploy(rolledBack, wish({ components: V2, heads: V3 }))).toEqual({
      action: "skip",
      why: "rolled-back",
    });
  });

  it("waits min_interval after the last automatic deploy, and says until when", () => {
    const recent = facts({ lastAutomaticAt: T1 });
    expect(decideAutoDeploy(recent, wish({ components: V2, minIntervalMs: 600_000, now: T2 }))).toEqual({
      action: "skip",
      why: "interval",
      until: "2026-01-01T00:11:00.000Z",
    });
    expect(decideAutoDeploy(recent, wish({ components: V2, minIntervalMs: 60_000, now: T2 }))).toMatchObject({
      action: "create",
      components: V2,
    });
    // Replacing a queued automatic deploy adds none: not held.
    expect(
      decideAutoDeploy(
        facts({ lastAutomaticAt: T2, pending: [pending({ components: V2 })] }),
        wish({ components: V3, minIntervalMs: 600_000, now: T2 }),
      ),
    ).toMatchObject({ action: "replace", components: V3 });
  });
});
