import { rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type RunningServer, startServer } from "../../src/server/start-server.js";
import { DEFAULT_MANIFEST, startTurnout, type TestTurnout } from "../helpers/turnout.js";

/** What `turnout server` prints when its configuration changes: which apps came, went and changed. */
describe("server log on configuration reloads", () => {
  let t: TestTurnout | undefined;
  let server: RunningServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
    await t?.stop();
    t = undefined;
  });

  it("says which apps were added, removed and changed, and the problems", async () => {
    t = await startTurnout();
    const { settings, configDir, repo } = t;
    await t.server.close();
    const lines: string[] = [];
    server = await startServer(settings, {
      print: (line) => lines.push(line),
      configReloadMs: 600_000,
      polling: false,
    });
    const reload = async () => {
      lines.length = 0;
      await server!.config.refresh();
      return lines;
    };
    const blog = `repo: "${repo.path}"\nenvironments:\n  prod:\n    deploy: { provider: shell, command: [echo, blog] }\n`;

    writeFileSync(path.join(configDir, "blog.yaml"), blog);
    expect(await reload()).toEqual([
      expect.stringMatching(/^config: reloaded dir-\S+ → dir-\S+: added blog$/),
    ]);

    writeFileSync(
      path.join(configDir, "shop.yaml"),
      DEFAULT_MANIFEST.replaceAll("{repo}", repo.path).replace("timeout: 2m", "timeout: 3m"),
    );
    rmSync(path.join(configDir, "blog.yaml"));
    expect(await reload()).toEqual([
      expect.stringMatching(/^config: reloaded dir-\S+ → dir-\S+: removed blog; changed shop$/),
    ]);

    writeFileSync(path.join(configDir, "broken.yaml"), "repo: [\n");
    const broken = await reload();
    expect(broken[0]).toMatch(/^config: reloaded dir-\S+ → dir-\S+: no app changed$/);
    expect(broken.some((l) => l.startsWith(`config: ${path.join(configDir, "broken.yaml")}`))).toBe(true);
  });
});
