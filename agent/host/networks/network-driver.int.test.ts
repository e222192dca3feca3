/**
 * Lab networks across two "hosts" (network namespaces joined by a bridge
 * underlay, test/fixtures/hosts.ts): ensureNetwork makes a bridge + VXLAN per
 * network in each host, real envs (nspawn machines run in the host's
 * namespace) attach to them, reach each other across hosts on the same VNI,
 * not across VNIs; one env sits on two networks (eth0, eth1). Every address
 * lives inside the namespaces made here.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../../common/logger.js";
import { createHosts, type TestHosts } from "../../../test/fixtures/hosts.js";
import { collect, type MachineTestBed, makeMachineTestBed } from "../../../test/support/agent/machines.js";
import type { MachineLink } from "../interfaces.js";
import { NspawnMachineDriver } from "../machines/nspawn-driver.js";
import { NetworkDriver, vxlanName } from "./network-driver.js";

let hosts: TestHosts;
let bed: MachineTestBed;
const drivers: NspawnMachineDriver[] = [];
const nets: NetworkDriver[] = [];
const BR_A = "lab-a";
const BR_B = "lab-b";

beforeAll(async () => {
  hosts = await createHosts(2);
  bed = await makeMachineTestBed();
  for (const [i, h] of hosts.hosts.entries()) {
    nets.push(new NetworkDriver(h.netns));
    drivers.push(
      new NspawnMachineDriver({
        node: `nt${hosts.suffix}h${i}`,
        stateDir: `${bed.stateDir}/h${i}`,
        logger: silentLogger(),
        netns: h.netns,
      }),
    );
  }
});

afterAll(async () => {
  for (const d of drivers) {
    for (const m of await d.list()) {
      await d.stop(m.name, { timeoutMs: 1000, force: true }).catch(() => undefined);
      await d.cleanup(m.name).catch(() => undefined);
    }
  }
  for (const n of nets) {
    await n.deleteNetwork(BR_A).catch(() => undefined);
    await n.deleteNetwork(BR_B).catch(() => undefined);
  }
  await hosts?.cleanup();
  await bed?.cleanup();
});

async function startEnv(host: number, name: string, links: MachineLink[]): Promise<void> {
  await drivers[host]!.start({
    name,
    rootDir: await bed.envRoot(name),
    boot: false,
    limits: {},
    env: {},
    network: { mode: "bridge", links },
  });
}

async function sh(host: number, env: string, script: string) {
  return collect(await drivers[host]!.exec({ name: env, command: ["sh", "-c", script], tty: false }));
}

const ping = (host: number, env: string, addr: string) =>
  sh(host, env, `ping -c 1 -W 2 ${addr} >/dev/null 2>&1 && echo ok || echo unreachable`);

describe("lab networks (bridge + VXLAN) across two hosts", () => {
  it("converges idempotently to the spec", async () => {
    const [h0, h1] = hosts.hosts;
    const peers = [h0!.address, h1!.address];
    for (const [i, n] of nets.entries()) {
      const local = hosts.hosts[i]!.address;
      await n.ensureNetwork({ bridge: BR_A, vni: 100, local, peers: [...peers, "10.251.254.254"] });
      // again, with the stray peer gone: still one device each, flood list updated
      const r = await n.ensureNetwork({ bridge: BR_A, vni: 100, local, peers });
      expect(r).toEqual({ bridge: BR_A, vxlan: vxlanName(100) });
      expect([...(await n.floodPeers(vxlanName(100)))]).toEqual(peers.filter((p) => p !== local));
      await n.ensureNetwork({ bridge: BR_B, vni: 200, local, peers });
    }
  });

  it("joins envs on one VNI across hosts, keeps VNIs apart, and gives an env two networks", async () => {
    // h0: a on both networks; h1: b on A, c on B with an address of A's subnet, d on B
    await startEnv(0, "a", [
      { mode: "bridge", bridge: BR_A, address: "10.77.0.1/24" },
      { mode: "bridge", bridge: BR_B, address: "10.78.0.1/24" },
    ]);
    await startEnv(1, "b", [{ mode: "bridge", bridge: BR_A, address: "10.77.0.2/24" }]);
    await startEnv(1, "c", [{ mode: "bridge", bridge: BR_B, address: "10.77.0.3/24" }]);
    await startEnv(1, "d", [{ mode: "bridge", bridge: BR_B, address: "10.78.0.2/24" }]);

    const addrs = await sh(0, "a", "ip -o -4 addr show | awk '{print $2, $4}'");
    expect(addrs.stdout).toMatch(/eth0 10\.77\.0\.1\/24\neth1 10\.78\.0\.1\/24/);

    expect((await ping(0, "a", "10.77.0.2")).stdout).toBe("ok\n"); // A across hosts
    expect((await ping(0, "a", "10.78.0.2")).stdout).toBe("ok\n"); // B across hosts, via eth1
    expect((await ping(1, "b", "10.77.0.1")).stdout).toBe("ok\n");
    expect((await ping(0, "a", "10.77.0.3")).stdout).toBe("unreachable\n"); // c is on B, not A
    expect((await ping(1, "b", "10.77.0.3")).stdout).toBe("unreachable\n"); // same host, other bridge

    for (const [host, env] of [
      [0, "a"],
      [1, "b"],
      [1, "c"],
      [1, "d"],
    ] as const) {
      await drivers[host]!.stop(env, { timeoutMs: 2000 });
      await drivers[host]!.cleanup(env);
    }
    // the envs' host-side veths are gone from the hosts' bridges
    for (const [i, h] of hosts.hosts.entries()) {
      const ports = await hosts.exec(h, "ip", ["-o", "link", "show", "master", BR_A]);
      expect(ports.stdout).not.toMatch(/vp[0-9a-f]{12}/);
      expect(await nets[i]!.linkExists(BR_A)).toBe(true);
    }
  });

  it("deletes bridge and VXLAN device", async () => {
    for (const n of nets) {
      await n.deleteNetwork(BR_A);
      await n.deleteNetwork(BR_B);
      for (const dev of [BR_A, BR_B, vxlanName(100), vxlanName(200)])
        expect(await n.linkExists(dev)).toBe(false);
    }
  });
});
