/**
 * An env's network links, planned (pure): one veth per attachment, host side
 * named from node, env and index (unique on the shared kernel, ≤ 15 chars),
 * inside named host0 for a lone link or eth0, eth1… in attachment order.
 * nspawn makes each with `--network-veth-extra=<host>:<inside>` (its
 * `--network-bridge` takes one bridge only); the network driver then plugs
 * the host ends into their bridges and sets the addresses inside.
 */
import { invalidArgument } from "../../../common/errors.js";
import type { MachineLink, MachineNetwork } from "../interfaces.js";
import { validIfName } from "../networks/addresses.js";
import { pickPrivateAddress, rangeGateway } from "../networks/private-range.js";
import { CONTAINER_IFACE, vethHostName } from "./naming.js";

export interface PlannedLink extends MachineLink {
  hostIf: string;
  ifname: string;
  /** This link carries the env's default route (the first one with a gateway). */
  defaultRoute: boolean;
}

export function planLinks(node: string, env: string, net: MachineNetwork): PlannedLink[] {
  const links: MachineLink[] = net.links?.length
    ? net.links
    : net.mode === "private" || net.mode === "bridge"
      ? [{ mode: net.mode, bridge: net.bridge, address: net.address, gateway: net.gateway }]
      : [];
  if ((net.mode === "none" || net.mode === "host") && net.links?.length) {
    throw invalidArgument(`network mode ${net.mode} takes no attachments`, { reason: "INVALID_NETWORK" });
  }
  const seen = new Set<string>();
  let routed = false;
  return links.map((l, i) => {
    const ifname = l.ifname || (links.length > 1 ? `eth${i}` : CONTAINER_IFACE);
    if (!validIfName(ifname) || seen.has(ifname)) {
      throw invalidArgument(`interface name ${JSON.stringify(ifname)} is invalid or used twice`, {
        reason: "INVALID_NETWORK",
      });
    }
    seen.add(ifname);
    if (l.mode === "bridge" && (!l.bridge || !validIfName(l.bridge))) {
      throw invalidArgument("a bridge attachment needs a bridge name of at most 15 characters", {
        reason: "INVALID_NETWORK",
      });
    }
    // private links route through the host side; a bridge link only with a gateway given
    const wantsRoute = l.mode === "private" ? Boolean(l.address) : Boolean(l.gateway && l.address);
    const defaultRoute = wantsRoute && !routed;
    if (defaultRoute) routed = true;
    return { ...l, hostIf: vethHostName(node, env, i), ifname, defaultRoute };
  });
}

/**
 * Gives each `private` link that names no address a /32 from `range`
 * (private-range.ts; the env's previous address when still free), so port
 * forwards and outbound routes have an address to work with. Mutates the
 * links; returns the addresses it took (without prefix).
 */
export function assignPrivateAddresses(
  links: PlannedLink[],
  range: string,
  taken: Set<string>,
  previous: readonly string[] = [],
): string[] {
  const picked: string[] = [];
  for (const l of links) {
    if (l.mode !== "private" || l.address) continue;
    const again = previous.find((a) => !taken.has(a));
    const p = again
      ? { address: `${again}/32`, gateway: rangeGateway(range) }
      : pickPrivateAddress(range, taken);
    const plain = p.address.replace(/\/32$/, "");
    taken.add(plain);
    picked.push(plain);
    l.address = p.address;
    l.gateway = p.gateway;
    // planLinks routes through the first addressed private link, and this one had none then
    if (!links.some((x) => x.defaultRoute)) l.defaultRoute = true;
  }
  return picked;
}
