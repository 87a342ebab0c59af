import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import type { ConfigProblem } from "../domain/app-config.js";
import { TurnoutError } from "../domain/errors.js";
import { emptySnapshot } from "./config-provider.js";
import { MAX_MANIFEST_BYTES, tooLargeMessage } from "./manifest-limits.js";
import { appNameOf, isManifestName, type LoadOptions, parseManifest } from "./manifest-loader.js";
import { buildSnapshot, type ManifestOutcome } from "./snapshot-builder.js";

/**
 * `turnout config validate [DIR]`: the checks the server makes on a
 * configuration directory, offline, with no server — file names, size cap,
 * YAML (duplicate keys, aliases), every field, repository URLs, two files
 * for one app. The variables manifests name (`token_env`, `secret_env`,
 * `webhook.secret_env`) are looked up only when asked: the machine that
 * validates (a laptop, CI) is usually not the server.
 */
export interface ValidationReport {
  apps: { name: string; file: string; environments: string[] }[];
  problems: ConfigProblem[];
}

export interface ValidateOptions {
  /** How files are named in the report (the directory as the user wrote it). */
  label: string;
  /** Where variables are looked up, when checkVariables is set. */
  environment: Record<string, string | undefined>;
  checkVariables: boolean;
}

export async function validateConfigDir(dir: string, options: ValidateOptions): Promise<ValidationReport> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter(isManifestName).sort();
  } catch (error) {
    const why = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new TurnoutError("E_CONFIG", `cannot read the configuration directory ${options.label}: ${why}`);
  }
  const load: LoadOptions = {
    defaultTimeoutMs: 1,
    defaultIdleTimeoutMs: 1,
    environment: options.environment,
    hostedReposDir: "/(hosted)",
    skipVariables: !options.checkVariables,
  };
  const outcomes: ManifestOutcome[] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    const label = path.join(options.label, name);
    const info = await stat(file).catch(() => undefined);
    if (!info?.isFile()) continue;
    const refuse = (message: string): ManifestOutcome => ({
      app: appNameOf(name),
      label,
      result: { problems: [{ file: label, line: null, field: "(file)", message }] },
    });
    if (info.size > MAX_MANIFEST_BYTES) {
      outcomes.push(refuse(tooLargeMessage(info.size)));
      continue;
    }
    const text = await readFile(file, "utf8").catch((error: NodeJS.ErrnoException) => error);
    if (typeof text !== "string") {
      outcomes.push(refuse(`could not be read: ${text.code ?? text.message}`));
      continue;
    }
    outcomes.push({ app: appNameOf(name), label, result: parseManifest(label, text, load) });
  }
  const snapshot = buildSnapshot(emptySnapshot(), "", outcomes);
  return {
    apps: [...snapshot.apps.values()].map((app) => ({
      name: app.name,
      file: app.source,
      environments: Object.keys(app.environments),
    })),
    problems: snapshot.problems,
  };
}
