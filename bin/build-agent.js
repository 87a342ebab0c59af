#!/usr/bin/env node
// Bundles the host agent (src/agent-main.ts) into one file,
// dist/agent/turnout-agent.cjs, that runs with Node.js alone: no
// node_modules, no native modules, no compiler on the host. The server
// serves it at GET /turnout-agent.cjs (docs/fleets.md, "Installing the agent").
//
// CommonJS, not ESM: installed as /usr/local/bin/turnout-agent (no
// extension, no package.json beside it) Node reads a file as CommonJS, and a
// `.cjs` name keeps it CommonJS inside this package's "type": "module" too.
//
// bin/build-if-changed.js runs this when src/ or the lock file changed;
// alone: `node bin/build-agent.js`.
import { readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const AGENT_BUNDLE = path.join(ROOT, "dist", "agent", "turnout-agent.cjs");

export async function buildAgent() {
  const esbuild = path.join(ROOT, "node_modules", "esbuild", "lib", "main.js");
  if (!statSync(esbuild, { throwIfNoEntry: false })) {
    process.stderr.write(
      "turnout: cannot build the agent bundle: esbuild is not installed (run `npm install` with dev dependencies)\n",
    );
    return 1;
  }
  const { build } = await import(esbuild);
  const { version } = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8"));
  const result = await build({
    entryPoints: [path.join(ROOT, "src", "agent-main.ts")],
    outfile: AGENT_BUNDLE,
    bundle: true,
    platform: "node",
    // The oldest Node the package supports (package.json engines).
    target: "node20",
    format: "cjs",
    minifySyntax: true,
    minifyWhitespace: true,
    // Names kept: error classes are told apart by name, and stacks stay readable.
    keepNames: true,
    legalComments: "none",
    banner: { js: "#!/usr/bin/env node" },
    define: {
      TURNOUT_AGENT_VERSION: JSON.stringify(version),
      TURNOUT_AGENT_BUNDLE: "true",
      // No import.meta in CommonJS: version.ts is not reached (TURNOUT_AGENT_VERSION wins).
      "import.meta.url": "undefined",
      // ws's optional native helpers (bufferutil, utf-8-validate): never looked for, so a
      // native module somewhere on the host cannot be picked up; ws has JavaScript for both.
      "process.env.WS_NO_BUFFER_UTIL": '"1"',
      "process.env.WS_NO_UTF_8_VALIDATE": '"1"',
    },
    logLevel: "warning",
    metafile: true,
  });
  // A native module would need a compiler or a prebuilt binary on the host: refused here, not there.
  const native = Object.keys(result.metafile.inputs).filter((input) =>
    /\.node$|better-sqlite3|bindings/.test(input),
  );
  if (native.length > 0) {
    process.stderr.write(`turnout: the agent bundle would include native code: ${native.join(", ")}\n`);
    return 1;
  }
  return 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await buildAgent();
}
