/**
 * Per-lab-network address allocation. Pure: the caller passes the previous
 * allocations (kept in etcd as an `IpamState`) and gets the new ones back.
 * Rules, in order:
 *   1. fixed addresses from the spec are honoured (they win over history);
 *   2. a machine that had an address keeps it while it is still valid;
 *   3. every other machine gets the lowest free address, in the order given.
 * Network, broadcast and gateway (first host) addresses are never handed out.
 * Stable across runs: the same inputs always give the same addresses, and
 * adding or removing one machine never moves another.
 */
import { invalidArgument, resourceExhausted } from "../../common/errors.js";
import {
  broadcastOf,
  contains,
  formatIPv4,
  formatSubnet,
  gatewayOf,
  isReserved,
  parseIPv4,
  parseSubnet,
  type Subnet,
} from "./ipv4.js";

export interface IpamNetwork {
  name: string;
  /** CIDR, e.g. "10.10.1.0/24". */
  subnet: string;
}

export interface IpamRequest {
  machine: string;
  /** Fixed dotted-quad address from the spec. */
  fixed?: string;
}

/** What etcd keeps per lab network: plain JSON. */
export interface IpamState {
  subnet: string;
  /** machine → dotted-quad address. */
  allocations: Record<string, string>;
}

export interface IpamResult {
  /** machine → address, in the order of the request. */
  allocations: Map<string, string>;
  /** Machines that had an address and are no longer asked for. */
  released: string[];
  /** Machines present before whose address changed (fixed address edited, subnet changed). */
  moved: string[];
}

type Existing = ReadonlyMap<string, string> | Readonly<Record<string, string>>;

/**
 * Allocates addresses on one network. Throws INVALID_ARGUMENT for a bad
 * subnet or fixed address (the spec parser reports these first, with line
 * numbers) and RESOURCE_EXHAUSTED when the subnet is full.
 */
export function allocate(
  network: IpamNetwork,
  machines: readonly IpamRequest[],
  existing: Existing = new Map(),
): IpamResult {
  const parsed = parseSubnet(network.subnet);
  if (!parsed.ok)
    throw invalidArgument(`network '${network.name}': ${parsed.error}`, { reason: "INVALID_SUBNET" });
  const subnet = parsed.subnet;
  const before = toMap(existing);
  const taken = new Map<number, string>();
  const out = new Map<string, number>();

  for (const m of machines) {
    if (m.fixed === undefined) continue;
    const a = parseIPv4(m.fixed);
    const why =
      a === undefined
        ? "is not an IPv4 address"
        : !contains(subnet, a)
          ? `is outside ${formatSubnet(subnet)}`
          : isReserved(subnet, a)
            ? "is reserved"
            : taken.has(a)
              ? `is already fixed for machine '${taken.get(a)}'`
              : undefined;
    if (why || a === undefined) {
      throw invalidArgument(
        `address ${m.fixed} of machine '${m.machine}' on network '${network.name}' ${why}`,
        {
          reason: "INVALID_ADDRESS",
          subject: `network/${network.name}`,
        },
      );
    }
    taken.set(a, m.machine);
    out.set(m.machine, a);
  }

  for (const m of machines) {
    if (out.has(m.machine)) continue;
    const prev = before.get(m.machine);
    const a = prev === undefined ? undefined : parseIPv4(prev);
    if (a !== undefined && contains(subnet, a) && !isReserved(subnet, a) && !taken.has(a)) {
      taken.set(a, m.machine);
      out.set(m.machine, a);
    }
  }

  // Lowest free address first; the cursor only moves up because each pick fills the lowest hole.
  let cursor = gatewayOf(subnet) + 1;
  const last = broadcastOf(subnet) - 1;
  for (const m of machines) {
    if (out.has(m.machine)) continue;
    while (cursor <= last && taken.has(cursor)) cursor++;
    if (cursor > last) {
      throw resourceExhausted(
        `network '${network.name}' (${formatSubnet(subnet)}) has no free address for '${m.machine}'`,
        {
          reason: "SUBNET_FULL",
          subject: `network/${network.name}`,
          hint: "use a larger subnet (smaller prefix) or fewer machines on this network",
        },
      );
    }
    taken.set(cursor, m.machine);
    out.set(m.machine, cursor);
  }

  const allocations = new Map<string, string>();
  for (const m of machines) allocations.set(m.machine, formatIPv4(out.get(m.machine)!));
  const asked = new Set(machines.map((m) => m.machine));
  const released = [...before.keys()].filter((k) => !asked.has(k));
  const moved = [...allocations].filter(([k, v]) => before.has(k) && before.get(k) !== v).map(([k]) => k);
  return { allocations, released, moved };
}

/** The state to store after an allocation. */
export function toIpamState(subnet: string, allocations: ReadonlyMap<string, string>): IpamState {
  return { subnet, allocations: Object.fromEntries(allocations) };
}

/** "10.10.1.5" on 10.10.1.0/24 → "10.10.1.5/24" (what a NetworkAttachment carries). */
export function withPrefix(address: string, subnet: string): string {
  const p = parseSubnet(subnet);
  if (!p.ok) throw invalidArgument(p.error, { reason: "INVALID_SUBNET" });
  return `${address}/${p.subnet.prefix}`;
}

/** Parses a subnet that is known to be valid (from a validated spec or stored state). */
export function mustSubnet(text: string): Subnet {
  const p = parseSubnet(text);
  if (!p.ok) throw invalidArgument(p.error, { reason: "INVALID_SUBNET" });
  return p.subnet;
}

function toMap(e: Existing): Map<string, string> {
  return e instanceof Map ? new Map(e) : new Map(Object.entries(e as Record<string, string>));
}
