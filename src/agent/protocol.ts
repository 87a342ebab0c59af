import { z } from "zod";
import { TurnoutError } from "../domain/errors.js";
import { assertName, isValidName } from "../domain/names.js";
import { labelProblem, MAX_LABELS } from "./agent-labels.js";

/**
 * The agent protocol: JSON messages over one WebSocket that the agent opens to
 * `GET /api/v1/agents/connect` (the agent never listens). Both ends import
 * these types and validate every incoming message with the schemas below, so
 * a confused or hostile peer is refused at the edge instead of deep inside.
 *
 *   agent → server   hello, heartbeat, result, log
 *   server → agent   welcome, call, cancel, ping
 */
export const AGENT_CONNECT_PATH = "/api/v1/agents/connect";
export const PROTOCOL_VERSION = 1;

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
} as const;

/** The longest text one `log` message carries; longer lines are sent in pieces marked `partial`. */
export const MAX_LOG_LINE = 65_536;

export const HOST_OPS = ["stage", "switchTo", "promoteSlot", "run", "health", "prune", "inventory"] as const;
export type HostOp = (typeof HOST_OPS)[number];

// ---- shared value schemas -------------------------------------------------

/** Host names follow the app-name rule: they end up in paths, URLs and log prefixes. */
export function assertHostName(value: unknown): string {
  return assertName("host", value);
}

const name = z.string().refine(isValidName, "invalid name");
const releaseId = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, "invalid release id");
const labels = z.record(z.string(), z.string()).superRefine((value, ctx) => {
  const entries = Object.entries(value);
  if (entries.length > MAX_LABELS) ctx.addIssue({ code: "custom", message: `at most ${MAX_LABELS} labels` });
  for (const [key, v] of entries) {
    const problem = labelProblem(key, v);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  }
});
const env = z.record(z.string(), z.string());
const argv = z.array(z.string()).min(1);
const timeoutMs = z.number().int().positive();

export const inventorySchema = z.array(
  z
    .object({
      app: name,
      releases: z.array(releaseId),
      current: releaseId.nullable(),
      slots: z.record(z.string(), releaseId),
    })
    .strict(),
);

// Stage specs and health checks are built by the orchestrator from records
// and configuration: keys this agent does not know are dropped, not refused,
// so a newer server can add optional fields without breaking older agents.
const stageSpec = z.object({
  app: name,
  releaseId,
  // Named back to the server when the blobs are downloaded (older servers do not send it).
  artifact: z
    .string()
    .regex(/^[0-9a-f]{64}$/, "invalid artifact digest")
    .optional(),
  // Entries are checked on the host by planRelease (assertManifest: every field, path and link) before
  // anything is written; a schema per entry here cost more than staging a one-file change.
  manifest: z.object({ version: z.literal(1), entries: z.array(z.unknown()) }),
  shared: z.array(z.string()),
  beforeSwitch: argv.optional(),
  env,
  timeoutMs,
});

const healthCheck = z.object({
  http: z.string().optional(),
  command: argv.optional(),
  retries: z.number().int().nonnegative(),
  intervalMs: z.number().int().nonnegative(),
  timeoutMs,
});

/** Arguments of each operation, as the server sends them (HostOps, minus callbacks and signals). */
export const callArgs = {
  stage: z.object({ spec: stageSpec }).strict(),
  switchTo: z.object({ app: name, releaseId, slot: name }).strict(),
  promoteSlot: z.object({ app: name, slot: name }).strict(),
  run: z.object({ app: name, argv, env, timeoutMs }).strict(),
  health: z.object({ app: name, check: healthCheck }).strict(),
  prune: z.object({ app: name, keep: z.number().int().nonnegative() }).strict(),
  inventory: z.object({}).strict(),
} satisfies Record<HostOp, z.ZodType>;

/** What each operation answers, as the agent sends it back. */
export const callResults = {
  stage: z.object({
    staged: z.boolean(),
    blobsFetched: z.number().int().nonnegative(),
    bytesFetched: z.number().nonnegative(),
    // Newer agents only: the release was there but damaged, and was staged again.
    repaired: z.boolean().optional(),
  }),
  switchTo: z.object({ previous: releaseId.nullable() }),
  promoteSlot: z.object({ previous: releaseId.nullable(), current: releaseId }),
  run: z.object({ exitCode: z.number().int() }),
  health: z.object({ healthy: z.boolean() }),
  prune: z.object({ removed: z.array(releaseId) }),
  inventory: z.object({ inventory: inventorySchema }),
} satisfies Record<HostOp, z.ZodType>;

export type CallArgs<Op extends HostOp> = z.infer<(typeof callArgs)[Op]>;
export type CallResult<Op extends HostOp> = z.infer<(typeof callResults)[Op]>;

// ---- messages -------------------------------------------------------------

const callId = z.number().int().positive();
const errorBody = z.object({ code: z.string().max(64), message: z.string().max(8192) }).strict();

export const agentMessageSchema = z.discriminatedUnion("type", [
  z
    .object({
      type: z.literal("hello"),
      protocol: z.number().int(),
      name: z.string(),
      labels,
      version: z.string().max(64),
      inventory: inventorySchema,
    })
    .strict(),
  z.object({ type: z.literal("heartbeat"), inventory: inventorySchema.optional() }).strict(),
  z.discriminatedUnion("ok", [
    z.object({ type: z.literal("result"), id: callId, ok: z.literal(true), result: z.unknown() }).strict(),
    z.object({ type: z.literal("result"), id: callId, ok: z.literal(false), error: errorBody }).strict(),
  ]),
  // `partial`: the line goes on in the next log message of the same call (see HostLog).
  z
    .object({
      type: z.literal("log"),
      id: callId,
      line: z.string().max(MAX_LOG_LINE),
      partial: z.literal(true).optional(),
    })
    .strict(),
]);
export type AgentMessage = z.infer<typeof agentMessageSchema>;

export const serverMessageSchema = z.discriminatedUnion("type", [
  z
    .object({ type: z.literal("welcome"), hostId: z.number().int(), hostToken: z.string().optional() })
    .strict(),
  z.object({ type: z.literal("call"), id: callId, op: z.enum(HOST_OPS), args: z.unknown() }).strict(),
  z.object({ type: z.literal("cancel"), id: callId }).strict(),
  z.object({ type: z.literal("ping") }).strict(),
]);
export type ServerMessage = z.infer<typeof serverMessageSchema>;

/** Parses one frame; throws E_BAD_REQUEST with a short reason (it may end up in a close frame). */
export function parseMessage<T>(schema: z.ZodType<T>, data: unknown): T {
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
