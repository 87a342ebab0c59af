import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { Deploy } from "../domain/deploy.js";

/** One value of a gauge read at scrape time. */
export interface Sample {
  labels?: Record<string, string>;
  value: number;
}

/**
 * A gauge whose values are read when Prometheus scrapes: queue depths, locks,
 * hosts, and whatever a later part plugs in (the notification outbox's
 * backlog and failed deliveries register themselves this way).
 */
export interface MetricsSource {
  /** Prometheus name, `turnout_` first. */
  name: string;
  help: string;
  labelNames?: string[];
  collect(): Promise<Sample[]> | Sample[];
}

const DEPLOY_BUCKETS = [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600];
const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const STAGING_BUCKETS = [0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600];

/**
 * The server's metrics, in a registry of its own (no global registry: two
 * servers in one process, as in tests, never mix their counts). Events that
 * happen (deploys ending, requests, staging) are counted as they happen;
 * states (queues, locks, hosts) are read from the store at scrape time, so
 * every server of a shared database reports the same.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  private readonly deploys: Counter<"app" | "env" | "outcome">;
  private readonly deployDuration: Histogram<"app" | "env" | "outcome">;
  private readonly deploysStarted: Counter<"app" | "env">;
  private readonly httpDuration: Histogram<"method" | "route" | "status">;
  private readonly stagingDuration: Histogram<"host" | "outcome">;
  private readonly stagingBytes: Counter<"host">;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.deploys = new Counter({
      name: "turnout_deploys_total",
      help: "Deploys that ended, by app, environment and outcome (succeeded, failed, cancelled)",
      labelNames: ["app", "env", "outcome"],
      registers,
    });
    this.deploysStarted = new Counter({
      name: "turnout_deploys_started_total",
      help: "Deploys this server started running, by app and environment",
      labelNames: ["app", "env"],
      registers,
    });
    this.deployDuration = new Histogram({
      name: "turnout_deploy_duration_seconds",
      help: "How long deploys ran, from start to end, by app, environment and outcome",
      labelNames: ["app", "env", "outcome"],
      buckets: DEPLOY_BUCKETS,
      registers,
    });
    this.httpDuration = new Histogram({
      name: "turnout_http_request_duration_seconds",
      help: "HTTP requests by method, route (the pattern, not the path) and status",
      labelNames: ["method", "route", "status"],
      buckets: HTTP_BUCKETS,
      registers,
    });
    this.stagingDuration = new Histogram({
      name: "turnout_host_staging_duration_seconds",
      help: "How long staging a release took per host, by host and outcome (staged, failed)",
      labelNames: ["host", "outcome"],
      buckets: STAGING_BUCKETS,
      registers,
    });
    this.stagingBytes = new Counter({
      name: "turnout_host_staging_bytes_total",
      help: "Bytes of blobs sent to each host while staging releases",
      labelNames: ["host"],
      registers,
    });
  }

  deployStarted(deploy: Deploy): void {
    this.deploysStarted.inc({ app: deploy.app, env: deploy.env });
  }

  /** A deploy ended (here, or recovered after its server died). */
  deployFinished(deploy: Deploy): void {
    const labels = { app: deploy.app, env: deploy.env, outcome: deploy.status };
    this.deploys.inc(labels);
    if (deploy.startedAt && deploy.finishedAt) {
      const seconds = (Date.parse(deploy.finishedAt) - Date.parse(deploy.startedAt)) / 1000;
      if (Number.isFinite(seconds) && seconds >= 0) this.deployDuration.observe(labels, seconds);
    }
  }

  request(method: string, route: string, status: number, seconds: number): void {
    this.httpDuration.observe({ method, route, status: String(status) }, seconds);
  }

  staged(host: string, outcome: "staged" | "failed", seconds: number, bytes: number): void {
    this.stagingDuration.observe({ host, outcome }, seconds);
    if (bytes > 0) this.stagingBytes.inc({ host }, bytes);
  }

  /** A gauge read at scrape time; its previous values are dropped at each scrape (gone queues read 0, not stale). */
  add(source: MetricsSource): void {
    new Gauge({
      name: source.name,
      help: source.help,
      labelNames: source.labelNames ?? [],
      registers: [this.registry],
      async collect() {
        const samples = await source.collect();
        this.reset();
        for (const sample of samples) this.set(sample.labels ?? {}, sample.value);
      },
    });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
