import type { ChecksConfig, ConfigProblem, EnvironmentConfig } from "../domain/app-config.js";
import { parseDuration } from "../domain/duration.js";
import type { PromoteFromConfig } from "../domain/promotion.js";
import type { PipelineConfig, PipelineGate } from "../domain/release-pipeline.js";
import type { ManifestInput } from "./manifest-schema.js";

/**
 * `promote_from` and `pipeline:` of a validated manifest → configuration,
 * with the checks that span environments (a name that is no environment of
 * the app, a stage twice, a rule that contradicts the line) reported as
 * problems of the manifest, like any other.
 */
const DEFAULT_APPROVAL_TIMEOUT = "24h";

type EnvInput = ManifestInput["environments"][string];
type ChecksInput = Pick<EnvInput, "checks" | "check_command" | "checks_timeout" | "checks_poll">;

export function toPromoteFrom(env: EnvInput): PromoteFromConfig | undefined {
  if (env.promote_from === undefined) return undefined;
  return { env: env.promote_from, minLiveMs: parseDuration(env.min_live ?? "0s") };
}

export function toPipeline(
  input: ManifestInput,
  environments: Record<string, EnvironmentConfig>,
  file: string,
  problems: ConfigProblem[],
  toChecks: (input: ChecksInput) => ChecksConfig,
): PipelineConfig | undefined {
  const problem = (field: string, message: string) => problems.push({ file, line: null, field, message });
  for (const [name, env] of Object.entries(input.environments)) {
    if (env.min_live !== undefined && env.promote_from === undefined)
      problem(`environments.${name}.min_live`, "`min_live` needs `promote_from`");
    if (env.promote_from === undefined) continue;
    if (!(env.promote_from in environments))
      problem(`environments.${name}.promote_from`, `no environment named '${env.promote_from}'`);
    else if (env.promote_from === name)
      problem(`environments.${name}.promote_from`, "an environment cannot promote from itself");
    if (env.auto_deploy)
      problem(
        `environments.${name}.auto_deploy`,
        "an environment with `promote_from` takes promoted releases only: it cannot deploy new commits by itself",
      );
  }
  if (!input.pipeline) return undefined;
  const stages: PipelineConfig["stages"] = [];
  input.pipeline.forEach((raw, index) => {
    const stage = typeof raw === "string" ? { env: raw } : raw;
    const field = `pipeline.${index}`;
    if (!(stage.env in environments)) problem(field, `no environment named '${stage.env}'`);
    if (stages.some((s) => s.env === stage.env)) problem(field, `'${stage.env}' is in the pipeline twice`);
    const gated =
      typeof raw !== "string" && (raw.auto || raw.bake || raw.approval || raw.checks || raw.check_command);
    if (index === 0) {
      if (gated) problem(field, "the first stage has no gate: its releases come from ordinary deploys");
      stages.push({ env: stage.env, gate: null });
      return;
    }
    const previous = stages[index - 1]!.env;
    const own = input.environments[stage.env];
    if (own?.auto_deploy)
      problem(
        `environments.${stage.env}.auto_deploy`,
        `'${stage.env}' gets its releases from the pipeline (after '${previous}'): it cannot deploy new commits by itself`,
      );
    if (own?.promote_from !== undefined && own.promote_from !== previous)
      problem(
        `environments.${stage.env}.promote_from`,
        `'${stage.env}' follows '${previous}' in the pipeline, so it cannot take releases from '${own.promote_from}'`,
      );
    const gate: PipelineGate = { bakeMs: 0 };
    if (typeof raw !== "string") {
      gate.bakeMs = parseDuration(raw.bake ?? "0s");
      if (raw.approval)
        gate.approval = {
          role: raw.approval.role,
          timeoutMs: parseDuration(raw.approval.timeout ?? DEFAULT_APPROVAL_TIMEOUT),
        };
      if (raw.checks || raw.check_command) gate.checks = toChecks(raw);
    }
    stages.push({ env: stage.env, gate });
  });
  return { stages };
}
