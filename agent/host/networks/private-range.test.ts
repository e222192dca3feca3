import { describe, expect, it } from "vitest";
import { Code } from "../../../common/errors.js";
import { pickPrivateAddress, rangeGateway } from "./private-range.js";

describe("private range", () => {
  it("hands out /32s after the gateway, skipping taken ones", () => {
    expect(pickPrivateAddress("10.213.0.0/16", new Set())).toEqual({
      address: "10.213.0.2/32",
      gateway: "10.213.0.1",
    });
    expect(pickPrivateAddress("10.213.0.0/16", new Set(["10.213.0.2", "10.213.0.3"])).address).toBe(
      "10.213.0.4/32",
    );
    // a range given by any address inside it
    expect(rangeGateway("192.168.77.9/24")).toBe("192.168.77.1");
  });

  it("says so when the range is full, and refuses ranges too small or not IPv4", () => {
    const err = (() => {
      try {
        pickPrivateAddress("10.9.9.0/30", new Set(["10.9.9.2"]));
      } catch (e) {
        return e as { code: number; reason: string };
      }
    })();
    expect(err).toMatchObject({ code: Code.RESOURCE_EXHAUSTED, reason: "NO_ADDRESS" });
    expect(() => pickPrivateAddress("10.9.9.0/31", new Set())).toThrow(/private range/);
    expect(() => pickPrivateAddress("fd00::/64", new Set())).toThrow(/IPv4 CIDR/);
  });
});
