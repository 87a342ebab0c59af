import { createGunzip, type Gunzip } from "node:zlib";

/**
 * The ref updates a `git push` asks for, read from the start of the
 * receive-pack request while the body streams through to git: pkt-lines
 * `<old> <new> <ref>[\0capabilities]` up to a flush packet, then the pack.
 * (Shallow lines and push certificates may come first; every pkt-line that
 * looks like a command counts.) Only the command list is kept, so the pack
 * itself, however large, costs nothing here.
 */
export interface PushCommand {
  ref: string;
  old: string;
  new: string;
}

const COMMAND = /^([0-9a-f]{40}|[0-9a-f]{64}) ([0-9a-f]{40}|[0-9a-f]{64}) (refs\/\S+)$/;
// Thousands of refs in one push fit easily; a client that sends more before
// its flush packet is not a git client we need to understand.
const MAX_COMMAND_BYTES = 4 * 1024 * 1024;

class PktCommandParser {
  private buffer: Buffer = Buffer.alloc(0);
  readonly commands: PushCommand[] = [];
  state: "reading" | "done" | "failed" = "reading";

  feed(chunk: Buffer): void {
    if (this.state !== "reading") return;
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    while (this.state === "reading" && this.buffer.length >= 4) {
      const prefix = this.buffer.subarray(0, 4).toString("latin1");
      if (!/^[0-9a-f]{4}$/i.test(prefix)) {
        this.state = "failed";
        return;
      }
      const length = Number.parseInt(prefix, 16);
      if (length === 0) {
        this.state = "done";
        this.buffer = Buffer.alloc(0);
        return;
      }
      if (length < 4) {
        this.state = "failed";
        return;
      }
      if (this.buffer.length < length) break;
      this.take(this.buffer.subarray(4, length).toString("utf8"));
      this.buffer = this.buffer.subarray(length);
    }
    if (this.buffer.length > MAX_COMMAND_BYTES) this.state = "failed";
  }

  private take(payload: string): void {
    const line = payload.split("\0")[0]!.replace(/\n$/, "");
    const match = COMMAND.exec(line);
    if (match) this.commands.push({ old: match[1]!, new: match[2]!, ref: match[3]! });
  }
}

export interface PushCommandWatcher {
  /** Every chunk of the request body, in order, as it is passed on. */
  write(chunk: Buffer): void;
  /** The requested updates; undefined when the body could not be understood. */
  result(): Promise<PushCommand[] | undefined>;
}

/** Watches a receive-pack request body, gzip-encoded or not. */
export function watchPushCommands(contentEncoding: string | undefined): PushCommandWatcher {
  const parser = new PktCommandParser();
  const encoding = (contentEncoding ?? "").trim().toLowerCase();
  if (encoding === "" || encoding === "identity") {
    return {
      write: (chunk) => parser.feed(chunk),
      result: async () => (parser.state === "done" ? parser.commands : undefined),
    };
  }
  if (encoding !== "gzip" && encoding !== "x-gzip") {
    parser.state = "failed";
    return { write: () => undefined, result: async () => undefined };
  }
  let gunzip: Gunzip | undefined = createGunzip();
  const finished = new Promise<void>((resolve) => {
    const stop = () => {
      gunzip?.destroy();
      gunzip = undefined;
      resolve();
    };
    gunzip!.on("data", (chunk: Buffer) => {
      parser.feed(chunk);
      if (parser.state !== "reading") stop();
    });
    gunzip!.on("error", () => {
      parser.state = "failed";
      stop();
    });
    gunzip!.on("end", stop);
    gunzip!.on("close", stop);
  });
  return {
    write: (chunk) => {
      if (gunzip && parser.state === "reading") gunzip.write(chunk);
    },
    result: async () => {
      gunzip?.end();
      await finished;
      return parser.state === "done" ? parser.commands : undefined;
    },
  };
}
