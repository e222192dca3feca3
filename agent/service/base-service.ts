/**
 * Use cases on this node's bases and layers (the AgentService base and layer
 * RPCs translate to these): names checked here, listings grouped, uploaded
 * tar bytes bounded and kept in a temp file only while the import runs.
 */
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { invalidArgument, resourceExhausted } from "../../common/errors.js";
import { validateName } from "../../common/names.js";
import type { BaseVersionMeta, LayerBuildMeta, PoolDriver, ProgressFn } from "../host/interfaces.js";

/** How a version is held: a local subvolume, or attached over NBD / hydrated (propagation). */
export type HeldState = "local" | "attached" | "hydrated";

export type BuildSpec = Parameters<PoolDriver["buildBase"]>[1];
export type LayerSpec = Parameters<PoolDriver["buildLayer"]>[0];
export type BaseSource = { dir: string } | { tar: string } | { ociArchive: string };

export interface BaseGroup {
  name: string;
  latest: number;
  versions: Array<{ meta: BaseVersionMeta; held: HeldState }>;
}

export interface BaseServiceOptions {
  pool: PoolDriver;
  /** Holds uploads/ (temp files of ImportBase tar bytes). */
  stateDir: string;
  /** Largest upload accepted; 0 or absent: the pool's size. */
  maxUploadBytes?: number;
  /** How each version is held (propagation); "local" when absent. */
  heldState?: (base: string, version: number) => HeldState;
  /** A version was made here (build, import, update): its seed image is published in the background. */
  sealed?: (meta: BaseVersionMeta) => void;
  /** Before a version is deleted: a publish begun at seal reads its subvolume and stops first. */
  beforeDelete?: (base: string, version: number) => Promise<void>;
}

const UPLOAD_EXT: Record<string, string> = { "": ".tar", gzip: ".tar.gz", zstd: ".tar.zst", xz: ".tar.xz" };

export class BaseService {
  constructor(private readonly o: BaseServiceOptions) {}

  /** Every version, grouped by base name, bases sorted. */
  async list(name?: string): Promise<BaseGroup[]> {
    const by = new Map<string, BaseGroup>();
    for (const meta of await this.o.pool.listBaseVersions(name || undefined)) {
      let g = by.get(meta.base);
      if (!g) {
        g = { name: meta.base, latest: 0, versions: [] };
        by.set(meta.base, g);
      }
      g.versions.push({ meta, held: this.o.heldState?.(meta.base, meta.version) ?? "local" });
      g.latest = Math.max(g.latest, meta.version);
    }
    return [...by.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  async build(name: string, spec: BuildSpec | undefined, progress?: ProgressFn, signal?: AbortSignal) {
    const n = validateName("base", name);
    if (!spec) {
      throw invalidArgument("build needs a debootstrap spec or a script", { reason: "BUILD_SPEC_REQUIRED" });
    }
    return this.madeHere(await this.o.pool.buildBase(n, spec, progress, signal));
  }

  private madeHere(meta: BaseVersionMeta): BaseVersionMeta {
    this.o.sealed?.(meta);
    return meta;
  }

  async update(
    name: string,
    command: string[],
    opts: { network: boolean; script?: Uint8Array },
    progress?: ProgressFn,
    signal?: AbortSignal,
  ) {
    return this.madeHere(
      await this.o.pool.updateBase(validateName("base", name), command, opts, progress, signal),
    );
  }

  /** Deletes base@N (every version when 0); returns the versions deleted. */
  async deleteVersion(name: string | undefined, version: number): Promise<BaseVersionMeta[]> {
    const n = validateName("base", name);
    await this.o.beforeDelete?.(n, version);
    const before = version
      ? [await this.o.pool.getBaseVersion(n, version)]
      : await this.o.pool.listBaseVersions(n);
    // the pool answers with the versions left (base rm printed those as deleted)
    const left = new Set((await this.o.pool.deleteBaseVersion(n, version)).map((m) => m.version));
    return before.filter((m) => !left.has(m.version));
  }

  /** Imports from a directory or tar on this node, or from a received upload. */
  async import(name: string, source: BaseSource, progress?: ProgressFn, signal?: AbortSignal) {
    return this.madeHere(await this.o.pool.importBase(validateName("base", name), source, progress, signal));
  }

  /**
   * Writes uploaded tar bytes (or, with `oci`, an OCI archive) to a temp file
   * on the agent's state disk (not the pool), refusing more than the bound;
   * the caller removes it with `discardUpload` once the import is done.
   */
  async receiveUpload(
    name: string,
    compression: string,
    chunks: AsyncIterable<Uint8Array>,
    oci = false,
  ): Promise<string> {
    const n = validateName("base", name);
    const ext = oci ? ".oci.tar" : UPLOAD_EXT[compression];
    if (!ext) throw invalidArgument(`unknown compression ${JSON.stringify(compression)}`);
    const dir = join(this.o.stateDir, "uploads");
    await mkdir(dir, { recursive: true });
    const path = join(dir, `${n}-${randomBytes(6).toString("hex")}${ext}`);
    const out = createWriteStream(path, { mode: 0o600 });
    // a tar larger than the pool cannot be imported anyway
    const limit = this.o.maxUploadBytes || (await this.o.pool.capacity()).sizeBytes;
    try {
      let received = 0;
      for await (const chunk of chunks) {
        received += chunk.length;
        if (received > limit) {
          throw resourceExhausted(`the upload of base ${n} is larger than ${limit} bytes`, {
            reason: "UPLOAD_TOO_LARGE",
            subject: `base/${n}`,
            metadata: { limitBytes: String(limit) },
          });
        }
        if (!out.write(chunk)) await new Promise<void>((r) => out.once("drain", () => r()));
      }
      await new Promise<void>((res, rej) => out.end((err?: Error | null) => (err ? rej(err) : res())));
      return path;
    } catch (err) {
      out.destroy();
      await rm(path, { force: true });
      throw err;
    }
  }

  async discardUpload(path: string | undefined): Promise<void> {
    if (path) await rm(path, { force: true });
  }

  async buildLayer(
    spec: LayerSpec,
    base: string | undefined,
    version: number,
    progress?: ProgressFn,
    signal?: AbortSignal,
  ) {
    const s = { ...spec, name: validateName("layer", spec.name) };
    return this.o.pool.buildLayer(s, validateName("base", base), version, progress, signal);
  }

  async listLayers(): Promise<LayerBuildMeta[]> {
    return this.o.pool.listLayerBuilds();
  }

  async deleteLayer(name: string, base?: string): Promise<void> {
    return this.o.pool.deleteLayer(validateName("layer", name), base || undefined);
  }
}
