import swagger from "@fastify/swagger";
import type { FastifyInstance } from "fastify";
import { jsonSchemaTransform } from "fastify-type-provider-zod";

/**
 * The OpenAPI document, generated from the same zod schemas that validate
 * requests, so it cannot drift from what the server accepts. Registered
 * before the routes: @fastify/swagger collects routes as they are added.
 */
export async function registerOpenApi(app: FastifyInstance, version: string): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: "3.0.3",
      info: {
        title: "Turnout API",
        description: "Continuous deployment: apps, environments, deploys, releases, locks and logs.",
        version,
      },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
  });

  let document: unknown;
  app.get("/api/v1/openapi.json", { schema: { hide: true } }, async () => {
    document ??= relaxOptionalBodies(app.swagger());
    return document;
  });
}

type Operation = {
  requestBody?: { required?: boolean; content?: Record<string, { schema?: { nullable?: boolean } }> };
};

/**
 * @fastify/swagger marks every request body required; ours that accept no
 * body at all (deploy with defaults, rollback to the previous release) are
 * nullable in their schema, and the document should say so.
 */
function relaxOptionalBodies(spec: unknown): unknown {
  const copy = structuredClone(spec) as { paths?: Record<string, Record<string, Operation>> };
  for (const path of Object.values(copy.paths ?? {})) {
    for (const operation of Object.values(path)) {
      const body = operation.requestBody;
      if (body?.content?.["application/json"]?.schema?.nullable === true) body.required = false;
    }
  }
  return copy;
}
