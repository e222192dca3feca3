/**
 * The agent's host drivers, behind small interfaces (after Incus's Pool over
 * Driver split and Nomad's task driver). Each concern's interface lives in its
 * own folder beside its real implementation, with an in-memory fake under
 * test/fakes/ held to the same contract suite (test/contracts/):
 *   host/pool/pool-driver.ts          — PoolDriver (btrfs pool, bases, layers, env roots)
 *   host/machines/machine-driver.ts   — MachineDriver (systemd-nspawn machines, cgroups, exec)
 *   host/networks/host-networks.ts    — HostNetworks (veths, bridges, VXLAN)
 * This file re-exports them for the callers that import one place.
 */
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
