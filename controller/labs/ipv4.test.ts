import { describe, expect, it } from "vitest";
import {
  formatIPv4,
  isReserved,
  overlaps,
  parseIPv4,
  parseSubnet,
  specialRange,
  usableCount,
} from "./ipv4.js";

const subnet = (t: string) => {
  const p = parseSubnet(t);
  if (!p.ok) throw new Error(p.error);
  return p.subnet;
};

describe("ipv4", () => {
  it("parses and formats dotted quads strictly", () => {
    expect(parseIPv4("10.0.0.1")).toBe(0x0a000001);
    expect(formatIPv4(0xffffffff)).toBe("255.255.255.255");
    for (const bad of ["10.0.0", "10.0.0.256", "010.0.0.1", "a.b.c.d", "1.2.3.4 "])
      expect(parseIPv4(bad)).toBeUndefined();
  });

  it("parses subnets, refusing host bits and odd prefixes", () => {
    expect(subnet("192.168.4.0/22")).toEqual({ network: parseIPv4("192.168.4.0"), prefix: 22 });
    expect(parseSubnet("10.0.0.1/24")).toMatchObject({
      ok: false,
      error: expect.stringContaining("10.0.0.0/24"),
    });
    expect(parseSubnet("10.0.0.0")).toMatchObject({ ok: false });
    expect(parseSubnet("10.0.0.0/7")).toMatchObject({ ok: false });
    expect(parseSubnet("10.0.0.0/31")).toMatchObject({ ok: false });
  });

  it("knows overlaps, reserved addresses and special ranges", () => {
    expect(overlaps(subnet("10.0.0.0/16"), subnet("10.0.5.0/24"))).toBe(true);
    expect(overlaps(subnet("10.0.0.0/24"), subnet("10.0.1.0/24"))).toBe(false);
    const s = subnet("10.0.0.0/24");
    expect([0, 1, 2, 254, 255].map((h) => isReserved(s, s.network + h))).toEqual([
      true,
      true,
      false,
      false,
      true,
    ]);
    expect(usableCount(s)).toBe(253);
    expect(usableCount(subnet("10.0.0.0/30"))).toBe(1);
    expect(specialRange(subnet("169.254.1.0/24"))).toMatch(/link-local/);
    expect(specialRange(subnet("10.0.0.0/8"))).toBeUndefined();
  });
});
