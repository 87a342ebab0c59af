import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { assertHostName } from "../../agent/protocol.js";
import { notFound } from "../../domain/errors.js";
import type { HostWithApps } from "../../domain/fleet.js";
import { authorize } from "../../domain/roles.js";
import type { HostRecord } from "../../store/hosts.js";
import { principalOf } from "../auth.js";
import type { HttpDeps } from "../deps.js";
import { visibleHosts } from "../visibility.js";

const hostParams = z.object({ name: z.string().describe("host name") });

export type HostJson = HostWithApps & Pick<HostRecord, "tokenLastUsedAt">;

/**
 * Fleet hosts: labels, connection and pool state, and what each holds per
 * app. Reading them takes `read`; agent tokens have no business here. A token
 * limited to some apps sees only the hosts serving those apps, and only those
 * apps' releases on them; any other host is "not found" for it, like a host
 * that does not exist.
 */
export function registerHostRoutes(app: FastifyInstance, { engine, store, agents }: HttpDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.get("/hosts", { schema: { tags: ["hosts"], summary: "Every host of every fleet" } }, async (request) => {
    const principal = principalOf(request);
    authorize(principal, "read");
    const hosts = agents ? await agents.hosts() : await store.hosts.list();
    return { hosts: visibleHosts(principal, hosts, engine.config()).map(hostJson) };
  });

  r.get(
    "/hosts/:name",
    { schema: { tags: ["hosts"], summary: "One host", params: hostParams } },
    async (request) => {
      const principal = principalOf(request);
      authorize(principal, "read");
      const name = assertHostName(request.params.name);
      const found = agents ? await agents.host(name) : await store.hosts.get(name);
      const [host] = found ? visibleHosts(principal, [found], engine.config()) : [];
      if (!host) throw notFound(`host '${name}'`, { host: name });
      return { host: hostJson(host) };
    },
  );
}

export function hostJson(host: HostRecord): HostJson {
  return {
    id: host.id,
    name: host.name,
    kind: host.kind,
    labels: host.labels,
    address: host.address,
    poolState: host.poolState,
    connected: host.connected,
    lastSeenAt: host.lastSeenAt,
    tokenLastUsedAt: host.tokenLastUsedAt,
    apps: host.apps.map((a) => ({ app: a.app, current: a.current, slots: a.slots, releases: a.releases })),
  };
}
