/**
 * Identifiers of lab networks on the wire and on hosts.
 *
 * VNI: 24 bits in VXLAN. Derived from a hash of "lab/network" so that the
 * same network keeps its VNI across controller restarts, then probed
 * linearly past any VNI already used in the cluster. The caller stores the
 * result (LabNetwork.vni) and passes every stored VNI as `used` next time:
 * determinism is a convenience, uniqueness comes from the check.
 * VNIs below 4096 are left to other users of the fabric (they often mirror
 * VLAN ids).
 *
 * Interface names: Linux allows 15 characters (IFNAMSIZ 16 with the NUL).
 * Lab and network names are up to 63 each, so names are `pl` + 10 hex digits
 * of sha256("lab/network") + a one-letter role: `b` bridge, `v` VXLAN,
 * `e` host end of a machine's veth. 13 characters; 40 bits make a clash
 * unlikely, and `taken` (names of every other lab network in the cluster)
 * makes it impossible: a clash re-hashes with a salt. Agents of one kernel
 * share the interface namespace of the host, so names must be unique per
 * cluster, not only per lab.
 */
import { createHash } from "node:crypto";
import { resourceExhausted } from "../../common/errors.js";

export const VNI_MIN = 4096;
export const VNI_MAX = 0xffffff;
export const IFNAME_MAX = 15;

/** The string hashed for a lab network. */
export function networkKey(lab: string, network: string): string {
  return `${lab}/${network}`;
}

/** A VNI for `lab/network` not in `used`; throws RESOURCE_EXHAUSTED if every VNI is used. */
export function allocateVni(lab: string, network: string, used: ReadonlySet<number>): number {
  const span = VNI_MAX - VNI_MIN + 1;
  const start = hashInt(networkKey(lab, network)) % span;
  for (let i = 0; i < span; i++) {
    const vni = VNI_MIN + ((start + i) % span);
    if (!used.has(vni)) return vni;
  }
  throw resourceExhausted("no free VXLAN network identifier", { reason: "VNI_EXHAUSTED" });
}

export interface NetworkIfNames {
  bridge: string;
  vxlan: string;
  /** 0 unless a clash forced a re-hash; store it with the names. */
  salt: number;
}

/**
 * Bridge and VXLAN names for a lab network, avoiding every name in `taken`
 * (both names of every other lab network in the cluster).
 */
export function networkIfNames(
  lab: string,
  network: string,
  taken: ReadonlySet<string> = new Set(),
): NetworkIfNames {
  for (let salt = 0; salt < 1000; salt++) {
    const stem = ifStem(networkKey(lab, network), salt);
    const bridge = `${stem}b`;
    const vxlan = `${stem}v`;
    if (!taken.has(bridge) && !taken.has(vxlan)) return { bridge, vxlan, salt };
  }
  throw resourceExhausted(`no free interface name for network ${networkKey(lab, network)}`, {
    reason: "IFNAME_EXHAUSTED",
  });
}

/** Host-side veth name for a machine's interface on a lab network (for `--network-veth-extra`). */
export function hostVethName(envName: string, network: string): string {
  return `${ifStem(`${envName}/${network}`, 0)}e`;
}

/** Linux's rules for an interface name: 1-15 bytes, no '/', ':', whitespace, not "." or "..". */
export function isValidIfName(name: string): boolean {
  return (
    name.length > 0 && name.length <= IFNAME_MAX && !/[/:\s]/.test(name) && name !== "." && name !== ".."
  );
}

function ifStem(key: string, salt: number): string {
  const h = createHash("sha256")
    .update(salt === 0 ? key : `${key}#${salt}`)
    .digest("hex");
  return `pl${h.slice(0, 10)}`;
}

function hashInt(key: string): number {
  return createHash("sha256").update(key).digest().readUInt32BE(0);
}
