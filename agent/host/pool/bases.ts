/**
 * Base versions: import (directory, tar), build (debootstrap, builder
 * script), update (snapshot newest, run a command inside nspawn, seal N+1),
 * delete. A version is built under `@base/.tmp-*` and sealed by one rename to
 * `@base/NAME@N` (read-only `root` subvolume + `meta.json`); a failure at any
 * step reverts what was made, so nothing half-made is ever visible.
 */

import { createHash } from "node:crypto";
import { chmod, mkdir, open, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { baseRefOf, formatBaseRef } from "../../../common/base-ref.js";
import {
  Code,
  failedPrecondition,
  invalidArgument,
  notFound,
  ProtoctlError,
} from "../../../common/errors.js";
import { run } from "../../../common/exec.js";
import type { KeyedLock } from "../../../common/keyed-lock.js";
import type { Logger } from "../../../common/logger.js";
import { validateName } from "../../../common/names.js";
import { runWithProgress } from "../../../common/progress-run.js";
import { Revert } from "../../../common/revert.js";
import { removeFileInRoot, writeFileInRoot } from "../../../common/root-path.js";
import { requireTools } from "../../../common/tools.js";
import type { ImageConfig } from "../../../proto/gen/protoctl/v1/types.js";
import type { BaseVersionMeta, ProgressFn } from "../interfaces.js";
import { asPoolError, createSubvolume, diskUsage, setReadonly, snapshotSubvolume } from "./btrfs.js";
import { ExternalBases } from "./external-bases.js";
import { exists, listDir, readJson, removeObjectDir, writeJsonAtomic } from "./files.js";
import { type PoolLayout, parseBaseDirName, tmpName } from "./layout.js";
import { runInRoot } from "./nspawn.js";
import { importOciArchive } from "./oci/oci-archive.js";
import type { PackageCache } from "./package-cache.js";
import { parseAptMirror, tarCompressionFlag } from "./parsers.js";

export type BaseSource = { dir: string } | { tar: string } | { ociArchive: string };
export type BaseBuildSpec =
  | { debootstrap: { suite: string; variant?: string; packages?: string[]; mirror?: string } }
  | { script: Uint8Array };

export function sha256(...parts: Array<string | Uint8Array>): string {
  const h = createHash("sha256");
  for (const p of parts) {
    h.update(p);
    h.update("\0");
  }
  return h.digest("hex");
}

/** A version being built: a temp dir holding a writable `root` subvolume. */
interface Staging {
  dir: string;
  root: string;
}

export class BaseStore {
  /** Versions held outside the pool (attached seeds); listed and usable like local ones. */
  readonly externals = new ExternalBases();

  constructor(
    private readonly layout: PoolLayout,
    private readonly locks: KeyedLock,
    private readonly log: Logger,
    private readonly packageCache?: PackageCache,
  ) {}

  async list(name?: string): Promise<BaseVersionMeta[]> {
    const out: BaseVersionMeta[] = [];
    for (const entry of await listDir(this.layout.base)) {
      const p = parseBaseDirName(entry);
      if (!p || (name !== undefined && p.name !== name)) continue;
      const meta = await readJson<BaseVersionMeta>(join(this.layout.base, entry, "meta.json"));
      if (meta) out.push(meta);
    }
    for (const e of this.externals.list(name)) {
      if (!out.some((m) => m.base === e.meta.base && m.version === e.meta.version)) out.push(e.meta);
    }
    return out.sort((a, b) => a.base.localeCompare(b.base) || a.version - b.version);
  }

  /** Version 0 means the latest. NOT_FOUND (with what exists) otherwise. */
  async get(name: string, version: number): Promise<BaseVersionMeta> {
    validateName("base", name);
    if (version > 0) {
      const ext = this.externals.get(name, version);
      if (ext) return ext.meta;
      const meta = await readJson<BaseVersionMeta>(
        join(this.layout.baseVersionDir(name, version), "meta.json"),
      );
      if (meta) return meta;
    }
    const all = await this.list(name);
    if (version === 0 && all.length > 0) return all.at(-1)!;
    const have = all.map((m) => baseRefOf(m)).join(", ");
    throw notFound(
      version > 0 ? `base ${formatBaseRef(name, version)} not found` : `base ${name} not found`,
      {
        reason: "BASE_NOT_FOUND",
        subject: `base/${name}`,
        hint: have ? `versions present: ${have}` : "import or build it first (protoctl base import|build)",
      },
    );
  }

  /** The read-only root of base@N (latest when 0), checked to exist. */
  async rootOf(name: string, version: number): Promise<{ meta: BaseVersionMeta; root: string }> {
    const meta = await this.get(name, version);
    const ext = this.externals.get(meta.base, meta.version);
    return { meta, root: ext?.root ?? this.layout.baseVersionRoot(meta.base, meta.version) };
  }

  async importBase(
    name: string,
    source: BaseSource,
    progress?: ProgressFn,
    signal?: AbortSignal,
  ): Promise<BaseVersionMeta> {
    validateName("base", name);
    if ("dir" in source) {
      const st = await stat(source.dir).catch(() => undefined);
      if (!st?.isDirectory()) {
        throw notFound(`import source ${source.dir} is not a directory`, { reason: "SOURCE_NOT_FOUND" });
      }
      return this.stage(name, progress, async (s) => {
        progress?.({ step: "copy", message: `cp -a --reflink=auto ${source.dir}` });
        await run("cp", ["-a", "--reflink=auto", "--", `${source.dir}/.`, `${s.root}/`], { signal }).catch(
          (err) => {
            throw asPoolError(err, "copy the source tree");
          },
        );
        return { source: `dir:${source.dir}`, recipeDigest: sha256("dir", source.dir) };
      });
    }
    if ("ociArchive" in source) {
      const archive = source.ociArchive;
      await readHead(archive); // NOT_FOUND before any work
      return this.stage(name, progress, async (s) => {
        const work = join(s.dir, "oci");
        await mkdir(work);
        const { image, digest } = await importOciArchive(archive, s.root, work, progress, signal);
        await rm(work, { recursive: true, force: true });
        return { source: `oci:${archive}`, recipeDigest: digest.replace(/^sha256:/, ""), image };
      });
    }
    const head = await readHead(source.tar);
    const flag = tarCompressionFlag(head);
    return this.stage(name, progress, async (s) => {
      progress?.({ step: "extract", message: `tar -x ${flag ?? ""} ${source.tar}` });
      const args = [
        "-x",
        "-f",
        source.tar,
        "-C",
        s.root,
        "--numeric-owner",
        "--xattrs",
        "--xattrs-include=*",
      ];
      if (flag) args.push(flag);
      const r = await run("tar", args, { signal, allowFailure: true });
      if (r.exitCode !== 0) {
        const out = r.stderr || r.stdout;
        if (/No space left on device/i.test(out))
          throw asPoolError(Object.assign(new Error(out), { code: "ENOSPC" }), "tar");
        throw invalidArgument(`cannot extract ${source.tar}`, { reason: "BAD_ARCHIVE", output: out });
      }
      return { source: `tar:${source.tar}`, recipeDigest: await fileDigest(source.tar) };
    });
  }

  async buildBase(
    name: string,
    spec: BaseBuildSpec,
    progress?: ProgressFn,
    signal?: AbortSignal,
  ): Promise<BaseVersionMeta> {
    validateName("base", name);
    if ("debootstrap" in spec) {
      const d = spec.debootstrap;
      if (!/^[a-z][a-z0-9.-]*$/.test(d.suite))
        throw invalidArgument(`invalid suite ${JSON.stringify(d.suite)}`);
      const variant = d.variant || "minbase";
      if (!/^[a-z-]+$/.test(variant)) throw invalidArgument(`invalid variant ${JSON.stringify(variant)}`);
      for (const p of d.packages ?? []) {
        if (!/^[a-z0-9][a-z0-9+.-]*$/.test(p))
          throw invalidArgument(`invalid package name ${JSON.stringify(p)}`);
      }
      const mirror = d.mirror || (await defaultMirror());
      const args = [`--variant=${variant}`];
      if (d.packages?.length) args.push(`--include=${d.packages.join(",")}`);
      return this.stage(name, progress, async (s) => {
        progress?.({ step: "debootstrap", message: `debootstrap ${d.suite} from ${mirror}` });
        await this.runBuilder("debootstrap", [...args, d.suite, s.root, mirror], progress, signal);
        return {
          source: `debootstrap:${d.suite}/${variant}${d.packages?.length ? `+${d.packages.join(",")}` : ""}`,
          recipeDigest: sha256("debootstrap", d.suite, variant, (d.packages ?? []).join(","), mirror),
        };
      });
    }
    return this.stage(name, progress, async (s) => {
      const script = join(s.dir, "builder");
      await writeFile(script, spec.script);
      await chmod(script, 0o700);
      const text = Buffer.from(spec.script.subarray(0, 2)).toString();
      const [cmd, args] = text === "#!" ? [script, [s.root]] : ["/bin/sh", [script, s.root]];
      progress?.({ step: "script", message: "running the builder script" });
      await this.runBuilder(cmd, args, progress, signal);
      await rm(script, { force: true });
      return { source: "script", recipeDigest: sha256("script", spec.script) };
    });
  }

  /** Snapshots the newest version, runs `command` inside it (nspawn), seals N+1 only on success. */
  async updateBase(
    name: string,
    command: string[],
    opts: { network: boolean; script?: Uint8Array },
    progress?: ProgressFn,
    signal?: AbortSignal,
  ): Promise<BaseVersionMeta> {
    const latest = await this.get(name, 0);
    if (command.length === 0 && !opts.script) {
      throw invalidArgument("update needs a command or a script", { reason: "NO_UPDATE_COMMAND" });
    }
    const parentRoot = this.layout.baseVersionRoot(latest.base, latest.version);
    return this.stage(
      name,
      progress,
      async (s) => {
        let argv = command;
        let scriptPath: string | undefined;
        if (opts.script) {
          scriptPath = `/.protoctl-update-${tmpName().slice(5)}.sh`;
          await writeFileInRoot(s.root, scriptPath, opts.script, 0o700);
          argv = ["/bin/sh", scriptPath, ...command];
        }
        progress?.({ step: "update", message: argv.join(" ") });
        // the node's package cache (archives only: the new version keeps its own lists)
        const cache = await this.packageCache?.checkout(s.root, { lists: false, idmap: true });
        const r = await runInRoot(s.root, argv, {
          network: opts.network,
          userns: true,
          env: { DEBIAN_FRONTEND: "noninteractive" },
          binds: cache?.binds,
          step: "update",
          progress,
          signal,
        }).finally(() => cache?.release());
        if (scriptPath) await removeFileInRoot(s.root, scriptPath).catch(() => undefined);
        if (r.exitCode !== 0) {
          if (r.noSpace) throw asPoolError(Object.assign(new Error(r.output), { code: "ENOSPC" }), "update");
          throw failedPrecondition(
            `update of ${formatBaseRef(name, latest.version)} failed (exit ${r.exitCode})`,
            {
              reason: "UPDATE_FAILED",
              subject: `base/${name}`,
              output: r.output,
              hint: `${formatBaseRef(name, latest.version)} is unchanged; fix the command and retry`,
            },
          );
        }
        return {
          source: `update:${argv.join(" ")}`,
          recipeDigest: sha256(latest.recipeDigest, "update", ...argv, opts.script ?? ""),
          parent: baseRefOf(latest),
        };
      },
      parentRoot,
    );
  }

  /**
   * Seals an existing tree as the next version of `name`: `fill` puts the
   * tree into `s.root` (a fresh subvolume, or a writable snapshot of
   * `snapshotOf`). Used by import, build, update and env snapshots.
   */
  async stage(
    name: string,
    progress: ProgressFn | undefined,
    fill: (
      s: Staging,
    ) => Promise<{ source: string; recipeDigest: string; parent?: string; image?: ImageConfig }>,
    snapshotOf?: string,
  ): Promise<BaseVersionMeta> {
    validateName("base", name);
    return Revert.run(async (r) => {
      const dir = join(this.layout.base, tmpName());
      await mkdir(dir);
      r.add(() => removeObjectDir(dir));
      const root = join(dir, "root");
      if (snapshotOf) await snapshotSubvolume(snapshotOf, root);
      else await createSubvolume(root);
      const made = await fill({ dir, root });
      progress?.({ step: "seal", message: `sealing ${name}` });
      await setReadonly(root, true);
      const [du] = await diskUsage([root]);
      return this.seal(name, dir, { ...made, sizeBytes: du?.totalBytes ?? 0 });
    }).catch(async (err) => {
      const pe = err instanceof ProtoctlError ? err : asPoolError(err, `build ${name}`);
      // Space of the reverted subvolume comes back at the next commit: start it now, so a retry sees it.
      if (pe.code === Code.RESOURCE_EXHAUSTED) {
        await run("btrfs", ["filesystem", "sync", this.layout.mountpoint], { allowFailure: true });
      }
      throw pe;
    });
  }

  /** Numbers the staged version and renames it into place (one atomic step). */
  private seal(
    name: string,
    dir: string,
    m: { source: string; recipeDigest: string; parent?: string; sizeBytes: number; image?: ImageConfig },
  ): Promise<BaseVersionMeta> {
    return this.locks.run(`base/${name}`, async () => {
      const last =
        Number((await readFile(this.layout.baseLastFile(name), "utf8").catch(() => "0")).trim()) || 0;
      const present = (await this.list(name)).map((v) => v.version);
      const version = Math.max(last, 0, ...present) + 1;
      const meta: BaseVersionMeta = {
        base: name,
        version,
        source: m.source,
        createdMs: Date.now(),
        recipeDigest: m.recipeDigest,
        sizeBytes: m.sizeBytes,
        ...(m.parent ? { parent: m.parent } : {}),
        ...(m.image ? { image: m.image } : {}),
      };
      await writeJsonAtomic(join(dir, "meta.json"), meta);
      await rename(dir, this.layout.baseVersionDir(name, version));
      await writeJsonAtomic(this.layout.baseLastFile(name), version);
      this.log.info(
        { base: formatBaseRef(name, version), source: m.source, sizeBytes: m.sizeBytes },
        "base version sealed",
      );
      return meta;
    });
  }

  /**
   * Puts version `meta.version` of `meta.base` in place from outside (a
   * btrfs receive from another node): `fill(dir)` must leave a read-only
   * `root` subvolume in `dir`; the number is kept, not allocated.
   */
  async adoptVersion(meta: BaseVersionMeta, fill: (dir: string) => Promise<void>): Promise<BaseVersionMeta> {
    validateName("base", meta.base);
    return Revert.run(async (r) => {
      const dir = join(this.layout.base, tmpName());
      await mkdir(dir);
      r.add(() => removeObjectDir(dir));
      await fill(dir);
      await setReadonly(join(dir, "root"), true);
      return this.locks.run(`base/${meta.base}`, async () => {
        const final = this.layout.baseVersionDir(meta.base, meta.version);
        if (await exists(final)) throw failedPrecondition(`${baseRefOf(meta)} is already here`);
        await writeJsonAtomic(join(dir, "meta.json"), meta);
        await rename(dir, final);
        const last =
          Number((await readFile(this.layout.baseLastFile(meta.base), "utf8").catch(() => "0")).trim()) || 0;
        if (meta.version > last) await writeJsonAtomic(this.layout.baseLastFile(meta.base), meta.version);
        return meta;
      });
    }).catch((err) => {
      throw err instanceof ProtoctlError ? err : asPoolError(err, `receive ${baseRefOf(meta)}`);
    });
  }

  /** Deletes one version; `usersOf` names what still uses it (refusal when non-empty). */
  async deleteVersion(
    name: string,
    version: number,
    usersOf: (name: string, version: number) => Promise<string[]>,
  ): Promise<BaseVersionMeta[]> {
    if (version === 0) {
      // the whole base (`base rm NAME`): every version, and none while any is in use;
      // `get(name, 0)` alone is the latest, which left the older versions on disk
      const all = await this.list(name);
      if (all.length === 0) await this.get(name, 0);
      for (const m of all) await this.refuseInUse(m, usersOf);
      let left = all;
      for (const m of [...all].reverse()) left = await this.deleteVersion(name, m.version, usersOf);
      return left;
    }
    const meta = await this.get(name, version);
    return this.locks.run(`base/${name}`, async () => {
      await this.refuseInUse(meta, usersOf);
      const ext = this.externals.get(meta.base, meta.version);
      if (ext) {
        await ext.release?.();
        this.externals.unregister(meta.base, meta.version);
        return this.list(name);
      }
      const doomed = join(this.layout.base, tmpName());
      await rename(this.layout.baseVersionDir(name, meta.version), doomed);
      await removeObjectDir(doomed);
      return this.list(name);
    });
  }

  private async refuseInUse(
    meta: BaseVersionMeta,
    usersOf: (name: string, version: number) => Promise<string[]>,
  ): Promise<void> {
    const { base: name } = meta;
    const users = await usersOf(meta.base, meta.version);
    if (users.length > 0) {
      throw failedPrecondition(`base ${formatBaseRef(name, meta.version)} is in use by ${users.join(", ")}`, {
        reason: "BASE_IN_USE",
        subject: `base/${formatBaseRef(name, meta.version)}`,
        hint: "delete those envs and layer builds first",
        metadata: { users: users.join(",") },
      });
    }
  }

  private async runBuilder(cmd: string, args: string[], progress?: ProgressFn, signal?: AbortSignal) {
    await requireTools([cmd]);
    const r = await runWithProgress(cmd, args, {
      signal,
      env: { DEBIAN_FRONTEND: "noninteractive" },
      onLines: (log) => progress?.({ step: cmd, log }),
    });
    if (r.exitCode === 0) return;
    if (r.noSpace) {
      throw asPoolError(Object.assign(new Error(r.output), { code: "ENOSPC" }), cmd);
    }
    throw new ProtoctlError(Code.FAILED_PRECONDITION, `${cmd} failed (exit ${r.exitCode})`, {
      reason: "BUILD_FAILED",
      output: r.output.slice(-65536),
    });
  }
}

async function readHead(path: string): Promise<Uint8Array> {
  const fh = await open(path, "r").catch(() => {
    throw notFound(`archive ${path} not found`, { reason: "SOURCE_NOT_FOUND" });
  });
  try {
    const buf = Buffer.alloc(8);
    await fh.read(buf, 0, 8, 0);
    return buf;
  } finally {
    await fh.close();
  }
}

async function fileDigest(path: string): Promise<string> {
  const h = createHash("sha256");
  const fh = await open(path, "r");
  try {
    for await (const chunk of fh.createReadStream()) h.update(chunk as Buffer);
  } finally {
    await fh.close().catch(() => undefined);
  }
  return h.digest("hex");
}

/** The mirror apt already uses (deb822 .sources first, then sources.list), else deb.debian.org. */
export async function defaultMirror(): Promise<string> {
  const files = ["/etc/apt/sources.list"];
  for (const f of await listDir("/etc/apt/sources.list.d")) {
    if (f.endsWith(".sources") || f.endsWith(".list")) files.push(join("/etc/apt/sources.list.d", f));
  }
  for (const f of files.sort((a, b) => Number(b.endsWith(".sources")) - Number(a.endsWith(".sources")))) {
    if (!(await exists(f))) continue;
    const m = parseAptMirror(await readFile(f, "utf8").catch(() => ""));
    if (m) return m;
  }
  return "http://deb.debian.org/debian";
}
