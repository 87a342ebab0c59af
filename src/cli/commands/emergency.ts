import path from "node:path";
import { InvalidSettingError } from "../../config/client-settings.js";
import type { ApiClient } from "../api-client.js";
import { path as pathSegment, println } from "../context.js";
import type { Kit } from "../program.js";
import { t } from "../terminal-text.js";

interface EmergencyFlags {
  fromDir?: string;
  reason?: string;
  ref?: string | undefined;
  artifact?: string;
  slot?: string;
  component?: Record<string, string>;
}

/**
 * `turnout deploy APP ENV --from-dir PATH --reason TEXT`: reads the working
 * tree (its base commit and changed files), uploads it as an artifact of APP,
 * and returns the body of the emergency deploy request. The server decides
 * whether the environment and the caller's role permit it.
 */
export async function emergencyBody(
  { ctx }: Kit,
  client: ApiClient,
  app: string,
  flags: EmergencyFlags,
  json: boolean,
): Promise<Record<string, unknown>> {
  if (flags.fromDir === undefined) throw new InvalidSettingError("an emergency deploy needs --from-dir PATH");
  if (flags.reason === undefined || flags.reason.trim() === "")
    throw new InvalidSettingError("an emergency deploy needs --reason TEXT (why it goes out unreviewed)");
  if (flags.ref !== undefined || flags.artifact !== undefined || flags.slot !== undefined || flags.component)
    throw new InvalidSettingError(
      "--from-dir deploys the tree itself: give no REF, --artifact, --slot or --component",
    );
  // Loaded here (tar-stream with it): only an emergency deploy from a directory packs a tree.
  const { packTree, readWorkingTree, webStream } = await import("../working-tree.js");
  const tree = await readWorkingTree(path.resolve(ctx.cwd, flags.fromDir));
  if (tree.files.length === 0)
    throw new InvalidSettingError(`--from-dir: ${flags.fromDir} holds no files to deploy`);
  // Progress on stderr: with --json, stdout holds only the server's answers.
  const note = (text: string) => println(ctx.stderr, t`${text}`);
  note(
    tree.base
      ? `emergency deploy of ${tree.root}: base ${tree.base.slice(0, 12)}, ${tree.changed.length} file(s) changed`
      : `emergency deploy of ${tree.root}: not a git work tree (no base commit)`,
  );
  const upload = await client.upload<{ artifact: { digest: string } }>(
    `/api/v1/apps/${pathSegment(app)}/artifacts`,
    webStream(packTree(tree, (file, why) => note(`skipped ${file}: ${why}`))),
    "application/gzip",
  );
  if (!json)
    note(`uploaded ${tree.files.length} file(s) as artifact ${upload.body.artifact.digest.slice(0, 12)}`);
  return {
    trigger: "cli",
    artifact: upload.body.artifact.digest,
    emergency: { base: tree.base, files: tree.changed, reason: flags.reason },
  };
}
