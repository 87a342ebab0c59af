import { describe, expect, it } from "vitest";
import { MASK, SecretMasker } from "../../src/domain/secrets.js";

/** The rule, written the slow and obvious way: every character of any occurrence is hidden, one mask per run. */
function reference(text: string, secrets: string[]): string {
  const values = secrets.map((s) => s.trim()).filter((s) => s.length >= 4);
  const covered = new Array<boolean>(text.length).fill(false);
  for (const value of values) {
    for (let at = 0; at + value.length <= text.length; at++) {
      if (text.startsWith(value, at)) for (let i = at; i < at + value.length; i++) covered[i] = true;
    }
  }
  let out = "";
  for (let i = 0; i < text.length; i++) {
    if (!covered[i]) out += text[i];
    else if (i === 0 || !covered[i - 1]) out += MASK;
  }
  return out;
}

function streamed(masker: SecretMasker, pieces: string[]): string {
  const stream = masker.stream();
  return pieces.map((p) => stream.push(p)).join("") + stream.end();
}

/** A small deterministic PRNG, so a failure can be replayed. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

describe("SecretMasker.mask", () => {
  it("hides every occurrence, overlapping and touching ones as one mask", () => {
    const masker = new SecretMasker(["abab", "s3cr3t-value", "abc"]);
    expect(masker.mask("key=s3cr3t-value;")).toBe(`key=${MASK};`);
    expect(masker.mask("xababababy")).toBe(`x${MASK}y`);
    expect(masker.mask("s3cr3t-value s3cr3t-values3cr3t-value")).toBe(`${MASK} ${MASK}`);
    // Too short to be a secret worth the name: left alone.
    expect(masker.mask("abc")).toBe("abc");
  });

  it("masks two secrets that overlap each other whole", () => {
    const masker = new SecretMasker(["abcd", "cdef"]);
    expect(masker.mask("[abcdef]")).toBe(`[${MASK}]`);
  });

  it("trims the whitespace around a secret, so a key file's newline still ends its line", () => {
    const pem = "-----BEGIN KEY-----\nMIIEabc\n-----END KEY-----\n";
    const masker = new SecretMasker([pem]);
    expect(masker.mask(`before\n${pem}after\n`)).toBe(`before\n${MASK}\nafter\n`);
  });
});

describe("MaskingStream", () => {
  const secret = "sk-very-secret-value";
  const text = `the key is ${secret} and again:${secret}\n`;
  const masker = new SecretMasker([secret]);
  const expected = `the key is ${MASK} and again:${MASK}\n`;

  it("finds a secret split across two writes, at every split point", () => {
    for (let cut = 0; cut <= text.length; cut++) {
      const out = streamed(masker, [text.slice(0, cut), text.slice(cut)]);
      expect(out, `cut at ${cut}`).toBe(expected);
    }
  });

  it("finds it split across three writes, at every pair of split points", () => {
    for (let a = 0; a <= text.length; a++) {
      for (let b = a; b <= text.length; b++) {
        expect(streamed(masker, [text.slice(0, a), text.slice(a, b), text.slice(b)])).toBe(expected);
      }
    }
  });

  it("finds a secret inside a 100 KB line, read in 64 KiB pieces or in one", () => {
    const line = `${"x".repeat(65_530)}${secret}${"y".repeat(40_000)}`;
    const want = `${"x".repeat(65_530)}${MASK}${"y".repeat(40_000)}`;
    const pieces: string[] = [];
    for (let at = 0; at < line.length; at += 64 * 1024) pieces.push(line.slice(at, at + 64 * 1024));
    expect(streamed(masker, pieces)).toBe(want);
    expect(streamed(masker, [line])).toBe(want);
  });

  it("handles a secret that overlaps itself (abab in ababab…), at every split point", () => {
    const self = new SecretMasker(["abab"]);
    for (const input of ["ababab", "xabababy", "aba abab ab ababa", "abababababxab"]) {
      const want = reference(input, ["abab"]);
      expect(self.mask(input)).toBe(want);
      for (let a = 0; a <= input.length; a++) {
        for (let b = a; b <= input.length; b++) {
          const out = streamed(self, [input.slice(0, a), input.slice(a, b), input.slice(b)]);
          expect(out, `${input} cut at ${a},${b}`).toBe(want);
        }
      }
    }
    // One character at a time: the held tail must remember the mask it continues.
    expect(streamed(self, [..."abababac"])).toBe(`${MASK}ac`);
  });

  it("shows text that cannot start a secret at once, and holds back at most the longest secret minus one", () => {
    const stream = masker.stream();
    expect(stream.push("progress 10%\r")).toBe("progress 10%\r");
    expect(stream.holding).toBe(0);
    expect(stream.push("copying sk-very")).toBe("copying ");
    expect(stream.holding).toBe("sk-very".length);
    expect(stream.push("-secret-valu")).toBe("");
    expect(stream.holding).toBeLessThanOrEqual(secret.length - 1);
    expect(stream.push("e!")).toBe(`${MASK}!`);
    // Not a secret after all: shown when the text says so, or at the end.
    expect(stream.push(" sk-ve")).toBe(" ");
    expect(stream.push("ry-nice")).toBe("sk-very-nice");
    expect(stream.push(" sk-")).toBe(" ");
    expect(stream.end()).toBe("sk-");
  });

  it("takes more secrets mid-stream, keeping what it holds", () => {
    const stream = new SecretMasker(["first-secret"]).stream();
    expect(stream.push("a first-secret b first-sec")).toBe(`a ${MASK} b `);
    stream.use(new SecretMasker(["first-secret", "late-secret"]));
    expect(stream.push("ret c late-sec")).toBe(`${MASK} c `);
    expect(stream.push("ret d") + stream.end()).toBe(`${MASK} d`);
  });

  it("agrees with the reference on random text, secrets and pieces", () => {
    const next = random(7);
    const pick = (alphabet: string, length: number) =>
      Array.from({ length }, () => alphabet[Math.floor(next() * alphabet.length)]).join("");
    for (let round = 0; round < 400; round++) {
      const secrets = Array.from({ length: 1 + Math.floor(next() * 3) }, () =>
        pick("ab\nc", 4 + Math.floor(next() * 5)),
      );
      const input = pick("abc\nx", Math.floor(next() * 120));
      const pieces: string[] = [];
      for (let at = 0; at < input.length; ) {
        const size = Math.floor(next() * 9);
        pieces.push(input.slice(at, at + size));
        at += size;
      }
      const m = new SecretMasker(secrets);
      const want = reference(input, secrets);
      expect(m.mask(input), JSON.stringify({ secrets, input })).toBe(want);
      expect(streamed(m, pieces), JSON.stringify({ secrets, pieces })).toBe(want);
    }
  });

  it("never holds back half of a surrogate pair", () => {
    const emoji = new SecretMasker(["😀😀secret"]);
    const stream = emoji.stream();
    const out = stream.push("a😀");
    expect(out).toBe("a");
    expect(out + stream.push("b") + stream.end()).toBe("a😀b");
  });
});
