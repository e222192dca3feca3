/**
 * Where everything lives inside a pool (one btrfs filesystem):
 *
 *   @init/                          empty subvolume (template)
 *   @base/NAME@N/root               read-only subvolume: the version's tree
 *   @base/NAME@N/meta.json          BaseVersionMeta
 *   @base/NAME.last                 highest version number ever sealed (numbers are never reused)
 *   @overlay/LAYER/recipe.json      the layer's current recipe
 *   @overlay/LAYER/BASE@N.DIGEST/vol/upper   read-only subvolume: the layer's diff on BASE@N
 *   @overlay/LAYER/BASE@N.DIGEST/meta.json   LayerBuildMeta
 *   @env/NAME/meta.json             env record (base, version, layers)
 *   @env/NAME/root                  plain env: a writable snapshot of BASE@N/root (the root itself)
 *                                   layered env: the overlayfs mount point
 *   @env/NAME/vol/{upper,work}      layered env: writable subvolume holding the overlay's top
 *   @workdir/.tmp-*                 merged mount points of layer builds, scratch space
 *   @cache/apt/{archives,lists}     the node's package cache (package-cache.ts); @cache/.tmp-*: builds' copies
 *
 * Every object is built under a `.tmp-*` name in its parent and renamed into
 * place in one step when complete, so a crash leaves only `.tmp-*` names,
 * which cleanOrphans removes. Deletion renames to `.tmp-*` first for the same
 * reason. User names match ^[a-z0-9][a-z0-9-]{0,62}$, so "@", "." and "~"
 * are free to use as separators.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { formatBaseRef } from "../../../common/base-ref.js";

export const TMP_PREFIX = ".tmp-";
export const SUBDIRS = ["@init", "@base", "@overlay", "@env", "@workdir", "@cache"] as const;

export function tmpName(): string {
  return `${TMP_PREFIX}${randomBytes(6).toString("hex")}`;
}

export class PoolLayout {
  readonly init: string;
  readonly base: string;
  readonly overlay: string;
  readonly env: string;
  readonly workdir: string;
  readonly cache: string;

  constructor(readonly mountpoint: string) {
    this.init = join(mountpoint, "@init");
    this.base = join(mountpoint, "@base");
    this.overlay = join(mountpoint, "@overlay");
    this.env = join(mountpoint, "@env");
    this.workdir = join(mountpoint, "@workdir");
    this.cache = join(mountpoint, "@cache");
  }

  baseVersionDir(name: string, version: number): string {
    return join(this.base, formatBaseRef(name, version));
  }
  baseVersionRoot(name: string, version: number): string {
    return join(this.baseVersionDir(name, version), "root");
  }
  baseLastFile(name: string): string {
    return join(this.base, `${name}.last`);
  }

  layerDir(layer: string): string {
    return join(this.overlay, layer);
  }
  layerRecipe(layer: string): string {
    return join(this.layerDir(layer), "recipe.json");
  }
  layerBuildDir(layer: string, base: string, version: number, digest: string): string {
    return join(this.layerDir(layer), `${formatBaseRef(base, version)}.${digest.slice(0, 16)}`);
  }

  envDir(name: string): string {
    return join(this.env, name);
  }
}

/** Parses "NAME@N" directory names of @base; undefined for anything else. */
export function parseBaseDirName(entry: string): { name: string; version: number } | undefined {
  const m = /^([a-z0-9][a-z0-9-]{0,62})@([1-9][0-9]{0,8})$/.exec(entry);
  return m ? { name: m[1]!, version: Number(m[2]) } : undefined;
}

/** Parses "BASE@N.DIGEST16" layer build directory names. */
export function parseLayerBuildDirName(
  entry: string,
): { base: string; version: number; digest16: string } | undefined {
  const m = /^([a-z0-9][a-z0-9-]{0,62})@([1-9][0-9]{0,8})\.([0-9a-f]{16})$/.exec(entry);
  return m ? { base: m[1]!, version: Number(m[2]), digest16: m[3]! } : undefined;
}
