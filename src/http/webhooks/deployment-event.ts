import type { FastifyBaseLogger } from "fastify";
import type { AppConfig } from "../../domain/app-config.js";
import { TurnoutError } from "../../domain/errors.js";
import { GITHUB_DEPLOYMENT_PARAM, parseDeploymentEvent } from "../../domain/github-deployment.js";
import type { Principal } from "../../domain/roles.js";
import type { HttpDeps } from "../deps.js";
import { deployJson } from "../serializers.js";
import { deliveryKey } from "./deliver.js";

export interface DeploymentEventOutcome {
  status: 200 | 202;
  body: Record<string, unknown>;
}

/**
 * A verified GitHub `deployment` event (Heaven's model: chat or CI created
 * the GitHub deployment). For each app that opted in
 * (`github.deploy_on_deployment_event`), the deployment's commit is deployed
 * to the environment it names, as a deployer limited to that app: locks and
 * every other rule apply as to anyone. The deploy carries the GitHub
 * deployment's id, so the github-deployments channel reports on it.
 */
export async function deploymentEvent(
  { engine, store }: Pick<HttpDeps, "engine" | "store">,
  log: FastifyBaseLogger,
  delivery: { id: string; apps: AppConfig[]; payload: unknown },
): Promise<DeploymentEventOutcome> {
  const apps = delivery.apps.filter((app) => app.github?.deployOnDeploymentEvent === true);
  if (apps.length === 0) return { status: 202, body: { ignored: "deployment" } };
  const request = parseDeploymentEvent(delivery.payload);
  // The deployments Turnout creates to report its own deploys come back as events too.
  if (request.createdByTurnout) return { status: 202, body: { ignored: "deployment created by Turnout" } };

  const deploys: unknown[] = [];
  const refused: Array<{ app: string; code: string; message: string }> = [];
  let firstError: TurnoutError | undefined;
  let duplicates = 0;
  for (const app of apps) {
    if (!(await store.webhooks.recordDelivery("github", deliveryKey(app.name, delivery.id), app.name))) {
      duplicates += 1;
      continue;
    }
    const principal: Principal = {
      tokenId: 0,
      name: request.creator ? `github:${request.creator}` : "github",
      role: "deployer",
      apps: [app.name],
      source: "webhook",
    };
    try {
      const deploy = await engine.requestDeploy(principal, {
        app: app.name,
        env: request.environment,
        ref: request.sha,
        params: { [GITHUB_DEPLOYMENT_PARAM]: String(request.id) },
        trigger: "webhook",
      });
      deploys.push(deployJson(deploy));
      await store.audit
        .record({
          actor: "webhook:github",
          action: "webhook",
          app: app.name,
          env: request.environment,
          details: { provider: "github", delivery: delivery.id, event: "deployment", deployment: request.id },
        })
        .catch((error: Error) => log.error({ err: error }, "webhook: could not record the audit event"));
    } catch (error) {
      if (!(error instanceof TurnoutError)) throw error;
      log.warn(`deployment event for ${app.name}: refused: ${error.code}: ${error.message}`);
      firstError ??= error;
      refused.push({ app: app.name, code: error.code, message: error.message });
    }
  }
  if (deploys.length === 0 && firstError) throw firstError;
  if (deploys.length === 0 && duplicates > 0) return { status: 200, body: { duplicate: true } };
  return { status: 202, body: { deploys, ...(refused.length > 0 ? { refused } : {}) } };
}
