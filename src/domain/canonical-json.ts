/**
 * JSON with object keys sorted at every level and `undefined` members left
 * out, so that two values that mean the same serialise to the same bytes
 * whatever order their keys were built in. Identities (revisions, keys) are
 * hashes of this form; array order is kept, because in settings it means
 * something (argv, host lists).
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map((item) => (item === undefined ? null : sortKeys(item)));
  if (value === null || typeof value !== "object") return value;
  const sorted: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) {
    const member = (value as Record<string, unknown>)[key];
    if (member !== undefined) sorted[key] = sortKeys(member);
  }
  return sorted;
}
