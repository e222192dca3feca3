import { describe, expect, it } from "vitest";
import {
  allocateVni,
  hostVethName,
  IFNAME_MAX,
  isValidIfName,
  networkIfNames,
  VNI_MAX,
  VNI_MIN,
} from "./net-ids.js";

describe("allocateVni", () => {
  it("is deterministic and inside the range", () => {
    const a = allocateVni("shop", "front", new Set());
    expect(a).toBe(allocateVni("shop", "front", new Set()));
    expect(a).toBeGreaterThanOrEqual(VNI_MIN);
    expect(a).toBeLessThanOrEqual(VNI_MAX);
    expect(allocateVni("shop", "back", new Set())).not.toBe(a);
  });

  it("probes past used VNIs", () => {
    const a = allocateVni("shop", "front", new Set());
    const b = allocateVni("shop", "front", new Set([a]));
    expect(b).toBe(a === VNI_MAX ? VNI_MIN : a + 1);
    expect(allocateVni("shop", "front", new Set([a, b]))).not.toBe(b);
  });

  it("stays unique when every allocation is added to the used set", () => {
    const used = new Set<number>();
    for (let lab = 0; lab < 200; lab++) {
      for (const net of ["a", "b", "c", "d", "e"]) {
        const v = allocateVni(`lab-${lab}`, net, used);
        expect(used.has(v)).toBe(false);
        used.add(v);
      }
    }
    expect(used.size).toBe(1000);
  });
});

describe("interface names", () => {
  it("fit in 15 characters and are valid for Linux, whatever the name lengths", () => {
    const long = "x".repeat(63);
    const n = networkIfNames(long, long);
    for (const name of [n.bridge, n.vxlan, hostVethName(`${long.slice(0, 60)}-ab`, long)]) {
      expect(name.length).toBeLessThanOrEqual(IFNAME_MAX);
      expect(isValidIfName(name)).toBe(true);
      expect(name).toMatch(/^pl[0-9a-f]{10}[bve]$/);
    }
    expect(n.bridge.slice(0, -1)).toBe(n.vxlan.slice(0, -1));
    expect(n.salt).toBe(0);
    expect(networkIfNames(long, long)).toEqual(n); // deterministic
  });

  it("do not collide over many lab networks", () => {
    const seen = new Set<string>();
    for (let lab = 0; lab < 2000; lab++) {
      for (const net of ["front", "back", "mgmt", "storage", "a-b"]) {
        const { bridge, vxlan } = networkIfNames(`lab-${lab}`, net);
        expect(seen.has(bridge) || seen.has(vxlan)).toBe(false);
        seen.add(bridge);
        seen.add(vxlan);
      }
    }
    // "a/b-c" vs "a-b/c" style ambiguity cannot occur: names hold no '/'.
    expect(networkIfNames("a-b", "c").bridge).not.toBe(networkIfNames("a", "b-c").bridge);
  });

  it("re-hash with a salt when a name is taken", () => {
    const first = networkIfNames("shop", "front");
    const taken = new Set([first.bridge]);
    const second = networkIfNames("shop", "front", taken);
    expect(second.salt).toBe(1);
    expect(second.bridge).not.toBe(first.bridge);
    expect(second.bridge.length).toBeLessThanOrEqual(IFNAME_MAX);
    const third = networkIfNames("shop", "front", new Set([first.vxlan, second.bridge]));
    expect(third.salt).toBe(2);
  });

  it("rejects what Linux rejects", () => {
    for (const bad of ["", "a".repeat(16), "a/b", "a b", "a:b", ".", ".."])
      expect(isValidIfName(bad)).toBe(false);
    expect(isValidIfName("a".repeat(15))).toBe(true);
  });
});
