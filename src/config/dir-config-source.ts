import type { AppConfig, ConfigSnapshot } from "../domain/app-config.js";
import type { ConfigProvider, ConfigStatus } from "./config-provider.js";
import { type LoadOptions, loadConfigDir } from "./manifest-loader.js";

/**
 * Manifests from a directory. Reloading never makes things worse: an app whose
 * manifest became invalid keeps its last valid version (and the problem is
 * reported), so a typo saved mid-edit cannot take an app away.
 */
export class DirConfigSource implements ConfigProvider {
  private snapshot: ConfigSnapshot;
  private readonly listeners = new Set<(previous: ConfigSnapshot, next: ConfigSnapshot) => void>();

  constructor(
    private readonly dir: string,
    private readonly options: LoadOptions,
  ) {
    this.snapshot = loadConfigDir(dir, options);
  }

  current(): ConfigSnapshot {
    return this.snapshot;
  }

  async refresh(): Promise<boolean> {
    return this.reload();
  }

  /** Re-reads the directory; returns true when the revision changed. */
  reload(): boolean {
    const next = loadConfigDir(this.dir, this.options);
    if (next.revision === this.snapshot.revision) return false;
    const apps = new Map<string, AppConfig>(next.apps);
    for (const problem of next.problems) {
      for (const [name, app] of this.snapshot.apps) {
        if (app.source === problem.file && !apps.has(name)) apps.set(name, app);
      }
    }
    const previous = this.snapshot;
    this.snapshot = { ...next, apps };
    for (const listener of this.listeners) listener(previous, this.snapshot);
    return true;
  }

  status(): ConfigStatus {
    return {
      source: { kind: "dir", path: this.dir },
      revision: this.snapshot.revision,
      loadedAt: this.snapshot.loadedAt,
      problems: this.snapshot.problems,
      lastError: null,
    };
  }

  onChange(listener: (previous: ConfigSnapshot, next: ConfigSnapshot) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
