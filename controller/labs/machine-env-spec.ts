/**
 * Turns one planned lab machine into the EnvSpec the scheduler places and an
 * agent creates: group = lab (anti-affinity spreads a lab over nodes), bridge
 * attachments with addresses from IPAM, and /etc/hosts entries for the
 * machines it shares a network with — and only those, so that name lookups
 * mirror what is reachable.
 */
import { createHash } from "node:crypto";
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
 * Entry order is deterministic (plain names, then `name.network` per network).
 */
export function hostsFor(machine: string, all: readonly Membership[]): Record<string, string> {
  return hostsResolver(all)(machine);
}

/**
 * The same as `hostsFor` for many machines: builds each network's entries
 * once and merges them per machine, so a lab costs the size of its hosts
 * tables rather than machines² scans (1000 machines all on shared networks:
 * 1.6M entries).
 */
export function hostsResolver(all: readonly Membership[]): HostsResolver {
  const members = new Map<string, Array<[string, string]>>();
  const byMachine = new Map<string, Membership>();
  for (const m of all) {
    byMachine.set(m.machine, m);
    for (const [net, addr] of m.addresses) {
      const list = members.get(net) ?? [];
      if (list.length === 0) members.set(net, list);
      list.push([m.machine, addr]);
    }
  }
  const netDigests = new Map<string, string>();
  const resolve = ((machine: string) => {
    const self = byMachine.get(machine);
    if (!self) return {};
    const out: Record<string, string> = {};
    for (const net of self.addresses.keys()) {
      for (const [other, addr] of members.get(net)!) if (!(other in out)) out[other] = addr;
    }
    for (const net of self.addresses.keys()) {
      for (const [other, addr] of members.get(net)!) out[`${other}.${net}`] = addr;
    }
    return out;
  }) as HostsResolver;
  resolve.digest = (machine) => {
    // The table is a function of the machine's network order and of each network's members,
    // so its digest is computed from per-network digests without building the table.
    const self = byMachine.get(machine);
    const h = createHash("sha256");
    for (const net of self?.addresses.keys() ?? []) {
      let d = netDigests.get(net);
      if (d === undefined) {
        d = createHash("sha256")
          .update(JSON.stringify(members.get(net)))
          .digest("hex");
        netDigests.set(net, d);
      }
      h.update(`${net}\0${d}\0`);
    }
    return h.digest("hex");
  };
  return resolve;
}

/** A machine's /etc/hosts table, and a digest of it that is cheap to compute for every machine. */
export interface HostsResolver {
  (machine: string): Record<string, string>;
  digest(machine: string): string;
}

/** The EnvSpec of a lab machine (it takes `hosts` as is, without a copy). Throws FAILED_PRECONDITION for a file whose source was never inlined. */
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
    privileged: !!m.privileged,
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
      hosts, // owned by the spec: hostsResolver builds a fresh table per machine
      nat: false,
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
