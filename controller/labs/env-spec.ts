/**
 * Turns one planned lab machine into the EnvSpec the scheduler places and an
 * agent creates: group = lab (anti-affinity spreads a lab over nodes), bridge
 * attachments with addresses from IPAM, and /etc/hosts entries for the
 * machines it shares a network with — and only those, so that name lookups
 * mirror what is reachable.
 */
import { failedPrecondition } from "../../common/errors.js";
import { type EnvSpec, NetworkMode, RestartPolicy } from "../../proto/gen/protoctl/v1/types.js";
import type { LabMachineSpec } from "./spec-types.js";

/** A machine's interface on one lab network, resolved. */
export interface ResolvedAttachment {
  network: string;
  bridge: string;
  /** CIDR, e.g. "10.10.1.5/24". */
  address: string;
  /** Name inside the machine: eth0, eth1… in the order the machine lists its networks. */
  interfaceName: string;
}

export interface Membership {
  machine: string;
  /** network → dotted-quad address, in the machine's network order. */
  addresses: ReadonlyMap<string, string>;
}

/**
 * /etc/hosts entries for `machine`: every machine sharing a network with it
 * (itself included) as `name` → its address on the first shared network in
 * `machine`'s order, plus `name.network` → its address on that network for
 * every shared network. Machines on no common network are left out.
 */
export function hostsFor(machine: string, all: readonly Membership[]): Record<string, string> {
  const self = all.find((m) => m.machine === machine);
  if (!self) return {};
  const out: Record<string, string> = {};
  for (const net of self.addresses.keys()) {
    for (const other of all) {
      const addr = other.addresses.get(net);
      if (addr === undefined) continue;
      if (!(other.machine in out)) out[other.machine] = addr;
      out[`${other.machine}.${net}`] = addr;
    }
  }
  return sortRecord(out);
}

/** The EnvSpec of a lab machine. Throws FAILED_PRECONDITION for a file whose source was never inlined. */
export function machineEnvSpec(
  lab: string,
  m: LabMachineSpec,
  attachments: readonly ResolvedAttachment[],
  hosts: Record<string, string>,
): EnvSpec {
  const files = m.files.map((f) => {
    if (f.contentBase64 === undefined) {
      throw failedPrecondition(`file ${f.path} of machine '${m.name}' still refers to '${f.source}'`, {
        reason: "LAB_FILE_NOT_INLINED",
        subject: `lab/${lab}`,
        hint: "the client must inline file sources before sending the spec (inlineFileSources)",
      });
    }
    return { path: f.path, content: Buffer.from(f.contentBase64, "base64"), mode: f.mode };
  });
  return {
    name: m.envName,
    base: { name: m.base.name, version: m.base.version },
    layers: [...m.layers],
    boot: m.boot,
    resources: { ...m.resources },
    network: {
      mode: attachments.length > 0 ? NetworkMode.NETWORK_MODE_BRIDGE : NetworkMode.NETWORK_MODE_NONE,
      attachments: attachments.map((a) => ({
        mode: NetworkMode.NETWORK_MODE_BRIDGE,
        bridge: a.bridge,
        address: a.address,
        gateway: "",
        interfaceName: a.interfaceName,
      })),
      ports: m.ports.map((p) => ({
        protocol: p.protocol,
        hostPort: p.hostPort,
        containerPort: p.containerPort,
      })),
      hosts: { ...hosts },
    },
    env: { ...m.env },
    files,
    startup: [...m.startup],
    node: m.node,
    nodeSelector: { ...m.nodeSelector },
    group: lab,
    // A lost lab machine is recreated by the next `lab up`, which re-plans its networks too.
    restart: RestartPolicy.RESTART_POLICY_NEVER,
    start: true,
    hostname: m.name,
  };
}

function sortRecord(r: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(r).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
