#!/usr/bin/env node
// The `turnout` executable. The TypeScript sources are compiled to dist/ by
// `npm run build` (which `npm start` and `npm test` run first).
import { main } from "../dist/main.js";

main(process.argv.slice(2)).then(
  (code) => {
    if (typeof code === "number") process.exitCode = code;
  },
  (error) => {
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exitCode = 1;
  },
);
