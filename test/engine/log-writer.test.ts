import { beforeEach, describe, expect, it } from "vitest";
import { MASK, SecretMasker } from "../../src/domain/secrets.js";
import { EventHub } from "../../src/engine/event-hub.js";
import { LogWriter } from "../../src/engine/log-writer.js";
import type { Store } from "../../src/store/store.js";
import { useTestStore } from "../helpers/databases.js";
import { until } from "../helpers/wait.js";

/**
 * The log writer against a real store: what is stored (and so what SSE
 * followers, the CLI and the UI are ever sent) never holds a secret or a
 * piece of one, however the output arrives.
 */
const SECRET = "sk-very-secret-value";

describe("LogWriter", () => {
  const current = useTestStore("sqlite");
  let store: Store;
  let hub: EventHub;
  let nextId = 1;
  beforeEach(() => {
    store = current();
    hub = new EventHub();
  });

  const stored = async (id: number) => (await store.logs.read(id, 0)).chunks.map((c) => c.text).join("");
  const writer = (id: number, flushMs = 10_000, secrets = [SECRET]) =>
    new LogWriter(id, store.logs, hub, new SecretMasker(secrets), flushMs);

  it("masks a secret split across two writes, at every split point, with a flush in between", async () => {
    const text = `key=${SECRET};\n`;
    for (let cut = 0; cut <= text.length; cut++) {
      const id = nextId++;
      const log = writer(id);
      log.write(text.slice(0, cut));
      await log.flush();
      const early = await stored(id);
      log.write(text.slice(cut));
      await log.close();
      const all = await stored(id);
      expect(all, `cut at ${cut}`).toBe(`key=${MASK};\n`);
      // What a follower saw before the second write is where the log still begins.
      expect(all.startsWith(early), `cut at ${cut}`).toBe(true);
    }
  });

  it("masks a secret inside a 100 KB line written in 64 KiB pieces", async () => {
    const id = nextId++;
    const log = writer(id);
    const line = `${"x".repeat(65_530)}${SECRET}${"y".repeat(40_000)}\n`;
    for (let at = 0; at < line.length; at += 64 * 1024) log.write(line.slice(at, at + 64 * 1024));
    await log.close();
    const all = await stored(id);
    expect(all).toBe(`${"x".repeat(65_530)}${MASK}${"y".repeat(40_000)}\n`);
  });

  it("masks a secret that overlaps itself, written one character at a time", async () => {
    const id = nextId++;
    const log = writer(id, 10_000, ["abab"]);
    for (const char of "x abababab y\n") {
      log.write(char);
      await log.flush();
    }
    await log.close();
    expect(await stored(id)).toBe(`x ${MASK} y\n`);
  });

  it("stores a partial line within the flush interval, holding back only what may start a secret", async () => {
    const id = nextId++;
    const log = writer(id, 20);
    log.write("progress 10%");
    await until(async () => (await stored(id)) === "progress 10%", 5000, "the partial line stored");
    log.write("\rcopying with sk-very");
    await until(async () => (await stored(id)).endsWith("copying with "), 5000, "the text before the tail");
    expect(await stored(id)).toBe("progress 10%\rcopying with ");
    log.write("-secret-value done");
    await log.close();
    expect(await stored(id)).toBe(`progress 10%\rcopying with ${MASK} done\n`);
  });

  it("starts narration on a line of its own", async () => {
    const id = nextId++;
    const log = writer(id);
    log.write("no newline at the end");
    log.line("==> failed");
    await log.close();
    expect(await stored(id)).toBe("no newline at the end\n==> failed\n");
  });

  it("masks values added mid-deploy from then on", async () => {
    const id = nextId++;
    const log = writer(id);
    log.write("token tnt_learnt-late-value\n");
    log.addSecrets(["tnt_learnt-late-value"]);
    log.write("again tnt_learnt-late-value\n");
    await log.close();
    expect(await stored(id)).toBe(`token tnt_learnt-late-value\nagain ${MASK}\n`);
  });

  it("masks each channel on its own stream, so other output between two pieces changes nothing", async () => {
    const id = nextId++;
    const log = writer(id);
    const a = log.channel("[web-1] ");
    const b = log.channel("[web-2] ");
    a.line("key sk-very", true);
    b.line("hello");
    log.line("==> canary: web-1");
    a.line("-secret-value ok");
    await log.close();
    expect(await stored(id)).toBe(`[web-2] hello\n==> canary: web-1\n[web-1] key ${MASK} ok\n`);
  });

  it("cuts a channel's over-long line only after masking it", async () => {
    const id = nextId++;
    const log = writer(id);
    const host = log.channel("[web-1] ");
    // The secret straddles the 16 KiB point where the line is cut into pieces.
    const text = `${"x".repeat(16 * 1024 - 5)}${SECRET}${"y".repeat(20_000)}`;
    for (let at = 0; at < text.length; at += 1000) host.line(text.slice(at, at + 1000), true);
    host.line("");
    await log.close();
    const all = await stored(id);
    expect(all).not.toContain("sk-v");
    expect(all).not.toContain("value");
    const joined = all
      .split("\n")
      .filter(Boolean)
      .map((line) => {
        expect(line.startsWith("[web-1] ")).toBe(true);
        return line.slice("[web-1] ".length);
      })
      .join("");
    expect(joined).toBe(`${"x".repeat(16 * 1024 - 5)}${MASK}${"y".repeat(20_000)}`);
  });
});
