/**
 * Use cases on this node's lab networks (a bridge, and a VXLAN device to the
 * other nodes when the lab spans several): what EnsureNetwork and
 * DeleteNetwork ask, over the host's network driver.
 */
import type { EnsureNetworkSpec, HostNetworks } from "../host/networks/host-networks.js";

export type { EnsureNetworkSpec };

export class NetworkService {
  constructor(private readonly networks: HostNetworks) {}

  /** Makes the network or brings it to `spec` (peers, gateway, MTU); idempotent. */
  ensure(spec: EnsureNetworkSpec): Promise<{ bridge: string; vxlan: string }> {
    return this.networks.ensureNetwork(spec);
  }

  /** Removes the bridge and its VXLAN device; idempotent. */
  delete(bridge: string): Promise<void> {
    return this.networks.deleteNetwork(bridge);
  }
}
