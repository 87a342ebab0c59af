import { createHash } from "node:crypto";
import tar from "tar-stream";
import type { ReleasePlan } from "../../../agent/host-layout/release-plan.js";
import { cacheName } from "./stage-input.js";

/** A release's stage tar, uncompressed, and its sha256: the name an SSH host keeps it under. */
export interface StageTar {
  bytes: Buffer;
  digest: string;
}

/**
 * The stage tar of a plan: directories (parents first, final modes), files
 * as hard links to `C/<aa>/<cache name>` (C is the cache on the host) and
 * symlinks, all under `T/` (the tree being staged). One `tar -x` on the host
 * writes it all, however many files.
 *
 * Byte for byte a function of the plan (fixed mtime, owner, names and entry
 * order; tar-stream adds nothing of the moment or the machine): a host keeps
 * the tar of the release it staged under its digest, and the server makes it
 * again from the base manifest to send the next release as a patch of it
 * (tar-patch.ts). A server whose tar came out otherwise (another tar-stream)
 * only misses the kept one: the host then gets the whole tree.
 */
export async function stageTar(plan: ReleasePlan): Promise<StageTar> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on("data", (chunk: unknown) => chunks.push(chunk as Buffer));
  const ended = new Promise<void>((resolve, reject) => {
    pack.on("end", resolve);
    pack.on("error", reject);
  });
  const mtime = new Date(0);
  for (const dir of plan.dirs)
    pack.entry({ name: `T/${dir.path}`, type: "directory", mode: dir.mode & 0o777, mtime });
  for (const file of plan.files) {
    const name = cacheName(file.sha256, file.mode);
    pack.entry({
      name: `T/${file.path}`,
      type: "link",
      linkname: `C/${name.slice(0, 2)}/${name}`,
      mode: 0o444,
      mtime,
    });
  }
  for (const link of plan.links)
    pack.entry({ name: `T/${link.path}`, type: "symlink", linkname: link.target, mode: 0o777, mtime });
  pack.finalize();
  await ended;
  const bytes = Buffer.concat(chunks);
  return { bytes, digest: createHash("sha256").update(bytes).digest("hex") };
}
