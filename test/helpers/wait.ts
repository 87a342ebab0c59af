/**
 * Polls until `check` holds; fails the test with `what` after `timeoutMs`.
 * Every `intervalMs` (25 by default): a check that asks another process
 * (a server's HTTP API backed by PostgreSQL) costs that process CPU at each
 * poll, and such waits may pass a longer interval.
 */
export async function until(
  check: () => Promise<boolean> | boolean,
  timeoutMs = 10_000,
  what = "condition",
  intervalMs = 25,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
