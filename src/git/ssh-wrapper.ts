import { randomBytes } from "node:crypto";
import { chmod, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";

/**
 * GIT_SSH points at this fixed script instead of a GIT_SSH_COMMAND built from
 * strings: the key and known_hosts paths reach ssh only as quoted variables, so
 * no path (however odd) is ever parsed by a shell. Strict host key checking and
 * BatchMode always; `-F /dev/null` keeps the server user's ssh config out.
 */
export const SSH_WRAPPER_SCRIPT = `#!/bin/sh
# Written by Turnout. Values come only from the environment, always quoted.
exec ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes \\
  \${TURNOUT_SSH_KEY:+-i "$TURNOUT_SSH_KEY"} \\
  \${TURNOUT_KNOWN_HOSTS:+-o UserKnownHostsFile="$TURNOUT_KNOWN_HOSTS"} \\
  "$@"
`;

/** Writes `<dir>/.ssh-wrapper` unless it is already there with the right content; returns its path. */
export async function ensureSshWrapper(dir: string): Promise<string> {
  const file = path.join(dir, ".ssh-wrapper");
  const existing = await readFile(file, "utf8").catch(() => undefined);
  if (existing === SSH_WRAPPER_SCRIPT) {
    await chmod(file, 0o700);
    return file;
  }
  // Temp name then rename: another process reading it never sees half a script.
  const temp = `${file}.${randomBytes(6).toString("hex")}.tmp`;
  await writeFile(temp, SSH_WRAPPER_SCRIPT, { mode: 0o700 });
  await chmod(temp, 0o700);
  await rename(temp, file);
  return file;
}
