/** NetworkService on the in-memory host networks: lab networks made, updated and removed. */
import { describe, expect, it } from "vitest";
import { Code } from "../../common/errors.js";
import { expectCode } from "../../test/contracts/expect-code.js";
import { FakeNetworks } from "../../test/fakes/fake-networks.js";
import { NetworkService } from "./network-service.js";

describe("NetworkService (fake networks)", () => {
  it("ensures a bridge with its VXLAN device, updates its peers, and deletes both", async () => {
    const host = new FakeNetworks();
    const svc = new NetworkService(host);
    const made = await svc.ensure({ bridge: "pl-lab1", vni: 42, local: "10.0.0.1", peers: ["10.0.0.2"] });
    expect(made.bridge).toBe("pl-lab1");
    expect(made.vxlan).not.toBe("");
    expect(await host.floodPeers(made.vxlan)).toEqual(new Set(["10.0.0.2"]));
    await svc.ensure({ bridge: "pl-lab1", vni: 42, local: "10.0.0.1", peers: ["10.0.0.3"] });
    expect(await host.floodPeers(made.vxlan)).toEqual(new Set(["10.0.0.3"]));
    await svc.delete("pl-lab1");
    expect(await host.linkExists("pl-lab1")).toBe(false);
    expect(await host.linkExists(made.vxlan)).toBe(false);
    await svc.delete("pl-lab1");
  });

  it("refuses a bridge name that is no interface name", async () => {
    const svc = new NetworkService(new FakeNetworks());
    await expectCode(svc.ensure({ bridge: "a-name-far-too-long", vni: 0, peers: [] }), Code.INVALID_ARGUMENT);
  });
});
