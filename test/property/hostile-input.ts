import { readdirSync } from "node:fs";
import path from "node:path";
import fc from "fast-check";

/**
 * Generators of hostile and random text for the property tests: what an
 * attacker, a confused user or a broken client would send as a ref, a name,
 * a manifest field, an archive entry or a webhook field. Every shell payload
 * and option-like value writes into `markerDir` if anything ever executes or
 * interprets it, so a test asserts "nothing ran" by that directory staying
 * empty.
 */

/** Shell payloads: each would create a file in `markerDir` if a shell (or `sh -c`) ever ran it. */
export function shellPayloads(markerDir: string): string[] {
  const m = path.join(markerDir, "shell");
  return [
    `$(touch ${m})`,
    `\`touch ${m}\``,
    `;touch ${m}`,
    `; touch ${m};`,
    `|touch ${m}`,
    `&&touch ${m}`,
    `||touch ${m}`,
    `&touch ${m}&`,
    `\ntouch ${m}\n`,
    `\r\ntouch ${m}`,
    `>${m}`,
    `$(>${m})`,
    `'$(touch ${m})'`,
    `"; touch ${m}; echo "`,
    `\${IFS}touch\${IFS}${m}`,
    `$({touch,${m}})`,
  ];
}

/** Option-looking values, for git, tar, ssh or any other program: each writes into `markerDir` if obeyed. */
export function optionPayloads(markerDir: string): string[] {
  const m = path.join(markerDir, "option");
  return [
    `--upload-pack=touch ${m}`,
    `--receive-pack=touch ${m}`,
    `--exec=touch ${m}`,
    `--output=${m}`,
    `-o${m}`,
    "-o",
    `--template=${m}`,
    `-c core.sshCommand=touch ${m}`,
    `--config=core.fsmonitor=touch ${m}`,
    `-oProxyCommand=touch ${m}`,
    "--",
    "-",
    "-h",
    "--help",
    "--end-of-options",
  ];
}

/** Git transports that run commands or open descriptors, and other URL tricks. */
export function transportPayloads(markerDir: string): string[] {
  const m = path.join(markerDir, "transport");
  return [
    `ext::sh -c touch% ${m}`,
    `ext::touch ${m}`,
    "fd::17",
    "fd::0/x",
    `file://${m}`,
    `ssh://-oProxyCommand=touch%20${m}/x`,
    `-oProxyCommand=touch ${m}:x`,
    "transport::x",
  ];
}

/** Path tricks: traversal, absolute paths, doubled or encoded separators, NUL, dots. */
export const PATH_TRICKS = [
  "../../x",
  "../../../../../../etc/passwd",
  "..",
  ".",
  "./",
  "/",
  "//",
  "/etc/passwd",
  "//x",
  "a//b",
  "a/./b",
  "a/../b",
  "x/..",
  "\0",
  "x\0y",
  "%2e%2e%2f",
  "..%2F..%2Fx",
  "a%2Fb",
  "%00",
  "\\..\\..\\x",
  "C:\\x",
  "~",
  "~root",
  ".git",
  ".hidden",
  "x.lock",
  "x.",
  "x ",
  " x",
];

/** Git revision syntax, the accepted steps (`~1`, `^`) and everything else. */
export const REVISION_SYNTAX = [
  "main~1",
  "main~",
  "main^",
  "main^2",
  "main~1^2~3",
  "v1^",
  "v1.2^",
  "HEAD",
  "HEAD~1",
  "@",
  "@{-1}",
  "@{u}",
  "main@{upstream}",
  "main@{1.day.ago}",
  ":/x",
  "main:VERSION",
  ":0:x",
  "main^{tree}",
  "main^{/fix}",
  "main^!",
  "main^@",
  "^main",
  "main..other",
  "main...other",
  "refs/heads/main",
  "heads/main",
  "origin/main",
  "main~99999",
  "main~1~1~1~1~1~1~1~1~1~1~1~1~1~1~1~1~1~1~1~1~1",
];

/** Values that look fine (and often are): what an honest client sends. */
export const VALID_LOOKING = [
  "main",
  "v1.0.0",
  "release/2024-06",
  "feature/x",
  "shop",
  "staging",
  "production",
  "a",
  "0",
  "a-b",
  "x1",
  "admin",
  "api",
  "deploys",
  "a".repeat(63),
  "a".repeat(64),
  "0123456789abcdef0123456789abcdef01234567",
  "deadbeef",
];

/** Characters that are rarely expected: controls, escapes, bidi overrides, invisible ones. */
export const ODD_CHARACTERS = [
  "\u0000",
  "\u0001",
  "\t",
  "\n",
  "\r",
  "\u000b",
  "\u001b",
  "\u001b[31m",
  "\u001b]0;title\u0007",
  "\u001b]52;c;cHduZWQ=\u0007",
  "\u007f",
  "\u0085",
  "\u00a0",
  "\u200b",
  "\u202e",
  "\ufeff",
  "\ud83d\ude00",
  "\u00e9",
  "e\u0301",
  "\uff0e\uff0e\uff0f",
  "\u2215",
  " ",
  '"',
  "'",
  "\\",
  "#",
  "?",
  "%",
  "&",
  "*",
  "{",
  "}",
  "[",
  "]",
  "<",
  ">",
  "!",
  "$",
  "=",
  ",",
  ":",
  "@",
];

/** Keys with a meaning of their own to JavaScript objects. */
export const OBJECT_KEYS = ["__proto__", "constructor", "prototype", "toString", "hasOwnProperty"];

/** A long string: past every length limit Turnout or the router has. */
export const longString = fc
  .tuple(fc.constantFrom("a", "-", "/", ".", "%2F", "é", "$(x)"), fc.constantFrom(64, 101, 201, 1025, 5000))
  .map(([unit, count]) => unit.repeat(Math.ceil(count / unit.length)).slice(0, Math.max(count, unit.length)));

/**
 * One hostile or random value: a payload, a trick, some syntax, a valid-looking
 * value, random unicode, or a few of these glued together (the interesting
 * cases are often a valid prefix followed by something else).
 */
export function hostileString(markerDir: string): fc.Arbitrary<string> {
  const fragment = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...shellPayloads(markerDir)) },
    { weight: 2, arbitrary: fc.constantFrom(...optionPayloads(markerDir)) },
    { weight: 1, arbitrary: fc.constantFrom(...transportPayloads(markerDir)) },
    { weight: 2, arbitrary: fc.constantFrom(...PATH_TRICKS) },
    { weight: 2, arbitrary: fc.constantFrom(...REVISION_SYNTAX) },
    { weight: 3, arbitrary: fc.constantFrom(...VALID_LOOKING) },
    { weight: 2, arbitrary: fc.constantFrom(...ODD_CHARACTERS) },
    { weight: 1, arbitrary: fc.constantFrom(...OBJECT_KEYS) },
    { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 12 }) },
    { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 8 }) },
    { weight: 1, arbitrary: fc.string({ unit: "binary-ascii", maxLength: 12 }) },
  );
  return fc.oneof(
    { weight: 4, arbitrary: fragment },
    {
      weight: 4,
      arbitrary: fc.array(fragment, { minLength: 2, maxLength: 4 }).map((parts) => parts.join("")),
    },
    { weight: 1, arbitrary: longString },
  );
}

/** What a marker directory holds: empty unless something ran that should not have. */
export function markers(markerDir: string): string[] {
  return readdirSync(markerDir);
}
