import { tmpdir } from "node:os";
import { describe, expect, it } from "vitest";
import { flushFilesystem } from "../../src/fs/flush-filesystem.js";

describe("flushFilesystem", () => {
  it("flushes the filesystem of an existing path with one syncfs, and says false where it cannot", async () => {
    // CI machines have coreutils' sync: the fast path must really be taken there, not silently skipped.
    expect(await flushFilesystem(tmpdir())).toBe(true);
    expect(await flushFilesystem("/nonexistent/turnout/path")).toBe(false);
    // A failure for one path does not turn the fast path off for the others.
    expect(await flushFilesystem(tmpdir())).toBe(true);
  });
});
