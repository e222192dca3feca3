/**
 * The network driver's narrow interface: host links for envs and lab networks
 * (NetworkDriver over `ip`/`bridge` in network-driver.ts) as the machine
 * driver and the agent's services see them; test/fakes/fake-networks.ts keeps
 * the same contract in memory (test/contracts/network-contract.ts).
 */

/** One env link to configure once its machine runs (nspawn made the veth). */
export interface EnvLink {
  hostIf: string;
  containerIf: string;
  leaderPid: number;
  mode: "private" | "bridge";
  bridge?: string;
  address?: string;
  gateway?: string;
  /** Add the default route through this link (default true; only one link of an env may). */
  defaultRoute?: boolean;
}

/** A lab network on this host: a bridge, and a VXLAN device flooding to `peers` when vni > 0. */
export interface EnsureNetworkSpec {
  bridge: string;
  vni: number;
  local?: string;
  peers: string[];
  gateway?: string;
  mtu?: number;
}

export interface HostNetworks {
  /** Configures both ends of an env's veth once its machine runs. */
  setupEnvLink(link: EnvLink): Promise<{ addresses: string[] }>;
  /** Deletes an env's host-side link if still there (idempotent; a bad name is ignored). */
  removeLink(hostIf: string): Promise<void>;
  linkExists(name: string): Promise<boolean>;
  /** Destinations of /32 host routes in the namespace (addresses other envs hold). */
  hostRoutes(): Promise<Set<string>>;
  /** Bridge (and VXLAN with one flood entry per peer), idempotent: converges to the spec. */
  ensureNetwork(spec: EnsureNetworkSpec): Promise<{ bridge: string; vxlan: string }>;
  /** Peers in the all-zeros flood entries of a VXLAN device. */
  floodPeers(vxlan: string): Promise<Set<string>>;
  /** Removes the bridge and any VXLAN device enslaved to it (idempotent). */
  deleteNetwork(bridge: string): Promise<void>;
}
