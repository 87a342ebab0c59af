import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { assertHostName } from "../../agent/protocol.js";
import { auditActor } from "../../domain/audit.js";
import { notFound } from "../../domain/errors.js";
import type { HostWithApps } from "../../domain/fleet.js";
import { isUnrestricted, parseAppGrant, parseLabelGrant } from "../../domain/host-grant.js";
import { authorize, authorizeUnlimitedAdmin, type Principal } from "../../domain/roles.js";
import type { HostRecord } from "../../store/hosts.js";
import { principalOf } from "../auth.js";
import type { HttpDeps } from "../deps.js";
import { visibleHosts } from "../visibility.js";

const hostParams = z.object({ name: z.string().describe("host name") });

const grantBody = z.strictObject({
  apps: z
    .array(z.string())
    .max(1000)
    .nullable()
    .describe("apps whose deploys the host may receive; null: every app"),
  labels: z
    .array(z.string())
    .max(1000)
    .nullable()
    .describe(
      "`key=value` labels that count for the host; [] none; null: whatever it declares (unrestricted)",
    ),
});

export type HostJson = HostWithApps &
  Pick<HostRecord, "tokenLastUsedAt"> & {
    /** Agent hosts: labels are chosen by the host itself (grant.labels null). */
    unrestricted: boolean;
  };

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
    return {
      hosts: visibleHosts(principal, hosts, engine.config()).map((host) => hostJson(host, principal)),
    };
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
      return { host: hostJson(host, principal) };
    },
  );

  r.put(
    "/hosts/:name/grant",
    {
      schema: {
        tags: ["hosts"],
        summary: "Set what an agent host may receive (admin)",
        description:
          "Replaces the host's grant: the apps whose deploys reach it and the labels that count for it. " +
          "Labels the host declares beyond it are ignored (listed as ungrantedLabels). Artifacts sent to it " +
          "for apps it loses are no longer readable by it. Takes an admin token for every app.",
        params: hostParams,
        body: grantBody,
      },
    },
    async (request) => {
      const principal = principalOf(request);
      // A grant can name any app: only an admin of every app may give one.
      authorizeUnlimitedAdmin(principal, "change host grants");
      const name = assertHostName(request.params.name);
      const grant = {
        apps: request.body.apps === null ? null : parseAppGrant(request.body.apps),
        labels: request.body.labels === null ? null : parseLabelGrant(request.body.labels),
      };
      await store.hosts.setGrant(name, grant, auditActor(principal));
      const host = agents ? await agents.host(name) : await store.hosts.get(name);
      if (!host) throw notFound(`host '${name}'`, { host: name });
      return { host: hostJson(host, principal) };
    },
  );
}

export function hostJson(host: HostRecord, principal: Principal): HostJson {
  const visible = (app: string) => principal.apps === null || principal.apps.includes(app);
  return {
    id: host.id,
    name: host.name,
    kind: host.kind,
    labels: host.labels,
    ungrantedLabels: host.ungrantedLabels,
    // A token limited to some apps learns nothing of the others from a grant either.
    grant: { apps: host.grant.apps?.filter(visible) ?? null, labels: host.grant.labels },
    unrestricted: host.kind === "agent" && isUnrestricted(host.grant),
    app: host.app !== null && visible(host.app) ? host.app : null,
    address: host.address,
    // Pool state is per app: a scoped token sees it for its own apps only.
    poolState: host.depooledApps.some(visible) ? "depooled" : "pooled",
    depooledApps: host.depooledApps.filter(visible),
    connected: host.connected,
    lastSeenAt: host.lastSeenAt,
    tokenLastUsedAt: host.tokenLastUsedAt,
    apps: host.apps.map((a) => ({
      app: a.app,
      ...(a.path ? { path: a.path } : {}),
      current: a.current,
      slots: a.slots,
      releases: a.releases,
    })),
  };
}
