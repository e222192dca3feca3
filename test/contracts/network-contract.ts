/**
 * What every HostNetworks must do with lab networks and links, run against
 * NetworkDriver in a network namespace of its own (network-contract.int.test.ts)
 * and the in-memory fake (test/unit/fakes/fake-networks.test.ts). Env links
 * need a running machine and are covered by network-driver.int.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HostNetworks } from "../../agent/host/networks/host-networks.js";
import { Code } from "../../common/errors.js";
import { expectCode } from "./expect-code.js";

export interface NetworkBed {
  networks: HostNetworks;
  cleanup(): Promise<void>;
}

export function networkContract(kind: string, make: () => Promise<NetworkBed>): void {
  describe(`HostNetworks contract: ${kind}`, () => {
    let bed: NetworkBed;
    beforeAll(async () => {
      bed = await make();
    });
    afterAll(async () => {
      for (const br of ["ct-br1", "ct-br2"]) await bed?.networks.deleteNetwork(br).catch(() => undefined);
      await bed?.cleanup();
    });

    it("makes a bridge with a VXLAN device and converges its flood peers", async () => {
      const net = bed.networks;
      const r = await net.ensureNetwork({
        bridge: "ct-br1",
        vni: 4242,
        local: "10.99.0.1",
        peers: ["10.99.0.1", "10.99.0.2", "10.99.0.3"],
        gateway: "10.98.0.1/24",
      });
      expect(r).toEqual({ bridge: "ct-br1", vxlan: "vx-4242" });
      expect(await net.linkExists("ct-br1")).toBe(true);
      expect(await net.linkExists("vx-4242")).toBe(true);
      // the local address is never its own peer
      expect([...(await net.floodPeers("vx-4242"))].sort()).toEqual(["10.99.0.2", "10.99.0.3"]);
      await net.ensureNetwork({
        bridge: "ct-br1",
        vni: 4242,
        local: "10.99.0.1",
        peers: ["10.99.0.3", "10.99.0.4"],
      });
      expect([...(await net.floodPeers("vx-4242"))].sort()).toEqual(["10.99.0.3", "10.99.0.4"]);
      await net.deleteNetwork("ct-br1");
      expect(await net.linkExists("ct-br1")).toBe(false);
      expect(await net.linkExists("vx-4242")).toBe(false);
      await net.deleteNetwork("ct-br1");
    });

    it("makes a bridge alone when the network has no VNI", async () => {
      expect(await bed.networks.ensureNetwork({ bridge: "ct-br2", vni: 0, peers: [] })).toEqual({
        bridge: "ct-br2",
        vxlan: "",
      });
      expect(await bed.networks.linkExists("ct-br2")).toBe(true);
      await bed.networks.deleteNetwork("ct-br2");
      expect(await bed.networks.linkExists("ct-br2")).toBe(false);
    });

    it("refuses bad names, VNIs and addresses", async () => {
      const net = bed.networks;
      await expectCode(
        net.ensureNetwork({ bridge: "a-name-far-too-long", vni: 0, peers: [] }),
        Code.INVALID_ARGUMENT,
        "INVALID_NAME",
      );
      await expectCode(
        net.ensureNetwork({ bridge: "ct-br3", vni: 1 << 24, peers: [] }),
        Code.INVALID_ARGUMENT,
      );
      await expectCode(
        net.ensureNetwork({ bridge: "ct-br3", vni: 7, peers: ["not-an-ip"] }),
        Code.INVALID_ARGUMENT,
        "INVALID_ADDRESS",
      );
      await expectCode(net.deleteNetwork("bad/name"), Code.INVALID_ARGUMENT);
      await bed.networks.deleteNetwork("ct-br3");
      expect(await net.linkExists("ct-br3")).toBe(false);
    });

    it("answers for links that do not exist", async () => {
      expect(await bed.networks.linkExists("ct-nothing")).toBe(false);
      expect(await bed.networks.linkExists("bad/name")).toBe(false);
      await bed.networks.removeLink("ct-nothing");
      await bed.networks.removeLink("bad/name");
      expect(await bed.networks.hostRoutes()).toEqual(new Set());
    });
  });
}
