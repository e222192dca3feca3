/** The agent's storage driver: a btrfs pool of bases, layers and env roots. */

export type { BaseBuildSpec, BaseSource } from "./bases.js";
export type { LayerSpec } from "./layers.js";
export { BtrfsPool, openPool } from "./pool.js";
export { type PoolStorage, storagePaths } from "./storage.js";
