import { createParser, type EventSourceMessage } from "eventsource-parser";

/**
 * A minimal follower of the log stream, the way the CLI follows one: fetch
 * with Accept: text/event-stream, parse events as they arrive. `stopWhen`
 * lets a test hang up mid-stream (to test reconnecting).
 */
export interface SseEvent {
  event: string;
  id: string | undefined;
  data: string;
}

export interface SseResult {
  status: number;
  contentType: string | null;
  events: SseEvent[];
  comments: string[];
  /** True when the server closed the stream (rather than the test hanging up). */
  endedByServer: boolean;
}

export async function followLog(
  url: string,
  token: string,
  options: {
    lastEventId?: string;
    stopWhen?: (events: SseEvent[]) => boolean;
    timeoutMs?: number;
  } = {},
): Promise<SseResult> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), options.timeoutMs ?? 30_000);
  const events: SseEvent[] = [];
  const comments: string[] = [];
  try {
    const response = await fetch(url, {
      headers: {
        authorization: `Bearer ${token}`,
        accept: "text/event-stream",
        ...(options.lastEventId !== undefined ? { "last-event-id": options.lastEventId } : {}),
      },
      signal: controller.signal,
    });
    const result = {
      status: response.status,
      contentType: response.headers.get("content-type"),
      events,
      comments,
      endedByServer: false,
    };
    if (!response.body || response.status !== 200) {
      await response.text();
      return result;
    }
    let stopped = false;
    const parser = createParser({
      onEvent(message: EventSourceMessage) {
        events.push({ event: message.event ?? "message", id: message.id, data: message.data });
        if (!stopped && options.stopWhen?.(events)) {
          stopped = true;
          controller.abort();
        }
      },
      onComment(comment: string) {
        comments.push(comment);
      },
    });
    const decoder = new TextDecoder();
    try {
      for await (const chunk of response.body) {
        parser.feed(decoder.decode(chunk as Uint8Array, { stream: true }));
        if (stopped) break;
      }
      result.endedByServer = !stopped;
    } catch (error) {
      if (!stopped) throw error;
    }
    return result;
  } finally {
    clearTimeout(timer);
  }
}

/** The log text carried by `log` events, checking that each starts where the previous ended. */
export function logText(events: SseEvent[], from = 0): string {
  let offset = from;
  let text = "";
  for (const event of events) {
    if (event.event !== "log") continue;
    const data = JSON.parse(event.data) as { offset: number; text: string };
    if (data.offset !== offset) throw new Error(`log event at ${data.offset}, expected ${offset}`);
    const end = offset + Buffer.byteLength(data.text);
    if (event.id !== String(end)) throw new Error(`log event id ${event.id}, expected ${end}`);
    text += data.text;
    offset = end;
  }
  return text;
}
