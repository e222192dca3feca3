/**
 * Host networking for envs and labs, over `ip` and `bridge` (every command an
 * argv array through common/exec). An env's veth is made by nspawn
 * (`--network-veth-extra=<host>:host0`, our own host-side name so names stay
 * unique and within 15 characters); this driver then brings the host side up,
 * routes the env's address to it (point-to-point, so several envs may share a
 * subnet and gateway) or enslaves it to a bridge, and sets the address and
 * default route inside through the leader's network namespace.
 *
 * Labs: a bridge per network plus, across hosts, a VXLAN device with static
 * flood entries per peer (`nolearning`, head-end replication).
 */

import { readFileSync } from "node:fs";
import { invalidArgument } from "../../../common/errors.js";
import { run } from "../../../common/exec.js";
import { type Cidr, hostSideAddress, parseCidr, parseIp, validIfName } from "./addresses.js";
import type { EnsureNetworkSpec, EnvLink, HostNetworks } from "./host-networks.js";

export const VXLAN_PORT = 4789;

export type { EnsureNetworkSpec, EnvLink } from "./host-networks.js";

export class NetworkDriver implements HostNetworks {
  /** `netns`: run every command in that named network namespace (tests, multi-host on one kernel). */
  constructor(private readonly netns?: string) {}

  private ip(args: string[], input?: string) {
    const ns = this.netns ? ["-n", this.netns] : [];
    return run("ip", [...ns, ...(input === undefined ? args : ["-batch", "-"])], { input });
  }

  private bridgeCmd(args: string[], allowFailure = false) {
    const ns = this.netns ? ["-n", this.netns] : [];
    return run("bridge", [...ns, ...args], { allowFailure });
  }

  /** Configures both ends of an env's veth once its machine runs. */
  async setupEnvLink(link: EnvLink): Promise<{ addresses: string[] }> {
    if (!validIfName(link.hostIf)) throw invalidArgument(`bad interface name ${link.hostIf}`);
    const env: Cidr | undefined = link.address ? parseCidr(link.address) : undefined;
    if (link.mode === "bridge") {
      if (!link.bridge || !validIfName(link.bridge)) throw invalidArgument("bridge mode needs a bridge name");
      await this.ip(["link", "set", link.hostIf, "master", link.bridge, "up"]);
    } else {
      const host: string[] = [`link set ${link.hostIf} up`];
      if (env) {
        const hostAddr = hostSideAddress(env, link.gateway);
        host.push(
          `addr add ${hostAddr}/32 dev ${link.hostIf}`,
          `route replace ${env.address}/32 dev ${link.hostIf}`,
        );
      }
      await this.ip([], `${host.join("\n")}\n`);
    }
    // inside: the host's `ip` in the leader's network namespace only (the env may not have one)
    const inside: string[] = [`link set ${link.containerIf} up`];
    if (env) {
      inside.push(`addr add ${env.address}/${env.prefix} dev ${link.containerIf}`);
      const gw =
        link.mode === "private"
          ? hostSideAddress(env, link.gateway)
          : link.gateway
            ? parseIp(link.gateway)
            : undefined;
      if (gw && link.defaultRoute !== false)
        inside.push(`route add default via ${gw} dev ${link.containerIf} onlink`);
    }
    await run("nsenter", ["-t", String(link.leaderPid), "-n", "ip", "-batch", "-"], {
      input: `${inside.join("\n")}\n`,
    });
    return { addresses: env ? [env.address] : [] };
  }

  /** Deletes an env's host-side veth if still there (the kernel drops it with the env's namespace). */
  async removeLink(hostIf: string): Promise<void> {
    if (!validIfName(hostIf)) return;
    const ns = this.netns ? ["-n", this.netns] : [];
    await run("ip", [...ns, "link", "del", hostIf], { allowFailure: true });
  }

  async linkExists(name: string): Promise<boolean> {
    // Our own namespace: /proc/self/net/dev answers without spawning `ip`. Not /sys/class/net:
    // sysfs shows the namespace it was mounted in, which is not ours under `nsenter --net`.
    if (!this.netns) return validIfName(name) && interfacesInOwnNamespace().has(name);
    const ns = this.netns ? ["-n", this.netns] : [];
    const r = await run("ip", [...ns, "link", "show", "dev", name], { allowFailure: true });
    return r.exitCode === 0;
  }

  /** Destinations of host routes (`a.b.c.d` without a prefix: /32s) in the namespace's main table. */
  async hostRoutes(): Promise<Set<string>> {
    const ns = this.netns ? ["-n", this.netns] : [];
    const r = await run("ip", [...ns, "-j", "-4", "route", "show"], { allowFailure: true });
    return parseHostRoutes(r.stdout);
  }

  /** Bridge (and VXLAN with one flood entry per peer), idempotent: converges to the spec. */
  async ensureNetwork(spec: EnsureNetworkSpec): Promise<{ bridge: string; vxlan: string }> {
    if (!validIfName(spec.bridge)) {
      throw invalidArgument(
        `bridge name ${JSON.stringify(spec.bridge)} is not a valid interface name (≤ 15 chars)`,
        {
          reason: "INVALID_NAME",
        },
      );
    }
    const br = spec.bridge;
    if (!(await this.linkExists(br))) {
      await this.ip(["link", "add", br, "type", "bridge"]);
    }
    if (spec.mtu) await this.ip(["link", "set", br, "mtu", String(spec.mtu)]);
    await this.ip(["link", "set", br, "up"]);
    if (spec.gateway) {
      const gw = parseCidr(spec.gateway, "gateway");
      await this.ip(["addr", "replace", `${gw.address}/${gw.prefix}`, "dev", br]);
    }
    let vxlan = "";
    if (spec.vni > 0) {
      if (spec.vni > 16_777_215) throw invalidArgument("VNI must be below 2^24", { reason: "INVALID_VNI" });
      vxlan = vxlanName(spec.vni);
      const local = spec.local ? parseIp(spec.local, "local address") : undefined;
      const peers = spec.peers.map((p) => parseIp(p, "peer address")).filter((p) => p !== local);
      if (!(await this.linkExists(vxlan))) {
        const args = ["link", "add", vxlan, "type", "vxlan", "id", String(spec.vni)];
        if (local) args.push("local", local);
        args.push("dstport", String(VXLAN_PORT), "nolearning");
        await this.ip(args);
      }
      if (spec.mtu) await this.ip(["link", "set", vxlan, "mtu", String(spec.mtu)]);
      await this.ip(["link", "set", vxlan, "master", br, "up"]);
      const have = await this.floodPeers(vxlan);
      for (const p of peers) {
        if (!have.has(p))
          await this.bridgeCmd(["fdb", "append", "00:00:00:00:00:00", "dst", p, "dev", vxlan]);
      }
      for (const p of have) {
        if (!peers.includes(p)) {
          await this.bridgeCmd(["fdb", "del", "00:00:00:00:00:00", "dst", p, "dev", vxlan], true);
        }
      }
    }
    return { bridge: br, vxlan };
  }

  /** Peers in the all-zeros flood entries of a VXLAN device. */
  async floodPeers(vxlan: string): Promise<Set<string>> {
    const ns = this.netns ? ["-n", this.netns] : [];
    const r = await run("bridge", [...ns, "fdb", "show", "dev", vxlan], { allowFailure: true });
    return parseFloodPeers(r.stdout);
  }

  /** Removes the bridge and any VXLAN device enslaved to it. */
  async deleteNetwork(bridge: string): Promise<void> {
    if (!validIfName(bridge)) throw invalidArgument(`bad bridge name ${JSON.stringify(bridge)}`);
    const ns = this.netns ? ["-n", this.netns] : [];
    const r = await run("ip", [...ns, "-o", "link", "show", "master", bridge, "type", "vxlan"], {
      allowFailure: true,
    });
    for (const name of parseLinkNames(r.stdout))
      await run("ip", [...ns, "link", "del", name], { allowFailure: true });
    await run("ip", [...ns, "link", "del", bridge], { allowFailure: true });
  }
}

export function vxlanName(vni: number): string {
  return `vx-${vni}`;
}

/** `00:00:00:00:00:00 dst 10.0.0.2 self permanent` lines → peer addresses. */
export function parseFloodPeers(out: string): Set<string> {
  const s = new Set<string>();
  for (const line of out.split("\n")) {
    const m = /^00:00:00:00:00:00 dst (\S+)/.exec(line.trim());
    if (m) s.add(m[1]!);
  }
  return s;
}

/** `ip -j route show` → destinations that are single addresses (host routes). */
export function parseHostRoutes(json: string): Set<string> {
  const out = new Set<string>();
  if (!json.trim()) return out;
  for (const r of JSON.parse(json) as Array<{ dst?: string }>) {
    if (r.dst && /^\d+\.\d+\.\d+\.\d+(\/32)?$/.test(r.dst)) out.add(r.dst.replace(/\/32$/, ""));
  }
  return out;
}

/** `ip -o link show` lines ("5: vx-42: <...") → names ("vx-42"; "@peer" suffixes dropped). */
export function parseLinkNames(out: string): string[] {
  const names: string[] = [];
  for (const line of out.split("\n")) {
    const m = /^\d+:\s+([^:@\s]+)[@:]/.exec(line);
    if (m) names.push(m[1]!);
  }
  return names;
}

/** Interface names of the calling process's network namespace. */
function interfacesInOwnNamespace(): Set<string> {
  const names = new Set<string>();
  for (const line of readFileSync("/proc/self/net/dev", "utf8").split("\n").slice(2)) {
    const colon = line.indexOf(":");
    if (colon > 0) names.add(line.slice(0, colon).trim());
  }
  return names;
}
