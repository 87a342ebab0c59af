/**
 * Server-Sent Events over fetch: EventSource cannot send an Authorization
 * header, and a token in the URL would end up in logs. Reads one stream
 * until it ends or fails; reconnecting is the caller's decision.
 */
export interface StreamEvent {
  event: string;
  data: string;
  id: string | undefined;
}

export interface StreamOptions {
  headers: Record<string, string>;
  signal: AbortSignal;
  onOpen?: () => void;
  onEvent: (event: StreamEvent) => void;
}

/** Resolves when the server ends the stream; rejects on a failed request (with the Response when there was one). */
export async function readEventStream(url: string, options: StreamOptions): Promise<void> {
  const response = await fetch(url, {
    headers: { accept: "text/event-stream", ...options.headers },
    signal: options.signal,
    cache: "no-store",
  });
  if (!response.ok || !response.body) throw response;
  options.onOpen?.();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = "message";
  let data: string[] = [];
  let id: string | undefined;
  const dispatch = () => {
    if (data.length > 0) options.onEvent({ event, data: data.join("\n"), id });
    event = "message";
    data = [];
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    // Lines end in \n (a \r before it is dropped): a \r alone at a chunk's end must not split a line.
    let newline = buffer.indexOf("\n");
    while (newline >= 0) {
      const line = buffer.slice(0, newline).replace(/\r$/, "");
      buffer = buffer.slice(newline + 1);
      if (line === "") dispatch();
      else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
        else if (field === "id") id = value;
      }
      newline = buffer.indexOf("\n");
    }
  }
}
