/**
 * BtrfsPool: the PoolDriver over one btrfs filesystem (after Incus's split of
 * a Pool that knows objects over a driver that only runs host operations).
 * Bases, layers and env roots each live in their own store; this class wires
 * them together and owns the cross-cutting work: capacity, usage, users of a
 * base version, orphan cleanup.
 */

import { statfs } from "node:fs/promises";
import { join, relative } from "node:path";
import type { Readable } from "node:stream";
import { baseRefOf, formatBaseRef } from "../../../common/base-ref.js";
import { failedPrecondition } from "../../../common/errors.js";
import { run } from "../../../common/exec.js";
import { KeyedLock } from "../../../common/keyed-lock.js";
import type { Logger } from "../../../common/logger.js";
import { validateName } from "../../../common/names.js";
import { requireTools } from "../../../common/tools.js";
import type {
  BaseVersionMeta,
  EnvRoot,
  LayerBuildMeta,
  PoolCapacity,
  PoolConfig,
  PoolDriver,
  ProgressFn,
} from "../interfaces.js";
import { type BaseBuildSpec, type BaseSource, BaseStore, sha256 } from "./bases.js";
import { asPoolError, createSubvolume, deleteSubvolume, diskUsage, isSubvolume } from "./btrfs.js";
import { EnvRootStore } from "./env-roots.js";
import { type EnvReceiveHeader, type EnvSend, EnvTransfer } from "./env-transfer.js";
import type { ExternalBase, ExternalState } from "./external-bases.js";
import { exists, listDir, removeObjectDir } from "./files.js";
import { type LayerSpec, LayerStore } from "./layers.js";
import { PoolLayout, SUBDIRS, TMP_PREFIX } from "./layout.js";
import { mountsUnder, unmount } from "./mounts.js";
import { PackageCache } from "./package-cache.js";
import { parseFilesystemUsage } from "./parsers.js";
import { attachStorage, destroyStorage, type PoolStorage } from "./storage.js";

const REQUIRED_TOOLS = ["btrfs", "losetup", "mkfs.btrfs", "mount", "umount", "cp", "tar", "systemd-nspawn"];

/**
 * Opens the pool described by `cfg`, creating it when absent, reusing the
 * mount / loop device / image when a previous agent left them.
 */
export async function openPool(cfg: PoolConfig, log: Logger): Promise<BtrfsPool> {
  await requireTools(REQUIRED_TOOLS);
  const storage = await attachStorage(cfg, log);
  const pool = new BtrfsPool(storage, log);
  await pool.ensureLayout();
  return pool;
}

export class BtrfsPool implements PoolDriver {
  readonly mountpoint: string;
  readonly layout: PoolLayout;
  private readonly locks = new KeyedLock();
  private readonly bases: BaseStore;
  private readonly layers: LayerStore;
  private readonly envs: EnvRootStore;
  private readonly transfer: EnvTransfer;
  readonly packageCache: PackageCache;

  constructor(
    readonly storage: PoolStorage,
    private readonly log: Logger,
  ) {
    this.mountpoint = storage.mountpoint;
    this.layout = new PoolLayout(storage.mountpoint);
    this.packageCache = new PackageCache(this.layout.cache, this.locks, log);
    this.bases = new BaseStore(this.layout, this.locks, log, this.packageCache);
    this.layers = new LayerStore(this.layout, this.bases, this.locks, log, this.packageCache);
    this.envs = new EnvRootStore(this.layout, this.bases, this.locks, log, (b, v, l) =>
      this.layers.resolveStack(b, v, l),
    );
    this.transfer = new EnvTransfer(this.layout, this.bases, this.envs, this.locks);
  }

  /** Creates the layout subvolumes that are missing. */
  async ensureLayout(): Promise<void> {
    for (const d of SUBDIRS) {
      const p = join(this.mountpoint, d);
      if (await isSubvolume(p)) continue;
      if (await exists(p)) {
        throw failedPrecondition(`${p} exists but is not a btrfs subvolume`, { reason: "POOL_LAYOUT" });
      }
      await createSubvolume(p);
    }
  }

  async capacity(): Promise<PoolCapacity> {
    const r = await run("btrfs", ["filesystem", "usage", "-b", this.mountpoint], { allowFailure: true });
    try {
      const u = parseFilesystemUsage(r.stdout);
      return { sizeBytes: u.deviceSize, usedBytes: u.used, freeBytes: u.freeEstimated };
    } catch {
      const s = await statfs(this.mountpoint);
      return {
        sizeBytes: s.blocks * s.bsize,
        usedBytes: (s.blocks - s.bfree) * s.bsize,
        freeBytes: s.bavail * s.bsize,
      };
    }
  }

  async usage(): Promise<
    Array<{ kind: "base" | "layer" | "env"; name: string; exclusiveBytes: number; referencedBytes: number }>
  > {
    const objects: Array<{ kind: "base" | "layer" | "env"; name: string; path: string }> = [];
    for (const b of await this.bases.list()) {
      if (this.bases.externals.get(b.base, b.version)) continue;
      objects.push({
        kind: "base",
        name: baseRefOf(b),
        path: this.layout.baseVersionRoot(b.base, b.version),
      });
    }
    for (const l of await this.layers.listBuilds()) {
      objects.push({
        kind: "layer",
        name: `${l.layer}/${l.base}`,
        path: join(this.layers.buildDirOf(l), "vol"),
      });
    }
    for (const e of await this.envs.records()) {
      const dir = this.layout.envDir(e.name);
      objects.push({
        kind: "env",
        name: e.name,
        path: e.rootDir ?? join(dir, e.lowers.length ? "vol" : "root"),
      });
    }
    const du = new Map((await diskUsage(objects.map((o) => o.path))).map((d) => [d.path, d]));
    return objects.map((o) => ({
      kind: o.kind,
      name: o.name,
      exclusiveBytes: du.get(o.path)?.exclusiveBytes ?? 0,
      referencedBytes: du.get(o.path)?.totalBytes ?? 0,
    }));
  }

  listBaseVersions(name?: string): Promise<BaseVersionMeta[]> {
    if (name !== undefined) validateName("base", name);
    return this.bases.list(name);
  }

  getBaseVersion(name: string, version: number): Promise<BaseVersionMeta> {
    return this.bases.get(name, version);
  }

  importBase(name: string, source: BaseSource, progress?: ProgressFn, signal?: AbortSignal) {
    return this.bases.importBase(name, source, progress, signal);
  }

  buildBase(name: string, spec: BaseBuildSpec, progress?: ProgressFn, signal?: AbortSignal) {
    return this.bases.buildBase(name, spec, progress, signal);
  }

  updateBase(
    name: string,
    command: string[],
    opts: { network: boolean; script?: Uint8Array },
    progress?: ProgressFn,
    signal?: AbortSignal,
  ) {
    return this.bases.updateBase(name, command, opts, progress, signal);
  }

  deleteBaseVersion(name: string, version: number): Promise<BaseVersionMeta[]> {
    return this.bases.deleteVersion(name, version, (n, v) => this.usersOf(n, v));
  }

  /** Env roots and layer builds on base@N, as "env/NAME" and "layer/NAME". */
  async usersOf(base: string, version: number): Promise<string[]> {
    const users: string[] = [];
    for (const e of await this.envs.records()) {
      if (e.base === base && e.version === version) users.push(`env/${e.name}`);
    }
    for (const l of await this.layers.listBuilds()) {
      if (l.base === formatBaseRef(base, version)) users.push(`layer/${l.layer}`);
    }
    return users;
  }

  buildLayer(spec: LayerSpec, base: string, version: number, progress?: ProgressFn, signal?: AbortSignal) {
    return this.layers.build(spec, base, version, progress, signal);
  }

  listLayerBuilds(): Promise<LayerBuildMeta[]> {
    return this.layers.listBuilds();
  }

  async deleteLayer(name: string, base?: string): Promise<void> {
    const users = (await this.envs.records()).filter(
      (e) =>
        e.layers.length > 0 &&
        e.lowers.some((l) => l.startsWith(`${relative(this.mountpoint, this.layout.layerDir(name))}/`)),
    );
    const blocking = users.filter((e) => base === undefined || baseRefOf(e) === base || e.base === base);
    if (blocking.length > 0) {
      throw failedPrecondition(
        `layer ${name} is in use by ${blocking.map((e) => `env/${e.name}`).join(", ")}`,
        {
          reason: "LAYER_IN_USE",
          subject: `layer/${name}`,
          hint: "delete those envs first",
        },
      );
    }
    await this.layers.delete(name, base);
  }

  prepareEnvRoot(
    name: string,
    base: string,
    version: number,
    layers: string[],
    opts: { diskBytes?: number } = {},
  ): Promise<EnvRoot> {
    return this.envs.prepare(name, base, version, layers, opts);
  }

  openEnvRoot(name: string): Promise<EnvRoot | undefined> {
    return this.envs.open(name);
  }

  removeEnvRoot(name: string): Promise<void> {
    return this.envs.remove(name);
  }

  listEnvRoots(): Promise<EnvRoot[]> {
    return this.envs.list();
  }

  sendEnvRoot(name: string, withParent: boolean): Promise<EnvSend> {
    return this.transfer.send(name, withParent);
  }

  receiveEnvRoot(h: EnvReceiveHeader, stream: Readable): Promise<void> {
    return this.transfer.receive(h, stream);
  }

  /**
   * Seals the env's current root as the next version of `asBase`. A plain
   * env's root is a subvolume: one snapshot. A layered env's root is an
   * overlay: its merged view is copied with reflinks into a new subvolume.
   */
  async snapshotEnvAsBase(name: string, asBase: string): Promise<BaseVersionMeta> {
    validateName("base", asBase);
    const rec = await this.envs.requireRecord(name);
    const root = rec.rootDir ?? this.envs.rootDir(name);
    const made = {
      source: `env:${name}`,
      recipeDigest: sha256("env", name, rec.base, String(rec.version), ...rec.layers, String(Date.now())),
      parent: baseRefOf(rec),
    };
    // An env on an attached version lives in another filesystem: copied, not snapshotted.
    if (rec.lowers.length === 0 && !rec.rootDir) {
      return this.bases.stage(asBase, undefined, async () => made, root);
    }
    await this.envs.open(name);
    return this.bases.stage(asBase, undefined, async (s) => {
      await run("cp", ["-a", "--reflink=auto", "--", `${root}/.`, `${s.root}/`]).catch((err) => {
        throw asPoolError(err, `copy env ${name}`);
      });
      return made;
    });
  }

  /**
   * Startup inventory: removes temp objects (`.tmp-*` in every area), env
   * roots not in `knownEnvs` or without a record, and overlay mounts under
   * the pool that belong to no known env. Returns what it removed.
   */
  async cleanOrphans(knownEnvs: Set<string>): Promise<string[]> {
    const removed: string[] = [];
    const known = new Set<string>();
    for (const e of await this.envs.records()) {
      if (knownEnvs.has(e.name)) known.add(e.name);
    }
    for (const m of await mountsUnder(this.mountpoint)) {
      const rel = relative(this.mountpoint, m.mountpoint);
      const env = /^@env\/([a-z0-9][a-z0-9-]{0,62})\/root(\/|$)/.exec(rel)?.[1];
      if (env && known.has(env)) continue;
      await unmount(m.mountpoint);
      removed.push(`mount:${rel}`);
    }
    for (const area of [
      this.layout.base,
      this.layout.overlay,
      this.layout.env,
      this.layout.workdir,
      this.layout.cache,
    ]) {
      for (const entry of await listDir(area)) {
        if (!entry.startsWith(TMP_PREFIX) && !entry.includes(".tmp-")) continue;
        await removeObjectDir(join(area, entry));
        removed.push(relative(this.mountpoint, join(area, entry)));
      }
    }
    removed.push(...(await this.layers.cleanTemps()));
    for (const entry of await listDir(this.layout.env)) {
      if (known.has(entry)) continue;
      const rec = await this.envs.record(entry);
      if (rec?.rootDir) await deleteSubvolume(rec.rootDir);
      await removeObjectDir(this.layout.envDir(entry));
      removed.push(`@env/${entry}`);
    }
    // Env roots inside attached sprouts without a record here.
    for (const ext of this.bases.externals.list()) {
      for (const entry of await listDir(ext.envArea)) {
        // ".#NAME.lck": systemd-nspawn's lock of a running machine's directory, not an env root
        if (known.has(entry) || entry.startsWith(".")) continue;
        await deleteSubvolume(join(ext.envArea, entry));
        removed.push(`${baseRefOf(ext.meta)}:@env/${entry}`);
      }
    }
    if (removed.length > 0) this.log.info({ removed }, "pool orphans removed");
    return removed;
  }

  /** Receives base@N from another node (btrfs receive into `dir`, see BaseStore.adoptVersion). */
  adoptBaseVersion(meta: BaseVersionMeta, fill: (dir: string) => Promise<void>): Promise<BaseVersionMeta> {
    return this.bases.adoptVersion(meta, fill);
  }

  /** Path of the read-only root subvolume of base@N (local or external). */
  async baseRoot(name: string, version: number): Promise<{ meta: BaseVersionMeta; root: string }> {
    return this.bases.rootOf(name, version);
  }

  /**
   * Registers a base version held outside the pool (an attached seed's
   * subvolume, see external-bases.ts): listed by listBaseVersions, usable by
   * prepareEnvRoot (plain env roots are snapshotted in `envArea`, inside the
   * same filesystem as `root`), released by deleteBaseVersion.
   */
  registerExternalBase(e: ExternalBase): void {
    this.bases.externals.register(e);
  }

  /** Forgets an external version (after its detach); envs on it must be gone. */
  unregisterExternalBase(base: string, version: number): void {
    this.bases.externals.unregister(base, version);
  }

  /** "attached" | "hydrated" for an external version, undefined for a local one. */
  externalState(base: string, version: number): ExternalState | undefined {
    return this.bases.externals.get(base, version)?.state;
  }

  setExternalState(base: string, version: number, state: ExternalState): void {
    this.bases.externals.setState(base, version, state);
  }

  /** Releases in-process state. The pool stays mounted: running envs outlive the agent. */
  async close(): Promise<void> {}

  /** Unmounts and deletes the whole pool (tests, `protoctl down`). Not for "mount" pools' data. */
  async destroy(): Promise<void> {
    for (const m of await mountsUnder(this.mountpoint)) await unmount(m.mountpoint);
    await destroyStorage(this.storage);
  }
}
