/**
 * Masks known secret values in a line of output. Values shorter than four
 * characters are not masked: they would blank out ordinary text and are not
 * secrets worth the name.
 */
export const MASK = "********";

export class SecretMasker {
  private readonly secrets: string[];

  constructor(secrets: Iterable<string>) {
    // Longest first, so that a secret containing another is masked whole.
    this.secrets = [...new Set([...secrets].filter((s) => s.length >= 4))].sort(
      (a, b) => b.length - a.length,
    );
  }

  mask(text: string): string {
    let out = text;
    for (const secret of this.secrets) {
      if (out.includes(secret)) out = out.split(secret).join(MASK);
    }
    return out;
  }

  with(more: Iterable<string>): SecretMasker {
    return new SecretMasker([...this.secrets, ...more]);
  }
}
