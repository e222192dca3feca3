/**
 * Addresses for `private` envs that did not ask for one. Each gets a /32 from
 * the node's private range, routed point-to-point over its own veth with the
 * range's first address as the host side (every veth carries it), so envs need
 * no shared subnet and a /32 never claims neighbours on-link. Pure: the caller
 * says which addresses are taken (its own envs, and /32 routes already in the
 * namespace, which covers another agent sharing it).
 */
import { invalidArgument, resourceExhausted } from "../../../common/errors.js";
import { type Cidr, parseCidr } from "./addresses.js";

/** Default range; `agent --private-range` (config `network.privateRange`) changes it. */
export const DEFAULT_PRIVATE_RANGE = "10.213.0.0/16";

export interface PrivateAddress {
  /** The env's address as a CIDR (`a.b.c.d/32`). */
  address: string;
  /** The host side of every private veth: the range's first address. */
  gateway: string;
}

const toInt = (a: string) => a.split(".").reduce((n, o) => n * 256 + Number(o), 0);
const fromInt = (n: number) => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");

export function parseRange(range: string): Cidr {
  const r = parseCidr(range, "private range");
  if (r.prefix > 30) {
    throw invalidArgument(`private range ${JSON.stringify(range)} is too small: give a /30 or larger`, {
      reason: "INVALID_ADDRESS",
    });
  }
  return r;
}

/** The range's gateway (host side): its first address. */
export function rangeGateway(range: string): string {
  const r = parseRange(range);
  const size = 2 ** (32 - r.prefix);
  return fromInt(toInt(r.address) - (toInt(r.address) % size) + 1);
}

/** The lowest free address of the range after the gateway, or RESOURCE_EXHAUSTED. */
export function pickPrivateAddress(range: string, taken: ReadonlySet<string>): PrivateAddress {
  const r = parseRange(range);
  const size = 2 ** (32 - r.prefix);
  const net = toInt(r.address) - (toInt(r.address) % size);
  const gateway = fromInt(net + 1);
  // skip the network address, the gateway and the broadcast address
  for (let i = 2; i < size - 1; i++) {
    const a = fromInt(net + i);
    if (!taken.has(a)) return { address: `${a}/32`, gateway };
  }
  throw resourceExhausted(`no free address left in the private range ${range}`, {
    reason: "NO_ADDRESS",
    hint: "delete envs or give the agent a larger --private-range",
  });
}
