/**
 * A tag for shell source kept in TypeScript: the text is taken raw (no escape
 * processing), and since `${` would start an interpolation, the source writes
 * `\${` wherever sh means `${`. Interpolations are refused: the script is
 * constant, by design, and a single quote would end the quoting it travels in.
 */
export function sh(strings: TemplateStringsArray, ...values: unknown[]): string {
  if (values.length > 0) throw new Error("sh: shell source takes no interpolations");
  const text = strings.raw.join("").replaceAll("\\${", "${");
  if (text.includes("'")) throw new Error("sh: shell source must not contain a single quote");
  return text;
}
