#!/usr/bin/env node
// The `turnout` executable. The TypeScript sources are compiled to dist/ at
// install (`prepare`), and again by `npm start` / `npm test` only when they
// changed (bin/build-if-changed.js); the published package ships dist/ built.
import { main } from "../dist/main.js";

// `turnout logs … | head` closes the pipe early: that is the reader's choice, not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (error) => {
    if (error.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw error;
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    if (typeof code === "number") process.exitCode = code;
  },
  (error) => {
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exitCode = 1;
  },
);
