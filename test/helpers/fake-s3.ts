import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A small S3-compatible server for tests, speaking the REST protocol the AWS
 * SDK uses, path-style (`/bucket/key`): PutObject, GetObject, HeadObject,
 * DeleteObject, DeleteObjects and ListObjectsV2, with S3's XML bodies and
 * error codes. Every request must carry a valid AWS Signature V4: the
 * signature is computed again here from the known secret (canonical request,
 * string to sign, derived key) and anything else is refused with 403
 * SignatureDoesNotMatch (InvalidAccessKeyId for an unknown key); a signed
 * payload hash must match the body, and `x-amz-checksum-sha256` on a put must
 * match the bytes (400 BadDigest), as S3 does.
 */
export interface FakeS3 {
  /** http://127.0.0.1:PORT (the endpoint to configure, path style). */
  url: string;
  region: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  objects: Map<string, StoredObject>;
  /** Every request: its operation, and the error code when refused. */
  requests: { operation: string; key?: string; error?: string }[];
  close(): Promise<void>;
}

export interface StoredObject {
  body: Buffer;
  lastModified: Date;
}

export interface FakeS3Options {
  bucket?: string;
  region?: string;
  /** ListObjectsV2 page size at most (small to make a client follow continuation tokens). */
  pageSize?: number;
}

const ALGORITHM = "AWS4-HMAC-SHA256";
const SKEW_MS = 15 * 60_000;

export async function startFakeS3(options: FakeS3Options = {}): Promise<FakeS3> {
  const bucket = options.bucket ?? "turnout-test";
  const region = options.region ?? "us-east-1";
  const accessKeyId = `AKIA${randomBytes(8).toString("hex").toUpperCase()}`;
  const secretAccessKey = randomBytes(30).toString("base64");
  const objects = new Map<string, StoredObject>();
  const requests: FakeS3["requests"] = [];
  const pageSize = options.pageSize ?? 1000;

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      try {
        handle(req, res, body);
      } catch (error) {
        fail(res, 500, "InternalError", (error as Error).message);
      }
    });
  });

  function handle(req: IncomingMessage, res: ServerResponse, body: Buffer): undefined {
    const url = new URL(req.url ?? "/", "http://fake");
    const [, bucketName = "", ...rest] = url.pathname.split("/");
    const key = rest.length > 0 ? decodeURIComponent(rest.join("/")) : undefined;
    const operation = operationOf(req.method ?? "GET", key, url.searchParams);
    const record: FakeS3["requests"][number] = { operation, ...(key !== undefined ? { key } : {}) };
    requests.push(record);
    const refuse = (status: number, code: string, message: string): undefined => {
      record.error = code;
      fail(res, status, code, message, req.method === "HEAD");
    };

    const problem = verifySignature(req, body, { accessKeyId, secretAccessKey, region });
    if (problem) return refuse(problem.status, problem.code, problem.message);
    if (decodeURIComponent(bucketName) !== bucket)
      return refuse(404, "NoSuchBucket", "The specified bucket does not exist");

    switch (operation) {
      case "PutObject": {
        const checksum = req.headers["x-amz-checksum-sha256"];
        if (typeof checksum === "string" && createHash("sha256").update(body).digest("base64") !== checksum)
          return refuse(400, "BadDigest", "The SHA256 you specified did not match the calculated checksum.");
        objects.set(key!, { body, lastModified: new Date() });
        res.writeHead(200, { etag: etag(body), ...(checksum ? { "x-amz-checksum-sha256": checksum } : {}) });
        res.end();
        return;
      }
      case "GetObject":
      case "HeadObject": {
        const found = objects.get(key!);
        if (!found) return refuse(404, "NoSuchKey", "The specified key does not exist.");
        res.writeHead(200, {
          "content-type": "application/octet-stream",
          "content-length": String(found.body.byteLength),
          etag: etag(found.body),
          "last-modified": found.lastModified.toUTCString(),
        });
        res.end(operation === "GetObject" ? found.body : undefined);
        return;
      }
      case "DeleteObject":
        objects.delete(key!);
        res.writeHead(204);
        res.end();
        return;
      case "DeleteObjects": {
        const keys = [...body.toString("utf8").matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => unxml(m[1]!));
        for (const k of keys) objects.delete(k);
        xml(
          res,
          200,
          `<DeleteResult>${keys.map((k) => `<Deleted><Key>${esc(k)}</Key></Deleted>`).join("")}</DeleteResult>`,
        );
        return;
      }
      case "ListObjectsV2": {
        const prefix = url.searchParams.get("prefix") ?? "";
        const max = Math.min(Number(url.searchParams.get("max-keys") ?? 1000), pageSize);
        const after = url.searchParams.get("continuation-token") ?? url.searchParams.get("start-after") ?? "";
        const keys = [...objects.keys()].filter((k) => k.startsWith(prefix) && k > after).sort();
        const page = keys.slice(0, max);
        const truncated = keys.length > page.length;
        const contents = page
          .map((k) => {
            const o = objects.get(k)!;
            return `<Contents><Key>${esc(k)}</Key><LastModified>${o.lastModified.toISOString()}</LastModified><ETag>${esc(etag(o.body))}</ETag><Size>${o.body.byteLength}</Size><StorageClass>STANDARD</StorageClass></Contents>`;
          })
          .join("");
        xml(
          res,
          200,
          `<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>${bucket}</Name><Prefix>${esc(prefix)}</Prefix><KeyCount>${page.length}</KeyCount><MaxKeys>${max}</MaxKeys><IsTruncated>${truncated}</IsTruncated>${contents}${truncated ? `<NextContinuationToken>${esc(page[page.length - 1]!)}</NextContinuationToken>` : ""}</ListBucketResult>`,
        );
        return;
      }
      default:
        return refuse(501, "NotImplemented", `${operation} is not implemented by the test server`);
    }
  }

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    region,
    bucket,
    accessKeyId,
    secretAccessKey,
    objects,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function operationOf(method: string, key: string | undefined, query: URLSearchParams): string {
  if (key === undefined || key === "") {
    if (method === "GET" && query.get("list-type") === "2") return "ListObjectsV2";
    if (method === "POST" && query.has("delete")) return "DeleteObjects";
    return `${method} bucket`;
  }
  return (
    { PUT: "PutObject", GET: "GetObject", HEAD: "HeadObject", DELETE: "DeleteObject" }[method] ??
    `${method} object`
  );
}

interface Keys {
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
}

/** SigV4 as S3 checks it; undefined when the request is signed with the known secret. */
function verifySignature(
  req: IncomingMessage,
  body: Buffer,
  keys: Keys,
): { status: number; code: string; message: string } | undefined {
  const header = req.headers.authorization;
  const denied = (message: string) => ({ status: 403, code: "AccessDenied", message });
  if (typeof header !== "string" || !header.startsWith(`${ALGORITHM} `))
    return denied("Missing or unsupported Authorization");
  const fields = new Map<string, string>();
  for (const part of header.slice(ALGORITHM.length + 1).split(",")) {
    const eq = part.indexOf("=");
    fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const [accessKeyId, date, region, service, terminator] = (fields.get("Credential") ?? "").split("/");
  if (accessKeyId !== keys.accessKeyId)
    return {
      status: 403,
      code: "InvalidAccessKeyId",
      message: "The AWS Access Key Id you provided does not exist in our records.",
    };
  if (region !== keys.region || service !== "s3" || terminator !== "aws4_request" || !date)
    return { status: 400, code: "AuthorizationHeaderMalformed", message: `bad credential scope` };
  const amzDate = req.headers["x-amz-date"];
  if (typeof amzDate !== "string" || !amzDate.startsWith(date))
    return denied("x-amz-date missing or not the scope's date");
  const when = Date.parse(
    amzDate.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, "$1-$2-$3T$4:$5:$6Z"),
  );
  if (!Number.isFinite(when) || Math.abs(Date.now() - when) > SKEW_MS)
    return {
      status: 403,
      code: "RequestTimeTooSkewed",
      message: "The difference between the request time and the current time is too large.",
    };
  const signedHeaders = (fields.get("SignedHeaders") ?? "").split(";");
  for (const required of ["host", "x-amz-date", "x-amz-content-sha256"])
    if (!signedHeaders.includes(required)) return denied(`${required} is not signed`);
  const payloadHash = req.headers["x-amz-content-sha256"];
  if (typeof payloadHash !== "string") return denied("x-amz-content-sha256 missing");
  if (payloadHash !== "UNSIGNED-PAYLOAD") {
    if (!/^[0-9a-f]{64}$/.test(payloadHash))
      return {
        status: 501,
        code: "NotImplemented",
        message: `payload mode ${payloadHash} is not implemented by the test server`,
      };
    if (createHash("sha256").update(body).digest("hex") !== payloadHash)
      return {
        status: 400,
        code: "XAmzContentSHA256Mismatch",
        message: "The provided 'x-amz-content-sha256' header does not match what was computed.",
      };
  }

  const rawUrl = req.url ?? "/";
  const q = rawUrl.indexOf("?");
  const canonicalUri = q < 0 ? rawUrl : rawUrl.slice(0, q);
  const canonicalQuery = q < 0 ? "" : canonicalQueryString(rawUrl.slice(q + 1));
  const canonicalHeaders = signedHeaders
    .map((name) => {
      const value = req.headers[name];
      const text = Array.isArray(value) ? value.join(",") : (value ?? "");
      return `${name}:${text.trim().replace(/\s+/g, " ")}\n`;
    })
    .join("");
  const canonicalRequest = [
    req.method,
    canonicalUri,
    canonicalQuery,
    canonicalHeaders,
    signedHeaders.join(";"),
    payloadHash,
  ].join("\n");
  const scope = `${date}/${region}/s3/aws4_request`;
  const stringToSign = [ALGORITHM, amzDate, scope, sha256Hex(canonicalRequest)].join("\n");
  let key = hmac(`AWS4${keys.secretAccessKey}`, date);
  for (const part of [region, "s3", "aws4_request"]) key = hmac(key, part);
  const expected = createHmac("sha256", key).update(stringToSign).digest();
  const given = Buffer.from(fields.get("Signature") ?? "", "hex");
  if (given.length !== expected.length || !timingSafeEqual(given, expected))
    return {
      status: 403,
      code: "SignatureDoesNotMatch",
      message:
        "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
    };
  return undefined;
}

function canonicalQueryString(raw: string): string {
  return raw
    .split("&")
    .filter((p) => p !== "")
    .map((pair) => {
      const eq = pair.indexOf("=");
      const name = decodeURIComponent((eq < 0 ? pair : pair.slice(0, eq)).replace(/\+/g, "%20"));
      const value = eq < 0 ? "" : decodeURIComponent(pair.slice(eq + 1).replace(/\+/g, "%20"));
      return [rfc3986(name), rfc3986(value)] as const;
    })
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0))
    .map(([name, value]) => `${name}=${value}`)
    .join("&");
}

function rfc3986(text: string): string {
  return encodeURIComponent(text).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac("sha256", key).update(data).digest();
}

function sha256Hex(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

function etag(body: Buffer): string {
  return `"${createHash("md5").update(body).digest("hex")}"`;
}

function xml(res: ServerResponse, status: number, content: string): void {
  const text = `<?xml version="1.0" encoding="UTF-8"?>\n${content}`;
  res.writeHead(status, { "content-type": "application/xml", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function fail(res: ServerResponse, status: number, code: string, message: string, head = false): void {
  if (head) {
    res.writeHead(status);
    res.end();
    return;
  }
  xml(
    res,
    status,
    `<Error><Code>${code}</Code><Message>${esc(message)}</Message><RequestId>fake</RequestId></Error>`,
  );
}

function esc(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function unxml(text: string): string {
  return text
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&amp;/g, "&");
}
