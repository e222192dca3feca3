/**
 * Validation of an EnvSpec and its translation to the machine driver's terms
 * (pure). Everything user-given is checked here before it reaches a path, a
 * file or an argv entry.
 */
import { isIP } from "node:net";
import { checkEnvCommand } from "../../common/env-command.js";
import { checkSpecFields, filePath, HOSTNAME } from "../../common/env-spec-fields.js";
import { invalidArgument } from "../../common/errors.js";
import { validateName } from "../../common/names.js";
import { runsPrivileged } from "../../common/privilege.js";
import { type EnvSpec, NetworkMode } from "../../proto/gen/protoctl/v1/types.js";
import type { MachineLimits, MachineLink, MachineNetwork, MachineSpec } from "../host/interfaces.js";
import { parseCidr, parseIp, validIfName } from "../host/networks/addresses.js";

function bad(message: string, reason = "INVALID_SPEC"): never {
  throw invalidArgument(message, { reason });
}

/** Throws INVALID_ARGUMENT for anything wrong in the spec; returns it unchanged otherwise. */
export function validateEnvSpec(spec: EnvSpec): EnvSpec {
  validateName("env", spec.name);
  if (!spec.base?.name) bad("the env needs a base", "BASE_REQUIRED");
  validateName("base", spec.base.name);
  for (const l of spec.layers) validateName("layer", l);
  checkSpecFields(spec);
  if (spec.command) checkEnvCommand(spec.command);
  machineNetwork(spec);
  return spec;
}

export { filePath };

const MODES: Record<number, MachineNetwork["mode"]> = {
  [NetworkMode.NETWORK_MODE_NONE]: "none",
  [NetworkMode.NETWORK_MODE_HOST]: "host",
  [NetworkMode.NETWORK_MODE_PRIVATE]: "private",
  [NetworkMode.NETWORK_MODE_BRIDGE]: "bridge",
};

/**
 * The env's network in the driver's terms. Several attachments (labs: one per
 * network) become `links`, in order (eth0, eth1… inside unless named); the
 * first also fills mode/bridge/address/gateway for single-link readers.
 */
export function machineNetwork(spec: EnvSpec): MachineNetwork {
  const n = spec.network;
  const att = n?.attachments ?? [];
  const a = att[0];
  const modeNum = n?.mode || a?.mode || NetworkMode.NETWORK_MODE_NONE;
  const mode = MODES[modeNum];
  if (!mode) bad(`unknown network mode ${modeNum}`);
  const out: MachineNetwork = { mode };
  if (att.length > 0 && (mode === "none" || mode === "host")) {
    bad(`network mode ${mode} takes no attachments`, "INVALID_NETWORK");
  }
  const links: MachineLink[] = att.map((x, i) => {
    const m = MODES[x.mode || modeNum];
    if (m !== "private" && m !== "bridge")
      bad(`attachment ${i} must be private or bridge`, "INVALID_NETWORK");
    const link: MachineLink = { mode: m };
    if (m === "bridge") {
      if (!x.bridge || !validIfName(x.bridge))
        bad("bridge mode needs a bridge name of at most 15 characters");
      link.bridge = x.bridge;
    }
    if (x.address) {
      parseCidr(x.address);
      link.address = x.address;
    }
    if (x.gateway) link.gateway = parseIp(x.gateway, "gateway");
    if (x.interfaceName) {
      if (!validIfName(x.interfaceName)) bad(`invalid interface name ${JSON.stringify(x.interfaceName)}`);
      link.ifname = x.interfaceName;
    }
    return link;
  });
  const names = links.map((l, i) => l.ifname ?? (links.length > 1 ? `eth${i}` : "host0"));
  if (new Set(names).size !== names.length)
    bad("two attachments use the same interface name", "INVALID_NETWORK");
  if (mode === "bridge" && links.length === 0)
    bad("bridge mode needs a bridge name of at most 15 characters");
  if (links[0]) {
    out.bridge = links[0].bridge;
    out.address = links[0].address;
    out.gateway = links[0].gateway;
  }
  if (links.length > 1 || links[0]?.ifname) out.links = links;
  if (n?.nat) {
    if (mode !== "private" || links.length > 1)
      bad("NAT needs a private network (one link)", "NAT_NEEDS_PRIVATE");
    out.nat = true;
  }
  const ports = n?.ports ?? [];
  if (ports.length > 0 && mode !== "private" && mode !== "bridge") {
    bad("port forwards need a private or bridge network", "PORTS_NEED_NETWORK");
  }
  out.ports = ports.map((p) => {
    const protocol = p.protocol || "tcp";
    if (protocol !== "tcp" && protocol !== "udp") bad(`port protocol must be tcp or udp, not ${p.protocol}`);
    for (const port of [p.hostPort, p.containerPort]) {
      if (!Number.isInteger(port) || port < 1 || port > 65535) bad(`invalid port ${port}`);
    }
    return { protocol, hostPort: p.hostPort, containerPort: p.containerPort };
  });
  const hosts: Record<string, string> = {};
  for (const [name, addr] of Object.entries(n?.hosts ?? {})) {
    if (!HOSTNAME.test(name)) bad(`invalid host name ${JSON.stringify(name)} in hosts`);
    if (!isIP(addr)) bad(`invalid address ${JSON.stringify(addr)} for host ${name}`);
    hosts[name] = addr;
  }
  out.hosts = hosts;
  return out;
}

export function machineLimits(spec: EnvSpec): MachineLimits {
  const r = spec.resources;
  return {
    memoryBytes: r?.memoryBytes || undefined,
    cpus: r?.cpus || undefined,
    pids: r?.pids || undefined,
  };
}

export function machineSpec(spec: EnvSpec, rootDir: string): MachineSpec {
  return {
    name: spec.name,
    rootDir,
    boot: spec.boot,
    privileged: runsPrivileged(spec),
    limits: machineLimits(spec),
    network: machineNetwork(spec),
    // the command's environment (an image's Env) under the spec's own, which wins
    env: { ...(spec.boot ? {} : spec.command?.env), ...spec.env },
    hostname: spec.hostname || spec.name,
    ...(!spec.boot && spec.command?.argv.length
      ? {
          command: {
            argv: [...spec.command.argv],
            workdir: spec.command.workdir || undefined,
            user: spec.command.user || undefined,
          },
        }
      : {}),
  };
}

/** /etc/hosts of an env: localhost, its own name, then the extra entries. */
export function hostsFile(hostname: string, extra: Record<string, string>): string {
  const lines = [
    "127.0.0.1\tlocalhost",
    "::1\tlocalhost ip6-localhost ip6-loopback",
    `127.0.1.1\t${hostname}`,
  ];
  for (const [name, addr] of Object.entries(extra)) lines.push(`${addr}\t${name}`);
  return `${lines.join("\n")}\n`;
}
