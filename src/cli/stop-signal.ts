/**
 * Resolves on the next SIGINT or SIGTERM. Once it has, a further signal gets
 * Node's default (exit at once) unless the caller waits again — as `turnout
 * server` does once, so that a second signal interrupts running deploys.
 */
export function waitForStop(): Promise<string> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      resolve(signal);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}
