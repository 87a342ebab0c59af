import { writeFileSync } from "node:fs";
import path from "node:path";
import { isTurnoutError } from "../domain/errors.js";
import type { Store } from "../store/store.js";

export const ADMIN_TOKEN_FILE = "admin-token";

/**
 * On first start (no token at all) an admin token is created, written to the
 * data directory with mode 0600 — where the local CLI finds it — and returned
 * so the caller can print it once. Afterwards nothing is printed again.
 */
export async function bootstrapAdminToken(store: Store, dataDir: string): Promise<string | undefined> {
  if ((await store.tokens.count()) > 0) return undefined;
  try {
    const { token } = await store.tokens.create({
      name: "admin",
      role: "admin",
      apps: null,
      createdBy: "turnout",
    });
    writeFileSync(path.join(dataDir, ADMIN_TOKEN_FILE), `${token}\n`, { mode: 0o600 });
    return token;
  } catch (error) {
    // Another server sharing the database created it first.
    if (isTurnoutError(error) && error.code === "E_CONFLICT") return undefined;
    throw error;
  }
}
