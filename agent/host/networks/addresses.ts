/** Address parsing for env networks (pure). IPv4 for veth point-to-point routing; CIDRs validated strictly. */
import { isIP, isIPv4 } from "node:net";
import { invalidArgument } from "../../../common/errors.js";

export interface Cidr {
  address: string;
  prefix: number;
}

export function parseCidr(s: string, what = "address"): Cidr {
  const m = /^([0-9.]+)\/([0-9]{1,2})$/.exec(s);
  if (!m || !isIPv4(m[1]!) || Number(m[2]) > 32) {
    throw invalidArgument(`${what} ${JSON.stringify(s)} is not an IPv4 CIDR like 10.1.0.5/24`, {
      reason: "INVALID_ADDRESS",
    });
  }
  return { address: m[1]!, prefix: Number(m[2]) };
}

export function parseIp(s: string, what = "address"): string {
  if (!isIP(s))
    throw invalidArgument(`${what} ${JSON.stringify(s)} is not an IP address`, { reason: "INVALID_ADDRESS" });
  return s;
}

function toInt(a: string): number {
  return a.split(".").reduce((n, o) => n * 256 + Number(o), 0);
}

function fromInt(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");
}

/**
 * The host side's address for a private veth: the gateway when given, else
 * the subnet's first host address (or its second when that is the env's own).
 */
export function hostSideAddress(env: Cidr, gateway?: string): string {
  if (gateway) return parseIp(gateway, "gateway");
  const size = 2 ** (32 - env.prefix);
  const net = toInt(env.address) - (toInt(env.address) % size);
  const first = fromInt(net + (size > 2 ? 1 : 0));
  if (first !== env.address) return first;
  return fromInt(net + (size > 2 ? 2 : 1));
}

/** Linux interface names: at most 15 characters, no '/', ':' or whitespace. */
export function validIfName(name: string): boolean {
  return /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}$/.test(name);
}
