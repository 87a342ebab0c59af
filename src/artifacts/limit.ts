/**
 * Runs `work` over `items` with at most `limit` in flight. Hashing a tree
 * file by file is bound by I/O latency, so a handful of reads in parallel
 * go much faster than one; thousands at once would exhaust file descriptors.
 * The first failure stops new work and is the one reported.
 */
export async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  work: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed = false;
  let failure: unknown;
  const lane = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const index = next++;
      try {
        await work(items[index]!, index);
      } catch (error) {
        if (!failed) failure = error;
        failed = true;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  if (failed) throw failure;
}
