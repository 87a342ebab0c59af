/**
 * The host side of fleet deploys on a local filesystem (DESIGN.md "Hosts and
 * fleets"): staging from a blob cache, atomic pointer switches, commands,
 * health checks, pruning, inventory.
 */
export { BlobCache, cachedFileMode } from "./blob-cache.js";
export { EXIT_ABORTED, EXIT_NOT_STARTED, EXIT_TIMEOUT } from "./commands.js";
export { assertHostConsistent } from "./consistency.js";
export { readAppInventory, readInventory, releasesInOrder } from "./inventory.js";
export { AppLayout, parsePointerTarget, pointerTarget, readPointer } from "./layout.js";
export { LocalHostOps, type LocalHostOptions } from "./local-host-ops.js";
export { dirMode, planRelease, sharedLinkTarget } from "./release-plan.js";
