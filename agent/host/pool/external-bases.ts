/**
 * Base versions that live outside the pool's filesystem: a version attached
 * over NBD (propagation) is a read-only subvolume inside a sprout mounted
 * elsewhere. The pool lists it and creates envs on it like a local version.
 *
 * Kernel rule: a btrfs snapshot cannot cross filesystems, so a plain env on
 * an external version is snapshotted inside the sprout (`envArea`, e.g.
 * `<sprout>/@env/NAME`); its record stays in the pool (`@env/NAME/meta.json`
 * with `rootDir`). A layered env needs no snapshot: overlayfs lowers may sit
 * on any filesystem.
 */

import { baseRefOf, formatBaseRef } from "../../../common/base-ref.js";
import type { BaseVersionMeta } from "../interfaces.js";

/** How the version is held, reported in base listings (ATTACHED → HYDRATED). */
export type ExternalState = "attached" | "hydrated";

export interface ExternalBase {
  meta: BaseVersionMeta;
  /** The read-only subvolume (the version's root tree). */
  root: string;
  /** Directory inside the same filesystem where plain env roots are snapshotted. */
  envArea: string;
  state: ExternalState;
  /** Called by deleteBaseVersion once no env uses the version (detaches it). */
  release?: () => Promise<void>;
}

/** A registry keyed "base@N". */
export class ExternalBases {
  private readonly byRef = new Map<string, ExternalBase>();

  register(e: ExternalBase): void {
    this.byRef.set(baseRefOf(e.meta), e);
  }
  unregister(base: string, version: number): void {
    this.byRef.delete(formatBaseRef(base, version));
  }
  setState(base: string, version: number, state: ExternalState): void {
    const e = this.byRef.get(formatBaseRef(base, version));
    if (e) e.state = state;
  }
  get(base: string, version: number): ExternalBase | undefined {
    return this.byRef.get(formatBaseRef(base, version));
  }
  list(name?: string): ExternalBase[] {
    return [...this.byRef.values()].filter((e) => name === undefined || e.meta.base === name);
  }
}
