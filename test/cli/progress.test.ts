import { describe, expect, it } from "vitest";
import { Progress } from "../../src/cli/progress.js";
import { deployFixture } from "./fixtures.js";
import { Buffer as Capture } from "./helpers.js";

const now = () => Date.parse("2024-05-01T12:00:13.000Z");

describe("Progress", () => {
  it("on a terminal redraws one line in place and clears it before log text", () => {
    const err = new Capture();
    const progress = new Progress(err, { tty: true, now });
    progress.update(deployFixture());
    expect(err.text).toBe("\r\x1b[Kshop/staging#4 running (deploy) 12s");
    progress.beforeLog();
    expect(err.text.endsWith("\r\x1b[K")).toBe(true);
    progress.afterLog("partial line without newline");
    const length = err.text.length;
    // The cursor is mid-line on stdout: drawing now would overwrite the log.
    progress.update(deployFixture({ phase: "fetch" }));
    expect(err.text.length).toBe(length);
    progress.afterLog("\n");
    expect(err.text.endsWith("shop/staging#4 running (fetch) 12s")).toBe(true);
    progress.stop();
    expect(err.text.endsWith("\r\x1b[K")).toBe(true);
  });

  it("elsewhere prints a line only when the status or phase changes", () => {
    const err = new Capture();
    const progress = new Progress(err, { tty: false, now });
    progress.update(deployFixture({ status: "queued", phase: null, startedAt: null }));
    progress.update(deployFixture({ status: "queued", phase: null, startedAt: null }));
    progress.update(deployFixture({ phase: "fetch" }));
    progress.update(deployFixture({ phase: "fetch" }));
    progress.update(deployFixture({ phase: "deploy" }));
    progress.stop();
    expect(err.text).toBe(
      "shop/staging#4 queued 13s\nshop/staging#4 running (fetch) 12s\nshop/staging#4 running (deploy) 12s\n",
    );
  });
});
