/**
 * `planLab(spec, current)`: the difference between a lab spec and what was
 * applied before, as a plan the controller executes (Nomad-style: pure
 * business logic over an immutable view; the caller does the I/O).
 *
 * A machine is kept when the digest of everything that shapes its env
 * (base, layers, resources, files, addresses, bridges…) is unchanged;
 * /etc/hosts entries are left out of that digest on purpose, so that adding
 * `web-4` does not recreate `web-1..3`: they show up in `hostsUpdates`
 * instead, for the agent to rewrite /etc/hosts in place. Applying the same
 * spec to the state it produced is a no-op.
 */
import { invalidArgument } from "../../common/errors.js";
import type { EnvSpec } from "../../proto/gen/protoctl/v1/types.js";
import { digestOf } from "./canonical.js";
import { allocate, withPrefix } from "./ipam.js";
import type { ClusterNetworkIds, LabMachineState, LabNetworkState, LabState } from "./lab-state.js";
import {
  hostsResolver,
  type Membership,
  machineEnvSpec,
  type ResolvedAttachment,
} from "./machine-env-spec.js";
import { allocateVni, networkIfNames } from "./net-ids.js";
import { labSpecDigest } from "./parse-spec.js";
import type { LabMachineSpec, LabSpec } from "./spec-types.js";

export interface PlannedMachine {
  name: string;
  envName: string;
  digest: string;
  envSpec: EnvSpec;
  /** For `replace`: why the env is recreated. */
  reason?: "changed" | "lost";
}

export interface DeletedMachine {
  name: string;
  envName: string;
}

export interface PlannedNetwork {
  name: string;
  subnet: string;
  vni: number;
  bridge: string;
  vxlan: string;
}

export interface HostsUpdate {
  name: string;
  envName: string;
  hosts: Record<string, string>;
}

export interface LabPlan {
  lab: string;
  specDigest: string;
  /** True when applying the plan changes nothing. */
  noop: boolean;
  machines: {
    /** New machines. */
    create: PlannedMachine[];
    /** Machines whose env must be deleted and created again (spec changed, or lost with its node). */
    replace: PlannedMachine[];
    /** Machines no longer in the spec. */
    delete: DeletedMachine[];
    /** Machines left running as they are. */
    keep: PlannedMachine[];
  };
  /** Kept machines whose /etc/hosts entries change (peers added, removed or moved). */
  hostsUpdates: HostsUpdate[];
  networks: {
    create: PlannedNetwork[];
    /** Subnet changed: bridges and VXLAN stay, machines on it are replaced with new addresses. */
    update: PlannedNetwork[];
    delete: PlannedNetwork[];
    keep: PlannedNetwork[];
  };
  /** The state to store once the plan is applied. */
  state: LabState;
}

export interface PlanOptions {
  /** VNIs and interface names of the other labs in the cluster. */
  cluster?: ClusterNetworkIds;
  /** Machines whose env was lost (its node went away) or failed: recreated even if unchanged. */
  lost?: Iterable<string>;
}

/**
 * Plans `spec` against `current` (undefined for a new lab). Order of work
 * for the executor: create networks, delete machines, replace and create
 * machines, update hosts of kept machines, delete networks.
 */
export function planLab(spec: LabSpec, current: LabState | undefined, opts: PlanOptions = {}): LabPlan {
  if (current && current.name !== spec.name) {
    throw invalidArgument(`spec of lab '${spec.name}' planned against the state of lab '${current.name}'`, {
      reason: "LAB_MISMATCH",
    });
  }
  const prev: LabState = current ?? { name: spec.name, specDigest: "", networks: {}, machines: {} };
  const lost = new Set(opts.lost ?? []);
  const usedVnis = new Set(opts.cluster?.usedVnis ?? []);
  const usedIfNames = new Set(opts.cluster?.usedIfNames ?? []);
  for (const n of Object.values(prev.networks)) {
    usedVnis.add(n.vni);
    usedIfNames.add(n.bridge);
    usedIfNames.add(n.vxlan);
  }

  // Networks: identifiers are kept for existing ones, allocated for new ones.
  const networks: Record<string, LabNetworkState> = {};
  const netPlan: LabPlan["networks"] = { create: [], update: [], delete: [], keep: [] };
  for (const n of spec.networks) {
    const old = prev.networks[n.name];
    let ns: LabNetworkState;
    if (old) {
      ns = { ...old, subnet: n.subnet, allocations: {} };
    } else {
      const vni = allocateVni(spec.name, n.name, usedVnis);
      usedVnis.add(vni);
      const names = networkIfNames(spec.name, n.name, usedIfNames);
      usedIfNames.add(names.bridge);
      usedIfNames.add(names.vxlan);
      ns = {
        subnet: n.subnet,
        vni,
        bridge: names.bridge,
        vxlan: names.vxlan,
        salt: names.salt,
        allocations: {},
      };
    }
    const requests = spec.machines
      .filter((m) => m.networks.some((x) => x.network === n.name))
      .map((m) => {
        const fixed = m.networks.find((x) => x.network === n.name)?.address;
        return fixed === undefined ? { machine: m.name } : { machine: m.name, fixed };
      });
    const res = allocate(n, requests, old?.allocations ?? {});
    ns.allocations = Object.fromEntries(res.allocations);
    networks[n.name] = ns;
    const planned = plannedNetwork(n.name, ns);
    if (!old) netPlan.create.push(planned);
    else if (old.subnet !== n.subnet) netPlan.update.push(planned);
    else netPlan.keep.push(planned);
  }
  for (const [name, old] of Object.entries(prev.networks)) {
    if (!(name in networks)) netPlan.delete.push(plannedNetwork(name, old));
  }

  // Machines: attachments, hosts, digests.
  const members: Membership[] = spec.machines.map((m) => ({
    machine: m.name,
    addresses: new Map(m.networks.map((x) => [x.network, networks[x.network]!.allocations[m.name]!])),
  }));
  const hostsOf = hostsResolver(members);
  const machines: Record<string, LabMachineState> = {};
  const plan: LabPlan["machines"] = { create: [], replace: [], delete: [], keep: [] };
  const hostsUpdates: HostsUpdate[] = [];
  for (const m of spec.machines) {
    const attachments: ResolvedAttachment[] = m.networks.map((x, i) => {
      const ns = networks[x.network]!;
      return {
        network: x.network,
        bridge: ns.bridge,
        address: withPrefix(ns.allocations[m.name]!, ns.subnet),
        interfaceName: `eth${i}`,
      };
    });
    const hosts = hostsOf(m.name);
    const hostsDigest = hostsOf.digest(m.name);
    const digest = machineDigest(m, attachments);
    const planned: PlannedMachine = {
      name: m.name,
      envName: m.envName,
      digest,
      envSpec: machineEnvSpec(spec.name, m, attachments, hosts),
    };
    machines[m.name] = {
      envName: m.envName,
      digest,
      networks: m.networks.map((x) => x.network),
      hostsDigest,
    };
    const old = prev.machines[m.name];
    if (!old) plan.create.push(planned);
    else if (old.digest !== digest) plan.replace.push({ ...planned, reason: "changed" });
    else if (lost.has(m.name)) plan.replace.push({ ...planned, reason: "lost" });
    else {
      plan.keep.push(planned);
      if (old.hostsDigest !== hostsDigest) hostsUpdates.push({ name: m.name, envName: m.envName, hosts });
    }
  }
  for (const [name, old] of Object.entries(prev.machines)) {
    if (!(name in machines)) plan.delete.push({ name, envName: old.envName });
  }

  const specDigest = labSpecDigest(spec);
  const noop =
    plan.create.length + plan.replace.length + plan.delete.length + hostsUpdates.length === 0 &&
    netPlan.create.length + netPlan.update.length + netPlan.delete.length === 0;
  return {
    lab: spec.name,
    specDigest,
    noop,
    machines: plan,
    hostsUpdates,
    networks: netPlan,
    state: { name: spec.name, specDigest, networks, machines },
  };
}

/** What `lab down` removes: every machine, then every network (bridges, VXLANs, addresses go with them). */
export function planLabDown(current: LabState): { machines: DeletedMachine[]; networks: PlannedNetwork[] } {
  return {
    machines: Object.entries(current.machines).map(([name, m]) => ({ name, envName: m.envName })),
    networks: Object.entries(current.networks).map(([name, n]) => plannedNetwork(name, n)),
  };
}

/** Digest of what shapes a machine's env, leaving out /etc/hosts and naming trivia (template, index). */
export function machineDigest(m: LabMachineSpec, attachments: readonly ResolvedAttachment[]): string {
  const { template: _t, index: _i, networks: _n, ...shape } = m;
  return digestOf({ ...shape, attachments });
}

function plannedNetwork(name: string, n: LabNetworkState): PlannedNetwork {
  return { name, subnet: n.subnet, vni: n.vni, bridge: n.bridge, vxlan: n.vxlan };
}
