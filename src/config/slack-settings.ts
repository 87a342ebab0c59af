import { z } from "zod";
import { TurnoutError } from "../domain/errors.js";
import { isValidName } from "../domain/names.js";
import type { Role } from "../domain/roles.js";

/**
 * Slack slash commands (`slack:` in the settings file). Who may do what is
 * server settings, never a manifest: a manifest is written by whoever may
 * push to the configuration, and must not be able to make a Slack user an
 * admin. The signing secret comes from the environment only.
 */
export interface SlackUser {
  /** The Turnout identity the Slack user acts as (recorded as the deploy's user). */
  name: string;
  role: Exclude<Role, "agent">;
  /** null: every app. */
  apps: string[] | null;
}

export interface SlackSettings {
  signingSecret: string;
  /** By Slack user id (`U0123ABCD`). Anyone else can do nothing. */
  users: ReadonlyMap<string, SlackUser>;
  /**
   * Origins a command's response_url may point to. Progress is posted there,
   * so the server must not be made to post anywhere else.
   */
  responseUrlOrigins: string[];
  /** How long progress is followed: Slack's response_url works for 30 minutes. */
  followMs: number;
}

const SLACK_USER_ID = /^[UW][A-Z0-9]{2,30}$/;
const DEFAULT_ORIGINS = ["https://hooks.slack.com"];

export const slackFileSchema = z
  .object({
    /** Name of the variable holding the signing secret (default TURNOUT_SLACK_SIGNING_SECRET). */
    signing_secret_env: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
      .optional(),
    response_url_origins: z.array(z.string()).min(1).optional(),
    users: z
      .record(
        z.string(),
        z
          .object({
            name: z.string(),
            role: z.enum(["viewer", "deployer", "admin"]),
            apps: z.array(z.string()).optional(),
          })
          .strict(),
      )
      .optional(),
  })
  .strict();

export type SlackFileSettings = z.infer<typeof slackFileSchema>;

/**
 * Slack commands are on when a signing secret is set. Users without a secret
 * are a mistake worth stopping the start for: the operator meant to turn it on.
 */
export function resolveSlackSettings(
  file: SlackFileSettings | undefined,
  env: Record<string, string | undefined>,
): SlackSettings | undefined {
  const secretVar = file?.signing_secret_env ?? "TURNOUT_SLACK_SIGNING_SECRET";
  const signingSecret = env[secretVar] || undefined;
  if (signingSecret === undefined) {
    if (file?.users && Object.keys(file.users).length > 0) {
      throw new TurnoutError(
        "E_CONFIG",
        `slack: users are mapped but the signing secret is not set (variable ${secretVar})`,
      );
    }
    return undefined;
  }
  const users = new Map<string, SlackUser>();
  for (const [id, user] of Object.entries(file?.users ?? {})) {
    if (!SLACK_USER_ID.test(id))
      throw new TurnoutError("E_CONFIG", `slack.users: not a Slack user id: ${id}`);
    if (!isValidName(user.name)) {
      throw new TurnoutError("E_CONFIG", `slack.users.${id}.name: not a valid identity name: ${user.name}`);
    }
    for (const app of user.apps ?? []) {
      if (!isValidName(app)) throw new TurnoutError("E_CONFIG", `slack.users.${id}.apps: invalid app ${app}`);
    }
    users.set(id, { name: user.name, role: user.role, apps: user.apps ?? null });
  }
  const responseUrlOrigins = (file?.response_url_origins ?? DEFAULT_ORIGINS).map(originOf);
  return { signingSecret, users, responseUrlOrigins, followMs: 30 * 60_000 };
}

function originOf(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new TurnoutError("E_CONFIG", `slack.response_url_origins: not a URL: ${text}`);
  }
  if (!/^https?:$/.test(url.protocol)) {
    throw new TurnoutError("E_CONFIG", `slack.response_url_origins: not http(s): ${text}`);
  }
  return url.origin;
}
