/**
 * The node's package cache for layer builds and base updates: apt's
 * downloaded archives (`/var/cache/apt/archives`) and its lists
 * (`/var/lib/apt/lists`), kept in the pool at `@cache/apt` (a subvolume), so a
 * rebuild on a new base version installs what the first build fetched without
 * fetching it again. Removed with the pool like everything else in it.
 *
 * Concurrency by per-build copy: each build gets a snapshot of the cache
 * (instant on btrfs), bind-mounted into its nspawn runs, so concurrent builds
 * never share apt's working files or its locks. After the build, the files it
 * added (new .deb archives, newer lists) are merged back one by one (reflink
 * copy, then rename: a reader never sees half a file) under one in-process
 * lock, and the cache is pruned, oldest archives first, down to its limit.
 *
 * apt checks every archive against the hash in its index before using it, so
 * an archive from another base's build is only ever used when it is the same
 * package. Only trees that have both apt directories get the binds (nspawn
 * would otherwise create them, and they would show in a layer's diff).
 */
import { constants } from "node:fs";
import { copyFile, lstat, mkdir, readdir, rename, rm, stat, utimes } from "node:fs/promises";
import { join } from "node:path";
import type { KeyedLock } from "../../../common/keyed-lock.js";
import type { Logger } from "../../../common/logger.js";
import { lstatInRoot } from "../../../common/root-path.js";
import { createSubvolume, deleteSubvolume, isSubvolume, snapshotSubvolume } from "./btrfs.js";
import { tmpName } from "./layout.js";

/** Where the cached directories go inside a build's tree. */
const TARGETS = { archives: "var/cache/apt/archives", lists: "var/lib/apt/lists" } as const;
type Part = keyof typeof TARGETS;
const PARTS = Object.keys(TARGETS) as Part[];

export const DEFAULT_PACKAGE_CACHE_MAX_BYTES = 2 * 2 ** 30;

export interface PackageCacheStats {
  bytes: number;
  files: number;
  maxBytes: number;
}

export interface CacheBind {
  host: string;
  container: string;
  /** Mapped into the run's user namespace (base updates run in one): root's files stay root's. */
  idmap?: boolean;
}

/** One build's copy of the cache: its binds, and `release` (once; later calls wait for it) to merge it back and remove it. */
export interface CacheCheckout {
  binds: CacheBind[];
  release(): Promise<void>;
}

export class PackageCache {
  readonly dir: string;

  constructor(
    private readonly area: string,
    private readonly locks: KeyedLock,
    private readonly log: Logger,
    readonly maxBytes = DEFAULT_PACKAGE_CACHE_MAX_BYTES,
  ) {
    this.dir = join(area, "apt");
  }

  /**
   * A private copy of the cache for a build in `root`, or undefined when the
   * tree has no apt (nothing to bind). The tree's own lists seed the copy
   * where the cache has none newer, so a recipe that installs without
   * `apt-get update` still finds what the base knew. A base update takes
   * the archives only (`lists: false`): a base keeps its own lists.
   */
  async checkout(
    root: string,
    opts: { lists: boolean; idmap?: boolean } = { lists: true },
  ): Promise<CacheCheckout | undefined> {
    const parts = opts.lists ? PARTS : (["archives"] as Part[]);
    for (const p of parts) {
      const st = await lstatInRoot(root, TARGETS[p]).catch(() => undefined);
      if (!st?.isDirectory()) return undefined;
    }
    await this.ensure();
    const copy = join(this.area, tmpName());
    await this.locks.run("package-cache", () => snapshotSubvolume(this.dir, copy));
    try {
      if (opts.lists) await mergeNewer(join(root, TARGETS.lists), join(copy, "lists"), isListFile);
    } catch (err) {
      await deleteSubvolume(copy).catch(() => undefined);
      throw err;
    }
    let released: Promise<void> | undefined;
    return {
      binds: parts.map((p) => ({ host: join(copy, p), container: `/${TARGETS[p]}`, idmap: opts.idmap })),
      release: () => {
        released ??= this.release(copy);
        return released;
      },
    };
  }

  async stats(): Promise<PackageCacheStats> {
    let bytes = 0;
    let files = 0;
    for (const p of PARTS) {
      for (const f of await regularFiles(join(this.dir, p))) {
        bytes += f.size;
        files++;
      }
    }
    return { bytes, files, maxBytes: this.maxBytes };
  }

  private async ensure(): Promise<void> {
    await this.locks.run("package-cache", async () => {
      if (await isSubvolume(this.dir)) return;
      await mkdir(this.area, { recursive: true });
      await createSubvolume(this.dir);
      for (const p of PARTS) await mkdir(join(this.dir, p, "partial"), { recursive: true });
    });
  }

  private async release(copy: string): Promise<void> {
    try {
      await this.locks.run("package-cache", async () => {
        await mergeNewer(join(copy, "archives"), join(this.dir, "archives"), isArchive);
        await mergeNewer(join(copy, "lists"), join(this.dir, "lists"), isListFile);
        await this.prune();
      });
    } catch (err) {
      // a cache that could not take a build's files is a slower next build, never a failed one
      this.log.warn({ err }, "package cache merge failed");
    } finally {
      await deleteSubvolume(copy).catch((err) => this.log.warn({ err, copy }, "package cache copy left"));
    }
  }

  private async prune(): Promise<void> {
    const { bytes } = await this.stats();
    if (bytes <= this.maxBytes) return;
    const removed = await pruneOldest(join(this.dir, "archives"), bytes - this.maxBytes);
    this.log.info({ removed: removed.length, maxBytes: this.maxBytes }, "package cache pruned");
  }
}

/**
 * Removes the oldest archives of `dir` (by mtime: when they came into the
 * cache) until `over` bytes are gone; returns their names. Lists are small
 * and always kept, so only archives are pruned.
 */
export async function pruneOldest(dir: string, over: number): Promise<string[]> {
  const archives = (await regularFiles(dir)).filter((f) => isArchive(f.name));
  archives.sort((a, b) => a.mtimeMs - b.mtimeMs || a.name.localeCompare(b.name));
  const removed: string[] = [];
  for (const a of archives) {
    if (over <= 0) break;
    await rm(a.path, { force: true });
    over -= a.size;
    removed.push(a.name);
  }
  return removed;
}

export const isArchive = (name: string) => name.endsWith(".deb");
export const isListFile = (name: string) => name !== "lock" && !name.startsWith(".");

interface FileEntry {
  name: string;
  path: string;
  size: number;
  mtimeMs: number;
}

/** The regular files directly in `dir` (apt keeps both directories flat, bar `partial/`). */
async function regularFiles(dir: string): Promise<FileEntry[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const out: FileEntry[] = [];
  for (const name of names) {
    const path = join(dir, name);
    const st = await lstat(path).catch(() => undefined);
    if (st?.isFile()) out.push({ name, path, size: st.size, mtimeMs: st.mtimeMs });
  }
  return out;
}

/**
 * Copies the files of `from` that `to` lacks, or holds older, into `to`:
 * a reflink copy (a full copy where the filesystem cannot) under a temp name,
 * renamed into place, times kept, so apt's If-Modified-Since still works.
 */
export async function mergeNewer(from: string, to: string, want: (name: string) => boolean): Promise<void> {
  for (const f of await regularFiles(from)) {
    if (!want(f.name)) continue;
    const have = await stat(join(to, f.name)).catch(() => undefined);
    if (have && have.mtimeMs >= f.mtimeMs && have.size === f.size) continue;
    const tmp = join(to, `.${tmpName()}`);
    try {
      await copyFile(f.path, tmp, constants.COPYFILE_FICLONE);
      const src = await stat(f.path);
      await utimes(tmp, src.atime, src.mtime);
      await rename(tmp, join(to, f.name));
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }
}
