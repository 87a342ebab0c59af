import { readdirSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HOST_TOKEN_FILE } from "../../src/agent/protocol.js";
import { ensureBuilt } from "../helpers/built-cli.js";
import {
  type AgentProcess,
  assertConsistent,
  currentOf,
  startAgent,
  waitForHosts,
} from "../helpers/fleet.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";

beforeAll(ensureBuilt, 120_000);

/**
 * Walls between apps on a fleet, with real agents: what a host receives is
 * decided by the server (its enrollment token's grant), never by the labels
 * it declares, and a host token reads only what the server sent that host.
 *
 * `shop` deploys to agents labelled role=web; `beta` to role=web,tier=beta,
 * and has a secret. Host a-1 is enrolled with a token for shop (role=web)
 * and declares beta's labels too; b-1 is enrolled with a token for beta.
 */
const SECRETS = { SHOP_SECRET: "shop-secret-4b1d", BETA_SECRET: "beta-secret-9f3e" };

const manifest = (labels: string, secret: string) => `repo: "{repo}"
secret_env: [${secret}]
environments:
  production:
    deploy:
      provider: fleet
      hosts: { labels: ${labels} }
      build_script: |
        mkdir -p dist
        cp VERSION dist/VERSION
        echo "$TURNOUT_APP" > dist/APP
      artifact: dist
      restart: [sh, -c, 'printf "%s" "$${secret}" > "$TURNOUT_RELEASE_DIR/../../secret-seen"']
      strategy: { batch: 100% }
`;

let t: TestTurnout;
let work: string;
let agents: AgentProcess[] = [];
const deploys: Record<string, any> = {};

const deploy = async (app: string) =>
  t.waitForDeploy(
    (await t.api("POST", `/api/v1/apps/${app}/environments/production/deploys`, {})).body.deploy.id,
    60_000,
  );
const hostsOf = async (id: number) =>
  ((await t.api("GET", `/api/v1/deploys/${id}/hosts`)).body.hosts as any[]).map((h) => h.hostName);
const logOf = async (id: number) => (await t.store.logs.read(id, 0)).chunks.map((c) => c.text).join("");

/** Every file under a directory, as text. */
function everything(dir: string): string {
  let text = "";
  for (const entry of readdirSync(dir, { recursive: true, encoding: "utf8" })) {
    const file = path.join(dir, entry);
    try {
      if (statSync(file).isFile()) text += readFileSync(file, "latin1");
    } catch {
      // a dangling link, or gone meanwhile
    }
  }
  return text;
}

beforeAll(async () => {
  t = await startTurnout({
    manifest: manifest("{ role: web }", "SHOP_SECRET"),
    environment: SECRETS,
  });
  await t.writeManifest("beta", manifest("{ role: web, tier: beta }", "BETA_SECRET"));
  work = await mkdtemp(path.join(tmpdir(), "turnout-fleet-isolation-"));
  const token = async (name: string, apps: string[], labels: string[]) =>
    (await t.api("POST", "/api/v1/tokens", { name, role: "agent", apps, labels })).body.token as string;
  const shopHosts = await token("shop-hosts", ["shop"], ["role=web"]);
  const betaHosts = await token("beta-hosts", ["beta"], ["role=web", "tier=beta"]);
  const labels = { role: "web", tier: "beta" };
  agents = [
    startAgent({ serverUrl: t.url, token: shopHosts, name: "a-1", root: path.join(work, "a-1"), labels }),
    startAgent({ serverUrl: t.url, token: betaHosts, name: "b-1", root: path.join(work, "b-1"), labels }),
  ];
  await waitForHosts(t.api, ["a-1", "b-1"]);
  deploys["beta"] = await deploy("beta");
  deploys["shop"] = await deploy("shop");
}, 180_000);

afterAll(async () => {
  for (const a of agents) await a.kill().catch(() => undefined);
  await assertConsistent(agents.map((a) => a.root));
  await t?.stop();
  await rm(work, { recursive: true, force: true });
});

describe("fleet membership follows the server's grant", () => {
  it("an agent granted app A that declares B's labels receives no deploy of B and none of B's secret_env", async () => {
    const beta = deploys["beta"];
    expect(beta.status, await logOf(beta.id)).toBe("succeeded");
    expect(await hostsOf(beta.id)).toEqual(["b-1"]);
    const [a1, b1] = agents;
    expect(await currentOf(b1!.root, "beta")).toMatch(/^[0-9a-f]{16}$/);
    expect(readFileSync(path.join(b1!.root, "beta", "secret-seen"), "utf8")).toBe(SECRETS.BETA_SECRET);
    // Nothing of beta reached a-1: no release, no secret in any file, none in what the agent printed.
    expect(readdirSync(a1!.root)).not.toContain("beta");
    expect(everything(a1!.root)).not.toContain(SECRETS.BETA_SECRET);
    expect(a1!.output()).not.toContain(SECRETS.BETA_SECRET);
    // B's deploy does not see it as a host: neither the deploy nor the environment's host list.
    const envHosts = (await t.api("GET", "/api/v1/apps/beta/environments/production/hosts")).body.hosts;
    expect(envHosts.map((h: any) => h.name)).toEqual(["b-1"]);
  });

  it("a host receives its own app's deploys only, even when its labels match another app's fleet", async () => {
    const shop = deploys["shop"];
    expect(shop.status, await logOf(shop.id)).toBe("succeeded");
    // b-1 has role=web, but its grant is for beta only.
    expect(await hostsOf(shop.id)).toEqual(["a-1"]);
    expect(readFileSync(path.join(agents[0]!.root, "shop", "secret-seen"), "utf8")).toBe(SECRETS.SHOP_SECRET);
    expect(readdirSync(agents[1]!.root)).not.toContain("shop");
    expect(everything(agents[1]!.root)).not.toContain(SECRETS.SHOP_SECRET);
  });

  it("labels beyond the grant are ignored and shown as such", async () => {
    const hosts = (await t.api("GET", "/api/v1/hosts")).body.hosts as any[];
    expect(hosts.find((h) => h.name === "a-1")).toMatchObject({
      labels: { role: "web" },
      ungrantedLabels: { tier: "beta" },
      grant: { apps: ["shop"], labels: ["role=web"] },
    });
    expect(hosts.find((h) => h.name === "b-1")).toMatchObject({
      labels: { role: "web", tier: "beta" },
      ungrantedLabels: {},
    });
  });
});

describe("a host reads only what the server sent it", () => {
  const hostToken = (agent: AgentProcess) =>
    readFileSync(path.join(agent.root, HOST_TOKEN_FILE), "utf8").trim();
  const get = async (urlPath: string, token: string) => {
    const res = await fetch(`${t.url}${urlPath}`, { headers: { authorization: `Bearer ${token}` } });
    const bytes = Buffer.from(await res.arrayBuffer());
    return { status: res.status, bytes, error: res.ok ? undefined : JSON.parse(bytes.toString()).error };
  };
  const batch = async (token: string, artifact: string, digests: string[]) => {
    const res = await fetch(`${t.url}/api/v1/blobs/batch`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ artifact, digests }),
    });
    return { status: res.status, error: res.ok ? undefined : ((await res.json()) as any).error };
  };
  const artifactOf = async (app: string) => (await t.store.releases.current(app, "production"))!.artifact!;
  /** The blob of the file only `app`'s artifact has (dist/APP). */
  const appBlob = async (app: string) => {
    const manifest = (await get(`/api/v1/artifacts/${await artifactOf(app)}/manifest`, t.adminToken)).bytes;
    return JSON.parse(manifest.toString()).entries.find((e: any) => e.path === "APP").sha256 as string;
  };

  it("cannot download the manifest or blobs of an artifact never sent to it: the same 404 as for one that does not exist", async () => {
    const token = hostToken(agents[0]!);
    const beta = await artifactOf("beta");
    const never = "7".repeat(64);
    const manifest = await get(`/api/v1/artifacts/${beta}/manifest`, token);
    const missing = await get(`/api/v1/artifacts/${never}/manifest`, token);
    expect(manifest.status).toBe(404);
    expect(manifest.error).toEqual({
      ...missing.error,
      message: missing.error.message.replace(never, beta),
      details: { digest: beta },
    });

    const blob = await appBlob("beta");
    const notSent = await get(`/api/v1/blobs/${blob}?artifact=${beta}`, token);
    const absent = await get(`/api/v1/blobs/${blob}?artifact=${never}`, token);
    expect(notSent.status).toBe(404);
    expect(notSent.error).toEqual(absent.error);
    expect(await batch(token, beta, [blob])).toEqual({ status: 404, error: absent.error });
    // Naming an artifact it was sent does not open another app's blobs either.
    expect(await batch(token, await artifactOf("shop"), [blob])).toEqual({
      status: 404,
      error: absent.error,
    });
  });

  it("can download what it was sent", async () => {
    const token = hostToken(agents[0]!);
    const shop = await artifactOf("shop");
    expect((await get(`/api/v1/artifacts/${shop}/manifest`, token)).status).toBe(200);
    const blob = await appBlob("shop");
    const one = await get(`/api/v1/blobs/${blob}?artifact=${shop}`, token);
    expect(one.status).toBe(200);
    expect(one.bytes.toString()).toBe("shop\n");
    expect((await batch(token, shop, [blob, blob])).status).toBe(200);
    // And b-1 the other way round.
    const other = hostToken(agents[1]!);
    expect((await get(`/api/v1/artifacts/${await artifactOf("beta")}/manifest`, other)).status).toBe(200);
    expect((await get(`/api/v1/artifacts/${shop}/manifest`, other)).status).toBe(404);
  });
});

describe("SSH hosts belong to the app whose manifest declares them", () => {
  // Host names are global: a manifest must not be able to take over an agent's record, or
  // another app's SSH host, by naming it (pool state, per-host records, what a host was sent).
  const sshManifest = (host: string) => `repo: "{repo}"
environments:
  production:
    deploy:
      provider: fleet
      ssh:
        - { name: ${host}, address: 127.0.0.1, port: 1, user: deploy, key_file: /nonexistent/key, known_hosts_file: /nonexistent/known_hosts }
      build_script: |
        mkdir -p dist
        echo "$TURNOUT_APP" > dist/APP
      artifact: dist
`;

  it("a manifest naming an agent host is refused, and the agent is sent nothing", async () => {
    await t.writeManifest("gamma", sshManifest("a-1"));
    const done = await deploy("gamma");
    expect(done.status).toBe("failed");
    expect(await logOf(done.id)).toContain("host name 'a-1' belongs to an agent host");
    const gamma = (await t.store.artifacts.list("gamma", 1))[0]!.digest;
    const token = readFileSync(path.join(agents[0]!.root, HOST_TOKEN_FILE), "utf8").trim();
    const res = await fetch(`${t.url}/api/v1/artifacts/${gamma}/manifest`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.status).toBe(404);
    expect((await t.store.hosts.get("a-1"))?.kind).toBe("agent");
  });

  it("a second app naming an SSH host the first one declares is refused", async () => {
    await t.writeManifest("delta", sshManifest("shared-1"));
    await t.writeManifest("epsilon", sshManifest("shared-1"));
    // delta's deploy claims the name (and fails later: nothing listens on port 1).
    const first = await deploy("delta");
    expect(await logOf(first.id)).not.toContain("declared by another app");
    const second = await deploy("epsilon");
    expect(second.status).toBe("failed");
    expect(await logOf(second.id)).toContain(
      "SSH host 'shared-1' is declared by another app: host names are global, give this one another name",
    );
    expect(await t.store.hosts.get("shared-1")).toMatchObject({ kind: "ssh", app: "delta" });
  });
});
