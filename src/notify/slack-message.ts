import { type NotificationEvent, short } from "../domain/notification-event.js";
import type { ChannelDelivery } from "./channel.js";

/**
 * A Slack message for an event: a plain `text` (notifications, clients
 * without blocks) and blocks with who, what (app, environment, commit range,
 * link to the deploy's page) and the outcome. For a deploy, each event
 * rewrites the same message (chat.update), so the message always shows the
 * deploy's latest state.
 */
export interface SlackMessage {
  text: string;
  blocks: unknown[];
}

const ICONS: Record<string, string> = {
  "deploy.queued": ":hourglass:",
  "deploy.started": ":rocket:",
  "deploy.waiting_for_approval": ":raised_hand:",
  "deploy.succeeded": ":white_check_mark:",
  "deploy.failed": ":x:",
  "deploy.cancelled": ":no_entry_sign:",
  "deploy.interrupted": ":warning:",
  "deploy.rolled_back": ":rewind:",
  "lock.locked": ":lock:",
  "lock.unlocked": ":unlock:",
  "drift.detected": ":warning:",
  "drift.healed": ":wrench:",
  "host.depooled": ":octagonal_sign:",
};

/** Slack's mrkdwn treats &, < and > specially: user text is escaped so it cannot ping or link. */
export function escapeSlack(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

export function slackMessage(event: NotificationEvent, links: ChannelDelivery["links"]): SlackMessage {
  const icon = ICONS[event.kind] ?? ":information_source:";
  const text = `${icon} ${event.text}`;
  const deploy = event.deploy;
  if (!deploy) {
    return {
      text,
      blocks: [{ type: "section", text: { type: "mrkdwn", text: `${icon} ${escapeSlack(event.text)}` } }],
    };
  }
  const title = links.deploy ? `<${links.deploy}|${escapeSlack(deploy.label)}>` : escapeSlack(deploy.label);
  const range = deploy.previousSha
    ? `\`${short(deploy.previousSha)}..${short(deploy.sha)}\``
    : `\`${short(deploy.sha)}\``;
  const state = event.kind.slice("deploy.".length).replaceAll("_", " ");
  const fields = [
    `*Deploy*\n${title}`,
    `*Status*\n${icon} ${state}`,
    `*By*\n${escapeSlack(deploy.user)} (${deploy.trigger})`,
    `*Commits*\n${range} ${escapeSlack(deploy.ref === deploy.sha ? "" : deploy.ref)}`.trimEnd(),
  ];
  const blocks: unknown[] = [{ type: "section", fields: fields.map((f) => ({ type: "mrkdwn", text: f })) }];
  if (deploy.errorMessage && event.kind !== "deploy.succeeded") {
    blocks.push({
      type: "context",
      elements: [{ type: "mrkdwn", text: escapeSlack(deploy.errorMessage.slice(0, 2000)) }],
    });
  }
  return { text, blocks };
}
