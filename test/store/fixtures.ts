import type { NewDeploy } from "../../src/store/deploys.js";

export const SHA = "a".repeat(40);

/** A deploy as the store is asked to create it, with what a test changes. */
export function newDeploy(overrides: Partial<NewDeploy> = {}): NewDeploy {
  return {
    app: "shop",
    env: "staging",
    trigger: "api",
    user: "dev",
    ref: "main",
    sha: SHA,
    components: { main: SHA },
    params: {},
    force: false,
    configRevision: "dir-1",
    ...overrides,
  };
}
