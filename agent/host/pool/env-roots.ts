/**
 * Env roots. A plain env (no layers) is one writable `btrfs subvolume
 * snapshot` of base@N: the snapshot is the root, nothing is mounted (the
 * fastest path: one process spawned). A layered env gets a writable
 * subvolume `@env/NAME/vol` holding the overlay's upper and work dirs (they
 * must share a subvolume, see mounts.ts) and an overlayfs at `@env/NAME/root`
 * with lowerdir = layer uppers (top first) then the read-only base@N root;
 * the base subvolume is read-only and pinned by the env record, so it serves
 * as the lowest layer directly instead of through another snapshot.
 */
import { mkdir, rename } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { baseRefOf } from "../../../common/base-ref.js";
import { alreadyExists, notFound, ProtoctlError } from "../../../common/errors.js";
import type { KeyedLock } from "../../../common/keyed-lock.js";
import type { Logger } from "../../../common/logger.js";
import { validateName } from "../../../common/names.js";
import { Revert } from "../../../common/revert.js";
import type { BaseVersionMeta, EnvRoot } from "../interfaces.js";
import type { BaseStore } from "./bases.js";
import {
  asPoolError,
  createSubvolume,
  deleteSubvolume,
  retryOnceReclaimed,
  snapshotSubvolume,
} from "./btrfs.js";
import {
  kernelDropsEmptyQgroups,
  limitSubvolume,
  releaseQgroups,
  snapshotLimited,
  subvolumeIdOf,
} from "./disk-limit.js";
import { exists, listDir, readJson, removeObjectDir, writeJsonAtomic } from "./files.js";
import { type PoolLayout, TMP_PREFIX, tmpName } from "./layout.js";
import { findMount, mountOverlay, unmount } from "./mounts.js";

/** What `@env/NAME/meta.json` holds. */
export interface EnvRecord {
  name: string;
  base: string;
  version: number;
  /** Layers as asked for, in order. */
  layers: string[];
  /** Upper dirs of the resolved layer stack, top first, relative to the pool mount; empty for plain envs. */
  lowers: string[];
  createdMs: number;
  /**
   * Absolute root of a plain env on an external (attached) base version: a
   * snapshot inside that version's sprout filesystem. Absent = `@env/NAME/root`.
   */
  rootDir?: string;
  /** Received from another node (env move, env-transfer.ts), waiting for CreateEnv to adopt it. */
  received?: boolean;
}

/** Resolves (building when needed) the upper dirs of a layer stack on base@N, top first. */
export type LayerResolver = (base: string, version: number, layers: string[]) => Promise<string[]>;

export class EnvRootStore {
  constructor(
    private readonly layout: PoolLayout,
    private readonly bases: BaseStore,
    private readonly locks: KeyedLock,
    private readonly log: Logger,
    private readonly resolveLayers: LayerResolver,
  ) {}

  async prepare(
    name: string,
    base: string,
    version: number,
    layers: string[],
    opts: { diskBytes?: number } = {},
  ): Promise<EnvRoot> {
    validateName("env", name);
    for (const l of layers) validateName("layer", l);
    const { meta, root: baseRoot } = await this.bases.rootOf(base, version);
    const final = this.layout.envDir(name);
    const moved = await this.record(name);
    if (moved && !moved.received) throw inUse(name);
    const uppers = layers.length ? await this.resolveLayers(meta.base, meta.version, layers) : [];
    const lowers = uppers.map((u) => relative(this.layout.mountpoint, u));
    if (moved) return this.adopt(moved, meta, baseRoot, layers, lowers, opts);
    return this.locks.run(`env/${name}`, () =>
      retryOnceReclaimed(this.layout.mountpoint, () =>
        this.prepareOnce(name, meta, baseRoot, final, layers, lowers, opts),
      ),
    );
  }

  private prepareOnce(
    name: string,
    meta: BaseVersionMeta,
    baseRoot: string,
    final: string,
    layers: string[],
    lowers: string[],
    opts: { diskBytes?: number },
  ): Promise<EnvRoot> {
    return Revert.run(async (r) => {
      if (await exists(final)) throw inUse(name);
      const rec: EnvRecord = {
        name,
        base: meta.base,
        version: meta.version,
        layers,
        lowers,
        createdMs: Date.now(),
      };
      const dir = join(this.layout.env, tmpName());
      await mkdir(dir);
      r.add(() => removeObjectDir(dir));
      const ext = this.bases.externals.get(meta.base, meta.version);
      if (lowers.length === 0 && ext) {
        // Snapshots cannot cross filesystems: the root lives in the sprout, the record here.
        await mkdir(ext.envArea, { recursive: true });
        const extRoot = join(ext.envArea, name);
        if (await exists(extRoot)) await deleteSubvolume(extRoot);
        if (opts.diskBytes) await snapshotLimited(ext.envArea, baseRoot, extRoot, opts.diskBytes);
        else await snapshotSubvolume(baseRoot, extRoot);
        r.add(() => deleteSubvolume(extRoot));
        rec.rootDir = extRoot;
      } else if (lowers.length === 0) {
        const root = join(dir, "root");
        if (opts.diskBytes) await snapshotLimited(this.layout.mountpoint, baseRoot, root, opts.diskBytes);
        else await snapshotSubvolume(baseRoot, root);
      } else {
        const vol = join(dir, "vol");
        await createSubvolume(vol);
        // a layered env writes into its upper dir, inside this subvolume
        if (opts.diskBytes) await limitSubvolume(this.layout.mountpoint, vol, opts.diskBytes);
        await Promise.all([mkdir(join(vol, "upper")), mkdir(join(vol, "work")), mkdir(join(dir, "root"))]);
      }
      await writeJsonAtomic(join(dir, "meta.json"), rec);
      try {
        await rename(dir, final);
      } catch (err) {
        if (
          (err as NodeJS.ErrnoException).code === "ENOTEMPTY" ||
          (err as NodeJS.ErrnoException).code === "EEXIST"
        ) {
          throw inUse(name);
        }
        throw err;
      }
      r.add(() => removeObjectDir(final));
      if (lowers.length > 0) await this.mount(rec, baseRoot);
      this.log.debug({ env: name, base: baseRefOf(meta), layers }, "env root prepared");
      return this.toEnvRoot(rec);
    }).catch((err) => {
      throw err instanceof ProtoctlError ? err : asPoolError(err, `prepare env ${name}`);
    });
  }

  /**
   * Takes a root received from another node (env move) as env `rec.name`'s:
   * the same base version and shape (plain root or layered vol) as the spec
   * asks, its disk limit set here; the record loses its `received` mark last.
   */
  private adopt(
    rec: EnvRecord,
    meta: BaseVersionMeta,
    baseRoot: string,
    layers: string[],
    lowers: string[],
    opts: { diskBytes?: number },
  ): Promise<EnvRoot> {
    return this.locks.run(`env/${rec.name}`, async () => {
      const dir = this.layout.envDir(rec.name);
      const layered = await exists(join(dir, "vol"));
      if (rec.base !== meta.base || rec.version !== meta.version || layered !== lowers.length > 0) {
        throw inUse(rec.name);
      }
      const own = layered ? join(dir, "vol") : join(dir, "root");
      if (opts.diskBytes) await limitSubvolume(this.layout.mountpoint, own, opts.diskBytes);
      const next: EnvRecord = { ...rec, layers, lowers, createdMs: Date.now() };
      delete next.received;
      if (layered) await this.mount(next, baseRoot);
      await writeJsonAtomic(join(dir, "meta.json"), next);
      this.log.info({ env: rec.name, base: baseRefOf(meta), layers }, "moved env root adopted");
      return this.toEnvRoot(next);
    });
  }

  /** Where env `rec`'s root is (in the pool, or in an attached version's sprout). */
  rootOf(rec: EnvRecord): string {
    return rec.rootDir ?? this.rootDir(rec.name);
  }

  /** The env root, re-mounting its overlay when a restart (or reboot of a file pool) lost it. */
  async open(name: string): Promise<EnvRoot | undefined> {
    validateName("env", name);
    const rec = await this.record(name);
    if (!rec) return undefined;
    if (rec.lowers.length > 0) {
      await this.locks.run(`env/${name}`, async () => {
        const target = join(this.layout.envDir(name), "root");
        if ((await findMount(target))?.fstype !== "overlay") {
          await this.mount(rec, (await this.bases.rootOf(rec.base, rec.version)).root);
        }
      });
    }
    return this.toEnvRoot(rec);
  }

  async remove(name: string): Promise<void> {
    validateName("env", name);
    await this.locks.run(`env/${name}`, async () => {
      const dir = this.layout.envDir(name);
      if (!(await exists(dir))) return;
      await unmount(join(dir, "root"));
      const rec = await this.record(name);
      // ids first: after the delete nothing names the subvolumes whose qgroups must go
      // (not needed where the kernel drops emptied qgroups itself: two processes saved per rm)
      const drops = kernelDropsEmptyQgroups();
      const ownIds = drops ? [] : await subvolumeIds([join(dir, "root"), join(dir, "vol")]);
      const extIds = rec?.rootDir && !drops ? await subvolumeIds([rec.rootDir]) : [];
      if (rec?.rootDir) await deleteSubvolume(rec.rootDir);
      // Renamed first so a crash mid-delete leaves a temp name, not a half env.
      const doomed = join(this.layout.env, tmpName());
      await rename(dir, doomed);
      await removeObjectDir(doomed);
      const held = [
        ...(await releaseQgroups(this.layout.mountpoint, ownIds)),
        ...(rec?.rootDir ? await releaseQgroups(dirname(rec.rootDir), extIds) : []),
      ];
      if (held.length)
        this.log.info({ env: name, qgroups: held }, "qgroups kept: a snapshot shares their extents");
    });
  }

  async list(): Promise<EnvRoot[]> {
    const out: EnvRoot[] = [];
    for (const rec of await this.records()) out.push(this.toEnvRoot(rec));
    return out;
  }

  async records(): Promise<EnvRecord[]> {
    const out: EnvRecord[] = [];
    for (const entry of await listDir(this.layout.env)) {
      if (entry.startsWith(TMP_PREFIX)) continue;
      const rec = await this.record(entry);
      if (rec) out.push(rec);
    }
    return out;
  }

  async record(name: string): Promise<EnvRecord | undefined> {
    return readJson<EnvRecord>(join(this.layout.envDir(name), "meta.json"));
  }

  async requireRecord(name: string): Promise<EnvRecord> {
    validateName("env", name);
    const rec = await this.record(name);
    if (!rec)
      throw notFound(`env ${name} has no root on this node`, {
        reason: "ENV_NOT_FOUND",
        subject: `env/${name}`,
      });
    return rec;
  }

  rootDir(name: string): string {
    return join(this.layout.envDir(name), "root");
  }

  private async mount(rec: EnvRecord, baseRoot: string): Promise<void> {
    const dir = this.layout.envDir(rec.name);
    const lowers = rec.lowers.map((l) => join(this.layout.mountpoint, l));
    await mountOverlay(
      join(dir, "root"),
      [...lowers, baseRoot],
      join(dir, "vol/upper"),
      join(dir, "vol/work"),
    );
  }

  private toEnvRoot(rec: EnvRecord): EnvRoot {
    return {
      name: rec.name,
      rootDir: rec.rootDir ?? this.rootDir(rec.name),
      base: rec.base,
      version: rec.version,
      layers: rec.layers,
    };
  }
}

async function subvolumeIds(paths: string[]): Promise<number[]> {
  const ids = await Promise.all(paths.map((p) => subvolumeIdOf(p)));
  return ids.filter((id): id is number => id !== undefined);
}

function inUse(name: string): ProtoctlError {
  return alreadyExists(`env ${name} already has a root on this node`, {
    reason: "ENV_EXISTS",
    subject: `env/${name}`,
    hint: "pick another name or delete the env first",
  });
}
