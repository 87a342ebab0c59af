import type { Kysely } from "kysely";
import { S3Bucket } from "../artifacts/s3-bucket.js";
import type { SharedBlobStore } from "../artifacts/shared-blobs.js";
import type { ArtifactStoreSettings } from "../config/artifact-store-settings.js";
import { ArtifactBlobRows } from "./artifact-blobs.js";
import { S3ArtifactBlobs } from "./artifact-blobs-s3.js";
import type { Schema } from "./schema.js";

/**
 * The one place the shared artifact store's backend is chosen, from the
 * server settings: every other part sees a SharedBlobStore. Both keep their
 * index in the database's `artifact_blobs` rows; the bytes are chunk rows
 * (default) or bucket objects. Only used where caps.sharedArtifacts.
 */
export function sharedBlobBackend(db: Kysely<Schema>, settings?: ArtifactStoreSettings): SharedBlobStore {
  switch (settings?.kind ?? "postgres") {
    case "s3":
      return new S3ArtifactBlobs(
        db,
        new S3Bucket(settings as Extract<ArtifactStoreSettings, { kind: "s3" }>),
      );
    default:
      return new ArtifactBlobRows(db);
  }
}
