import { execFile } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const git = (...args: string[]) => promisify(execFile)("git", ["-C", ROOT, ...args]);

/** Local measurements (`node --cpu-prof`, `--heap-prof`) are never part of the tree. */
describe("the repository", () => {
  it("tracks no CPU or heap profile, and ignores new ones wherever they are written", async () => {
    const { stdout } = await git("ls-files", "--", "*.cpuprofile", "*.heapprofile");
    expect(stdout).toBe("");
    const candidates = ["CPU.20261122.105217.9005.0.001.cpuprofile", "bench/Heap.1.heapprofile"];
    const ignored = await git("check-ignore", "--no-index", "--", ...candidates);
    expect(ignored.stdout.trim().split("\n")).toEqual(candidates);
  });
});
