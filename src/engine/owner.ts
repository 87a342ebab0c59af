import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";

/**
 * Who holds a lease: `<host>:<pid>:<nonce>`. Knowing the host and pid lets a
 * server recover a deploy at once when its holder on the same host is gone,
 * instead of waiting for the lease to run out.
 */
export function newOwnerId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
}

export function parseOwner(owner: string): { host: string; pid: number } | undefined {
  const match = /^(.*):([0-9]+):[0-9a-f]+$/.exec(owner);
  return match ? { host: match[1]!, pid: Number(match[2]) } : undefined;
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Whether a lease holder is certainly dead. With a database only this process
 * uses (SQLite, guarded by the data directory lock), every other holder is.
 * With a shared database, only holders on this host whose process is gone.
 */
export function ownerIsDead(owner: string, self: string, sharedDatabase: boolean): boolean {
  if (owner === self) return false;
  if (!sharedDatabase) return true;
  const parsed = parseOwner(owner);
  if (!parsed || parsed.host !== hostname()) return false;
  return !isProcessAlive(parsed.pid);
}

/**
 * The process group a crashed server left running, if it is still there and
 * really belongs to that deploy (checked through its environment, so a reused
 * pid is never killed by mistake). Linux only; elsewhere orphans are left be.
 */
export function orphanBelongsTo(pid: number, deployId: number): boolean {
  try {
    const environ = readFileSync(`/proc/${pid}/environ`, "latin1").split("\0");
    return environ.includes(`TURNOUT_DEPLOY_ID=${deployId}`);
  } catch {
    return false;
  }
}
