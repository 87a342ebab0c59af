import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Tests spawn real git, servers and shells: keep parallelism to the two cores CI has.
    maxWorkers: 2,
    pool: "forks",
  },
});
