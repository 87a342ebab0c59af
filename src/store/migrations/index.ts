import type { Kysely } from "kysely";
import type { Capabilities } from "../capabilities.js";
import * as m0001 from "./0001-initial.js";
import * as m0002 from "./0002-delivery.js";
import * as m0003 from "./0003-fleets.js";
import * as m0004 from "./0004-approvals.js";
import * as m0005 from "./0005-isolation.js";
import * as m0006 from "./0006-release-identity.js";
import * as m0008 from "./0008-host-token-use.js";
import * as m0009 from "./0009-retention.js";
import * as m0010 from "./0010-dashboard.js";
import * as m0011 from "./0011-notifications.js";
import * as m0012 from "./0012-audit.js";
import * as m0013 from "./0013-commit-locks.js";
import * as m0014 from "./0014-promotion.js";
import * as m0015 from "./0015-emergency.js";
import * as m0017 from "./0017-pool-per-app.js";
import * as m0018 from "./0018-shared-artifacts.js";
import * as m0019 from "./0019-shared-hosted-repos.js";
import * as m0020 from "./0020-host-calls.js";
import * as m0021 from "./0021-env-paths.js";

/**
 * The numbered migrations, in order. One list serves both backends; a
 * migration asks the capabilities where they differ. Never edit a migration
 * that has shipped: add the next number.
 */
export interface Migration {
  up(db: Kysely<unknown>, caps: Capabilities): Promise<void>;
}

export const MIGRATIONS: Record<string, Migration> = {
  "0001-initial": m0001,
  "0002-delivery": m0002,
  "0003-fleets": m0003,
  "0004-approvals": m0004,
  "0005-isolation": m0005,
  "0006-release-identity": m0006,
  "0008-host-token-use": m0008,
  "0009-retention": m0009,
  "0010-dashboard": m0010,
  "0011-notifications": m0011,
  "0012-audit": m0012,
  "0013-commit-locks": m0013,
  "0014-promotion": m0014,
  "0015-emergency": m0015,
  "0017-pool-per-app": m0017,
  "0018-shared-artifacts": m0018,
  "0019-shared-hosted-repos": m0019,
  "0020-host-calls": m0020,
  "0021-env-paths": m0021,
};
