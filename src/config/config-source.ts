import type { AppConfig, ConfigSnapshot } from "../domain/app-config.js";
import { type LoadOptions, loadConfigDir } from "./manifest-loader.js";

/**
 * The active configuration of a server. Reloading never makes things worse:
 * an app whose manifest became invalid keeps its last valid version (and the
 * problem is reported), so a typo saved mid-edit cannot take an app away.
 */
export class ConfigSource {
  private snapshot: ConfigSnapshot;

  constructor(
    private readonly dir: string,
    private readonly options: LoadOptions,
  ) {
    this.snapshot = loadConfigDir(dir, options);
  }

  current(): ConfigSnapshot {
    return this.snapshot;
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
    this.snapshot = { ...next, apps };
    return true;
  }
}
