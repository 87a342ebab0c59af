import type { FastifyRequest } from "fastify";
import { configProblemFor } from "../config/app-availability.js";
import type { AppConfig, EnvironmentConfig } from "../domain/app-config.js";
import { notFound } from "../domain/errors.js";
import { assertName } from "../domain/names.js";
import { authorize, type Permission, type Principal } from "../domain/roles.js";
import type { EngineApi } from "../engine/api.js";
import { principalOf } from "./auth.js";

/**
 * Turns `:app` / `:env` path segments into configuration, in the order that
 * leaks least: malformed names are refused first (422), then the caller's
 * right to the app (403, whether or not the app exists, so a token limited to
 * other apps cannot probe for names), then existence (404).
 */
export function resolveApp(
  engine: EngineApi,
  principal: Principal,
  app: string,
  permission: Permission,
): AppConfig {
  assertName("app", app);
  authorize(principal, permission, app);
  const config = engine.config().apps.get(app);
  if (!config) throw configProblemFor(engine.configStatus(), app) ?? notFound(`app '${app}'`, { app });
  return config;
}

export function resolveEnvironment(
  engine: EngineApi,
  principal: Principal,
  app: string,
  env: string,
  permission: Permission,
): { app: AppConfig; env: EnvironmentConfig } {
  assertName("app", app);
  assertName("environment", env);
  const appConfig = resolveApp(engine, principal, app, permission);
  const envConfig = appConfig.environments[env];
  if (!envConfig) throw notFound(`environment '${app}/${env}'`, { app, env });
  return { app: appConfig, env: envConfig };
}

/** The caller and the `:app/:env` of a request, checked for `permission`: the common head of environment routes. */
export function environmentOf(
  engine: EngineApi,
  request: FastifyRequest & { params: { app: string; env: string } },
  permission: Permission,
): { principal: Principal; app: AppConfig; env: EnvironmentConfig } {
  const principal = principalOf(request);
  return {
    principal,
    ...resolveEnvironment(engine, principal, request.params.app, request.params.env, permission),
  };
}
