/**
 * PoolDriver in memory, with env roots as real (empty) directories under a
 * scratch dir, since services write files into roots. Bases are records;
 * `importBase` records the source dir, nothing is copied. It refuses what the
 * btrfs pool refuses (test/contracts/pool-contract.ts holds both to it).
 */
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type {
  BaseVersionMeta,
  EnvRoot,
  LayerBuildMeta,
  PoolCapacity,
  PoolDriver,
} from "../../agent/host/pool/pool-driver.js";
import { alreadyExists, failedPrecondition, notFound } from "../../common/errors.js";
import { validateName } from "../../common/names.js";
import { FaultPlan } from "./fault-plan.js";

type Op = "prepareEnvRoot" | "removeEnvRoot" | "openEnvRoot" | "importBase" | "buildLayer" | "cleanOrphans";

export class FakePool implements PoolDriver {
  readonly mountpoint: string;
  readonly faults = new FaultPlan<Op>();
  private readonly bases = new Map<string, BaseVersionMeta[]>();
  private readonly layers: LayerBuildMeta[] = [];
  private readonly envs = new Map<string, EnvRoot>();

  constructor() {
    this.mountpoint = mkdtempSync(join(tmpdir(), "protoctl-fake-pool-"));
    mkdirSync(join(this.mountpoint, "env"));
  }

  async capacity(): Promise<PoolCapacity> {
    return { sizeBytes: 1 << 30, usedBytes: 0, freeBytes: 1 << 30 };
  }

  async usage() {
    return [];
  }

  async listBaseVersions(name?: string): Promise<BaseVersionMeta[]> {
    if (name !== undefined) return [...(this.bases.get(name) ?? [])];
    return [...this.bases.values()].flat();
  }

  async getBaseVersion(name: string, version: number): Promise<BaseVersionMeta> {
    validateName("base", name);
    const all = this.bases.get(name) ?? [];
    const meta = version === 0 ? all.at(-1) : all.find((m) => m.version === version);
    if (!meta) {
      throw notFound(version > 0 ? `base ${name}@${version} not found` : `base ${name} not found`, {
        reason: "BASE_NOT_FOUND",
        subject: `base/${name}`,
      });
    }
    return meta;
  }

  private addVersion(name: string, source: string, parent?: string): BaseVersionMeta {
    validateName("base", name);
    const all = this.bases.get(name) ?? [];
    const meta: BaseVersionMeta = {
      base: name,
      version: (all.at(-1)?.version ?? 0) + 1,
      source,
      createdMs: Date.now(),
      recipeDigest: createHash("sha256").update(`${name}\0${source}\0${all.length}`).digest("hex"),
      sizeBytes: 0,
      ...(parent ? { parent } : {}),
    };
    all.push(meta);
    this.bases.set(name, all);
    return meta;
  }

  async importBase(name: string, source: { dir: string } | { tar: string }): Promise<BaseVersionMeta> {
    this.faults.hit("importBase", name);
    return this.addVersion(name, "dir" in source ? `dir:${source.dir}` : `tar:${source.tar}`);
  }

  async buildBase(name: string, spec: { debootstrap: { suite: string } } | { script: Uint8Array }) {
    return this.addVersion(name, "debootstrap" in spec ? `debootstrap:${spec.debootstrap.suite}` : "script");
  }

  async updateBase(name: string, command: string[]): Promise<BaseVersionMeta> {
    const latest = await this.getBaseVersion(name, 0);
    return this.addVersion(name, `update:${command.join(" ")}`, `${name}@${latest.version}`);
  }

  async deleteBaseVersion(name: string, version: number): Promise<BaseVersionMeta[]> {
    const meta = await this.getBaseVersion(name, version);
    const users = [
      ...[...this.envs.values()]
        .filter((e) => e.base === meta.base && e.version === meta.version)
        .map((e) => `env/${e.name}`),
      ...this.layers.filter((l) => l.base === `${meta.base}@${meta.version}`).map((l) => `layer/${l.layer}`),
    ];
    if (users.length > 0) {
      throw failedPrecondition(`base ${name}@${meta.version} is in use by ${users.join(", ")}`, {
        reason: "BASE_IN_USE",
        subject: `base/${name}@${meta.version}`,
        metadata: { users: users.join(",") },
      });
    }
    const left = (this.bases.get(name) ?? []).filter((m) => m.version !== meta.version);
    this.bases.set(name, left);
    return [...left];
  }

  async buildLayer(
    spec: { name: string; kind: "shell" | "ansible"; main: Uint8Array; parents: string[] },
    base: string,
    version: number,
  ): Promise<LayerBuildMeta> {
    validateName("layer", spec.name);
    this.faults.hit("buildLayer", spec.name);
    const meta = await this.getBaseVersion(base, version);
    const digest = createHash("sha256").update(spec.main).update(spec.parents.join(",")).digest("hex");
    const on = `${meta.base}@${meta.version}`;
    const cached = this.layers.find((l) => l.layer === spec.name && l.base === on && l.digest === digest);
    if (cached) return cached;
    const built: LayerBuildMeta = {
      layer: spec.name,
      base: on,
      digest,
      parents: spec.parents,
      kind: spec.kind,
      builtMs: Date.now(),
      sizeBytes: 0,
    };
    this.layers.push(built);
    return built;
  }

  async listLayerBuilds(): Promise<LayerBuildMeta[]> {
    return [...this.layers];
  }

  async deleteLayer(name: string, base?: string): Promise<void> {
    for (let i = this.layers.length - 1; i >= 0; i--) {
      const l = this.layers[i]!;
      if (l.layer === name && (base === undefined || l.base === base)) this.layers.splice(i, 1);
    }
  }

  async prepareEnvRoot(name: string, base: string, version: number, layers: string[]): Promise<EnvRoot> {
    validateName("env", name);
    for (const l of layers) validateName("layer", l);
    const meta = await this.getBaseVersion(base, version);
    if (this.envs.has(name)) {
      throw alreadyExists(`env ${name} already has a root on this node`, {
        reason: "ENV_EXISTS",
        subject: `env/${name}`,
      });
    }
    this.faults.hit("prepareEnvRoot", name);
    const rootDir = join(this.mountpoint, "env", name);
    mkdirSync(rootDir, { recursive: true });
    const root: EnvRoot = { name, rootDir, base: meta.base, version: meta.version, layers };
    this.envs.set(name, root);
    return { ...root };
  }

  async openEnvRoot(name: string): Promise<EnvRoot | undefined> {
    validateName("env", name);
    this.faults.hit("openEnvRoot", name);
    const root = this.envs.get(name);
    return root ? { ...root } : undefined;
  }

  async removeEnvRoot(name: string): Promise<void> {
    validateName("env", name);
    this.faults.hit("removeEnvRoot", name);
    rmSync(join(this.mountpoint, "env", name), { recursive: true, force: true });
    this.envs.delete(name);
  }

  async listEnvRoots(): Promise<EnvRoot[]> {
    return [...this.envs.values()].map((r) => ({ ...r }));
  }

  async snapshotEnvAsBase(name: string, asBase: string): Promise<BaseVersionMeta> {
    validateName("base", asBase);
    const root = this.envs.get(name);
    if (!root) throw notFound(`env ${name} has no root on this node`, { reason: "ENV_NOT_FOUND" });
    return this.addVersion(asBase, `env:${name}`, `${root.base}@${root.version}`);
  }

  async cleanOrphans(knownEnvs: Set<string>): Promise<string[]> {
    this.faults.hit("cleanOrphans");
    const removed: string[] = [];
    for (const name of [...this.envs.keys()]) {
      if (knownEnvs.has(name)) continue;
      await this.removeEnvRoot(name);
      removed.push(`@env/${name}`);
    }
    return removed;
  }

  async close(): Promise<void> {}

  async destroy(): Promise<void> {
    this.envs.clear();
    rmSync(this.mountpoint, { recursive: true, force: true });
  }
}
