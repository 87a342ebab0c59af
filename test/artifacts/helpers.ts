import { execFile } from "node:child_process";
import { mkdir, mkdtemp, open, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { pack } from "tar-stream";

const run = promisify(execFile);

export async function tempDir(prefix: string): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), `turnout-${prefix}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Files (string content), executables (`{ content, mode }`), symlinks (`{ link }`), empty dirs (`{ dir: true }`). */
export type TreeSpec = Record<
  string,
  string | { content: string; mode: number } | { link: string } | { dir: true }
>;

export async function makeTree(root: string, spec: TreeSpec): Promise<void> {
  await mkdir(root, { recursive: true });
  for (const [name, value] of Object.entries(spec)) {
    const file = path.join(root, name);
    await mkdir(path.dirname(file), { recursive: true });
    if (typeof value === "string") await writeFile(file, value, { mode: 0o644 });
    else if ("link" in value) await symlink(value.link, file);
    else if ("dir" in value) await mkdir(file, { recursive: true });
    else await writeFile(file, value.content, { mode: value.mode });
  }
}

/** Every blob the store holds: files under blobs/ (final names) and the entries of indexed packs. */
export async function blobFiles(storeDir: string): Promise<string[]> {
  const blobs = path.join(storeDir, "blobs");
  const found = new Set<string>();
  for (const prefix of await readdir(blobs).catch(() => [] as string[])) {
    for (const name of await readdir(path.join(blobs, prefix))) found.add(name);
  }
  const packs = path.join(storeDir, "packs");
  for (const name of await readdir(packs).catch(() => [] as string[])) {
    if (!name.endsWith(".idx") || name.startsWith(".")) continue;
    for (const line of (await readFile(path.join(packs, name), "utf8")).split("\n"))
      if (line) found.add(line.split(" ")[0]!);
  }
  return [...found].sort();
}

/** Files under blobs/ only (blobs stored one to a file). */
export async function looseFiles(storeDir: string): Promise<string[]> {
  const blobs = path.join(storeDir, "blobs");
  const found: string[] = [];
  for (const prefix of await readdir(blobs).catch(() => [] as string[])) {
    for (const name of await readdir(path.join(blobs, prefix))) found.push(name);
  }
  return found.sort();
}

/** Leftovers of unfinished writes: files in tmp/, and packs without an index. */
export async function tmpFiles(storeDir: string): Promise<string[]> {
  const temps = await readdir(path.join(storeDir, "tmp")).catch(() => [] as string[]);
  const packs = await readdir(path.join(storeDir, "packs")).catch(() => [] as string[]);
  const indexed = new Set(packs.filter((n) => n.endsWith(".idx")).map((n) => n.slice(0, -4)));
  const unindexed = packs.filter(
    (n) => n.endsWith(".idx.tmp") || (n.endsWith(".pack") && !indexed.has(n.slice(0, -5))),
  );
  return [...temps, ...unindexed.map((n) => `packs/${n}`)];
}

/** `tar -cf - -C dir .`, gzipped with -z: what a CI job would upload. */
export async function realTar(dir: string, gzip: boolean): Promise<Buffer> {
  const { stdout } = await run("tar", [gzip ? "-czf" : "-cf", "-", "-C", dir, "."], {
    encoding: "buffer",
    maxBuffer: 64 * 1024 * 1024,
  });
  return stdout;
}

export interface TarItem {
  name: string;
  type?: "file" | "directory" | "symlink" | "link" | "character-device" | "block-device" | "fifo";
  content?: string;
  linkname?: string;
  mode?: number;
}

/** An archive written entry by entry, hostile ones included: tar-stream writes whatever it is told. */
export async function packTar(items: TarItem[]): Promise<Buffer> {
  const archive = pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of archive) chunks.push(chunk as Buffer);
  })();
  for (const item of items) {
    const header = {
      name: item.name,
      type: item.type ?? "file",
      mode: item.mode ?? 0o644,
      ...(item.linkname !== undefined ? { linkname: item.linkname } : {}),
      ...(item.type === "character-device" ? { devmajor: 1, devminor: 3 } : {}),
    };
    if ((item.type ?? "file") === "file") archive.entry(header, item.content ?? "");
    else archive.entry(header);
  }
  archive.finalize();
  await collected;
  return Buffer.concat(chunks);
}

/** Flips the first byte of a blob's local copy, loose or packed. */
export async function damageBlob(storeDir: string, digest: string): Promise<void> {
  const loose = path.join(storeDir, "blobs", digest.slice(0, 2), digest);
  let file = loose;
  let offset = 0;
  const packs = path.join(storeDir, "packs");
  for (const name of await readdir(packs).catch(() => [] as string[])) {
    if (!name.endsWith(".idx") || name.startsWith(".")) continue;
    for (const line of (await readFile(path.join(packs, name), "utf8")).split("\n")) {
      const [d, at] = line.split(" ");
      if (d === digest) {
        file = path.join(packs, `${name.slice(0, -4)}.pack`);
        offset = Number(at);
      }
    }
  }
  const handle = await open(file, "r+");
  try {
    const one = Buffer.alloc(1);
    await handle.read(one, 0, 1, offset);
    one[0] = one[0]! ^ 0xff;
    await handle.write(one, 0, 1, offset);
  } finally {
    await handle.close();
  }
}
