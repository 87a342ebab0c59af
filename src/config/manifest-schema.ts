import { z } from "zod";
import { parseDuration, parseTimerDuration } from "../domain/duration.js";
import {
  healthUrlProblem,
  releaseRootProblem,
  sshAddressProblem,
  sshPathProblem,
  sshUserProblem,
} from "../domain/fleet-rules.js";
import { labelProblem, MAX_LABELS } from "../domain/labels.js";
import { isEventPattern, NOTIFY_EVENT_KINDS } from "../domain/notification-event.js";
import { PLACEHOLDERS, unknownPlaceholders } from "../domain/placeholders.js";
import { refProblem } from "../domain/refs.js";
import { ALLOWED_REMOTE_FORMS, remoteUrlProblem } from "../git/remote-url.js";

/**
 * The YAML form of an app manifest (turnout.d/<app>.yaml). Objects are strict,
 * so a misspelt key is an error naming the field rather than a silently ignored
 * setting.
 */
const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const durationText = z.union([
  z.string().regex(/^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$|^[0-9]+$/, "a duration like 90s, 30m or 1h"),
  z.number().min(0),
]);
/**
 * Every duration of a manifest is something a timer waits for: checked here
 * against what a timer can hold (domain/duration.ts), so `timeout: 600h` is a
 * problem of the manifest rather than a deploy stopped the moment it starts.
 */
const timerDuration = (minMs: number) =>
  durationText.superRefine((value, ctx) => {
    // A value that is no duration at all is the format's problem, reported above.
    if (problemOf(() => parseDuration(value)) !== undefined) return;
    const problem = problemOf(() => parseTimerDuration(value, minMs));
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });
/** Timeouts and intervals: more than 0. */
const duration = timerDuration(1);
/** Waits that may be skipped (bake, the pause between health tries). */
const durationOrZero = timerDuration(0);
const envVarName = z.string().regex(ENV_NAME, "not a valid variable name");
/** A configured branch is a branch name, held to the rule every ref is (domain/refs.ts) when it is deployed. */
const branchName = z.string().superRefine((branch, ctx) => {
  const problem = refProblem(branch);
  if (problem) ctx.addIssue({ code: "custom", message: `not a branch name: it ${problem}` });
});
/** A rule of domain/ (what is wrong, or undefined) as a string schema. */
const ruled = (problemOf: (value: string) => string | undefined) =>
  z.string().superRefine((value, ctx) => {
    const problem = problemOf(value);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });
/** Host labels, by the rule agents' labels meet (domain/labels.ts): a label no host can have selects nothing. */
const labels = z.record(z.string(), z.string()).superRefine((value, ctx) => {
  const entries = Object.entries(value);
  if (entries.length > MAX_LABELS) ctx.addIssue({ code: "custom", message: `at most ${MAX_LABELS} labels` });
  for (const [key, v] of entries) {
    const problem = labelProblem(key, v);
    if (problem) ctx.addIssue({ code: "custom", message: problem, path: [key] });
  }
});
/**
 * A repository URL is checked here, at load, by the same rule git calls are
 * held to (git/remote-url.ts): a hostile or mistyped URL is a problem of the
 * manifest naming its field, never a failure at deploy time. The message
 * never repeats the URL, which may hold credentials.
 */
const repoUrl = z
  .string()
  .min(1)
  .superRefine((url, ctx) => {
    const problem = remoteUrlProblem(url);
    if (problem) ctx.addIssue({ code: "custom", message: `${problem} (allowed: ${ALLOWED_REMOTE_FORMS})` });
  });

const argv = z
  .array(z.string().min(1))
  .min(1, "must name a program")
  .refine((a) => unknownPlaceholders(a).length === 0, {
    message: `uses an unknown placeholder (known: ${PLACEHOLDERS.map((p) => `{${p}}`).join(" ")})`,
  });

/** depool/pool commands run on the server once per host, so they may name the host too. */
const hostArgv = z
  .array(z.string().min(1))
  .min(1, "must name a program")
  .refine((a) => unknownPlaceholders(a, ["host"]).length === 0, {
    message: `uses an unknown placeholder (known: ${[...PLACEHOLDERS, "host"].map((p) => `{${p}}`).join(" ")})`,
  });

const shellDeploy = z
  .object({
    provider: z.literal("shell"),
    command: argv.optional(),
    script: z.string().min(1).optional(),
    timeout: duration.optional(),
    idle_timeout: duration.optional(),
    env: z.record(envVarName, z.string()).optional(),
  })
  .strict()
  .refine((d) => (d.command === undefined) !== (d.script === undefined), {
    message: "give exactly one of `command` (argv) or `script`",
  });

const amount = z.union([
  z.number().int().min(0),
  z.string().regex(/^[0-9]{1,3}(\.[0-9]+)?%$|^[0-9]+$/, 'a count (3) or a percentage ("25%")'),
]);
const relativePath = z
  .string()
  .min(1)
  .refine((p) => !p.startsWith("/") && !p.split("/").some((part) => part === ".." || part === ""), {
    message: "a relative path inside the tree (no '..', not absolute)",
  });

// An SSH host's fields end up on an ssh command line: checked here by the rules ssh-validate.ts
// applies before ssh starts (domain/fleet-rules.ts), so a host that loads is one that can be reached.
const sshHost = z
  .object({
    name: z.string().regex(NAME, "host names use lowercase letters, digits and '-'"),
    address: ruled(sshAddressProblem),
    port: z.number().int().min(1).max(65535).default(22),
    user: ruled(sshUserProblem),
    key_file: ruled(sshPathProblem),
    known_hosts_file: ruled(sshPathProblem),
    root: ruled(releaseRootProblem).default("/srv/turnout"),
    labels: labels.optional(),
  })
  .strict();

const fleetDeploy = z
  .object({
    provider: z.literal("fleet"),
    hosts: z.object({ labels }).strict().optional(),
    ssh: z.array(sshHost).optional(),
    build: argv.optional(),
    build_script: z.string().min(1).optional(),
    artifact: relativePath.or(z.literal(".")).optional(),
    shared: z.array(relativePath).optional(),
    before_switch: argv.optional(),
    restart: argv.optional(),
    depool: hostArgv.optional(),
    pool: hostArgv.optional(),
    health: z
      .object({
        http: ruled(healthUrlProblem).optional(),
        command: argv.optional(),
        retries: z.number().int().min(0).max(100).optional(),
        interval: durationOrZero.optional(),
        timeout: duration.optional(),
      })
      .strict()
      .refine((h) => (h.http === undefined) !== (h.command === undefined), {
        message: "give exactly one of `http` or `command`",
      })
      .optional(),
    strategy: z
      .object({
        canary: amount.optional(),
        batch: amount.optional(),
        failure_limit: amount.optional(),
        bake: durationOrZero.optional(),
        approval: z.boolean().optional(),
        approval_timeout: duration.optional(),
        concurrency: z.number().int().min(1).max(256).optional(),
      })
      .strict()
      .optional(),
    keep_releases: z.number().int().min(1).max(100).optional(),
    timeout: duration.optional(),
    idle_timeout: duration.optional(),
    env: z.record(envVarName, z.string()).optional(),
  })
  .strict()
  .refine((d) => d.hosts !== undefined || (d.ssh?.length ?? 0) > 0, {
    message: "a fleet needs `hosts: {labels: …}` (agents), `ssh: [...]` hosts, or both",
  })
  .refine((d) => d.build === undefined || d.build_script === undefined, {
    message: "give at most one of `build` (argv) or `build_script`",
  });

const auth = z
  .object({
    ssh_key_file: z.string().min(1).optional(),
    known_hosts_file: z.string().min(1).optional(),
    token_env: envVarName.optional(),
  })
  .strict();

/** Which events go to one of the server's notification channels (named in its settings). */
const notify = z.array(
  z
    .object({
      channel: z.string().regex(NAME, "channel names use lowercase letters, digits and '-'"),
      events: z
        .array(
          z.string().refine(isEventPattern, {
            message: `unknown event; use one of ${NOTIFY_EVENT_KINDS.join(", ")}, a family like deploy.*, or *`,
          }),
        )
        .min(1)
        .optional(),
    })
    .strict(),
);

const environment = z
  .object({
    notify: notify.optional(),
    branch: branchName.optional(),
    /** Per-component branches of a multi-repo app. */
    branches: z
      .record(z.string().regex(NAME, "component names use lowercase letters, digits and '-'"), branchName)
      .optional(),
    auto_deploy: z.boolean().default(false),
    checks: z.array(z.string().min(1).max(200)).optional(),
    check_command: argv.optional(),
    checks_timeout: duration.optional(),
    checks_poll: duration.optional(),
    /** Bring drifted or newly joined fleet hosts to the environment's release by itself. */
    self_heal: z.boolean().optional(),
    deploy: z.discriminatedUnion("provider", [shellDeploy, fleetDeploy], {
      message: "provider must be 'shell' or 'fleet'",
    }),
  })
  .strict();

const component = z
  .object({
    repo: repoUrl.optional(),
    hosted: z.literal(true).optional(),
    branch: branchName.optional(),
    auth: auth.optional(),
  })
  .strict()
  .refine((c) => (c.repo === undefined) !== (c.hosted === undefined), {
    message: "give exactly one of `repo` or `hosted: true`",
  });

export const manifestSchema = z
  .object({
    repo: repoUrl.optional(),
    /** Turnout hosts the repository itself: push to http://<server>/git/<app>.git */
    hosted: z.literal(true).optional(),
    auth: auth.optional(),
    components: z
      .record(z.string().regex(NAME, "component names use lowercase letters, digits and '-'"), component)
      .refine((c) => Object.keys(c).length > 0, { message: "declare at least one component" })
      .optional(),
    poll_interval: duration.optional(),
    webhook: z.object({ secret_env: envVarName }).strict().optional(),
    github: z
      .object({
        repository: z
          .string()
          .regex(/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/, "owner/name")
          .optional(),
        api_url: z.string().url().optional(),
        token_env: envVarName.optional(),
        /** A GitHub `deployment` event for the repository starts a deploy of its commit (docs/integrations.md). */
        deploy_on_deployment_event: z.boolean().optional(),
      })
      .strict()
      .optional(),
    secret_env: z.array(envVarName).optional(),
    notify: notify.optional(),
    environments: z
      .record(z.string().regex(NAME, "environment names use lowercase letters, digits and '-'"), environment)
      .refine((e) => Object.keys(e).length > 0, { message: "declare at least one environment" }),
  })
  .strict()
  .refine((m) => [m.repo, m.hosted, m.components].filter((x) => x !== undefined).length === 1, {
    message: "give exactly one of `repo`, `hosted: true` or `components`",
  });

/** The message of the TurnoutError `check` throws, or undefined when it passes. */
function problemOf(check: () => unknown): string | undefined {
  try {
    check();
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

export type ManifestInput = z.infer<typeof manifestSchema>;
export const APP_NAME = NAME;
