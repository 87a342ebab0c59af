import * as z from "zod/mini";
import { TurnoutError } from "../domain/errors.js";
import { assertName, isValidName } from "../domain/names.js";
import { labelProblem, MAX_LABELS } from "./agent-labels.js";

/**
 * The agent protocol: JSON messages over one WebSocket that the agent opens to
 * `GET /api/v1/agents/connect` (the agent never listens). Both ends import
 * these types and validate every incoming message with the schemas below, so
 * a confused or hostile peer is refused at the edge instead of deep inside.
 *
 * zod/mini, not zod: the agent runs these schemas too, and the full zod
 * added about 10 MB to every agent's memory (an idle agent stays under
 * 50 MB, Node itself takes about 40); zod/mini is the same validator, taken
 * in pieces.
 *
 *   agent → server   hello, heartbeat, result, log, switched
 *   server → agent   welcome, call, cancel, ping
 */
export const AGENT_CONNECT_PATH = "/api/v1/agents/connect";
/**
 * The newest protocol this build speaks. 2 added: `minProtocol` and
 * `manifests` in hello and heartbeat, `protocol` in welcome, stage specs
 * with a `manifestDiff` instead of the whole manifest, and close code
 * `tooOld`. 3 added: an environment's own deploy `path` in the arguments of
 * every operation on an app and in inventory entries (a call with a path is
 * refused before it is sent to an agent of protocol 1 or 2: it would ignore
 * the path and deploy to <root>/<app>), and the `prefetch` call (blobs of a
 * release still being built, into the host's blob cache; older agents refuse
 * an op they do not know, so the server sends it only on connections of
 * protocol 3). 4 added the `activate` call: switch a slot, then restart and
 * health-check, in one exchange, with a `switched` message as soon as the
 * switch is done (three calls and answers before; the server sends it only
 * on connections of protocol 4 and makes the three calls to older agents),
 * and `inventory` and `manifests` in the result of an operation that
 * changes what the host holds (when they changed), where a heartbeat
 * followed the result before.
 * Upgrade order: the server first (it speaks them all), then agents.
 */
export const PROTOCOL_VERSION = 4;
/** The first protocol whose agents understand an environment's own deploy path. */
export const DEPLOY_PATH_PROTOCOL = 3;
/** The first protocol whose agents take `prefetch` calls. */
export const PREFETCH_PROTOCOL = 3;
/** The first protocol whose agents take `activate` calls. */
export const ACTIVATE_PROTOCOL = 4;
/** The first protocol whose agents say what an operation changed on the host in its result, not in a heartbeat after it. */
export const REPORT_IN_RESULT_PROTOCOL = 4;
/** Blobs named in one `prefetch` call at most. */
export const MAX_PREFETCH_BLOBS = 5000;
/** The oldest protocol this server still accepts: agents of protocol 1 get whole manifests. */
export const MIN_PROTOCOL_VERSION = 1;
/** How many manifests an agent keeps (and names in hello) to be sent differences against. */
export const MAX_KEPT_MANIFESTS = 16;

/** Where a host token is saved, under the agent's root (mode 0600). */
export const HOST_TOKEN_FILE = ".turnout/host-token";
export const HOST_TOKEN_PREFIX = "tnh_";

/** Close codes beyond the standard ones, so the agent can tell why it was dropped. */
export const CLOSE = {
  /** The server is shutting down (standard "going away"). */
  goingAway: 1001,
  /** The host token names another host, or the host may not connect as an agent. */
  refused: 4001,
  /** Another connection for the same host name replaced this one. */
  replaced: 4002,
  /** A message that does not follow this protocol. */
  protocolError: 4003,
  /** No hello, or no message for too long. */
  timeout: 4008,
  /** The agent's protocol is older than the server accepts (or newer than it speaks): upgrade one of them. */
  unsupportedProtocol: 4426,
} as const;

/** The longest text one `log` message carries; longer lines are sent in pieces marked `partial`. */
export const MAX_LOG_LINE = 65_536;

export const HOST_OPS = [
  "stage",
  "switchTo",
  "promoteSlot",
  "run",
  "health",
  "prune",
  "inventory",
  "prefetch",
  "activate",
] as const;
export type HostOp = (typeof HOST_OPS)[number];

// ---- shared value schemas -------------------------------------------------

/** Host names follow the app-name rule: they end up in paths, URLs and log prefixes. */
export function assertHostName(value: unknown): string {
  return assertName("host", value);
}

const name = z.string().check(z.refine(isValidName, "invalid name"));
const releaseId = z.string().check(z.regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, "invalid release id"));
const labels = z.record(z.string(), z.string()).check(
  z.superRefine((value, ctx) => {
    const entries = Object.entries(value);
    if (entries.length > MAX_LABELS)
      ctx.addIssue({ code: "custom", message: `at most ${MAX_LABELS} labels` });
    for (const [key, v] of entries) {
      const problem = labelProblem(key, v);
      if (problem) ctx.addIssue({ code: "custom", message: problem });
    }
  }),
);
const env = z.record(z.string(), z.string());
const sha256 = z.string().check(z.regex(/^[0-9a-f]{64}$/, "invalid digest"));
const argv = z.array(z.string()).check(z.minLength(1));
const timeoutMs = z.int().check(z.positive());
// Checked again on the host against its root (layout.ts assertDeployPath).
const deployPath = z
  .string()
  .check(z.maxLength(1024), z.regex(/^\/[A-Za-z0-9/._-]*$/, "invalid deploy path"));

export const inventorySchema = z.array(
  z.strictObject({
    app: name,
    // Protocol 3: the layout is at this deploy path, not <root>/<app>.
    path: z.optional(deployPath),
    releases: z.array(releaseId),
    current: z.nullable(releaseId),
    slots: z.record(z.string(), releaseId),
  }),
);

// Stage specs and health checks are built by the orchestrator from records
// and configuration: keys this agent does not know are dropped, not refused,
// so a newer server can add optional fields without breaking older agents.
const stageSpec = z.object({
  app: name,
  // Protocol 3. Agents of 1 and 2 would drop it (this object is not strict): never sent to them.
  path: z.optional(deployPath),
  releaseId,
  // Named back to the server when the blobs are downloaded (older servers do not send it).
  artifact: z.optional(sha256),
  // Entries are checked on the host by planRelease (assertManifest: every field, path and link) before
  // anything is written; a schema per entry here cost more than staging a one-file change.
  // Exactly one of the two (agent-calls.ts checks): the whole manifest, or (protocol 2) its
  // difference from a manifest the host said it keeps (domain/manifest-diff.ts).
  manifest: z.optional(z.object({ version: z.literal(1), entries: z.array(z.unknown()) })),
  manifestDiff: z.optional(
    z.object({
      base: sha256,
      entries: z.array(z.unknown()),
      removed: z.array(z.string()),
    }),
  ),
  shared: z.array(z.string()),
  beforeSwitch: z.optional(argv),
  env,
  timeoutMs,
});

const healthCheck = z.object({
  http: z.optional(z.string()),
  command: z.optional(argv),
  retries: z.int().check(z.nonnegative()),
  intervalMs: z.int().check(z.nonnegative()),
  timeoutMs,
});

/** Arguments of each operation, as the server sends them (HostOps, minus callbacks and signals). */
export const callArgs = {
  stage: z.strictObject({ spec: stageSpec }),
  switchTo: z.strictObject({ app: name, path: z.optional(deployPath), releaseId, slot: name }),
  promoteSlot: z.strictObject({ app: name, path: z.optional(deployPath), slot: name }),
  run: z.strictObject({ app: name, path: z.optional(deployPath), argv, env, timeoutMs }),
  health: z.strictObject({ app: name, path: z.optional(deployPath), check: healthCheck }),
  prune: z.strictObject({ app: name, path: z.optional(deployPath), keep: z.int().check(z.nonnegative()) }),
  inventory: z.strictObject({}),
  // Protocol 3. `grant` is named to the blob endpoint where an artifact's digest goes otherwise:
  // the server lets a host read the blobs it offered it in prefetch calls under that grant.
  prefetch: z.strictObject({
    app: name,
    grant: sha256,
    blobs: z
      .array(z.strictObject({ sha256, size: z.int().check(z.nonnegative()) }))
      .check(z.maxLength(MAX_PREFETCH_BLOBS)),
  }),
  // Protocol 4: switchTo, then (when given) run the restart and the health check, stopping at
  // the first that fails; built from their own checks, so it takes exactly what the three take.
  activate: z.strictObject({
    app: name,
    path: z.optional(deployPath),
    releaseId,
    slot: name,
    restart: z.optional(z.strictObject({ argv, env, timeoutMs })),
    health: z.optional(healthCheck),
  }),
} satisfies Record<HostOp, z.ZodMiniType>;

/** What each operation answers, as the agent sends it back. */
export const callResults = {
  stage: z.object({
    staged: z.boolean(),
    blobsFetched: z.int().check(z.nonnegative()),
    bytesFetched: z.number().check(z.nonnegative()),
    // Newer agents only: the release was there but damaged, and was staged again.
    repaired: z.optional(z.boolean()),
    // Protocol 2: how the agent came by the manifest ("diff": rebuilt from a base it held;
    // "fetched": it lacked the base, or the rebuilt one did not match, and read the whole one).
    manifest: z.optional(z.enum(["full", "diff", "fetched"])),
  }),
  switchTo: z.object({ previous: z.nullable(releaseId) }),
  promoteSlot: z.object({ previous: z.nullable(releaseId), current: releaseId }),
  run: z.object({ exitCode: z.int() }),
  health: z.object({ healthy: z.boolean() }),
  prune: z.object({ removed: z.array(releaseId) }),
  inventory: z.object({ inventory: inventorySchema }),
  // fetched: downloaded now; cached: already in the cache (or being fetched by an earlier call).
  prefetch: z.object({
    fetched: z.int().check(z.nonnegative()),
    bytes: z.number().check(z.nonnegative()),
    cached: z.int().check(z.nonnegative()),
  }),
  // The switch happened (`previous`: what the slot pointed at); `failure`: why the host does not
  // serve the release after all (the restart's exit status, a failed health check).
  activate: z.object({ previous: z.nullable(releaseId), failure: z.optional(z.string()) }),
} satisfies Record<HostOp, z.ZodMiniType>;

export type CallArgs<Op extends HostOp> = z.infer<(typeof callArgs)[Op]>;
export type CallResult<Op extends HostOp> = z.infer<(typeof callResults)[Op]>;

// ---- messages -------------------------------------------------------------

const callId = z.int().check(z.positive());
const errorBody = z.strictObject({
  code: z.string().check(z.maxLength(64)),
  message: z.string().check(z.maxLength(8192)),
});
/** Protocol 2: the artifact digests whose manifests the agent keeps, most recent first. */
const manifests = z.optional(z.array(sha256).check(z.maxLength(MAX_KEPT_MANIFESTS)));

export const agentMessageSchema = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("hello"),
    /** The newest protocol the agent speaks. */
    protocol: z.int(),
    /** Protocol 2: the oldest it still speaks (absent: only `protocol`). */
    minProtocol: z.optional(z.int()),
    name: z.string(),
    labels,
    version: z.string().check(z.maxLength(64)),
    inventory: inventorySchema,
    manifests,
  }),
  z.strictObject({ type: z.literal("heartbeat"), inventory: z.optional(inventorySchema), manifests }),
  z.discriminatedUnion("ok", [
    z.strictObject({
      type: z.literal("result"),
      id: callId,
      ok: z.literal(true),
      result: z.unknown(),
      // Protocol 4: what the operation changed on the host, as a heartbeat would say it.
      inventory: z.optional(inventorySchema),
      manifests,
    }),
    z.strictObject({ type: z.literal("result"), id: callId, ok: z.literal(false), error: errorBody }),
  ]),
  // `partial`: the line goes on in the next log message of the same call (see HostLog).
  z.strictObject({
    type: z.literal("log"),
    id: callId,
    line: z.string().check(z.maxLength(MAX_LOG_LINE)),
    partial: z.optional(z.literal(true)),
  }),
  // Protocol 4: an `activate` call switched the slot (before its restart), so that the server
  // records the host switched while the restart runs; sent once per call, before its result.
  z.strictObject({ type: z.literal("switched"), id: callId, previous: z.nullable(releaseId) }),
]);
export type AgentMessage = z.infer<typeof agentMessageSchema>;

// Keys an agent does not know are dropped, not refused (z.object, not strictObject):
// a newer server may add optional fields. Protocol 1 agents refuse them, so the
// server sends `protocol` in the welcome only to agents that said 2 or more.
export const serverMessageSchema = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("welcome"),
    hostId: z.int(),
    hostToken: z.optional(z.string()),
    /** The protocol of this connection (absent: 1). */
    protocol: z.optional(z.int()),
  }),
  z.object({ type: z.literal("call"), id: callId, op: z.enum(HOST_OPS), args: z.unknown() }),
  z.object({ type: z.literal("cancel"), id: callId }),
  z.object({ type: z.literal("ping") }),
]);
export type ServerMessage = z.infer<typeof serverMessageSchema>;

/** The deploy path a call's arguments carry, if any (stage: in its spec). */
export function callDeployPath(op: HostOp, args: unknown): string | undefined {
  const holder = (op === "stage" ? (args as { spec?: unknown })?.spec : args) as
    | { path?: unknown }
    | undefined;
  return typeof holder?.path === "string" ? holder.path : undefined;
}

/** Parses one frame; throws E_BAD_REQUEST with a short reason (it may end up in a close frame). */
export function parseMessage<T>(schema: z.ZodMiniType<T>, data: unknown): T {
  let raw: unknown;
  try {
    raw = JSON.parse(String(data));
  } catch {
    throw new TurnoutError("E_BAD_REQUEST", "message is not JSON");
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? ` at ${issue.path.join(".")}` : "";
    throw new TurnoutError("E_BAD_REQUEST", `invalid message${where}: ${issue?.message ?? "invalid"}`);
  }
  return parsed.data;
}

/** Close reasons are limited to 123 bytes by the protocol. */
export function closeReason(text: string): string {
  const buffer = Buffer.from(text, "utf8");
  return buffer.length <= 123
    ? text
    : buffer
        .subarray(0, 120)
        .toString("utf8")
        .replace(/\uFFFD$/, "") + "...";
}
