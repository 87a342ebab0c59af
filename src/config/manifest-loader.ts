import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { isMap, isSeq, LineCounter, parseDocument, type Node as YamlNode } from "yaml";
import type { z } from "zod";
import type { AppConfig, ConfigProblem, ConfigSnapshot } from "../domain/app-config.js";
import { toAppConfig } from "./app-builder.js";
import { APP_NAME, manifestSchema } from "./manifest-schema.js";

/**
 * Loads every `<app>.yaml` of a configuration directory. A broken manifest is
 * reported (file, line, field) and left out; the valid apps are served all the
 * same, so one typo never takes every app down.
 */
export interface LoadOptions {
  /** Defaults applied where a manifest sets no timeout. */
  defaultTimeoutMs: number;
  defaultIdleTimeoutMs: number;
  /** Where `token_env` and `secret_env` values are looked up (the server's environment). */
  environment: Record<string, string | undefined>;
  /** Where repositories Turnout hosts itself live (`<dataDir>/hosted`). */
  hostedReposDir: string;
}

export function loadConfigDir(dir: string, options: LoadOptions): ConfigSnapshot {
  const files = listManifests(dir);
  const apps = new Map<string, AppConfig>();
  const problems: ConfigProblem[] = [];
  const hash = createHash("sha256");
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    hash.update(`${path.basename(file)}\0${text}\0`);
    const result = parseManifest(file, text, options);
    if ("app" in result) apps.set(result.app.name, result.app);
    else problems.push(...result.problems);
  }
  return {
    revision: `dir-${hash.digest("hex").slice(0, 16)}`,
    apps,
    problems,
    loadedAt: new Date().toISOString(),
  };
}

function listManifests(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => /\.ya?ml$/.test(n))
    .sort()
    .map((n) => path.join(dir, n));
}

export function parseManifest(
  file: string,
  text: string,
  options: LoadOptions,
): { app: AppConfig } | { problems: ConfigProblem[] } {
  const name = path.basename(file).replace(/\.ya?ml$/, "");
  if (!APP_NAME.test(name)) {
    return {
      problems: [
        {
          file,
          line: null,
          field: "(file name)",
          message: `app name '${name}' must use lowercase letters, digits and '-'`,
        },
      ],
    };
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    return {
      problems: doc.errors.map((e) => ({
        file,
        // Without prettyErrors the parser leaves linePos unset; the offset is always there.
        line: e.linePos?.[0]?.line ?? lineCounter.linePos(e.pos[0]).line,
        field: "(yaml)",
        message: e.message.split("\n")[0] ?? e.message,
      })),
    };
  }
  const parsed = manifestSchema.safeParse(doc.toJS() ?? {});
  if (!parsed.success) {
    return {
      problems: parsed.error.issues.map((issue) => toProblem(file, issue, doc.contents, lineCounter)),
    };
  }
  const missing: ConfigProblem[] = [];
  const app = toAppConfig(name, file, parsed.data, options, missing);
  return missing.length > 0 ? { problems: missing } : { app };
}

function toProblem(file: string, issue: z.core.$ZodIssue, root: unknown, lines: LineCounter): ConfigProblem {
  const field = issue.path.map(String).join(".") || "(root)";
  return {
    file,
    line: lineOf(root, issue.path as (string | number)[], lines),
    field,
    message: issue.message,
  };
}

/** The line of the deepest YAML node along `fieldPath` that exists. */
function lineOf(root: unknown, fieldPath: (string | number)[], lines: LineCounter): number | null {
  let node = root as YamlNode | null | undefined;
  let best: number | null = node?.range ? lines.linePos(node.range[0]).line : null;
  for (const key of fieldPath) {
    if (isMap(node)) {
      const pair = node.items.find((p) => (p.key as { value?: unknown } | null)?.value === key);
      if (!pair) break;
      const keyNode = pair.key as YamlNode | null;
      if (keyNode?.range) best = lines.linePos(keyNode.range[0]).line;
      node = pair.value as YamlNode | null;
    } else if (isSeq(node) && typeof key === "number") {
      node = node.items[key] as YamlNode | null;
      if (node?.range) best = lines.linePos(node.range[0]).line;
    } else {
      break;
    }
  }
  return best;
}
