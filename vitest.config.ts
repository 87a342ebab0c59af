import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Tests spawn real git, servers and shells: keep parallelism to the two cores CI has.
    maxWorkers: 2,
    pool: "forks",
    // Each worker process runs file after file without starting afresh: importing the
    // code under test again for each of ~180 files was a sixth of the suite's time.
    // Files must therefore leave no state behind them (restore spies and env; count
    // module-level counters from where the file began).
    isolate: false,
  },
});
