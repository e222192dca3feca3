/**
 * HostNetworks in memory: links, bridges and VXLAN devices with their flood
 * peers are sets and maps. It validates as NetworkDriver does
 * (test/contracts/network-contract.ts holds both to it).
 */

import { hostSideAddress, parseCidr, parseIp, validIfName } from "../../agent/host/networks/addresses.js";
import type { EnsureNetworkSpec, EnvLink, HostNetworks } from "../../agent/host/networks/host-networks.js";
import { vxlanName } from "../../agent/host/networks/network-driver.js";
import { invalidArgument } from "../../common/errors.js";

interface FakeLink {
  kind: "veth" | "bridge" | "vxlan";
  master?: string;
  peers?: Set<string>;
  /** /32 host route to the env (private links). */
  route?: string;
}

export class FakeNetworks implements HostNetworks {
  readonly links = new Map<string, FakeLink>();

  /** A host-side veth as nspawn makes it (before setupEnvLink configures it). */
  addVeth(hostIf: string): void {
    this.links.set(hostIf, { kind: "veth" });
  }

  async setupEnvLink(link: EnvLink): Promise<{ addresses: string[] }> {
    if (!validIfName(link.hostIf)) throw invalidArgument(`bad interface name ${link.hostIf}`);
    const env = link.address ? parseCidr(link.address) : undefined;
    const l = this.links.get(link.hostIf) ?? { kind: "veth" as const };
    if (link.mode === "bridge") {
      if (!link.bridge || !validIfName(link.bridge)) throw invalidArgument("bridge mode needs a bridge name");
      if (!this.links.has(link.bridge)) throw invalidArgument(`no bridge ${link.bridge}`);
      l.master = link.bridge;
    } else if (env) {
      hostSideAddress(env, link.gateway);
      l.route = env.address;
    }
    this.links.set(link.hostIf, l);
    return { addresses: env ? [env.address] : [] };
  }

  async removeLink(hostIf: string): Promise<void> {
    if (!validIfName(hostIf)) return;
    this.links.delete(hostIf);
  }

  async linkExists(name: string): Promise<boolean> {
    return validIfName(name) && this.links.has(name);
  }

  async hostRoutes(): Promise<Set<string>> {
    return new Set([...this.links.values()].flatMap((l) => (l.route ? [l.route] : [])));
  }

  async ensureNetwork(spec: EnsureNetworkSpec): Promise<{ bridge: string; vxlan: string }> {
    if (!validIfName(spec.bridge)) {
      throw invalidArgument(
        `bridge name ${JSON.stringify(spec.bridge)} is not a valid interface name (≤ 15 chars)`,
        { reason: "INVALID_NAME" },
      );
    }
    if (spec.gateway) parseCidr(spec.gateway, "gateway");
    if (!this.links.has(spec.bridge)) this.links.set(spec.bridge, { kind: "bridge" });
    let vxlan = "";
    if (spec.vni > 0) {
      if (spec.vni > 16_777_215) throw invalidArgument("VNI must be below 2^24", { reason: "INVALID_VNI" });
      vxlan = vxlanName(spec.vni);
      const local = spec.local ? parseIp(spec.local, "local address") : undefined;
      const peers = spec.peers.map((p) => parseIp(p, "peer address")).filter((p) => p !== local);
      this.links.set(vxlan, { kind: "vxlan", master: spec.bridge, peers: new Set(peers) });
    }
    return { bridge: spec.bridge, vxlan };
  }

  async floodPeers(vxlan: string): Promise<Set<string>> {
    return new Set(this.links.get(vxlan)?.peers ?? []);
  }

  async deleteNetwork(bridge: string): Promise<void> {
    if (!validIfName(bridge)) throw invalidArgument(`bad bridge name ${JSON.stringify(bridge)}`);
    for (const [name, l] of this.links)
      if (l.kind === "vxlan" && l.master === bridge) this.links.delete(name);
    this.links.delete(bridge);
  }
}
