import { z } from "zod";
import { parseClock, parseDays, timezoneProblem } from "../domain/deploy-window.js";
import { parseDuration, parseTimerDuration } from "../domain/duration.js";
import {
  deployPathProblem,
  deployPathRootProblem,
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

// Heroku: the Platform API builds a source tarball of the deployed commit (providers/heroku/).
const herokuDeploy = z
  .object({
    provider: z.literal("heroku"),
    app: z
      .string()
      .regex(/^[a-z][a-z0-9-]{2,29}$/, "a Heroku app name: lowercase letters, digits and '-', 3 to 30"),
    /** The server's environment variable with the API key: the key never goes into a manifest. */
    api_key_env: envVarName,
    api_url: z
      .string()
      .url()
      .refine((u) => /^https?:\/\//.test(u), { message: "an http(s) URL" })
      .optional(),
    timeout: duration.optional(),
  })
  .strict();

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
// user, key_file, known_hosts_file, root and port may come from the fleet's `ssh_defaults` instead.
const sshHost = z
  .object({
    name: z.string().regex(NAME, "host names use lowercase letters, digits and '-'"),
    address: ruled(sshAddressProblem),
    port: z.number().int().min(1).max(65535).optional(),
    user: ruled(sshUserProblem).optional(),
    key_file: ruled(sshPathProblem).optional(),
    known_hosts_file: ruled(sshPathProblem).optional(),
    root: ruled(releaseRootProblem).optional(),
    labels: labels.optional(),
  })
  .strict();

/** What every SSH host of the fleet shares unless it says otherwise. */
const sshDefaults = z
  .object({
    port: z.number().int().min(1).max(65535).optional(),
    user: ruled(sshUserProblem).optional(),
    key_file: ruled(sshPathProblem).optional(),
    known_hosts_file: ruled(sshPathProblem).optional(),
    root: ruled(releaseRootProblem).optional(),
  })
  .strict();

const SSH_REQUIRED = ["user", "key_file", "known_hosts_file"] as const;

const fleetDeploy = z
  .object({
    provider: z.literal("fleet"),
    hosts: z.object({ labels }).strict().optional(),
    ssh: z.array(sshHost).optional(),
    ssh_defaults: sshDefaults.optional(),
    build: argv.optional(),
    build_script: z.string().min(1).optional(),
    artifact: relativePath.or(z.literal(".")).optional(),
    shared: z.array(relativePath).optional(),
    /** This environment's own place on the hosts instead of <root>/<app> (docs/fleets.md "the host layout"). */
    path: ruled(deployPathProblem).optional(),
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
  .superRefine((d, ctx) => {
    for (const [index, host] of (d.ssh ?? []).entries()) {
      for (const field of SSH_REQUIRED) {
        if (host[field] === undefined && d.ssh_defaults?.[field] === undefined) {
          ctx.addIssue({
            code: "custom",
            path: ["ssh", index, field],
            message: `required: give it for this host or in ssh_defaults`,
          });
        }
      }
      // An SSH host's root is known here (an agent's is checked by the agent, at the deploy).
      const root = host.root ?? d.ssh_defaults?.root ?? "/srv/turnout";
      const problem = d.path === undefined ? undefined : deployPathRootProblem(d.path, root);
      if (problem)
        ctx.addIssue({ code: "custom", path: ["path"], message: `${problem} (host ${host.name})` });
    }
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

/** Deploy windows (domain/deploy-window.ts): wall-clock hours in an IANA zone, on the days they start. */
const windowRule = z
  .object({
    days: z
      .union([z.string(), z.array(z.string()).min(1)])
      .refine((d) => parseDays(typeof d === "string" ? [d] : d) !== undefined, {
        message: "days are mon … sun, ranges like mon-fri, or daily",
      }),
    from: z.string().refine((t) => parseClock(t) !== undefined, { message: 'a time like "09:00"' }),
    to: z.string().refine((t) => parseClock(t, true) !== undefined, {
      message: 'a time like "17:00" (or "24:00")',
    }),
  })
  .strict()
  .refine((w) => parseClock(w.from) !== parseClock(w.to, true) || parseClock(w.from) === undefined, {
    message: "a window needs `to` different from `from` (an earlier `to` runs past midnight)",
  });
const deployWindows = z
  .object({
    timezone: ruled(timezoneProblem).default("UTC"),
    allow: z.array(windowRule).min(1, "name at least one window"),
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
    /** Takes only releases promoted from this environment (docs/delivery.md#promotion). */
    promote_from: z
      .string()
      .regex(NAME, "environment names use lowercase letters, digits and '-'")
      .optional(),
    /** …that have been live there at least this long. */
    min_live: durationOrZero.optional(),
    /** Outside these, automatic deploys wait and manual ones need force and a reason. */
    deploy_windows: deployWindows.optional(),
    /** Automatic deploys bring at most this many (first-parent) commits at a time. */
    max_commits_per_deploy: z.number().int().min(1).max(100_000).optional(),
    /** The shortest time between two automatic deploys of the environment. */
    min_interval: duration.optional(),
    /** Emergency deploys of a working tree: false (default), true or "admin" (admins), "deployer" (deployers and admins). */
    allow_emergency: z.union([z.boolean(), z.enum(["admin", "deployer"])]).optional(),
    deploy: z.discriminatedUnion("provider", [shellDeploy, fleetDeploy, herokuDeploy], {
      message: "provider must be 'shell', 'fleet' or 'heroku'",
    }),
  })
  .strict();

/** One stage of an app's pipeline after the first: the environment, and the gate before it. */
const pipelineStage = z.union([
  z.string().regex(NAME, "environment names use lowercase letters, digits and '-'"),
  z
    .object({
      env: z.string().regex(NAME, "environment names use lowercase letters, digits and '-'"),
      /** No gate: promoted as soon as the previous stage succeeded (the default). */
      auto: z.literal(true).optional(),
      bake: durationOrZero.optional(),
      approval: z
        .object({ role: z.enum(["deployer", "admin"]).default("deployer"), timeout: duration.optional() })
        .strict()
        .optional(),
      checks: z.array(z.string().min(1).max(200)).optional(),
      check_command: argv.optional(),
      checks_timeout: duration.optional(),
      checks_poll: duration.optional(),
    })
    .strict()
    .refine((s) => !s.auto || (s.bake === undefined && !s.approval && !s.checks && !s.check_command), {
      message: "`auto: true` means no gate: give it alone, or bake/approval/checks without it",
    }),
]);

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
    /** The ordered line of environments releases move along (docs/delivery.md#pipelines). */
    pipeline: z.array(pipelineStage).min(2, "a pipeline has at least two stages").max(20).optional(),
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
