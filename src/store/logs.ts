import type { Kysely, Transaction } from "kysely";
import type { Schema } from "./schema.js";

export interface LogChunk {
  seq: number;
  offset: number;
  text: string;
}

/**
 * A deploy's log as ordered chunks addressed by byte offset. Readers ask
 * "everything from offset N" and get whole chunks (the first one trimmed to
 * start at N), so a tail never misses or repeats a byte.
 */
export class LogStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async append(deployId: number, chunk: LogChunk): Promise<void> {
    await this.db
      .insertInto("log_chunks")
      .values({
        deploy_id: deployId,
        seq: chunk.seq,
        offset: chunk.offset,
        length: Buffer.byteLength(chunk.text),
        text: chunk.text,
        created_at: new Date().toISOString(),
      })
      .execute();
  }

  /** The end of the stored log: where the next chunk starts, and its sequence number. */
  async end(deployId: number): Promise<{ offset: number; seq: number }> {
    const row = await this.db
      .selectFrom("log_chunks")
      .select(["seq", "offset", "length"])
      .where("deploy_id", "=", deployId)
      .orderBy("seq", "desc")
      .limit(1)
      .executeTakeFirst();
    return row ? { offset: row.offset + row.length, seq: row.seq + 1 } : { offset: 0, seq: 0 };
  }

  async read(
    deployId: number,
    fromOffset: number,
    maxBytes = 1024 * 1024,
  ): Promise<{ chunks: LogChunk[]; nextOffset: number }> {
    const rows = await this.db
      .selectFrom("log_chunks")
      .select(["seq", "offset", "length", "text"])
      .where("deploy_id", "=", deployId)
      .where((eb) => eb(eb("offset", "+", eb.ref("length")), ">", fromOffset))
      .orderBy("seq", "asc")
      .execute();
    const chunks: LogChunk[] = [];
    let next = fromOffset;
    let bytes = 0;
    for (const row of rows) {
      if (bytes > 0 && bytes + row.length > maxBytes) break;
      if (row.offset < fromOffset) {
        const tail = Buffer.from(row.text)
          .subarray(fromOffset - row.offset)
          .toString();
        chunks.push({ seq: row.seq, offset: fromOffset, text: tail });
      } else {
        chunks.push({ seq: row.seq, offset: row.offset, text: row.text });
      }
      next = row.offset + row.length;
      bytes += row.length;
    }
    return { chunks, nextOffset: next };
  }
}

/**
 * Appends one line at the end of a deploy's log inside the caller's
 * transaction, for notes written together with a state change (cancelled
 * while queued, interrupted): a follower that sees the change also sees the
 * note. Only for deploys no worker is writing to.
 */
export async function appendNote(trx: Transaction<Schema>, deployId: number, line: string): Promise<void> {
  const last = await trx
    .selectFrom("log_chunks")
    .select(["seq", "offset", "length"])
    .where("deploy_id", "=", deployId)
    .orderBy("seq", "desc")
    .limit(1)
    .executeTakeFirst();
  const text = `${line}\n`;
  await trx
    .insertInto("log_chunks")
    .values({
      deploy_id: deployId,
      seq: last ? last.seq + 1 : 0,
      offset: last ? last.offset + last.length : 0,
      length: Buffer.byteLength(text),
      text,
      created_at: new Date().toISOString(),
    })
    .execute();
}
