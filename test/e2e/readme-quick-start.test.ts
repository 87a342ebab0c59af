import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { type CliResult, ensureBuilt, runBuildCheck, turnout } from "../helpers/built-cli.js";
import { type ServerProcess, spawnServer } from "../helpers/server-process.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

beforeAll(ensureBuilt, 120_000);

/**
 * The README's quick start, command by command, read from README.md itself
 * (so the two cannot drift): the server started as `npm start` starts it,
 * in a fresh directory, then every command of the section in order. Each
 * must exit 0.
 */
describe("the README's quick start", () => {
  let root: string | undefined;
  let server: ServerProcess | undefined;

  afterEach(async () => {
    server?.child.kill("SIGTERM");
    await server?.exited;
    server = undefined;
    if (root) await rm(root, { recursive: true, force: true });
  });

  it("works step by step on a fresh clone", { timeout: 180_000 }, async () => {
    const [install, ...steps] = quickStartCommands(readFileSync(path.join(ROOT, "README.md"), "utf8"));
    // The first step is the one a new user types: install, which builds, then `npm start`.
    expect(install).toEqual([
      ["npm", "install"],
      ["npm", "start"],
    ]);
    expect(steps.length).toBeGreaterThanOrEqual(6);

    root = await mkdtemp(path.join(tmpdir(), "turnout-readme-"));
    // Not the default port 7700 (other tests, other servers): the server takes a free one and
    // the CLI is told where it is; the data directory is the default, ./.turnout of the cwd.
    const env = { PATH: process.env["PATH"], HOME: root, XDG_CONFIG_HOME: path.join(root, "xdg") };
    server = await npmStart(root, { ...env, TURNOUT_PORT: "0" });
    expect(server.output()).toContain("demo: created the app 'demo'");

    const results: { step: string; result: CliResult }[] = [];
    for (const line of steps) {
      for (const words of line) {
        const step = words.join(" ");
        // Only the CLI: a README step this test cannot run would go untested.
        expect(words.slice(0, 2), step).toEqual(["npx", "turnout"]);
        const result = await turnout(words.slice(2), {
          env: { ...env, TURNOUT_SERVER: server.url },
          cwd: root,
          timeoutMs: 120_000,
        });
        expect(result.code, `${step}\n${result.stdout}\n${result.stderr}`).toBe(0);
        results.push({ step, result });
      }
    }

    // And the tour says what the README says it shows.
    expect(server.output()).toMatch(/demo: deploying v1\.0\.0 to staging \(demo\/staging#1\)/);
    const output = (prefix: string) => {
      const found = results.find((r) => r.step.startsWith(prefix));
      expect(found, prefix).toBeDefined();
      return found!.result.stdout + found!.result.stderr;
    };
    expect(output("npx turnout deploy demo staging")).toContain("staging is now on 1.1.0");
    expect(output("npx turnout status")).toMatch(/demo/);
    expect(output("npx turnout history demo staging")).toMatch(/#2[\s\S]*#1/);
    expect(output("npx turnout rollback demo staging")).toContain("staging is now on 1.0.0");
  });
});

/** `npm start` as package.json says, in `cwd`: its build steps, then the server in the foreground. */
async function npmStart(cwd: string, env: Record<string, string | undefined>): Promise<ServerProcess> {
  const script = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")).scripts.start as string;
  const [commands] = shellCommands(script);
  const last = commands!.pop()!;
  for (const words of commands!) {
    // The build check (bin/build-if-changed.js): runBuildCheck runs the same script.
    expect(words[0], script).toBe("node");
    await runBuildCheck();
  }
  expect(last.slice(0, 2), script).toEqual(["node", "bin/turnout.js"]);
  return spawnServer([process.execPath, path.join(ROOT, last[1]!), ...last.slice(2)], { cwd, env });
}

/** The commands of the README's "## Quick start" section: per line, its `&&`-joined commands as words. */
function quickStartCommands(readme: string): string[][][] {
  const section = /^## Quick start\n([\s\S]*?)(?=^## )/m.exec(readme)?.[1];
  if (!section) throw new Error("README.md has no '## Quick start' section");
  const lines: string[][][] = [];
  for (const block of section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)) {
    for (const line of block[1]!.split("\n")) {
      const commands = shellCommands(line);
      if (commands.length > 0) lines.push(...commands);
    }
  }
  return lines;
}

/**
 * The words of one line of shell, split into `&&`-joined commands: plain
 * words, '…' and "…" quoting, a `#` comment to the end of the line. Anything
 * else (pipes, redirections, `$`, backslashes) is refused: the README's
 * quick start keeps to what this can read.
 */
function shellCommands(line: string): string[][][] {
  const commands: string[][] = [];
  let words: string[] = [];
  let i = 0;
  while (i < line.length) {
    const c = line[i]!;
    if (c === " " || c === "\t") {
      i++;
    } else if (c === "#") {
      break;
    } else if (line.startsWith("&&", i)) {
      commands.push(words);
      words = [];
      i += 2;
    } else {
      let word = "";
      while (i < line.length && line[i] !== " " && line[i] !== "\t") {
        const q = line[i]!;
        if (q === '"' || q === "'") {
          const end = line.indexOf(q, i + 1);
          if (end === -1) throw new Error(`unclosed quote in ${line}`);
          word += line.slice(i + 1, end);
          i = end + 1;
        } else if (/[|;<>$`\\&()]/.test(q)) {
          throw new Error(`the quick start test cannot run ${JSON.stringify(line)}`);
        } else {
          word += q;
          i++;
        }
      }
      words.push(word);
    }
  }
  if (words.length > 0) commands.push(words);
  return commands.length > 0 ? [commands] : [];
}
