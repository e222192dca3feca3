import { describe, expect, it } from "vitest";
import { hostSideAddress, parseCidr, validIfName } from "./addresses.js";
import { parseFloodPeers, parseHostRoutes, parseLinkNames, vxlanName } from "./network-driver.js";

describe("addresses", () => {
  it("parses CIDRs strictly", () => {
    expect(parseCidr("10.1.0.5/24")).toEqual({ address: "10.1.0.5", prefix: 24 });
    expect(() => parseCidr("10.1.0.5")).toThrow();
    expect(() => parseCidr("10.1.0.5/24; rm")).toThrow();
    expect(() => parseCidr("300.1.0.5/24")).toThrow();
  });
  it("picks the host side of a private veth", () => {
    expect(hostSideAddress(parseCidr("10.1.0.5/24"))).toBe("10.1.0.1");
    expect(hostSideAddress(parseCidr("10.1.0.1/24"))).toBe("10.1.0.2");
    expect(hostSideAddress(parseCidr("10.1.0.5/24"), "10.1.0.254")).toBe("10.1.0.254");
  });
  it("checks interface names", () => {
    expect(validIfName("vx-100")).toBe(true);
    expect(validIfName("a".repeat(16))).toBe(false);
    expect(validIfName("a b")).toBe(false);
  });
});

describe("ip/bridge output", () => {
  it("reads flood entries and link names", () => {
    const fdb =
      "00:00:00:00:00:00 dst 10.0.0.2 self permanent\n00:00:00:00:00:00 dst 10.0.0.3 self permanent\n";
    expect([...parseFloodPeers(fdb)]).toEqual(["10.0.0.2", "10.0.0.3"]);
    expect(parseLinkNames("7: vx-42: <BROADCAST> mtu 1450\n8: vp12@if2: <UP>\n")).toEqual(["vx-42", "vp12"]);
    expect(vxlanName(42)).toBe("vx-42");
  });
});

describe("host routes", () => {
  it("keeps single-address destinations of `ip -j route show`", () => {
    const json = JSON.stringify([
      { dst: "default", gateway: "10.0.2.2", dev: "eth0" },
      { dst: "10.0.2.0/24", dev: "eth0" },
      { dst: "10.213.0.2", dev: "vp1", scope: "link" },
      { dst: "10.213.0.3/32", dev: "vp2" },
    ]);
    expect([...parseHostRoutes(json)]).toEqual(["10.213.0.2", "10.213.0.3"]);
    expect(parseHostRoutes("").size).toBe(0);
  });
});
