import { TurnoutError } from "./errors.js";
import type { Principal } from "./roles.js";

export interface Lock {
  app: string;
  env: string;
  lockedBy: string;
  reason: string;
  createdAt: string;
}

/**
 * Whether a new deploy may enter a locked environment. Only an admin with
 * `force` gets past a lock, and then the lock is recorded on the deploy as an
 * ignored safety. Rollbacks are not special: an operator who locked an
 * environment to investigate must not see it change under them.
 */
export function checkLock(
  lock: Lock | undefined,
  principal: Principal,
  force: boolean,
): { ignoredSafeties: string[] } {
  if (!lock) return { ignoredSafeties: [] };
  if (force && principal.role === "admin") return { ignoredSafeties: ["lock"] };
  throw new TurnoutError(
    "E_LOCKED",
    `${lock.app}/${lock.env} is locked by ${lock.lockedBy}: ${lock.reason}` +
      (force ? " (only an admin may force past a lock)" : ""),
    { lockedBy: lock.lockedBy, reason: lock.reason, lockedAt: lock.createdAt },
  );
}
