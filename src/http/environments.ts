import type { FastifyRequest } from "fastify";
import type { AppConfig, EnvironmentConfig } from "../domain/app-config.js";
import type { Permission, Principal } from "../domain/roles.js";
import type { EngineApi } from "../engine/api.js";
import { principalOf } from "./auth.js";

/**
 * Turns `:app` / `:env` path segments into configuration through the engine,
 * which answers in the order that leaks least (see Engine.app): a malformed
 * name is 422; an app the token may not see is 404, word for word as a
 * missing one; then the role (403); then existence (404).
 */
export function resolveApp(
  engine: EngineApi,
  principal: Principal,
  app: string,
  permission: Permission,
): AppConfig {
  return engine.app(principal, app, permission);
}

export function resolveEnvironment(
  engine: EngineApi,
  principal: Principal,
  app: string,
  env: string,
  permission: Permission,
): { app: AppConfig; env: EnvironmentConfig } {
  const target = engine.target(principal, app, env, permission);
  return { app: target.app, env: target.environment };
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
