import { execFile } from "node:child_process";
import { cpSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const scripts = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")).scripts as Record<
  string,
  string
>;

/** What a script runs before its last command (`npm start`: the build check before the server). */
function buildStep(script: string, last: string): string {
  const text = scripts[script]!;
  expect(text.endsWith(` && ${last}`), `${script}: ${text}`).toBe(true);
  return text.slice(0, -` && ${last}`.length);
}

/** `sh -c <package.json script>` in `cwd`, as npm runs it. */
function sh(command: string, cwd: string): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile("sh", ["-c", command], { cwd }, (error, _stdout, stderr) =>
      resolve({ code: error ? Number(error.code ?? 1) : 0, stderr }),
    );
  });
}

/**
 * `npm start` and `npm test` must not recompile when nothing changed (a
 * restart cost 49 s), yet must rebuild whatever did change. Run against a
 * small project that has this repository's build script and package.json
 * scripts, so a compile takes a second, not a minute.
 */
describe("build before start and test: only when something changed", () => {
  let dir: string;
  const main = () => path.join(dir, "dist", "main.js");
  const identity = (file: string) => {
    const s = statSync(file);
    return `${s.ino}:${s.mtimeMs}`;
  };

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "turnout-build-"));
    mkdirSync(path.join(dir, "bin"));
    cpSync(path.join(ROOT, "bin", "build-if-changed.js"), path.join(dir, "bin", "build-if-changed.js"));
    cpSync(path.join(ROOT, "package.json"), path.join(dir, "package.json"));
    symlinkSync(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"));
    const compilerOptions = JSON.parse(readFileSync(path.join(ROOT, "tsconfig.build.json"), "utf8"))
      .compilerOptions as Record<string, unknown>;
    // The real build options (incremental, where its state lives), minus the heavy type libraries.
    writeFileSync(
      path.join(dir, "tsconfig.build.json"),
      JSON.stringify({
        compilerOptions: {
          ...compilerOptions,
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          lib: ["ES2022"],
          types: [],
          strict: true,
          skipLibCheck: true,
        },
        include: ["src"],
      }),
    );
    mkdirSync(path.join(dir, "src", "lib"), { recursive: true });
    writeFileSync(path.join(dir, "src", "main.ts"), 'export { greeting } from "./lib/a.js";\n');
    writeFileSync(path.join(dir, "src", "lib", "a.ts"), 'export const greeting = "one";\n');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("compiles on the first start, not on the next start or test run, and again after a change", async () => {
    const start = buildStep("start", "node bin/turnout.js server --demo");
    const test = buildStep("test", "vitest run");

    const first = await sh(start, dir);
    expect(first, first.stderr).toMatchObject({ code: 0 });
    expect(first.stderr).toMatch(/compiling src\/ into dist\/ \(first build\)/);
    const built = identity(main());

    for (const command of [start, test, scripts["build"]!, start]) {
      const again = await sh(command, dir);
      expect(again).toEqual({ code: 0, stderr: "" });
      expect(identity(main())).toBe(built);
    }

    writeFileSync(path.join(dir, "src", "lib", "a.ts"), 'export const greeting = "two";\n');
    const changed = await sh(start, dir);
    expect(changed.stderr).toMatch(/1 changed: src\/lib\/a\.ts/);
    expect(readFileSync(path.join(dir, "dist", "lib", "a.js"), "utf8")).toContain('"two"');
  });

  it("removes the compiled file of a deleted source, and rebuilds a removed dist/", async () => {
    const start = buildStep("start", "node bin/turnout.js server --demo");
    expect((await sh(start, dir)).code).toBe(0);
    writeFileSync(path.join(dir, "src", "main.ts"), 'export const greeting = "inline";\n');
    rmSync(path.join(dir, "src", "lib", "a.ts"));
    expect((await sh(start, dir)).code).toBe(0);
    expect(statSync(path.join(dir, "dist", "lib", "a.js"), { throwIfNoEntry: false })).toBeUndefined();

    rmSync(path.join(dir, "dist"), { recursive: true });
    const rebuilt = await sh(start, dir);
    expect(rebuilt.code).toBe(0);
    expect(readFileSync(main(), "utf8")).toContain('"inline"');
  });

  it("builds at install (prepare), once when two builds start together", async () => {
    const [a, b] = await Promise.all([sh(scripts["prepare"]!, dir), sh(scripts["prepare"]!, dir)]);
    expect([a.code, b.code]).toEqual([0, 0]);
    expect((a.stderr + b.stderr).match(/compiling/g)).toHaveLength(1);
    expect(readFileSync(main(), "utf8")).toContain("./lib/a.js");
  });

  it("reports a type error and does not record the build as done", async () => {
    writeFileSync(path.join(dir, "src", "lib", "a.ts"), "export const greeting: number = 'one';\n");
    const failed = await sh(scripts["build"]!, dir);
    expect(failed.code).not.toBe(0);
    const retried = await sh(scripts["build"]!, dir);
    expect(retried.code).not.toBe(0);
    expect(retried.stderr).toMatch(/compiling/);
  });
});
