import type { Generated } from "kysely";

/**
 * The tables as Kysely sees them. Portable types only: timestamps are ISO-8601
 * text (they sort and compare as text on both backends), JSON is text,
 * booleans are 0/1 integers.
 */
export interface DeploysTable {
  id: Generated<number>;
  app: string;
  env: string;
  number: number;
  status: string;
  phase: string | null;
  trigger: string;
  user_name: string;
  ref: string;
  sha: string;
  components: string;
  previous_sha: string | null;
  params: string;
  force: number;
  ignored_safeties: string;
  rollback_of: number | null;
  error_code: string | null;
  error_message: string | null;
  release_id: number | null;
  config_revision: string;
  /** For rollbacks: the environment settings of the release brought back. */
  environment_config: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  cancel_requested: number;
  lease_owner: string | null;
  lease_expires_at: string | null;
  /** Process group of the running command, so a crashed server's orphans can be stopped. */
  pid: number | null;
  /** On a rollback: the components of the release it replaced (JSON), which auto-deploy must not bring back. */
  rolled_back_from: string | null;
  /** Fleet deploys may target a named slot instead of `current`. */
  slot: string | null;
  /** A pre-built (uploaded) artifact to deploy instead of building one. */
  artifact: string | null;
  approval: string | null;
  approval_by: string | null;
  /** The per-app revision it is meant to run with, then (from its start) the one it runs with; null before 0006. */
  app_revision: string | null;
  /** Fleets: the artifact the deploy installs, once known (before staging): kept by the garbage collector while active. */
  installs_artifact: string | null;
  /** When retention removed the deploy's log (null: the log is there). */
  log_pruned_at: string | null;
  /** The deploy's commits described (JSON: component → {sha, subject, author, date}); null until described. */
  commits: string | null;
  /** A promotion: the environment and the deploy whose release it installs (0014). */
  promoted_from_env: string | null;
  promoted_from_deploy: number | null;
  promoted_from_number: number | null;
  /** Why, as its requester said (0014). */
  reason: string | null;
  /** An emergency deploy of a working tree (JSON: base, files, reason); null for every other deploy. */
  emergency?: string | null;
}

export interface EnvironmentsTable {
  app: string;
  env: string;
  deploy_seq: number;
  current_release_id: number | null;
  current_deploy_id: number | null;
  updated_at: string;
  /** The settings decided for the environment (a per-app revision), which auto-deploy reconciles it to. */
  desired_app_revision: string | null;
  desired_at: string | null;
}

export interface ReleasesTable {
  id: Generated<number>;
  app: string;
  env: string;
  deploy_id: number;
  deploy_number: number;
  fingerprint: string;
  components: string;
  config_revision: string;
  environment_config: string;
  created_at: string;
  /** Fleet releases: the artifact's digest. */
  artifact: string | null;
  /** The per-app revision the release ran with; null before 0006. */
  app_revision: string | null;
  /** The unreviewed working tree it installs (JSON, as on its deploy); null for a reviewed release. */
  emergency?: string | null;
  /** Platform providers: the platform's id of the release (Heroku's release UUID). */
  provider_release?: string | null;
}

export interface LocksTable {
  app: string;
  env: string;
  locked_by: string;
  reason: string;
  created_at: string;
}

export interface LogChunksTable {
  deploy_id: number;
  seq: number;
  /** Byte offset of this chunk's first byte in the deploy's whole log. */
  offset: number;
  length: number;
  text: string;
  created_at: string;
}

export interface TokensTable {
  id: Generated<number>;
  name: string;
  hash: string;
  role: string;
  apps: string | null;
  /** Agent tokens: JSON list of granted `key=value` labels (NULL: any the host declares). */
  labels: string | null;
  created_at: string;
  created_by: string;
  last_used_at: string | null;
  revoked_at: string | null;
  /** Short-lived tokens (browser sign-ins) stop working then; null: never. */
  expires_at: string | null;
}

export interface AuditEventsTable {
  id: Generated<number>;
  at: string;
  actor: string;
  action: string;
  app: string | null;
  env: string | null;
  details: string;
  /** Since 0012: the token's id, its role, where the action came from, and what it acted on. */
  actor_id: number | null;
  role: string | null;
  source: string | null;
  target: string | null;
}

export interface WebhookDeliveriesTable {
  provider: string;
  delivery_id: string;
  app: string | null;
  received_at: string;
}

export interface ArtifactsTable {
  digest: string;
  app: string;
  fingerprint: string | null;
  files: number;
  /** bigint on PostgreSQL: read it through Number(). */
  bytes: number | string;
  source: string;
  created_at: string;
  /** When it was last stored (uploaded or built again); null: at created_at. */
  stored_at: string | null;
}

/** A blob of the shared artifact store (0018): its bytes are in artifact_blob_chunks. */
export interface ArtifactBlobsTable {
  digest: string;
  /** bigint on PostgreSQL: read it through Number(). */
  size: number | string;
  created_at: string;
  /** Last written or relied on: the collector leaves blobs touched within the blob grace. */
  touched_at: string;
}

export interface ArtifactBlobChunksTable {
  digest: string;
  seq: number;
  data: Buffer;
}

/** Which artifact a build's inputs produced (several keys may name one artifact). */
export interface ArtifactBuildsTable {
  app: string;
  build_key: string;
  digest: string;
  created_at: string;
}

export interface HostsTable {
  id: Generated<number>;
  name: string;
  kind: string;
  labels: string;
  address: string | null;
  pool_state: string;
  connected: number;
  connected_to: string | null;
  last_seen_at: string | null;
  token_hash: string | null;
  token_last_used_at: string | null;
  created_at: string;
  /** Agent hosts: JSON list of granted apps (NULL: every app). */
  grant_apps: string | null;
  /** Agent hosts: JSON list of granted `key=value` labels (NULL: any they declare). */
  grant_labels: string | null;
  /** SSH hosts: the app whose manifest declares it. */
  app: string | null;
}

export interface HostArtifactsTable {
  host_id: number;
  digest: string;
  app: string;
  sent_at: string;
}

export interface HostAppsTable {
  host_id: number;
  app: string;
  /** The environment's deploy path on the host; '' for <root>/<app> (0021). */
  path: Generated<string>;
  current_release: string | null;
  slots: string;
  releases: string;
  updated_at: string;
}

export interface HostTargetsTable {
  host_id: number;
  app: string;
  env: string;
  desired_release: string | null;
  actual_release: string | null;
  previous_release: string | null;
  deploy_id: number | null;
  updated_at: string;
}

export interface DeployHostsTable {
  deploy_id: number;
  host_id: number;
  host_name: string;
  step: string;
  batch: number | null;
  release_id: string;
  previous_release: string | null;
  switched: number;
  bytes_fetched: number | string;
  error: string | null;
  updated_at: string;
  /** When `current` moved to this release on the host (null: it never did). */
  switched_at?: string | null;
}

export interface DeployPhasesTable {
  id: Generated<number>;
  deploy_id: number;
  phase: string;
  status: string;
  at: string;
}

export interface EnvironmentUndeployedTable {
  app: string;
  env: string;
  base_release_id: number | null;
  newest_sha: string | null;
  count: number;
  truncated: number;
  checked_at: string;
}

export interface LoginCodesTable {
  code_hash: string;
  token_id: number;
  created_by: string;
  role: string;
  apps: string | null;
  created_at: string;
  expires_at: string;
}

export interface CommitLocksTable {
  id: Generated<number>;
  app: string;
  sha: string;
  reason: string;
  locked_by: string;
  locked_at: string;
  /** null: the lock is in force. */
  unlocked_at: string | null;
  unlocked_by: string | null;
}

/** Notification events written with the state change they describe (the transactional outbox). */
export interface NotifyEventsTable {
  id: Generated<number>;
  kind: string;
  app: string;
  env: string;
  /** The event (domain/notification-event.ts) as JSON, without its id. */
  payload: string;
  created_at: string;
}

/** One event to one channel: the outbox the dispatcher drains. */
export interface NotifyDeliveriesTable {
  id: Generated<number>;
  event_id: number;
  channel: string;
  kind: string;
  app: string;
  env: string;
  deploy_id: number | null;
  /** Deliveries of one subject go out in order per channel (domain eventSubject). */
  subject: string;
  payload: string;
  /** pending | delivered | failed */
  status: string;
  attempts: number;
  next_attempt_at: string;
  lease_owner: string | null;
  lease_until: string | null;
  last_error: string | null;
  created_at: string;
  updated_at: string;
  delivered_at: string | null;
}

/** What a channel remembers per subject (the Slack message a deploy's events update). */
export interface NotifyChannelStateTable {
  channel: string;
  subject: string;
  state: string;
  updated_at: string;
}

export interface Schema {
  deploys: DeploysTable;
  environments: EnvironmentsTable;
  releases: ReleasesTable;
  locks: LocksTable;
  log_chunks: LogChunksTable;
  tokens: TokensTable;
  audit_events: AuditEventsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  artifacts: ArtifactsTable;
  artifact_builds: ArtifactBuildsTable;
  artifact_blobs: ArtifactBlobsTable;
  artifact_blob_chunks: ArtifactBlobChunksTable;
  hosts: HostsTable;
  host_apps: HostAppsTable;
  host_targets: HostTargetsTable;
  deploy_hosts: DeployHostsTable;
  host_artifacts: HostArtifactsTable;
  deploy_phases: DeployPhasesTable;
  environment_undeployed: EnvironmentUndeployedTable;
  login_codes: LoginCodesTable;
  pipeline_runs: PipelineRunsTable;
  host_pool: HostPoolTable;
  commit_locks: CommitLocksTable;
  notify_events: NotifyEventsTable;
  notify_deliveries: NotifyDeliveriesTable;
  notify_channel_state: NotifyChannelStateTable;
  hosted_repos: HostedReposTable;
  hosted_repo_pushes: HostedRepoPushesTable;
  host_calls: HostCallsTable;
  host_call_lines: HostCallLinesTable;
  servers: ServersTable;
}

/** One move of a release from a pipeline stage to the next (0014; domain/release-pipeline.ts). */
export interface PipelineRunsTable {
  id: Generated<number>;
  app: string;
  env: string;
  from_env: string;
  source_deploy_id: number;
  source_number: number;
  sha: string;
  components: string;
  status: string;
  waiting_on: string | null;
  bake_until: string;
  checks_passed: number;
  approval_deadline: string | null;
  decided_by: string | null;
  decided_at: string | null;
  message: string | null;
  deploy_id: number | null;
  created_at: string;
  updated_at: string;
}

/** A host depooled for an app (no row: pooled). Per host and app: one app's failure leaves the others' pool alone. */
export interface HostPoolTable {
  host_id: number;
  app: string;
  pool_state: string;
  updated_at: string;
}

/** A hosted repository shared between servers (0019; git/shared-hosted-repos.ts). */
export interface HostedReposTable {
  repo: string;
  log_id: string;
  head: number;
  updated_at: string;
}

/** One accepted push of a shared hosted repository: its refs after, and a bundle of what it added. */
export interface HostedRepoPushesTable {
  repo: string;
  seq: number;
  full: number;
  refs: string;
  bundle: Buffer | null;
  bytes: number;
  pushed_by: string;
  created_at: string;
}

/** A host operation routed to the server holding the agent (0020; store/host-calls.ts). */
export interface HostCallsTable {
  id: string;
  deploy_id: number;
  host: string;
  caller: string;
  target: string;
  op: string;
  args: string;
  timeout_ms: number;
  status: string;
  result: string | null;
  error_code: string | null;
  error_message: string | null;
  cancel_requested: Generated<number>;
  created_at: string;
  /** When its holder took it (NULL: never executed). */
  started_at: string | null;
  finished_at: string | null;
}

/** Output lines of a routed host call, in order. */
export interface HostCallLinesTable {
  call_id: string;
  seq: number;
  line: string;
  continued: number;
}

/** A server process's heartbeat (0020): how servers on other machines know it is alive. */
export interface ServersTable {
  owner: string;
  seen_at: string;
}
