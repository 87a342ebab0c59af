/**
 * The pure half of the CI gate: what GitHub reported about a commit, reduced
 * to the state of the checks an environment requires. No I/O here, so the
 * rules (which report wins, what counts as failed) are testable on their own
 * and shared by the gate and the change preview.
 */
export type CheckState = "success" | "pending" | "failure";

export interface CheckResult {
  name: string;
  state: CheckState;
  source: "status" | "check_run" | "command";
  description?: string;
  url?: string;
}

export interface CheckReport {
  state: CheckState;
  /** One result per required check that reported something, in the order required. */
  checks: CheckResult[];
  /** first failed required check */
  failed?: string;
  /** required checks not reported yet */
  missing: string[];
}

/** One entry of `statuses` in GitHub's combined commit status. */
export interface GithubStatus {
  context: string;
  state: string;
  description?: string | null;
  target_url?: string | null;
  id?: number;
}

/** One entry of `check_runs` in GitHub's check-runs list. */
export interface GithubCheckRun {
  id: number;
  name: string;
  status: string;
  conclusion?: string | null;
  started_at?: string | null;
  html_url?: string | null;
  output?: { title?: string | null } | null;
}

const SEVERITY: Record<CheckState, number> = { success: 0, pending: 1, failure: 2 };

const RUN_SUCCESS = new Set(["success", "neutral", "skipped"]);

export function statusState(state: string): CheckState {
  if (state === "success") return "success";
  if (state === "failure" || state === "error") return "failure";
  return "pending";
}

export function checkRunState(run: Pick<GithubCheckRun, "status" | "conclusion">): CheckState {
  if (run.status !== "completed") return "pending";
  // failure, cancelled, timed_out, action_required, stale — and any conclusion
  // GitHub adds later: an unknown verdict must not let a deploy through.
  return RUN_SUCCESS.has(run.conclusion ?? "") ? "success" : "failure";
}

function startedAt(run: GithubCheckRun): number {
  const time = run.started_at ? Date.parse(run.started_at) : Number.NaN;
  return Number.isNaN(time) ? Number.NEGATIVE_INFINITY : time;
}

/** A re-run is a new check run with the same name: the most recent one is the verdict. */
function newer(a: GithubCheckRun, b: GithubCheckRun): boolean {
  const ta = startedAt(a);
  const tb = startedAt(b);
  return ta !== tb ? ta > tb : a.id > b.id;
}

function fromStatus(status: GithubStatus): CheckResult {
  return {
    name: status.context,
    state: statusState(status.state),
    source: "status",
    ...(status.description ? { description: status.description } : {}),
    ...(status.target_url ? { url: status.target_url } : {}),
  };
}

function fromCheckRun(run: GithubCheckRun): CheckResult {
  const description = run.status === "completed" ? (run.conclusion ?? "completed") : run.status;
  const title = run.output?.title;
  return {
    name: run.name,
    state: checkRunState(run),
    source: "check_run",
    description: title ? `${description}: ${title}` : description,
    ...(run.html_url ? { url: run.html_url } : {}),
  };
}

/** Any failure fails, all success succeeds, anything else is still pending. */
export function overallState(states: Iterable<CheckState>): CheckState {
  let worst: CheckState = "success";
  for (const state of states) if (SEVERITY[state] > SEVERITY[worst]) worst = state;
  return worst;
}

/**
 * `statuses` in the order GitHub lists them (newest first, so the first entry
 * of a context wins); `checkRuns` in any order. A name reported both as a
 * status and as a check run takes the worse of the two: two systems disagreeing
 * about a commit is not a reason to deploy it.
 */
export function reduceChecks(
  required: readonly string[],
  statuses: readonly GithubStatus[],
  checkRuns: readonly GithubCheckRun[],
): CheckReport {
  const latestStatus = new Map<string, GithubStatus>();
  for (const status of statuses)
    if (!latestStatus.has(status.context)) latestStatus.set(status.context, status);
  const latestRun = new Map<string, GithubCheckRun>();
  for (const run of checkRuns) {
    const seen = latestRun.get(run.name);
    if (!seen || newer(run, seen)) latestRun.set(run.name, run);
  }

  const checks: CheckResult[] = [];
  const missing: string[] = [];
  let failed: string | undefined;
  for (const name of new Set(required)) {
    const status = latestStatus.get(name);
    const run = latestRun.get(name);
    const candidates = [status && fromStatus(status), run && fromCheckRun(run)].filter(
      (c): c is CheckResult => c !== undefined,
    );
    if (candidates.length === 0) {
      missing.push(name);
      continue;
    }
    // The worse report explains the state; on a tie the commit status comes first.
    const result = candidates.reduce((a, b) => (SEVERITY[b.state] > SEVERITY[a.state] ? b : a));
    checks.push(result);
    if (result.state === "failure" && failed === undefined) failed = name;
  }

  const state = overallState([...checks.map((c) => c.state), ...missing.map((): CheckState => "pending")]);
  return failed === undefined ? { state, checks, missing } : { state, checks, failed, missing };
}

/** The one-word answer for the change preview ("would this deploy wait?"). */
export function summarize(report: CheckReport): CheckState {
  return overallState([
    ...report.checks.map((c) => c.state),
    ...(report.missing.length ? ["pending" as const] : []),
  ]);
}
