/**
 * Manifests that attacked the server before it parsed in a bounded way:
 * an alias bomb (a few hundred bytes that expand to 9^9 nodes) and a
 * manifest with thousands of keys (the yaml library's duplicate-key check
 * compared each key with every earlier one).
 */

/** `base` (a valid manifest) followed by a billion-laughs alias bomb at the top level. */
export function aliasBomb(base: string): string {
  const names = "abcdefghi";
  const lines = [`a: &a [${Array(9).fill('"lol"').join(", ")}]`];
  for (let i = 1; i < names.length; i++) {
    lines.push(
      `${names[i]}: &${names[i]} [${Array(9)
        .fill(`*${names[i - 1]}`)
        .join(", ")}]`,
    );
  }
  return `${base}${lines.join("\n")}\n`;
}

/**
 * `base` (a manifest ending in its staging deploy block) with `count` more
 * entries in that block's `env`: KEY_<i>: value-<i>, each value padded by
 * `padding` characters.
 */
export function manyKeys(base: string, count: number, padding = 0): string {
  const pad = "x".repeat(padding);
  const entries: string[] = [];
  for (let i = 0; i < count; i++) entries.push(`        KEY_${i}: value-${i}${pad}`);
  return `${base}      env:\n${entries.join("\n")}\n`;
}
