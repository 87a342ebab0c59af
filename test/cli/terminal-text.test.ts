import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { environmentsTable, problemLine } from "../../src/cli/output.js";
import { escapeText, jsonText, LogTextFilter, t, table } from "../../src/cli/terminal-text.js";
import { envFixture } from "./fixtures.js";

const CLIPBOARD = "\x1b]52;c;ZXZpbCBjb21tYW5k\x07";
const CLEAR = "\x1b[2J";

describe("escapeText", () => {
  it("shows every control character as a visible escape", () => {
    expect(escapeText(`freeze${CLIPBOARD}${CLEAR}`)).toBe("freeze\\x1b]52;c;ZXZpbCBjb21tYW5k\\x07\\x1b[2J");
    expect(escapeText("a\nb\rc\td\x00e\x7ff\u009b31m")).toBe("a\\nb\\rc\\td\\x00e\\x7ff\\x9b31m");
    // Controls that reorder or break lines in Unicode.
    expect(escapeText("user\u202enimda\u2028x\u2066y")).toBe("user\\u{202e}nimda\\u{2028}x\\u{2066}y");
  });

  it("leaves ordinary text alone, whatever the script", () => {
    expect(escapeText("Zoë: déploiement — 部署 ✓ C:\\path")).toBe("Zoë: déploiement — 部署 ✓ C:\\path");
    expect(escapeText(null)).toBe("-");
    expect(escapeText(42)).toBe("42");
  });

  it("t escapes the values, never the program's own text", () => {
    const reason = `done\nerror: fake line${CLEAR}`;
    expect(t`locked ${"shop"}/${"prod"}: ${reason}`).toBe(
      "locked shop/prod: done\\nerror: fake line\\x1b[2J",
    );
  });

  it("tables escape their cells before measuring them", () => {
    expect(table(["A", "B"], [[`x${CLEAR}`, "y"]]).split("\n")).toEqual(["A         B", "x\\x1b[2J  y"]);
    expect(
      environmentsTable([
        envFixture({
          lock: { app: "shop", env: "staging", lockedBy: "bob", reason: CLIPBOARD, createdAt: "x" },
        }),
      ]),
    ).not.toContain("\x1b");
    expect(problemLine({ file: "a\x1b[1A.yaml", line: 3, field: "repo", message: "bad\x07" })).toBe(
      "a\\x1b[1A.yaml:3 repo: bad\\x07",
    );
  });
});

describe("LogTextFilter", () => {
  const filter = (text: string) => {
    const f = new LogTextFilter();
    return f.push(text) + f.end();
  };

  it("keeps colour, newlines, carriage returns and tabs", () => {
    const text =
      "\x1b[31mred\x1b[0m \x1b[1;32mbold green\x1b[m\t\x1b[38;5;208m256\x1b[38:2::1:2:3mrgb\r10%\r20%\n";
    expect(filter(text)).toBe(text);
  });

  it("escapes every other escape sequence and control", () => {
    expect(filter(`a\x1b]0;pwned title\x07b`)).toBe("a\\x1b]0;pwned title\\x07b");
    expect(filter(`a${CLIPBOARD}b`)).toBe("a\\x1b]52;c;ZXZpbCBjb21tYW5k\\x07b");
    expect(filter(`${CLEAR}\x1b[H\x1b[5A\x1b[?25l`)).toBe("\\x1b[2J\\x1b[H\\x1b[5A\\x1b[?25l");
    expect(filter("\x1bP1$r\x1b\\ \x1bc \u009b2J \x08\x07\x7f \u202e")).toBe(
      "\\x1bP1$r\\x1b\\ \\x1bc \\x9b2J \\x08\\x07\\x7f \\u{202e}",
    );
  });

  it("judges a sequence split between chunks whole, at every split point", () => {
    const text = `x\x1b[31mred\x1b[0m y\x1b]0;t\x07 z${CLEAR}\x1b[1;32mok\x1b`;
    const whole = filter(text);
    expect(whole).toBe("x\x1b[31mred\x1b[0m y\\x1b]0;t\\x07 z\\x1b[2J\x1b[1;32mok\\x1b");
    for (let cut = 0; cut <= text.length; cut++) {
      const f = new LogTextFilter();
      expect(f.push(text.slice(0, cut)) + f.push(text.slice(cut)) + f.end(), `cut at ${cut}`).toBe(whole);
    }
  });
});

describe("jsonText", () => {
  it("escapes what JSON leaves raw, and is still the same JSON value", () => {
    const value = { reason: `a\u0085b\u009b2J\u007f\u202e${CLIPBOARD}`, n: 1 };
    const json = JSON.stringify(value);
    const shown = jsonText(json);
    expect(shown).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202e]/);
    expect(JSON.parse(shown)).toEqual(value);
  });
});

describe("the CLI writes only terminal text", () => {
  it("no code outside terminal-text.ts makes TerminalText by a cast", () => {
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../src/cli");
    const offenders: string[] = [];
    const walk = (dir: string) => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(full);
        else if (full.endsWith(".ts") && !full.endsWith("terminal-text.ts")) {
          if (/as\s+(unknown\s+as\s+)?TerminalText/.test(readFileSync(full, "utf8"))) offenders.push(full);
        }
      }
    };
    walk(root);
    expect(offenders).toEqual([]);
  });
});
