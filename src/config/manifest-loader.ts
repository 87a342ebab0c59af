import { isMap, isSeq, type LineCounter, type Node as YamlNode } from "yaml";
import type { z } from "zod";
import type { AppConfig, ConfigProblem } from "../domain/app-config.js";
import { toAppConfig } from "./app-builder.js";
import { MAX_MANIFEST_BYTES, MAX_PROBLEMS_PER_FILE, tooLargeMessage } from "./manifest-limits.js";
import { APP_NAME, manifestSchema } from "./manifest-schema.js";
import { parseYaml } from "./yaml-document.js";

/**
 * One manifest's text → the app it declares, or its problems (file, line,
 * field). Pure computation, no I/O: the server runs it in a worker thread
 * (manifest-parser.ts), `turnout config validate` directly. Nothing a
 * manifest contains makes it throw: whatever goes wrong is a problem of that
 * manifest, so one bad file never takes other apps down.
 */
export interface LoadOptions {
  /** Defaults applied where a manifest sets no timeout. */
  defaultTimeoutMs: number;
  defaultIdleTimeoutMs: number;
  /** Where `token_env` and `secret_env` values are looked up (the server's environment). */
  environment: Record<string, string | undefined>;
  /** Where repositories Turnout hosts itself live (`<dataDir>/hosted`). */
  hostedReposDir: string;
  /**
   * Offline validation: do not look the variables up (the machine validating
   * is not the server that will run the app).
   */
  skipVariables?: boolean;
  /** The notification channels the server's settings define (undefined: not checked, as offline). */
  notifyChannels?: readonly string[];
}

export type ManifestResult = { app: AppConfig } | { problems: ConfigProblem[] };

import { appNameOf } from "./manifest-names.js";

export { appNameOf, isManifestName } from "./manifest-names.js";

let parsesHere = 0;

/** How many manifests this thread parsed: the server's main thread parses none. */
export function manifestParsesInThisThread(): number {
  return parsesHere;
}

export function parseManifest(file: string, text: string, options: LoadOptions): ManifestResult {
  parsesHere += 1;
  const name = appNameOf(file);
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
  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes > MAX_MANIFEST_BYTES) {
    return { problems: [{ file, line: null, field: "(file)", message: tooLargeMessage(bytes) }] };
  }
  try {
    const yaml = parseYaml(text);
    if (!yaml.ok) {
      return {
        problems: capped(
          yaml.problems.map((p) => ({ file, line: p.line, field: "(yaml)", message: p.message })),
        ),
      };
    }
    const parsed = manifestSchema.safeParse(yaml.value ?? {});
    if (!parsed.success) {
      const issues = parsed.error.issues;
      // Lines are looked up for the listed problems only: finding one is a scan of its maps.
      return {
        problems: capped(
          issues
            .slice(0, MAX_PROBLEMS_PER_FILE + 1)
            .map((i) => toProblem(file, i, yaml.doc.contents, yaml.lines)),
          issues.length,
        ),
      };
    }
    const missing: ConfigProblem[] = [];
    const app = toAppConfig(name, file, parsed.data, options, missing);
    if (missing.length === 0) return { app };
    // The builder names fields, not lines: the line is that of the field (or of its nearest parent).
    return {
      problems: capped(
        missing.map((p) => ({
          ...p,
          line:
            p.line ??
            lineOf(
              yaml.doc.contents,
              p.field.split(".").map((k) => (/^[0-9]+$/.test(k) ? Number(k) : k)),
              yaml.lines,
            ),
        })),
      ),
    };
  } catch (error) {
    // Deep recursion in the YAML library, a value a builder did not expect…: this file's problem.
    return {
      problems: [
        { file, line: null, field: "(file)", message: `could not be read: ${(error as Error).message}` },
      ],
    };
  }
}

/** At most MAX_PROBLEMS_PER_FILE problems, the last one saying how many more there were. */
function capped(problems: ConfigProblem[], total = problems.length): ConfigProblem[] {
  if (total <= MAX_PROBLEMS_PER_FILE) return problems;
  const first = problems[0]!;
  return [
    ...problems.slice(0, MAX_PROBLEMS_PER_FILE),
    {
      file: first.file,
      line: null,
      field: "(file)",
      message: `${total - MAX_PROBLEMS_PER_FILE} more problems`,
    },
  ];
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
