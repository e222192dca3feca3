/**
 * What the controller keeps in etcd per lab once a plan is applied: the
 * identifiers and addresses that must stay stable from one `lab up` to the
 * next. Plain JSON; `planLab` reads the previous one and returns the next.
 */

export interface LabState {
  name: string;
  /** Digest of the spec this state was planned from. */
  specDigest: string;
  networks: Record<string, LabNetworkState>;
  machines: Record<string, LabMachineState>;
}

export interface LabNetworkState {
  subnet: string;
  vni: number;
  bridge: string;
  vxlan: string;
  /** Salt used for the interface names (0 unless they clashed). */
  salt: number;
  /** machine → dotted-quad address. */
  allocations: Record<string, string>;
}

export interface LabMachineState {
  envName: string;
  /** Digest of everything that shapes the env except its /etc/hosts entries. */
  digest: string;
  /** Networks joined, in the machine's order. */
  networks: string[];
  /**
   * sha256 of the /etc/hosts entries it was given. A digest, not the entries:
   * with every machine on one network the tables grow as machines², too big
   * for an etcd value in a large lab.
   */
  hostsDigest: string;
}

/** VNIs and interface names used by other labs: what a new network must avoid. */
export interface ClusterNetworkIds {
  usedVnis: ReadonlySet<number>;
  usedIfNames: ReadonlySet<string>;
}

/** Collects the identifiers of a set of stored labs (skip the lab being planned). */
export function clusterNetworkIds(labs: Iterable<LabState>, except?: string): ClusterNetworkIds {
  const usedVnis = new Set<number>();
  const usedIfNames = new Set<string>();
  for (const lab of labs) {
    if (lab.name === except) continue;
    for (const n of Object.values(lab.networks)) {
      usedVnis.add(n.vni);
      usedIfNames.add(n.bridge);
      usedIfNames.add(n.vxlan);
    }
  }
  return { usedVnis, usedIfNames };
}

/**
 * Which nodes each lab network spans, given where machines run: these nodes
 * get the bridge and VXLAN, and each one's VXLAN forwards to all the others.
 */
export function networkNodes(
  state: LabState,
  placement: ReadonlyMap<string, string> | Readonly<Record<string, string>>,
): Record<string, string[]> {
  const where = placement instanceof Map ? placement : new Map(Object.entries(placement));
  const out: Record<string, string[]> = {};
  for (const net of Object.keys(state.networks)) {
    const nodes = new Set<string>();
    for (const [machine, m] of Object.entries(state.machines)) {
      const node = where.get(machine);
      if (node && m.networks.includes(net)) nodes.add(node);
    }
    out[net] = [...nodes].sort();
  }
  return out;
}
