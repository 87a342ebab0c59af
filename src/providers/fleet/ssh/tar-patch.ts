/**
 * A stage tar (stage-tar.ts) as a patch of another one the host keeps: its
 * 512-byte records, each either copied from a range of the base tar or sent
 * as is. A tar of hard-link entries is one header record per entry (plus a
 * PAX record pair for a long name or link target), in plan order, so a
 * one-file change is a copy, the changed header, and a copy: three ranges,
 * about 500 bytes, whatever the tree's size.
 *
 * The host rebuilds the tar with one `dd` per range (remote-staging.ts), so
 * the number of ranges is what it costs there: a patch has at most
 * MAX_PATCH_RANGES. Past that, the shortest copied runs are sent as new
 * records instead (a few hundred bytes each, gzipped to less), and when more
 * than half the tar would go as new records the patch is not worth it.
 */

export const TAR_RECORD = 512;
/**
 * 64 `dd` runs cost a host well under a tenth of the one `tar -x` of a
 * 3,000-entry release (the full path's main cost), and a patch this size
 * still covers a deploy that touches 30 files scattered over the tree;
 * beyond that the whole tree (a few hundred KB gzipped) is no great loss.
 * The host refuses more (remote-staging.ts).
 */
export const MAX_PATCH_RANGES = 64;

/** Copy `count` records of the base from record `start`, or take the next `count` new records. */
export type PatchRange = { copy: number; count: number } | { copy?: undefined; count: number };

export interface TarPatch {
  ranges: PatchRange[];
  /** The new records, in order: `count` for each range that is not a copy. */
  literal: Buffer;
}

/** The patch that turns `base` into `next`, or undefined when it is not worth sending. */
export function tarPatch(base: Buffer, next: Buffer, maxRanges = MAX_PATCH_RANGES): TarPatch | undefined {
  if (base.length % TAR_RECORD !== 0 || next.length % TAR_RECORD !== 0) return undefined;
  const record = (buf: Buffer, i: number) => buf.toString("latin1", i * TAR_RECORD, (i + 1) * TAR_RECORD);
  // The first place of each record of the base: headers are unique (one per path).
  const where = new Map<string, number>();
  const baseCount = base.length / TAR_RECORD;
  for (let i = 0; i < baseCount; i++) {
    const key = record(base, i);
    if (!where.has(key)) where.set(key, i);
  }
  // Greedy: carry on the current copy while the records match. After new
  // records, the base is taken up where they replaced records of it, or where
  // they were inserted, before anywhere else: records that are not unique (the
  // header of a PAX record, the end-of-archive zeros) would start a run in the
  // wrong place.
  const count = next.length / TAR_RECORD;
  const from: number[] = new Array<number>(count);
  let copied = -1; // the base record the last copy ended on
  let since = 0; // new records since then
  const matches = (j: number, key: string) => j >= 0 && j < baseCount && record(base, j) === key;
  for (let i = 0; i < count; i++) {
    const key = record(next, i);
    let j = -1;
    if (since === 0 && matches(copied + 1, key)) j = copied + 1;
    else if (since > 0 && matches(copied + 1 + since, key)) j = copied + 1 + since;
    else if (since > 0 && matches(copied + 1, key)) j = copied + 1;
    else j = where.get(key) ?? -1;
    from[i] = j;
    if (j >= 0) {
      copied = j;
      since = 0;
    } else since++;
  }
  let ranges = toRanges(from, 0);
  if (ranges.length > maxRanges) {
    // The fewest copied runs that must become new records: the shortest first.
    const lengths = [...new Set(ranges.filter((r) => r.copy !== undefined).map((r) => r.count))].sort(
      (a, b) => a - b,
    );
    let lo = 0;
    let hi = lengths.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (toRanges(from, lengths[mid]!).length <= maxRanges) hi = mid;
      else lo = mid + 1;
    }
    if (lo === lengths.length) return undefined;
    ranges = toRanges(from, lengths[lo]!);
  }
  const literalRecords = ranges.reduce((sum, r) => sum + (r.copy === undefined ? r.count : 0), 0);
  if (literalRecords * 2 > count) return undefined;
  const literal = Buffer.alloc(literalRecords * TAR_RECORD);
  let at = 0;
  let i = 0;
  for (const range of ranges) {
    if (range.copy === undefined) {
      next.copy(literal, at * TAR_RECORD, i * TAR_RECORD, (i + range.count) * TAR_RECORD);
      at += range.count;
    }
    i += range.count;
  }
  return { ranges, literal };
}

/** The tar a patch makes of `base` (what the host does with `dd`); for checks and tests. */
export function applyTarPatch(base: Buffer, patch: TarPatch): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (const range of patch.ranges) {
    if (range.copy === undefined) {
      parts.push(patch.literal.subarray(at * TAR_RECORD, (at + range.count) * TAR_RECORD));
      at += range.count;
    } else parts.push(base.subarray(range.copy * TAR_RECORD, (range.copy + range.count) * TAR_RECORD));
  }
  return Buffer.concat(parts);
}

/** Runs of `from` (base record of each new record, -1 none) as ranges; copied runs of at most `shortest` records go as new records. */
function toRanges(from: readonly number[], shortest: number): PatchRange[] {
  const runs: PatchRange[] = [];
  for (let i = 0; i < from.length; i++) {
    const last = runs.at(-1);
    const start = from[i]!;
    if (start < 0) {
      if (last && last.copy === undefined) last.count++;
      else runs.push({ count: 1 });
    } else if (last?.copy !== undefined && last.copy + last.count === start) last.count++;
    else runs.push({ copy: start, count: 1 });
  }
  if (shortest === 0) return runs;
  const merged: PatchRange[] = [];
  for (const run of runs) {
    const literal = run.copy === undefined || run.count <= shortest;
    const last = merged.at(-1);
    if (literal && last && last.copy === undefined) last.count += run.count;
    else merged.push(literal ? { count: run.count } : run);
  }
  return merged;
}
