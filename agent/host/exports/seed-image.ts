/**
 * Publish: a read-only subvolume (base@N) becomes a sealed seed image.
 *
 *   sparse file → mkfs.btrfs → mount → btrfs send | btrfs receive → sync → umount
 *   → btrfstune -S 1 → checksum (BLAKE3) → chmod 0444 → rename into place
 *
 * send/receive carries exactly that version (not whatever else the pool
 * holds), through a kernel pipe Node never reads (deltas/btrfs-local-copy.ts).
 * The image is built under a temporary name and renamed at the end, so a crash or a failure never leaves a half-made image under the final
 * name; every step registers its undo (common/revert.ts).
 *
 * The `btrfs filesystem sync` before the umount is not extra work: the
 * umount writes back the same dirty pages (the image's whole content: ~1.8 s
 * for 2.7 GiB here, on disk or tmpfs alike). Doing it as its own command
 * reports a writeback error by an exit status checked before the image is
 * sealed, and shows in the timings as its own step.
 *
 * Sizing: the subvolume's extents (`btrfs filesystem du`) plus room for
 * metadata and small inline files, single profiles (DUP metadata buys
 * nothing in an image verified by checksum). The file is sparse, so headroom
 * costs address space, not disk. If the estimate is short (ENOSPC) the build
 * is retried (up to twice) 30% larger.
 */
import { randomBytes } from "node:crypto";
import { chmod, mkdir, mkdtemp, open, rename, rm, rmdir, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { Code, failedPrecondition, invalidArgument, ProtoctlError } from "../../../common/errors.js";
import { CommandError, output, run } from "../../../common/exec.js";
import { Revert } from "../../../common/revert.js";
import { requireTools } from "../../../common/tools.js";
import { copySubvolume } from "../deltas/btrfs-local-copy.js";
import { checksumFile } from "./checksum.js";
import type { PublishOptions, SeedImage } from "./types.js";

const MiB = 1024 * 1024;
/** mkfs.btrfs refuses much smaller single-profile filesystems. */
export const MIN_IMAGE_BYTES = 128 * MiB;

/** Image size for a subvolume of `dataBytes` extents and `inodes` inodes (pure, tested). */
export function estimateSeedImageSize(dataBytes: number, inodes: number): number {
  // Chunks are allocated in pieces of up to 10% of the filesystem, one data and one metadata
  // chunk may be mostly empty: keep ~22% slack. Metadata: a tree item set per inode plus inline
  // data (max_inline 2048); 64 MiB for system chunks and the trees' own overhead.
  const bytes = (dataBytes + inodes * 4096 + 64 * MiB) / 0.78;
  return Math.max(MIN_IMAGE_BYTES, Math.ceil(bytes / MiB) * MiB);
}

/** Parses the "Total" column of `btrfs filesystem du -s --raw`. */
export function parseBtrfsDuTotal(text: string): number {
  const line = text
    .trim()
    .split("\n")
    .find((l) => /^\s*\d+\s+\d+\s+\S+\s+\S/.test(l));
  if (!line) throw new Error(`unexpected btrfs filesystem du output: ${text.slice(0, 200)}`);
  return Number(line.trim().split(/\s+/)[0]);
}

/** Parses the fsid from `btrfs inspect-internal dump-super`. */
export function parseDumpSuperFsid(text: string): string {
  const m = /^fsid\s+([0-9a-f-]{36})$/m.exec(text);
  if (!m) throw new Error("no fsid in btrfs dump-super output");
  return m[1]!;
}

async function isReadOnlySubvolume(path: string): Promise<boolean> {
  const out = await output("btrfs", ["property", "get", "-ts", path, "ro"]);
  return out.trim() === "ro=true";
}

async function measure(subvolume: string): Promise<{ dataBytes: number; inodes: number }> {
  // Data still in delayed allocation has no extents yet: du would count it as 0.
  await run("btrfs", ["filesystem", "sync", subvolume]);
  const [du, inodes] = await Promise.all([
    output("btrfs", ["filesystem", "du", "-s", "--raw", subvolume]),
    output("du", ["-s", "-x", "--inodes", subvolume]),
  ]);
  return { dataBytes: parseBtrfsDuTotal(du), inodes: Number(inodes.split(/\s+/)[0]) };
}

/**
 * Builds the sealed seed image of the read-only subvolume `subvolume` at
 * `imagePath` (which must not exist). Returns its size and checksum.
 */
export async function publishSeedImage(
  subvolume: string,
  imagePath: string,
  opts: PublishOptions = {},
): Promise<SeedImage> {
  await requireTools(["btrfs", "mkfs.btrfs", "btrfstune", "mount", "umount"]);
  const exists = await stat(imagePath).then(
    () => true,
    () => false,
  );
  if (exists) {
    throw new ProtoctlError(Code.ALREADY_EXISTS, `seed image ${imagePath} already exists`, {
      reason: "SEED_EXISTS",
      subject: imagePath,
      hint: "seed images are immutable: delete the old one first or publish under another name",
    });
  }
  const st = await stat(subvolume).catch(() => undefined);
  if (!st?.isDirectory()) throw invalidArgument(`${subvolume} is not a directory`, { subject: subvolume });
  if (!(await isReadOnlySubvolume(subvolume))) {
    throw failedPrecondition(`${subvolume} is not a read-only subvolume`, {
      reason: "NOT_READ_ONLY",
      subject: subvolume,
      hint: "publish sealed base versions only",
    });
  }
  opts.progress?.({ step: "measure" });
  const { dataBytes, inodes } = await measure(subvolume);
  let size = estimateSeedImageSize(dataBytes, inodes);
  for (let attempt = 0; ; attempt++) {
    try {
      return await buildOnce(subvolume, imagePath, size, opts);
    } catch (err) {
      const full = err instanceof ProtoctlError && err.code === Code.RESOURCE_EXHAUSTED;
      // ENOSPC inside the image means the estimate was short; ENOSPC of the host disk is final.
      if (!full || attempt >= 2 || !(err as ProtoctlError).metadata.insideImage) throw err;
      size = Math.ceil((size * 1.3) / MiB) * MiB;
    }
  }
}

async function buildOnce(
  subvolume: string,
  imagePath: string,
  sizeBytes: number,
  opts: PublishOptions,
): Promise<SeedImage> {
  const r = new Revert();
  try {
    const dir = dirname(imagePath);
    await mkdir(dir, { recursive: true });
    const tmp = join(dir, `.${basename(imagePath)}.${randomBytes(4).toString("hex")}.tmp`);
    r.add(() => rm(tmp, { force: true }));
    opts.progress?.({ step: "format" });
    const fh = await open(tmp, "wx", 0o600);
    try {
      await fh.truncate(sizeBytes);
    } finally {
      await fh.close();
    }
    await run("mkfs.btrfs", ["-q", "-f", "-m", "single", "-d", "single", tmp], { signal: opts.signal });
    opts.progress?.({ step: "mount" });

    const mnt = await mkdtemp(join(opts.workDir ?? dir, ".seed-mnt-"));
    r.add(() => rmdir(mnt).catch(() => undefined));
    // `-o loop` gives an autoclear loop device: the umount releases it.
    await run("mount", ["-t", "btrfs", "-o", "loop", tmp, mnt], { signal: opts.signal });
    let mounted = true;
    r.add(() => (mounted ? run("umount", [mnt]) : undefined));

    opts.progress?.({ step: "send" });
    let received: Awaited<ReturnType<typeof copySubvolume>>;
    try {
      received = await copySubvolume({ subvolume, dir: mnt, signal: opts.signal });
    } catch (err) {
      const e = ProtoctlError.from(err);
      if (e.code === Code.RESOURCE_EXHAUSTED) e.metadata.insideImage = "true";
      throw e;
    }
    opts.progress?.({ step: "sync" });
    await run("btrfs", ["filesystem", "sync", mnt]);
    opts.progress?.({ step: "umount" });
    await run("umount", [mnt]);
    mounted = false;
    await rmdir(mnt);

    opts.progress?.({ step: "seal" });
    await run("btrfstune", ["-S", "1", tmp]);
    opts.progress?.({ step: "fsid" });
    const fsid = parseDumpSuperFsid(await output("btrfs", ["inspect-internal", "dump-super", tmp]));
    await chmod(tmp, 0o444);

    opts.progress?.({ step: "checksum", fraction: 0 });
    const sum = await checksumFile(tmp, {
      signal: opts.signal,
      progress: (done, total) => opts.progress?.({ step: "checksum", fraction: total ? done / total : 1 }),
    });
    opts.progress?.({ step: "rename" });
    await rename(tmp, imagePath);
    r.success();
    return {
      path: imagePath,
      sizeBytes: sum.sizeBytes,
      checksum: sum.checksum,
      subvolume: received.name,
      fsid,
    };
  } catch (err) {
    await r.fail();
    if (err instanceof CommandError) throw err.toProtoctl("publishing the seed image failed", imagePath);
    throw ProtoctlError.from(err);
  }
}
