import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import type { ReleasePlan } from "../../../agent/host-layout/release-plan.js";
import { sharedLinkTarget } from "../../../agent/host-layout/release-plan.js";
import { cacheName } from "./stage-input.js";

/**
 * A release's listing: what an SSH host keeps of each release it staged
 * (`<root>/.turnout/listings/<artifact digest>-<listing digest>`), so that
 * the next release can be sent as the lines that changed instead of the
 * whole tree (issue 15 point 3 for SSH hosts; agents keep manifests instead,
 * see agent/kept-manifests.ts). One line per planned entry, the path first
 * (the artifact rules keep tabs and line breaks out of paths, so the path is
 * everything before the first tab):
 *
 *   <path>\td <mode>               a directory and the mode it ends with (octal, as `find %m`)
 *   <path>\tf <cache name> <size>  a file: the cache blob it is a hard link to
 *   <path>\tl <target>             a symlink
 *
 * sorted by bytes (`LC_ALL=C sort` on the host), each line ending in a line
 * break; the listing's digest is the sha256 of that text. Shared paths are
 * not in it (the stage input names them). The host derives from it both the
 * blobs a release needs and the tree it must find (remote-listings.ts), and
 * rebuilds the next listing from its kept one plus a difference, checked
 * against the digest the server sends.
 */
export interface ReleaseListing {
  lines: string[];
  digest: string;
  /**
   * false: a symlink target holds a line break, so that link is not in the
   * lines; the listing still serves the `missing` question but is neither
   * kept on the host nor used as a base (the tree goes whole, as before).
   */
  complete: boolean;
}

export function releaseListing(plan: ReleasePlan): ReleaseListing {
  const lines: string[] = [];
  let complete = true;
  for (const dir of plan.dirs) lines.push(`${dir.path}\td ${(dir.mode & 0o777).toString(8)}`);
  for (const file of plan.files)
    lines.push(`${file.path}\tf ${cacheName(file.sha256, file.mode)} ${file.size}`);
  for (const link of plan.links) {
    if (/[\r\n]/.test(link.target)) complete = false;
    else lines.push(`${link.path}\tl ${link.target}`);
  }
  sortBytes(lines);
  return { lines, digest: listingDigest(lines), complete };
}

export function listingDigest(lines: readonly string[]): string {
  const hash = createHash("sha256");
  for (const line of lines) hash.update(`${line}\n`, "utf8");
  return hash.digest("hex");
}

/** The lines to take out of `base` and those to put in to make `next`. */
export function listingDelta(
  base: ReleaseListing,
  next: ReleaseListing,
): { removed: string[]; added: string[] } {
  const had = new Set(base.lines);
  const has = new Set(next.lines);
  return {
    removed: base.lines.filter((line) => !has.has(line)),
    added: next.lines.filter((line) => !had.has(line)),
  };
}

/** A base the host keeps: the artifact it was staged from and its listing's digest. */
export interface ListingBase {
  artifact: string;
  digest: string;
  listing: ReleaseListing;
}

/**
 * The `missing` question, gzipped:
 *
 *   M full | M delta <base artifact> <base listing digest>
 *   N <listing digest>
 *   - <line>           (delta) a line of the base the release does not have
 *   + <line>           every line of the listing (full), or those the base lacks (delta)
 *   B <name> <size>    blobs that seed shared paths
 *   R <entry>          shared links, as `find` prints them on the host
 *   END
 */
export function listingMissingInput(plan: ReleasePlan, listing: ReleaseListing, base?: ListingBase): Buffer {
  const lines: string[] = [];
  if (base) {
    const delta = listingDelta(base.listing, listing);
    lines.push(`M delta ${base.artifact} ${base.digest}`, `N ${listing.digest}`);
    for (const line of delta.removed) lines.push(`- ${line}`);
    for (const line of delta.added) lines.push(`+ ${line}`);
  } else {
    lines.push("M full", `N ${listing.digest}`);
    for (const line of listing.lines) lines.push(`+ ${line}`);
  }
  for (const seed of plan.seeds.values()) lines.push(`B ${seed.sha256} ${seed.size}`);
  for (const path of plan.shared) lines.push(`R l ${path} -> ${sharedLinkTarget(path)}`);
  lines.push("END", "");
  return gzipSync(lines.join("\n"), { level: 6 });
}

/** In place, by the bytes of each line's UTF-8 form: the order of `LC_ALL=C sort`. */
function sortBytes(lines: string[]): void {
  const keyed = lines.map((line) => ({ line, bytes: Buffer.from(line, "utf8") }));
  keyed.sort((a, b) => Buffer.compare(a.bytes, b.bytes));
  for (let i = 0; i < keyed.length; i++) lines[i] = keyed[i]!.line;
}
