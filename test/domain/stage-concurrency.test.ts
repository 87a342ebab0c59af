import { describe, expect, it } from "vitest";
import { defaultStageConcurrency } from "../../src/domain/fleet.js";

/** How many hosts stage at once when the manifest does not say (issue 15: 10 for 20 hosts was too few). */
describe("defaultStageConcurrency", () => {
  it("stages every agent host at once, up to 100", () => {
    expect(defaultStageConcurrency({ agents: 1, ssh: 0 }, 2)).toBe(1);
    expect(defaultStageConcurrency({ agents: 20, ssh: 0 }, 2)).toBe(20);
    expect(defaultStageConcurrency({ agents: 1000, ssh: 0 }, 64)).toBe(100);
  });

  it("bounds SSH hosts by the server's cores: 4 per core, at least 8", () => {
    expect(defaultStageConcurrency({ agents: 0, ssh: 20 }, 2)).toBe(8);
    expect(defaultStageConcurrency({ agents: 0, ssh: 20 }, 4)).toBe(16);
    expect(defaultStageConcurrency({ agents: 0, ssh: 20 }, 16)).toBe(20);
    expect(defaultStageConcurrency({ agents: 0, ssh: 3 }, 16)).toBe(3);
    expect(defaultStageConcurrency({ agents: 0, ssh: 20 }, 0)).toBe(8);
  });

  it("adds the two for a mixed fleet, and is never below 1", () => {
    expect(defaultStageConcurrency({ agents: 20, ssh: 20 }, 2)).toBe(28);
    expect(defaultStageConcurrency({ agents: 0, ssh: 0 }, 2)).toBe(1);
  });
});
