import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { pktLine, refusalAdvertisement } from "../../src/http/git-http/pkt-line.js";
import { watchPushCommands } from "../../src/http/git-http/push-commands.js";

/** Reading the ref updates out of a receive-pack request while it streams through. */
const A = "a".repeat(40);
const B = "b".repeat(40);
const ZERO = "0".repeat(40);

function request(): Buffer {
  return Buffer.concat([
    Buffer.from(
      pktLine(`${ZERO} ${A} refs/heads/main\0 report-status side-band-64k agent=git/2.39\n`) +
        pktLine(`${A} ${B} refs/heads/feature\n`) +
        pktLine(`${B} ${ZERO} refs/tags/old\n`) +
        "0000",
    ),
    Buffer.from("PACK\0\0\0\x02 binary pack data that is never parsed", "latin1"),
  ]);
}

const expected = [
  { old: ZERO, new: A, ref: "refs/heads/main" },
  { old: A, new: B, ref: "refs/heads/feature" },
  { old: B, new: ZERO, ref: "refs/tags/old" },
];

describe("watchPushCommands", () => {
  it("reads the commands, whatever the chunking", async () => {
    const body = request();
    for (const size of [1, 3, 7, 64, body.length]) {
      const watcher = watchPushCommands(undefined);
      for (let i = 0; i < body.length; i += size) watcher.write(body.subarray(i, i + size));
      expect(await watcher.result(), `chunks of ${size}`).toEqual(expected);
    }
  });

  it("reads gzip-encoded requests", async () => {
    const zipped = gzipSync(request());
    const watcher = watchPushCommands("gzip");
    for (let i = 0; i < zipped.length; i += 5) watcher.write(zipped.subarray(i, i + 5));
    expect(await watcher.result()).toEqual(expected);
  });

  it("says it does not know when the body is not a command list", async () => {
    const garbage = watchPushCommands(undefined);
    garbage.write(Buffer.from("GET / HTTP/1.1\r\n"));
    expect(await garbage.result()).toBeUndefined();
    const truncated = watchPushCommands(undefined);
    truncated.write(Buffer.from(pktLine(`${ZERO} ${A} refs/heads/main\n`)));
    expect(await truncated.result()).toBeUndefined();
    const badZip = watchPushCommands("gzip");
    badZip.write(Buffer.from("not gzip at all"));
    expect(await badZip.result()).toBeUndefined();
    const unknownEncoding = watchPushCommands("br");
    unknownEncoding.write(request());
    expect(await unknownEncoding.result()).toBeUndefined();
  });

  it("ignores lines that are not commands (shallow, odd ref names)", async () => {
    const watcher = watchPushCommands(undefined);
    watcher.write(
      Buffer.from(
        pktLine(`shallow ${A}\n`) +
          pktLine(`${ZERO} ${A} HEAD\n`) +
          pktLine(`${ZERO} ${B} refs/heads/x\n`) +
          "0000",
      ),
    );
    expect(await watcher.result()).toEqual([{ old: ZERO, new: B, ref: "refs/heads/x" }]);
  });
});

describe("refusalAdvertisement", () => {
  it("frames the service header, a flush and one ERR line", () => {
    expect(refusalAdvertisement("git-receive-pack", "turnout: no\nway")).toBe(
      "001f# service=git-receive-pack\n0000" + "0018ERR turnout: no way\n",
    );
  });
});
