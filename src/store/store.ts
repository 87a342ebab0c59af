import type { SharedBlobStore } from "../artifacts/shared-blobs.js";
import type { ArtifactStoreSettings } from "../config/artifact-store-settings.js";
import { ArtifactRecords } from "./artifacts.js";
import { AuditStore } from "./audit.js";
import { AutoAdmission } from "./auto-admission.js";
import type { Capabilities } from "./capabilities.js";
import { CommitDescriptions } from "./commit-descriptions.js";
import { CommitLockStore } from "./commit-locks.js";
import { type Database, type DatabaseOptions, openDatabase } from "./database.js";
import { DeployStore } from "./deploys.js";
import { StatsStore } from "./environment-stats.js";
import { FleetStore } from "./fleet.js";
import { groupCommitFor } from "./group-commit.js";
import { HostCallStore } from "./host-calls.js";
import { HostHistoryStore } from "./host-history.js";
import { HostedRepoLog } from "./hosted-repo-log.js";
import { HostStore } from "./hosts.js";
import { LockStore } from "./locks.js";
import { LoginCodeStore } from "./login-codes.js";
import { LogStore } from "./logs.js";
import { MetricsQueries } from "./metrics-queries.js";
import { NotifyStore } from "./notify-outbox.js";
import { OverviewStore } from "./overview.js";
import { PhaseStore } from "./phases.js";
import { PipelineRunStore } from "./pipeline-runs.js";
import { ReleaseStore } from "./releases.js";
import { RetentionStore } from "./retention.js";
import { sharedBlobBackend } from "./shared-blob-backend.js";
import { TokenUsage } from "./token-usage.js";
import { TokenStore } from "./tokens.js";
import { UndeployedStore } from "./undeployed.js";
import { WebhookStore } from "./webhooks.js";

export interface StoreOptions extends DatabaseOptions {
  /** How often a token's last use is written at most (default: a minute; tests shorten it). */
  tokenUseIntervalMs?: number;
  /** Where the shared artifact store keeps its bytes (PostgreSQL only; default: chunk rows). */
  artifactStore?: ArtifactStoreSettings;
}

/** Everything Turnout keeps, one repository per table family, over one database. */
export class Store {
  readonly deploys: DeployStore;
  readonly releases: ReleaseStore;
  readonly locks: LockStore;
  readonly logs: LogStore;
  readonly tokens: TokenStore;
  readonly audit: AuditStore;
  /** Aggregates the metrics read at scrape time. */
  readonly metrics: MetricsQueries;
  readonly overview: OverviewStore;
  readonly webhooks: WebhookStore;
  readonly autoDeploys: AutoAdmission;
  readonly artifacts: ArtifactRecords;
  /**
   * The shared artifact store (migration 0018's rows, the bytes in chunk rows
   * or an S3 bucket: shared-blob-backend.ts); used where caps.sharedArtifacts.
   */
  readonly artifactBlobs: SharedBlobStore;
  readonly hosts: HostStore;
  readonly fleet: FleetStore;
  readonly retention: RetentionStore;
  // What the web dashboard reads (migration 0010).
  readonly phases: PhaseStore;
  readonly commits: CommitDescriptions;
  readonly undeployed: UndeployedStore;
  readonly stats: StatsStore;
  readonly hostHistory: HostHistoryStore;
  readonly loginCodes: LoginCodeStore;
  /** Release pipelines' runs (migration 0014). */
  readonly pipelineRuns: PipelineRunStore;
  /** Commits marked as not deployable (migration 0013). */
  readonly commitLocks: CommitLockStore;
  /** Notification events and the outbox of their deliveries (migration 0011). */
  readonly notify: NotifyStore;
  /** Logs of hosted repositories shared between servers (migration 0019; PostgreSQL only). */
  readonly hostedRepos: HostedRepoLog;
  /** Host operations routed between servers on one PostgreSQL (migration 0020). */
  readonly hostCalls: HostCallStore;
  readonly caps: Capabilities;

  private constructor(
    private readonly database: Database,
    options: StoreOptions,
  ) {
    const { db, caps } = database;
    const usage = new TokenUsage(options.tokenUseIntervalMs);
    this.caps = caps;
    this.deploys = new DeployStore(db, caps);
    this.releases = new ReleaseStore(db);
    this.locks = new LockStore(db);
    this.logs = new LogStore(db);
    this.tokens = new TokenStore(db, caps, usage);
    this.audit = new AuditStore(db);
    this.metrics = new MetricsQueries(db);
    this.overview = new OverviewStore(db);
    this.webhooks = new WebhookStore(db, caps);
    this.autoDeploys = new AutoAdmission(db);
    this.artifacts = new ArtifactRecords(db, caps);
    this.artifactBlobs = sharedBlobBackend(db, caps.sharedArtifacts ? options.artifactStore : undefined);
    // SQLite: one commit per turn for the writes a fleet's hosts cause, whichever store makes them.
    const group = groupCommitFor(db, caps);
    this.hosts = new HostStore(db, caps, usage, group);
    this.fleet = new FleetStore(db, caps, group);
    this.retention = new RetentionStore(db);
    this.phases = new PhaseStore(db);
    this.commits = new CommitDescriptions(db);
    this.undeployed = new UndeployedStore(db);
    this.stats = new StatsStore(db);
    this.hostHistory = new HostHistoryStore(db);
    this.loginCodes = new LoginCodeStore(db, this.tokens);
    this.pipelineRuns = new PipelineRunStore(db);
    this.commitLocks = new CommitLockStore(db, caps);
    this.notify = new NotifyStore(db, caps);
    this.hostedRepos = new HostedRepoLog(db, caps);
    this.hostCalls = new HostCallStore(db, caps);
  }

  static async open(options: StoreOptions): Promise<Store> {
    return new Store(await openDatabase(options), options);
  }

  /** Statements this process has sent to the database (turnout_database_queries_total). */
  queries(): number {
    return this.database.queries();
  }

  /** The same by kind (turnout_database_statements_total). */
  queriesByKind(): ReadonlyMap<string, number> {
    return this.database.queriesByKind();
  }

  close(): Promise<void> {
    this.artifactBlobs.close?.();
    return this.database.close();
  }
}
