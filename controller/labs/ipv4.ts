/**
 * IPv4 arithmetic for lab networks: addresses as unsigned 32-bit numbers,
 * subnets as (network, prefix). Lab networks are IPv4 only for now; IPv6
 * needs a different allocator shape (a /64 is too big to scan) and can come
 * later without changing the spec format (`subnet:` takes a CIDR).
 */

export interface Subnet {
  /** Network address as an unsigned 32-bit number. */
  network: number;
  prefix: number;
}

/** Smallest and largest prefix a lab network may use: /30 leaves one machine address. */
export const MIN_PREFIX = 8;
export const MAX_PREFIX = 30;

/** Parses a dotted quad; undefined when it is not exactly four decimal octets. */
export function parseIPv4(text: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!m) return undefined;
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i]!;
    if (part.length > 1 && part.startsWith("0")) return undefined; // "010" is octal to some tools: refuse
    const v = Number(part);
    if (v > 255) return undefined;
    n = n * 256 + v;
  }
  return n;
}

export function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

export function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export type SubnetParse = { ok: true; subnet: Subnet } | { ok: false; error: string };

/** Parses "a.b.c.d/p" strictly: host bits must be zero, prefix within MIN_PREFIX..MAX_PREFIX. */
export function parseSubnet(text: string): SubnetParse {
  const slash = text.indexOf("/");
  if (slash < 0) return { ok: false, error: `subnet '${text}' needs a prefix length, e.g. 10.10.0.0/24` };
  const addr = parseIPv4(text.slice(0, slash));
  const p = text.slice(slash + 1);
  if (addr === undefined || !/^\d{1,2}$/.test(p)) {
    return { ok: false, error: `subnet '${text}' is not an IPv4 CIDR like 10.10.0.0/24` };
  }
  const prefix = Number(p);
  if (prefix < MIN_PREFIX || prefix > MAX_PREFIX) {
    return {
      ok: false,
      error: `subnet '${text}' must have a prefix between /${MIN_PREFIX} and /${MAX_PREFIX}`,
    };
  }
  const network = (addr & maskOf(prefix)) >>> 0;
  if (network !== addr) {
    return {
      ok: false,
      error: `subnet '${text}' has host bits set; did you mean ${formatSubnet({ network, prefix })}?`,
    };
  }
  return { ok: true, subnet: { network, prefix } };
}

export function formatSubnet(s: Subnet): string {
  return `${formatIPv4(s.network)}/${s.prefix}`;
}

export function subnetSize(s: Subnet): number {
  return 2 ** (32 - s.prefix);
}

export function broadcastOf(s: Subnet): number {
  return s.network + subnetSize(s) - 1;
}

/** The first host address, kept back for a gateway or a host-side bridge address. */
export function gatewayOf(s: Subnet): number {
  return s.network + 1;
}

export function contains(s: Subnet, addr: number): boolean {
  return addr >= s.network && addr <= broadcastOf(s);
}

export function overlaps(a: Subnet, b: Subnet): boolean {
  return a.network <= broadcastOf(b) && b.network <= broadcastOf(a);
}

/** Network, broadcast and gateway addresses are never given to machines. */
export function isReserved(s: Subnet, addr: number): boolean {
  return addr === s.network || addr === broadcastOf(s) || addr === gatewayOf(s);
}

/** How many machine addresses the subnet holds (size minus network, broadcast, gateway). */
export function usableCount(s: Subnet): number {
  return subnetSize(s) - 3;
}

/** Ranges no lab network may overlap: they mean something else to every host. */
const SPECIAL: Array<{ subnet: Subnet; what: string }> = [
  { subnet: { network: 0, prefix: 8 }, what: "'this network' (0.0.0.0/8)" },
  { subnet: { network: 127 * 2 ** 24, prefix: 8 }, what: "loopback (127.0.0.0/8)" },
  {
    subnet: { network: (169 * 2 ** 24 + 254 * 2 ** 16) >>> 0, prefix: 16 },
    what: "link-local (169.254.0.0/16)",
  },
  { subnet: { network: 224 * 2 ** 24, prefix: 4 }, what: "multicast (224.0.0.0/4)" },
  { subnet: { network: 240 * 2 ** 24, prefix: 4 }, what: "reserved (240.0.0.0/4)" },
];

/** Names the special range a subnet overlaps, if any. */
export function specialRange(s: Subnet): string | undefined {
  return SPECIAL.find((r) => overlaps(r.subnet, s))?.what;
}
