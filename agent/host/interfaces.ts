/**
 * The agent's host drivers, behind small interfaces (after Incus's Pool over
 * Driver split and Nomad's task driver). Each concern's interface lives in its
 * own folder beside its real implementation, with an in-memory fake under
 * test/fakes/ held to the same contract suite (test/contracts/):
 *   host/pool/pool-driver.ts          — PoolDriver (btrfs pool, bases, layers, env roots)
 *   host/machines/machine-driver.ts   — MachineDriver (systemd-nspawn machines, cgroups, exec)
 *   host/machines/cgroup-driver.ts    — CgroupDriver (env cgroups and their limits)
 *   host/networks/host-networks.ts    — HostNetworks (veths, bridges, VXLAN)
 *   host/exports/types.ts             — ExportDriver (seed images, NBD servers)
 *   host/attachments/types.ts         — AttachmentDriver (remote seeds over NBD, hydration)
 * This file re-exports them for the callers that import one place.
 */
export type { AttachmentDriver, AttachmentState, AttachOptions } from "./attachments/types.js";
export type { ExportDriver } from "./exports/types.js";
export type { CgroupDriver, CgroupSet } from "./machines/cgroup-driver.js";
export type {
  ExecRequest,
  ExecSession,
  MachineDriver,
  MachineLimits,
  MachineLink,
  MachineNetwork,
  MachineSpec,
  MachineState,
} from "./machines/machine-driver.js";
export type { EnsureNetworkSpec, EnvLink, HostNetworks } from "./networks/host-networks.js";
export type {
  BaseVersionMeta,
  EnvRoot,
  LayerBuildMeta,
  PoolCapacity,
  PoolConfig,
  PoolDriver,
  PoolKindName,
  ProgressFn,
} from "./pool/pool-driver.js";
