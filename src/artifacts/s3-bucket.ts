import { createHash } from "node:crypto";
import { PassThrough, type Readable } from "node:stream";
import type { S3Client } from "@aws-sdk/client-s3";
import type { S3StoreSettings } from "../config/artifact-store-settings.js";
import { isSha256 } from "../domain/artifact.js";
import { isTurnoutError, notFound, TurnoutError } from "../domain/errors.js";

export interface BucketObject {
  sha256: string;
  size: number;
  lastModified: Date;
}

/** Answers of S3 that mean the credentials or the bucket are wrong, not that the request was unlucky. */
const REFUSALS = new Set([
  "SignatureDoesNotMatch",
  "InvalidAccessKeyId",
  "AccessDenied",
  "InvalidToken",
  "ExpiredToken",
  "NoSuchBucket",
  "CredentialsProviderError",
]);

/**
 * Blobs as objects of an S3-compatible bucket, through the official AWS SDK
 * (it signs with SigV4, retries, and reads credentials the way every AWS
 * tool does). Keys are content addresses, `<prefix>blobs/<sha256>`; every
 * put carries the digest as `x-amz-checksum-sha256`, so the store itself
 * refuses bytes that do not match, and the bytes are hashed here on the way
 * out too (a store that ignores the header still gets nothing unchecked).
 * Whatever S3 answers becomes E_ARTIFACT_STORE with S3's own error code in
 * the details; no message carries a credential.
 */
type Sdk = typeof import("@aws-sdk/client-s3");

export class S3Bucket {
  private loaded: Promise<{ sdk: Sdk; client: S3Client }> | undefined;

  constructor(private readonly settings: S3StoreSettings) {}

  /**
   * The SDK is loaded on first use (the start-up check), not imported with
   * the server: loading it costs about 250 ms of CPU, which a server on the
   * default store should not pay at every start.
   */
  private load(): Promise<{ sdk: Sdk; client: S3Client }> {
    this.loaded ??= import("@aws-sdk/client-s3").then((sdk) => ({
      sdk,
      client: new sdk.S3Client({
        region: this.settings.region,
        ...(this.settings.endpoint ? { endpoint: this.settings.endpoint } : {}),
        forcePathStyle: this.settings.forcePathStyle,
        ...(this.settings.credentials ? { credentials: this.settings.credentials } : {}),
        // Checksums only where S3 requires them: the default CRC trailers (aws-chunked bodies)
        // are unknown to many S3-compatible stores, and the digest header already says more.
        requestChecksumCalculation: "WHEN_REQUIRED",
        responseChecksumValidation: "WHEN_REQUIRED",
        maxAttempts: 3,
      }),
    }));
    return this.loaded;
  }

  /** Where the bucket is, for messages (never credentials). */
  get where(): string {
    return `s3://${this.settings.bucket}/${this.settings.prefix}`;
  }

  key(sha256: string): string {
    return `${this.settings.prefix}blobs/${sha256}`;
  }

  /**
   * One listing under the prefix: the credentials sign, the bucket exists
   * and may be listed (the collector lists it). E_ARTIFACT_STORE otherwise,
   * so a server with wrong keys stops at start rather than at its first deploy.
   */
  async check(): Promise<void> {
    await this.call("list", ({ sdk, client }) =>
      client.send(
        new sdk.ListObjectsV2Command({ Bucket: this.settings.bucket, Prefix: this.key(""), MaxKeys: 1 }),
      ),
    );
  }

  /**
   * Stores a blob under its digest. The bytes are hashed as they go; a
   * mismatch (refused by the store, or found here after a store that does
   * not check) throws E_INTERNAL with details.sha256 and leaves no object.
   */
  async put(sha256: string, size: number, source: Readable | Buffer): Promise<void> {
    const hash = createHash("sha256");
    let body: Readable | Buffer;
    if (Buffer.isBuffer(source)) {
      hash.update(source);
      if (hash.digest("hex") !== sha256 || source.byteLength !== size) throw localMismatch(sha256);
      body = source;
    } else {
      const counted = new PassThrough();
      source.on("error", (error) => counted.destroy(error));
      source.on("data", (chunk: Buffer) => hash.update(chunk));
      body = source.pipe(counted);
    }
    try {
      await this.call("put", ({ sdk, client }) =>
        client.send(
          new sdk.PutObjectCommand({
            Bucket: this.settings.bucket,
            Key: this.key(sha256),
            Body: body,
            ContentLength: size,
            ChecksumSHA256: Buffer.from(sha256, "hex").toString("base64"),
            ContentType: "application/octet-stream",
          }),
        ),
      );
    } catch (error) {
      if (isTurnoutError(error) && error.details?.["s3Code"] === "BadDigest") throw localMismatch(sha256);
      throw error;
    } finally {
      if (!Buffer.isBuffer(source)) source.destroy();
    }
    if (!Buffer.isBuffer(source) && hash.digest("hex") !== sha256) {
      await this.delete(sha256);
      throw localMismatch(sha256);
    }
  }

  /** A whole object; E_NOT_FOUND when absent. */
  async read(sha256: string): Promise<Buffer> {
    const body = await this.open(sha256);
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  /** An object's bytes as they arrive; E_NOT_FOUND when absent. The caller checks the digest. */
  async open(sha256: string): Promise<Readable> {
    const answer = await this.call("get", ({ sdk, client }) =>
      client.send(new sdk.GetObjectCommand({ Bucket: this.settings.bucket, Key: this.key(sha256) })),
    ).catch((error: unknown) => {
      if (isTurnoutError(error) && error.details?.["s3Code"] === "NoSuchKey")
        throw notFound(`blob ${sha256}`, { sha256 });
      throw error;
    });
    return answer.Body as Readable;
  }

  /** Deletes one object (deleting an absent one succeeds, as in S3). */
  async delete(sha256: string): Promise<void> {
    await this.call("delete", ({ sdk, client }) =>
      client.send(new sdk.DeleteObjectCommand({ Bucket: this.settings.bucket, Key: this.key(sha256) })),
    );
  }

  /** Every blob object under the prefix (other keys are not this store's and are left alone). */
  async *list(): AsyncIterable<BucketObject> {
    const prefix = this.key("");
    let token: string | undefined;
    do {
      const page = await this.call("list", ({ sdk, client }) =>
        client.send(
          new sdk.ListObjectsV2Command({
            Bucket: this.settings.bucket,
            Prefix: prefix,
            ...(token ? { ContinuationToken: token } : {}),
          }),
        ),
      );
      for (const object of page.Contents ?? []) {
        const sha256 = object.Key?.slice(prefix.length) ?? "";
        if (!isSha256(sha256)) continue;
        yield { sha256, size: object.Size ?? 0, lastModified: object.LastModified ?? new Date(0) };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  close(): void {
    void this.loaded?.then(({ client }) => client.destroy()).catch(() => undefined);
  }

  private async call<T>(
    operation: string,
    send: (loaded: { sdk: Sdk; client: S3Client }) => Promise<T>,
  ): Promise<T> {
    try {
      return await send(await this.load());
    } catch (error) {
      throw storeError(operation, this.where, error);
    }
  }
}

/** E_ARTIFACT_STORE naming the operation, the bucket and S3's code; the SDK's own error stays as cause. */
function storeError(operation: string, where: string, error: unknown): TurnoutError {
  if (isTurnoutError(error)) return error;
  const e = error as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  // S3ServiceException and the credential providers' errors both carry their code as `name`.
  const s3Code = typeof e?.name === "string" && e.name !== "" ? e.name : "Error";
  const status = e?.$metadata?.httpStatusCode;
  const refused = REFUSALS.has(s3Code);
  const hint = refused ? " (check the S3 credentials, bucket and region in the server settings)" : "";
  const turnout = new TurnoutError(
    "E_ARTIFACT_STORE",
    `S3 ${operation} at ${where} failed: ${s3Code}${e?.message && e.message !== s3Code ? `: ${e.message}` : ""}${hint}`,
    { s3Code, ...(status !== undefined ? { status } : {}), operation, refused },
  );
  return turnout;
}

function localMismatch(sha256: string): TurnoutError {
  return new TurnoutError(
    "E_INTERNAL",
    `the local copy of blob ${sha256.slice(0, 12)} does not match its digest: not published to the shared store`,
    { sha256 },
  );
}
