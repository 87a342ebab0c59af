import { inspect } from "node:util";
import { describe, expect, it } from "vitest";
import { resolveArtifactStore } from "../../src/config/artifact-store-settings.js";
import { resolveSettings } from "../../src/config/settings.js";
import { isTurnoutError } from "../../src/domain/errors.js";

const PG = "postgres://postgres@127.0.0.1:5432/test";

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(isTurnoutError(error) && error.code).toBe("E_CONFIG");
    return (error as Error).message;
  }
  throw new Error("expected E_CONFIG");
}

describe("artifact store settings", () => {
  it("defaults to PostgreSQL, on SQLite too", () => {
    expect(resolveArtifactStore(undefined, {}, undefined)).toEqual({ kind: "postgres" });
    expect(resolveSettings({ port: 0 }, {}, "/tmp").artifactStore).toEqual({ kind: "postgres" });
  });

  it("S3 from the environment over the settings file; path style by default with an endpoint", () => {
    const s = resolveArtifactStore(
      { kind: "s3", bucket: "from-file", prefix: "x/", region: "eu-west-1" },
      {
        TURNOUT_S3_BUCKET: "turnout-artifacts",
        TURNOUT_S3_PREFIX: "prod/turnout",
        TURNOUT_S3_ENDPOINT: "http://127.0.0.1:9000",
      },
      PG,
    );
    expect(s).toEqual({
      kind: "s3",
      bucket: "turnout-artifacts",
      prefix: "prod/turnout/",
      endpoint: "http://127.0.0.1:9000",
      region: "eu-west-1",
      forcePathStyle: true,
    });
    const aws = resolveArtifactStore({ kind: "s3", bucket: "b-1" }, { AWS_REGION: "eu-central-1" }, PG);
    expect(aws).toMatchObject({ region: "eu-central-1", forcePathStyle: false, prefix: "turnout/" });
    expect(aws).not.toHaveProperty("credentials");
    expect(resolveArtifactStore({ kind: "s3", bucket: "b-1" }, { TURNOUT_S3_PREFIX: "" }, PG)).toMatchObject({
      prefix: "turnout/",
    });
    expect(resolveArtifactStore({ kind: "s3", bucket: "b-1", prefix: "" }, {}, PG)).toMatchObject({
      prefix: "",
    });
  });

  it("explicit keys are kept but never printed", () => {
    const secret = "s3cr3t-value-that-must-not-show";
    const s = resolveArtifactStore(
      { kind: "s3", bucket: "bucket" },
      {
        TURNOUT_S3_ACCESS_KEY_ID: "AKIAEXAMPLE",
        TURNOUT_S3_SECRET_ACCESS_KEY: secret,
        TURNOUT_S3_SESSION_TOKEN: "tok-123",
      },
      PG,
    );
    expect(s.kind === "s3" && s.credentials?.secretAccessKey).toBe(secret);
    expect(s.kind === "s3" && s.credentials?.sessionToken).toBe("tok-123");
    expect(JSON.stringify(s)).not.toContain(secret);
    expect(JSON.stringify(s)).not.toContain("tok-123");
    expect(inspect(s, { depth: 5 })).not.toContain(secret);
    expect(JSON.stringify(s)).toContain("AKIAEXAMPLE");
  });

  it("refuses what cannot work with E_CONFIG", () => {
    expect(configError(() => resolveArtifactStore({ kind: "s3", bucket: "b-1" }, {}, undefined))).toContain(
      "needs PostgreSQL",
    );
    expect(
      configError(() => resolveArtifactStore(undefined, { TURNOUT_ARTIFACT_STORE: "ftp" }, PG)),
    ).toContain("postgres or s3");
    expect(configError(() => resolveArtifactStore({ kind: "s3" }, {}, PG))).toContain("needs a bucket");
    expect(configError(() => resolveArtifactStore({ kind: "s3", bucket: "Bad_Bucket" }, {}, PG))).toContain(
      "not valid",
    );
    expect(
      configError(() => resolveArtifactStore({ kind: "s3", bucket: "b-1", prefix: "../etc" }, {}, PG)),
    ).toContain("prefix");
    expect(
      configError(() => resolveArtifactStore({ kind: "s3", bucket: "b-1", endpoint: "file:///etc" }, {}, PG)),
    ).toContain("http");
    expect(
      configError(() =>
        resolveArtifactStore({ kind: "s3", bucket: "b-1", endpoint: "http://k:s@127.0.0.1:9000" }, {}, PG),
      ),
    ).toContain("must not carry credentials");
    expect(
      configError(() =>
        resolveArtifactStore({ kind: "s3", bucket: "b-1" }, { TURNOUT_S3_ACCESS_KEY_ID: "AKIA" }, PG),
      ),
    ).toContain("both");
    expect(
      configError(() =>
        resolveArtifactStore({ kind: "s3", bucket: "b-1" }, { TURNOUT_S3_FORCE_PATH_STYLE: "maybe" }, PG),
      ),
    ).toContain("true or false");
  });
});
