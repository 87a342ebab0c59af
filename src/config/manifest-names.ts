import path from "node:path";

/**
 * Which files are manifests, and the app each names. On its own, apart from
 * manifest-loader.ts, so that the server's main thread, which lists and reads
 * manifests but parses none (manifest-parser.ts), does not load the YAML
 * parser and the manifest schema for these two rules.
 */
const MANIFEST_FILE = /\.ya?ml$/;

/** Whether a directory entry is a manifest: `<app>.yaml` or `<app>.yml`, not a dot-file. */
export function isManifestName(name: string): boolean {
  return MANIFEST_FILE.test(name) && !name.startsWith(".");
}

/** The app a manifest file declares: its name without `.yaml` / `.yml`. */
export function appNameOf(file: string): string {
  return path.basename(file).replace(MANIFEST_FILE, "");
}
