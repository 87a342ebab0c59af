/**
 * Git's pkt-line framing: four hex digits giving the length of the line
 * (those four included), then the payload; `0000` is a flush packet.
 */
const MAX_PKT_PAYLOAD = 65516;

export const FLUSH_PKT = "0000";

export function pktLine(payload: string): string {
  const bytes = Buffer.byteLength(payload, "utf8");
  if (bytes > MAX_PKT_PAYLOAD) throw new RangeError(`pkt-line payload of ${bytes} bytes is too long`);
  return (bytes + 4).toString(16).padStart(4, "0") + payload;
}

export type GitService = "git-upload-pack" | "git-receive-pack";

/**
 * A ref advertisement that only says no. Git reads the `# service=` header,
 * then dies on the ERR packet with `fatal: remote error: <message>`: the one
 * way to put our own words in front of a user of `git push` / `git clone`
 * (an HTTP 403 would only show as "The requested URL returned error: 403").
 */
export function refusalAdvertisement(service: GitService, message: string): string {
  const oneLine = message.replace(/[\r\n]+/g, " ");
  return pktLine(`# service=${service}\n`) + FLUSH_PKT + pktLine(`ERR ${oneLine}\n`);
}
