import type { DeployJson, EnvSummary, ReleaseJson } from "../../src/cli/api-types.js";

const SHA = "0123456789abcdef0123456789abcdef01234567";

export function deployFixture(overrides: Partial<DeployJson> = {}): DeployJson {
  return {
    id: 17,
    app: "shop",
    env: "staging",
    number: 4,
    status: "running",
    phase: "deploy",
    trigger: "cli",
    user: "admin",
    ref: "main",
    sha: SHA,
    components: { app: SHA },
    previousSha: null,
    params: {},
    force: false,
    ignoredSafeties: [],
    rollbackOf: null,
    errorCode: null,
    errorMessage: null,
    releaseId: null,
    configRevision: "rev1",
    appRevision: null,
    createdAt: "2024-05-01T12:00:00.000Z",
    startedAt: "2024-05-01T12:00:01.000Z",
    finishedAt: null,
    cancelRequested: false,
    slot: null,
    artifact: null,
    approval: null,
    logPrunedAt: null,
    commit: null,
    commits: null,
    promotedFrom: null,
    reason: null,
    emergency: null,
    label: "shop/staging#4",
    url: "/api/v1/deploys/17",
    ...overrides,
  };
}

export function envFixture(overrides: Partial<EnvSummary> = {}): EnvSummary {
  return {
    app: "shop",
    name: "staging",
    branch: "main",
    autoDeploy: false,
    provider: "shell",
    lock: null,
    current: null,
    active: null,
    queued: 0,
    ...overrides,
  };
}

export function releaseFixture(overrides: Partial<ReleaseJson> = {}): ReleaseJson {
  return {
    id: 3,
    app: "shop",
    env: "staging",
    deployId: 17,
    deployNumber: 4,
    fingerprint: "f".repeat(64),
    components: { app: SHA },
    configRevision: "rev1",
    createdAt: "2024-05-01T12:00:15.000Z",
    deploy: { number: 4, ref: "main", user: "alice", trigger: "cli", finishedAt: "2024-05-01T12:00:15.000Z" },
    ...overrides,
  };
}
