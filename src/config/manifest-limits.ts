/**
 * The caps every manifest is held to, wherever it comes from (a directory, a
 * configuration repository, `turnout config validate`). A manifest of a few
 * hundred lines is a few KiB; these leave a wide margin for real files and
 * refuse what can only be a mistake or an attack, with a problem naming the
 * file instead of a server that stops answering.
 */

/** Largest manifest read at all; a larger file is refused without being read. */
export const MAX_MANIFEST_BYTES = 256 * 1024;

/** Anchors (`&a`) and aliases (`*a`) together in one manifest. */
export const MAX_ANCHORS_AND_ALIASES = 1_000;

/** Nodes that aliases may add to a manifest when expanded (an alias bomb adds billions). */
export const MAX_ALIAS_EXPANSION = 10_000;

/** Nesting of maps and lists; real manifests nest fewer than ten levels. */
export const MAX_NESTING = 100;

/** Problems listed per manifest; the rest are counted, not listed. */
export const MAX_PROBLEMS_PER_FILE = 20;

/** How long the parser may work on one manifest before it is stopped and the manifest refused. */
export const PARSE_TIMEOUT_MS = 10_000;

/** Heap of the parser's worker thread: a manifest needing more is refused. */
export const PARSER_HEAP_MB = 256;

/** How long `turnout server` waits for the first load before it starts with the rest still loading. */
export const STARTUP_WAIT_MS = 2_000;

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${Math.round(bytes / 1024)} KiB`;
  return `${bytes} bytes`;
}

/** The message of a manifest over MAX_MANIFEST_BYTES. */
export function tooLargeMessage(bytes: number): string {
  return `is ${formatBytes(bytes)}; manifests are limited to ${formatBytes(MAX_MANIFEST_BYTES)}`;
}
