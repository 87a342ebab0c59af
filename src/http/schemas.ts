import { z } from "zod";

/**
 * Request schemas shared by several routes. Names in paths are plain strings
 * here on purpose: they are checked with assertName in the handler so a bad
 * name is a 422 E_INVALID_NAME with its explanation, not a generic 400.
 */
export const appParams = z.object({ app: z.string().describe("app name") });

export const envParams = z.object({
  app: z.string().describe("app name"),
  env: z.string().describe("environment name"),
});

/** A deploy by database id, or by label `app/env#n` (URL-encoded). */
export const deployIdParams = z.object({
  id: z.string().min(1).describe("deploy id, or its label app/env#n URL-encoded"),
});

export const positiveInt = z.coerce.number().int().min(1).max(2_147_483_647);
export const offsetInt = z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
