import type { FastifyInstance } from "fastify";
import type { SlackSettings, SlackUser } from "../../config/slack-settings.js";
import { parseChatCommand, unescapeSlackText } from "../../domain/chat-command.js";
import { TurnoutError } from "../../domain/errors.js";
import type { Principal } from "../../domain/roles.js";
import type { HttpDeps } from "../deps.js";
import { headerOf } from "../webhooks/headers.js";
import { type ChatReply, refusalText, runChatCommand } from "./chat-runner.js";
import { escapeSlack, type SlackMessage, SlackProgress } from "./slack-progress.js";
import { verifySlackSignature } from "./slack-signature.js";

/** Slack wants an answer within 3 seconds; a command slower than this is answered later, at its response_url. */
const ANSWER_WITHIN_MS = 2_000;

/** The fields of Slack's slash-command payload Turnout reads (the rest is ignored: Slack adds fields over time). */
interface SlashCommand {
  userId: string;
  command: string;
  text: string;
  responseUrl: string | undefined;
}

/**
 * `POST /api/v1/integrations/slack/commands`: Slack slash commands. The
 * request is authenticated by Slack's signature over the raw body (no bearer
 * token), the Slack user is mapped to a Turnout identity by the server's
 * settings, and the command then runs through the engine as that identity,
 * so a chat user can do exactly what a token with that role and apps could.
 */
export async function registerSlackCommandRoutes(app: FastifyInstance, deps: HttpDeps): Promise<void> {
  const slack = deps.slack;
  const progress = new SlackProgress({
    engine: deps.engine,
    store: deps.store,
    followMs: slack?.followMs ?? 0,
    report: (message) => app.log.warn(message),
  });
  app.addHook("onClose", async () => progress.close());

  await app.register(
    async (scope) => {
      // Signed raw bytes: the form is parsed only after the signature is checked.
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser(
        "application/x-www-form-urlencoded",
        { parseAs: "buffer" },
        (_request, body, done) => done(null, Buffer.isBuffer(body) ? body : Buffer.from(body)),
      );
      scope.addContentTypeParser("*", (_request, _payload, done) =>
        done(
          new TurnoutError(
            "E_UNSUPPORTED_MEDIA_TYPE",
            "unsupported content type: Slack sends application/x-www-form-urlencoded",
          ),
          undefined,
        ),
      );
      scope.post(
        "/commands",
        {
          config: { rawBody: true },
          schema: {
            tags: ["integrations"],
            summary: "Slack slash command",
            description:
              "Slack's slash-command request (application/x-www-form-urlencoded), verified with " +
              "X-Slack-Signature and X-Slack-Request-Timestamp (the Slack app's signing secret, 5-minute window). " +
              "Answers 200 with a Slack message; progress follows at the command's response_url.",
            security: [],
          },
        },
        async (request) => {
          if (!slack) {
            throw new TurnoutError("E_NOT_FOUND", "Slack commands are not enabled on this server");
          }
          const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
          const verdict = verifySlackSignature(
            slack.signingSecret,
            raw,
            headerOf(request, "X-Slack-Request-Timestamp"),
            headerOf(request, "X-Slack-Signature"),
            Date.now(),
          );
          if (!verdict.ok) {
            request.log.warn(`slack command refused: ${verdict.reason}`);
            throw refused();
          }
          // The same signed bytes twice within the window: a replay (Slack never resends a command).
          if (!(await deps.store.webhooks.recordDelivery("slack", `command:${verdict.signature}`, null))) {
            request.log.warn("slack command refused: a replay of a command already received");
            throw refused();
          }
          const command = slashCommand(raw);
          if (!command) return {};
          const user = slack.users.get(command.userId);
          if (!user) {
            request.log.warn(`slack command refused: Slack user ${command.userId} is not mapped`);
            return message(
              "private",
              `Refused (E_FORBIDDEN): your Slack user (${command.userId}) is not mapped to a Turnout identity; ask an operator to add it to the server's slack.users`,
            );
          }
          const responseUrl = allowedResponseUrl(slack, command.responseUrl);
          if (command.responseUrl !== undefined && responseUrl === undefined) {
            request.log.warn(
              "slack command: its response_url is outside slack.response_url_origins; no progress",
            );
          }
          const run = execute(deps, principalOf(user), command.text);
          const first = await Promise.race([run, delay(ANSWER_WITHIN_MS)]);
          if (first === undefined) {
            // Slow (a first fetch of a big repository): answer now, tell the outcome when it is there.
            void run.then((reply) => {
              if (!responseUrl) return;
              void progress.post(responseUrl, toSlack(reply));
              if (reply.follow) progress.follow(reply.follow, responseUrl, 1);
            });
            return message("private", `Working on it: ${command.command} ${command.text}`.trim());
          }
          if (first.follow && responseUrl) progress.follow(first.follow, responseUrl);
          return toSlack(first);
        },
      );
    },
    { prefix: "/api/v1/integrations/slack" },
  );
}

function refused(): TurnoutError {
  // Worded the same whatever the reason, so a forger learns nothing.
  return new TurnoutError("E_UNAUTHORIZED", "invalid or expired Slack request signature");
}

async function execute(deps: HttpDeps, principal: Principal, text: string): Promise<ChatReply> {
  try {
    return await runChatCommand(
      deps.engine,
      deps.store,
      principal,
      parseChatCommand(unescapeSlackText(text)),
    );
  } catch (error) {
    if (!(error instanceof TurnoutError)) deps.logger?.error({ err: error }, "slack command failed");
    return { visibility: "private", text: refusalText(error) };
  }
}

function principalOf(user: SlackUser): Principal {
  // No token stands behind a chat user: 0, as for the server's own principals.
  return { tokenId: 0, name: user.name, role: user.role, apps: user.apps, source: "chat" };
}

function slashCommand(raw: Buffer): SlashCommand | undefined {
  const form = new URLSearchParams(raw.toString("utf8"));
  // Slack's check of the endpoint's certificate, sent when the command is set up: nothing to run.
  if (form.get("ssl_check") === "1") return undefined;
  const userId = form.get("user_id");
  if (!userId) throw new TurnoutError("E_BAD_REQUEST", "a Slack command without user_id");
  return {
    userId: userId.slice(0, 40),
    command: (form.get("command") ?? "/turnout").slice(0, 40),
    text: form.get("text") ?? "",
    responseUrl: form.get("response_url") ?? undefined,
  };
}

/** The response_url when it is on an allowed origin and https (http only if the origin says so). */
function allowedResponseUrl(slack: SlackSettings, url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  try {
    const parsed = new URL(url);
    return slack.responseUrlOrigins.includes(parsed.origin) && !parsed.username && !parsed.password
      ? parsed.toString()
      : undefined;
  } catch {
    return undefined;
  }
}

function toSlack(reply: ChatReply): SlackMessage {
  return message(reply.visibility, reply.text);
}

function message(visibility: ChatReply["visibility"], text: string): SlackMessage {
  return {
    response_type: visibility === "channel" ? "in_channel" : "ephemeral",
    text: escapeSlack(text),
  };
}

function delay(ms: number): Promise<undefined> {
  return new Promise((resolve) => setTimeout(() => resolve(undefined), ms).unref());
}
