import { TurnoutError } from "../domain/errors.js";

/**
 * Pagination cursors are opaque to clients (so the encoding can change) but
 * are simply the last deploy id seen, base64url-encoded with a version tag.
 */
export function encodeCursor(lastId: number): string {
  return Buffer.from(`d1:${lastId}`).toString("base64url");
}

export function decodeCursor(cursor: string): number {
  const match = /^d1:([0-9]{1,15})$/.exec(Buffer.from(cursor, "base64url").toString("utf8"));
  if (!match)
    throw new TurnoutError("E_VALIDATION", "invalid cursor: pass back a nextCursor unchanged", { cursor });
  return Number(match[1]);
}
