import { createHash } from "node:crypto";
import type { AppConfig, EnvironmentConfig } from "./app-config.js";
import { canonicalJson } from "./canonical-json.js";

/**
 * The per-app revision: the identity of the part of the configuration that
 * a release of one environment of an app depends on, and of nothing else.
 * The global revision (`dir-…`, or the config repository's commit) changes
 * whenever any manifest does; this one changes only when something a deploy
 * of this environment runs with does, so editing app A never makes app B's
 * releases look different, and editing A's production never touches A's
 * staging. It goes into the release fingerprint and into every "did the
 * settings change" decision.
 *
 * What is in it, and why:
 * - the app's name: deploys see it (`{app}`, TURNOUT_APP);
 * - each component's name, repository and whether Turnout hosts it: the
 *   workspace is laid out by component name and filled from that repository
 *   (relative submodule URLs resolve against it). A hosted repository counts
 *   by its name only: its path is under one server's data directory, and two
 *   server processes must compute the same revision from the same manifest;
 * - `secret_env`: names and values, the values only as a hash (deploys get
 *   them, so rotating a secret is a change; the revision never reveals one);
 * - the environment's `deploy` block, whole: command or script, its `env`,
 *   timeouts, and for fleets hosts, build, strategy, hooks.
 *
 * What is left out, and why:
 * - other environments: a release of this one does not depend on them;
 * - `branch`/`branches`: they pick the commits, and the commits are in the
 *   fingerprint themselves; `checks`, `auto_deploy`, `self_heal`: they decide
 *   whether and when a deploy happens, not what it does;
 * - `poll_interval`, `webhook`, `github`, repository credentials: how
 *   Turnout reaches things, not what is deployed;
 * - the manifest's file name: moving a manifest changes nothing deployed.
 *
 * Changing this list (or the shape of DeployConfig with a new defaulted
 * field) changes every app's revision: after an upgrade, every `auto_deploy`
 * environment would be redeployed once. test/domain/app-revision.test.ts pins
 * a known revision so that such a change is made on purpose.
 */
export function appRevision(app: AppConfig, environment: EnvironmentConfig): string {
  const secretEnv: Record<string, string> = {};
  for (const [name, value] of Object.entries(app.secretEnv)) secretEnv[name] = secretHash(name, value);
  const content = {
    format: 1,
    app: app.name,
    components: app.components.map((c) =>
      c.hosted ? { name: c.name, hosted: true } : { name: c.name, repo: c.repo },
    ),
    secretEnv,
    deploy: revisionView(environment.deploy),
  };
  return `app-${createHash("sha256").update(canonicalJson(content)).digest("hex").slice(0, 32)}`;
}

/**
 * The deploy block as the revision sees it. A fleet's staging concurrency
 * left unset used to mean 10 and now means "chosen for the fleet at run
 * time"; it is counted as the 10 it was, so that upgrading does not make
 * every fleet environment look changed (and redeploy once). How many hosts
 * stage at a time changes how fast a release goes out, not what it is.
 */
function revisionView(deploy: EnvironmentConfig["deploy"]): unknown {
  if (deploy.provider !== "fleet" || deploy.strategy.stageConcurrency !== null) return deploy;
  return { ...deploy, strategy: { ...deploy.strategy, stageConcurrency: 10 } };
}

/** The revision of an environment as the app's current configuration has it (undefined: no such environment). */
export function environmentRevision(app: AppConfig, env: string): string | undefined {
  const environment = app.environments[env];
  return environment ? appRevision(app, environment) : undefined;
}

/**
 * A secret as identities see it: a hash of its name and value, never the
 * value. (A low-entropy secret could still be guessed by someone who knows
 * every other setting and can read revisions: use random secrets.)
 */
export function secretHash(name: string, value: string): string {
  return createHash("sha256").update(`turnout-secret\0${name}\0${value}`).digest("hex");
}
