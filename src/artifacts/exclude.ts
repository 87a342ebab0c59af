/**
 * Exclusion patterns for the artifact of a workspace, in the spirit of
 * .gitignore (the syntax teams already know), kept small on purpose:
 * - `*` and `?` match within one path component, `**` across components;
 * - a pattern without `/` (or with only a trailing one) matches a name at any depth;
 * - a pattern with a `/` elsewhere is anchored at the top of the tree (a leading `/` is dropped);
 * - a trailing `/` matches directories only.
 * An excluded directory excludes everything below it.
 */
export type ExcludeMatcher = (relativePath: string, isDirectory: boolean) => boolean;

interface CompiledPattern {
  regex: RegExp;
  anchored: boolean;
  directoryOnly: boolean;
}

export function compileExcludes(patterns: readonly string[] | undefined): ExcludeMatcher {
  const compiled = (patterns ?? []).filter((p) => p.trim() !== "").map(compilePattern);
  if (compiled.length === 0) return () => false;
  return (relativePath, isDirectory) => {
    const base = relativePath.slice(relativePath.lastIndexOf("/") + 1);
    return compiled.some(
      (p) => (!p.directoryOnly || isDirectory) && p.regex.test(p.anchored ? relativePath : base),
    );
  };
}

function compilePattern(raw: string): CompiledPattern {
  let pattern = raw.trim();
  const directoryOnly = pattern.endsWith("/");
  if (directoryOnly) pattern = pattern.replace(/\/+$/, "");
  const anchored = pattern.includes("/");
  pattern = pattern.replace(/^\/+/, "");
  let source = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "*" && pattern[i + 1] === "*") {
      // `**/` also matches no directory at all.
      if (pattern[i + 2] === "/") {
        source += "(?:.*/)?";
        i += 2;
      } else {
        source += ".*";
        i += 1;
      }
    } else if (c === "*") {
      source += "[^/]*";
    } else if (c === "?") {
      source += "[^/]";
    } else {
      source += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
    }
  }
  return { regex: new RegExp(`^${source}$`), anchored, directoryOnly };
}
