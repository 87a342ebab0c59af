import { z } from "zod";
import { PLACEHOLDERS, unknownPlaceholders } from "../domain/placeholders.js";

/**
 * The YAML form of an app manifest (turnout.d/<app>.yaml). Objects are strict,
 * so a misspelt key is an error naming the field rather than a silently ignored
 * setting.
 */
const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const duration = z.union([
  z.string().regex(/^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$|^[0-9]+$/, "a duration like 90s, 30m or 1h"),
  z.number().positive(),
]);

const argv = z
  .array(z.string().min(1))
  .min(1, "must name a program")
  .refine((a) => unknownPlaceholders(a).length === 0, {
    message: `uses an unknown placeholder (known: ${PLACEHOLDERS.map((p) => `{${p}}`).join(" ")})`,
  });

const shellDeploy = z
  .object({
    provider: z.literal("shell", { message: "provider must be 'shell' (the only provider of this version)" }),
    command: argv.optional(),
    script: z.string().min(1).optional(),
    timeout: duration.optional(),
    idle_timeout: duration.optional(),
    env: z.record(z.string().regex(ENV_NAME, "not a valid variable name"), z.string()).optional(),
  })
  .strict()
  .refine((d) => (d.command === undefined) !== (d.script === undefined), {
    message: "give exactly one of `command` (argv) or `script`",
  });

const environment = z
  .object({
    branch: z.string().min(1).default("main"),
    auto_deploy: z.boolean().default(false),
    deploy: shellDeploy,
  })
  .strict();

export const manifestSchema = z
  .object({
    repo: z.string().min(1),
    auth: z
      .object({
        ssh_key_file: z.string().min(1).optional(),
        known_hosts_file: z.string().min(1).optional(),
        token_env: z.string().regex(ENV_NAME, "not a valid variable name").optional(),
      })
      .strict()
      .optional(),
    secret_env: z.array(z.string().regex(ENV_NAME, "not a valid variable name")).optional(),
    environments: z
      .record(z.string().regex(NAME, "environment names use lowercase letters, digits and '-'"), environment)
      .refine((e) => Object.keys(e).length > 0, { message: "declare at least one environment" }),
  })
  .strict();

export type ManifestInput = z.infer<typeof manifestSchema>;
export const APP_NAME = NAME;
