import { createHash } from "node:crypto";
import type { AppConfig } from "./app-config.js";
import { secretHash } from "./app-revision.js";
import type { Components, Deploy } from "./deploy.js";
import type { FleetDeployConfig } from "./fleet.js";
import { componentShaVariable, paramVariable } from "./placeholders.js";

/**
 * Everything a fleet build reads, and nothing else. An artifact built from
 * some inputs is reused for any later deploy (of any environment of the app)
 * with the same inputs, so an input missing here would hand one environment
 * an artifact built for another's settings, and an input too many would
 * build again for nothing.
 *
 * The build only ever sees what is listed here: `buildEnvironment` makes its
 * variables from these inputs alone, and its command is the one below. What
 * differs between deploys of the same inputs — the environment's name, the
 * deploy's id and number, who asked, the previous release — is deliberately
 * not given to the build; a build that must differ per environment says so
 * in its `env` or with a placeholder in `build` (which then is part of the
 * command here).
 */
export interface BuildInputs {
  /** TURNOUT_APP, and artifacts are looked up per app. */
  app: string;
  /** The primary component: its commit is TURNOUT_SHA. */
  primary: string;
  /** Every component's commit: what the workspace (or the tree read from git) holds. */
  components: Components;
  /**
   * Each component's repository: relative submodule URLs resolve against it,
   * so it decides what a checkout of the same commit contains.
   */
  repositories: Record<string, string>;
  /** `build` (argv) after placeholder substitution: `{env}` or `{deploy}` in it make builds per environment or per deploy, as they should. */
  command: string[] | null;
  /** `build_script`, run by bash. */
  script: string | null;
  /** The environment's `env`: variables of the build. */
  env: Record<string, string>;
  /** `secret_env`: variables of the build (only hashes enter the key). */
  secretEnv: Record<string, string>;
  /** Deploy parameters: TURNOUT_PARAM_<NAME> variables of the build. */
  params: Record<string, string>;
  /** The directory of the workspace that becomes the artifact (normalised; "." is the whole workspace). */
  artifactPath: string;
  /** Paths left out of the artifact (`.git` when it is the whole workspace). */
  exclude: string[];
}

/** Bumped when the meaning of a key changes, so that old keys stop matching. */
const KEY_FORMAT = "build-key/1";

/**
 * The reuse key of an artifact: a hash over every input of its build, each
 * listed explicitly (map keys sorted, so that the order they were written in
 * does not matter).
 */
export function buildKey(inputs: BuildInputs): string {
  const lines: string[] = [KEY_FORMAT];
  const field = (name: string, value: unknown) => lines.push(`${name}=${JSON.stringify(value)}`);
  field("app", inputs.app);
  field("primary", inputs.primary);
  field("components", sorted(inputs.components));
  field("repositories", sorted(inputs.repositories));
  field("command", inputs.command);
  field("script", inputs.script);
  field("env", sorted(inputs.env));
  field(
    "secret_env",
    Object.keys(inputs.secretEnv)
      .sort()
      .map((name) => [name, secretHash(name, inputs.secretEnv[name]!)]),
  );
  field("params", sorted(inputs.params));
  field("artifact", inputs.artifactPath);
  field("exclude", [...inputs.exclude].sort());
  return createHash("sha256").update(lines.join("\n")).digest("hex");
}

/**
 * The inputs of a deploy's build. `config` has its placeholders substituted
 * already (as the build command runs). With nothing to build, the artifact is
 * the commits' tree: variables are read by nobody, so they are not inputs.
 */
export function buildInputsOf(app: AppConfig, deploy: Deploy, config: FleetDeployConfig): BuildInputs {
  const builds = config.build !== undefined;
  const artifactPath = normaliseArtifactPath(config.artifactPath);
  const repositories: Record<string, string> = {};
  for (const component of app.components) repositories[component.name] = component.repo;
  return {
    app: app.name,
    primary: app.components[0]!.name,
    components: deploy.components,
    repositories,
    command: config.build?.command ?? null,
    script: config.build?.script ?? null,
    env: builds ? config.env : {},
    secretEnv: builds ? app.secretEnv : {},
    params: builds ? deploy.params : {},
    artifactPath,
    // The whole workspace has the checkout's .git in it: never part of a release.
    exclude: artifactPath === "." ? [".git"] : [],
  };
}

/**
 * The variables a build runs with: the server's basics, then only what the
 * inputs hold. TURNOUT_WORKSPACE is where it runs (different for every
 * deploy, but a path, not an input: the same commits give the same files
 * wherever they are checked out).
 */
export function buildEnvironment(
  inputs: BuildInputs,
  baseEnv: Record<string, string>,
  workspace: string,
): Record<string, string> {
  const env: Record<string, string> = { ...baseEnv, ...inputs.env, ...inputs.secretEnv };
  env["TURNOUT_APP"] = inputs.app;
  env["TURNOUT_SHA"] = inputs.components[inputs.primary] ?? "";
  for (const [name, sha] of Object.entries(inputs.components)) env[componentShaVariable(name)] = sha;
  for (const [name, value] of Object.entries(inputs.params)) env[paramVariable(name)] = value;
  env["TURNOUT_WORKSPACE"] = workspace;
  return env;
}

/** `dist/`, `./dist` and `dist` are one directory; "", "." and "./" the whole workspace. */
export function normaliseArtifactPath(raw: string): string {
  const parts = raw.split("/").filter((part) => part !== "" && part !== ".");
  return parts.length === 0 ? "." : parts.join("/");
}

function sorted(map: Record<string, string>): [string, string][] {
  return Object.keys(map)
    .sort()
    .map((key) => [key, map[key]!]);
}
