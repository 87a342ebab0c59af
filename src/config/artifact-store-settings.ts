import { z } from "zod";
import { TurnoutError } from "../domain/errors.js";

/**
 * Where several servers on PostgreSQL share artifact blobs (issue 14): the
 * database itself (chunk rows, the default) or an S3-compatible bucket. The
 * index every server and the collector rely on stays in PostgreSQL either
 * way; only where the bytes live differs (see store/artifact-blobs-s3.ts).
 */
export type ArtifactStoreSettings = { kind: "postgres" } | S3StoreSettings;

export interface S3StoreSettings {
  kind: "s3";
  bucket: string;
  /** Key prefix, empty or ending in `/`: blobs are `<prefix>blobs/<sha256>`. */
  prefix: string;
  /** An S3-compatible endpoint (MinIO, Ceph, R2…); undefined: AWS's own for the region. */
  endpoint?: string;
  region: string;
  /** `endpoint/bucket/key` instead of `bucket.endpoint/key` (most self-hosted stores need it). */
  forcePathStyle: boolean;
  /** Explicit keys (TURNOUT_S3_* variables); undefined: the AWS SDK's default credential chain. */
  credentials?: S3Credentials;
}

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** `artifact_store:` in the settings file. Keys are secrets: they come from the environment only. */
export const artifactStoreFileSchema = z.strictObject({
  kind: z.enum(["postgres", "s3"]).optional(),
  bucket: z.string().optional(),
  prefix: z.string().optional(),
  endpoint: z.string().optional(),
  region: z.string().optional(),
  force_path_style: z.boolean().optional(),
});

export type ArtifactStoreFileSettings = z.infer<typeof artifactStoreFileSchema>;

// S3's rules for bucket names (3-63 lowercase letters, digits, dots and hyphens).
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
// Plain key characters only: the prefix is pasted into every key and into list requests.
const PREFIX = /^(?:[A-Za-z0-9!_.*'()-]+\/)*$/;

/** Environment > settings file > defaults (PostgreSQL). E_CONFIG on anything inconsistent. */
export function resolveArtifactStore(
  file: ArtifactStoreFileSettings | undefined,
  env: Record<string, string | undefined>,
  databaseUrl: string | undefined,
): ArtifactStoreSettings {
  const kind = env["TURNOUT_ARTIFACT_STORE"] || file?.kind || "postgres";
  if (kind === "postgres") return { kind };
  if (kind !== "s3")
    throw new TurnoutError("E_CONFIG", `artifact store must be postgres or s3, not '${kind}'`);
  if (!databaseUrl) {
    // The index, the touch protocol and the collector's lock are PostgreSQL's: one server has no use for it.
    throw new TurnoutError(
      "E_CONFIG",
      "the S3 artifact store needs PostgreSQL (TURNOUT_DATABASE_URL): its index and retention live there",
    );
  }
  const bucket = env["TURNOUT_S3_BUCKET"] || file?.bucket || "";
  if (!BUCKET.test(bucket) || bucket.includes(".."))
    throw new TurnoutError(
      "E_CONFIG",
      bucket
        ? `S3 bucket name '${bucket}' is not valid (3-63 lowercase letters, digits, dots, hyphens)`
        : "the S3 artifact store needs a bucket (TURNOUT_S3_BUCKET or artifact_store.bucket)",
    );
  // An empty variable is "not set", as everywhere; the settings file's `prefix: ""` means the bucket's root.
  let prefix = env["TURNOUT_S3_PREFIX"] || (file?.prefix ?? "turnout/");
  if (prefix !== "" && !prefix.endsWith("/")) prefix = `${prefix}/`;
  if (!PREFIX.test(prefix) || prefix.split("/").some((part) => part === "." || part === ".."))
    throw new TurnoutError(
      "E_CONFIG",
      `S3 prefix '${prefix}' must be path segments of letters, digits and !_.*'()- separated by /`,
    );
  const endpoint = env["TURNOUT_S3_ENDPOINT"] || file?.endpoint || undefined;
  if (endpoint !== undefined) checkEndpoint(endpoint);
  const region = env["TURNOUT_S3_REGION"] || file?.region || env["AWS_REGION"] || "us-east-1";
  if (!/^[a-z0-9-]{1,40}$/.test(region))
    throw new TurnoutError("E_CONFIG", `S3 region '${region}' is not a region name`);
  const pathStyle = env["TURNOUT_S3_FORCE_PATH_STYLE"];
  const forcePathStyle =
    pathStyle !== undefined && pathStyle !== ""
      ? booleanVariable("TURNOUT_S3_FORCE_PATH_STYLE", pathStyle)
      : (file?.force_path_style ?? endpoint !== undefined);
  const credentials = explicitCredentials(env);
  return {
    kind: "s3",
    bucket,
    prefix,
    ...(endpoint !== undefined ? { endpoint } : {}),
    region,
    forcePathStyle,
    ...(credentials ? { credentials } : {}),
  };
}

function checkEndpoint(endpoint: string): void {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new TurnoutError("E_CONFIG", `S3 endpoint '${endpoint}' is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new TurnoutError("E_CONFIG", `S3 endpoint '${endpoint}' must be http:// or https://`);
  if (url.username || url.password)
    throw new TurnoutError(
      "E_CONFIG",
      "S3 endpoint must not carry credentials: use TURNOUT_S3_ACCESS_KEY_ID",
    );
}

function booleanVariable(name: string, value: string): boolean {
  if (/^(1|true|yes)$/i.test(value)) return true;
  if (/^(0|false|no)$/i.test(value)) return false;
  throw new TurnoutError("E_CONFIG", `${name} must be true or false, not '${value}'`);
}

/**
 * Both keys or neither (then the SDK's chain: AWS_* variables, profiles,
 * web identity, instance roles). The returned object hides the secret from
 * JSON.stringify and util.inspect, so printing settings cannot leak it.
 */
function explicitCredentials(env: Record<string, string | undefined>): S3Credentials | undefined {
  const accessKeyId = env["TURNOUT_S3_ACCESS_KEY_ID"] || undefined;
  const secretAccessKey = env["TURNOUT_S3_SECRET_ACCESS_KEY"] || undefined;
  if (!accessKeyId && !secretAccessKey) return undefined;
  if (!accessKeyId || !secretAccessKey)
    throw new TurnoutError(
      "E_CONFIG",
      "set both TURNOUT_S3_ACCESS_KEY_ID and TURNOUT_S3_SECRET_ACCESS_KEY, or neither (the AWS credential chain)",
    );
  const sessionToken = env["TURNOUT_S3_SESSION_TOKEN"] || undefined;
  const credentials: S3Credentials = { accessKeyId, secretAccessKey };
  Object.defineProperty(credentials, "secretAccessKey", { value: secretAccessKey, enumerable: false });
  if (sessionToken)
    Object.defineProperty(credentials, "sessionToken", { value: sessionToken, enumerable: false });
  return credentials;
}
