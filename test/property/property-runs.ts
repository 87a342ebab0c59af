import type fc from "fast-check";

/**
 * How property tests run: a fixed seed by default, so CI runs are
 * reproducible and a failure can be replayed, and FC_SEED to explore other
 * inputs (`FC_SEED=123 npx vitest run test/property`). The seed is printed
 * once per test file; fast-check prints the seed and path of any failure.
 */
export const DEFAULT_SEED = 20_250_610;

function seedFromEnvironment(): number {
  const text = process.env["FC_SEED"];
  if (text === undefined || text === "") return DEFAULT_SEED;
  const seed = Number(text);
  if (!Number.isInteger(seed)) throw new Error(`FC_SEED must be an integer, got ${JSON.stringify(text)}`);
  return seed;
}

export const SEED = seedFromEnvironment();
console.info(`fast-check seed ${SEED} (set FC_SEED to change it)`);

/**
 * Options for one property: the seed above and a run count. Counts are kept
 * so that the whole property suite stays well under a minute on a loaded
 * 2-core machine: a few hundred runs for pure functions, a few dozen for
 * requests against a real server.
 */
export function runs<T = unknown>(numRuns: number): fc.Parameters<T> {
  return { seed: SEED, numRuns, verbose: 1 };
}
