import { readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { TurnoutError } from "../domain/errors.js";
import { isProcessAlive } from "../engine/owner.js";

/**
 * One server process per data directory. The mirrors and workspaces in it are
 * not shared safely, and with SQLite the lock is also what lets recovery treat
 * every other lease holder as dead.
 */
export function lockDataDir(dataDir: string): () => void {
  const file = path.join(dataDir, "server.pid");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, `${process.pid}\n`, { flag: "wx", mode: 0o600 });
      return () => rmSync(file, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const pid = Number(readFileSync(file, "utf8").trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isProcessAlive(pid)) {
        throw new TurnoutError(
          "E_CONFIG",
          `another Turnout server (pid ${pid}) is using the data directory ${dataDir}`,
        );
      }
      rmSync(file, { force: true }); // left by a server that died
    }
  }
  throw new TurnoutError("E_CONFIG", `cannot lock the data directory ${dataDir}`);
}
