/**
 * FakePool plus what propagation asks of the btrfs pool: versions attached
 * from elsewhere (an ExternalBases registry, as BtrfsPool keeps), their roots,
 * and the envs that use a version (set by the test).
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import {
  type ExternalBase,
  ExternalBases,
  type ExternalState,
} from "../../agent/host/pool/external-bases.js";
import type { BaseVersionMeta } from "../../agent/host/pool/pool-driver.js";
import { FakePool } from "./fake-pool.js";

export class FakePropagationPool extends FakePool {
  readonly external = new ExternalBases();
  /** "base@N" → env names using it. */
  readonly users = new Map<string, string[]>();

  override async getBaseVersion(name: string, version: number): Promise<BaseVersionMeta> {
    const ext = this.external.list(name).find((e) => version === 0 || e.meta.version === version);
    return ext ? ext.meta : super.getBaseVersion(name, version);
  }

  async baseRoot(name: string, version: number): Promise<{ meta: BaseVersionMeta; root: string }> {
    const meta = await this.getBaseVersion(name, version);
    const ext = this.external.get(meta.base, meta.version);
    const root = ext?.root ?? join(this.mountpoint, "base", `${meta.base}@${meta.version}`);
    mkdirSync(root, { recursive: true });
    return { meta, root };
  }

  registerExternalBase(e: ExternalBase): void {
    this.external.register(e);
  }
  unregisterExternalBase(base: string, version: number): void {
    this.external.unregister(base, version);
  }
  setExternalState(base: string, version: number, state: ExternalState): void {
    this.external.setState(base, version, state);
  }
  externalState(base: string, version: number): ExternalState | undefined {
    return this.external.get(base, version)?.state;
  }
  async usersOf(base: string, version: number): Promise<string[]> {
    return this.users.get(`${base}@${version}`) ?? [];
  }
  async adoptBaseVersion(
    meta: BaseVersionMeta,
    _fill: (dir: string) => Promise<void>,
  ): Promise<BaseVersionMeta> {
    return meta;
  }
}
