import { describe, expect, it } from "vitest";
import { IdMap } from "./id-map.js";

describe("IdMap", () => {
  it("maps an nspawn --private-users=pick range both ways; outside it, undefined", () => {
    const m = IdMap.parse("         0  123076608      65536\n");
    expect(m.identity).toBe(false);
    expect(m.toHost(0)).toBe(123076608);
    expect(m.toHost(1000)).toBe(123077608);
    expect(m.toHost(65535)).toBe(123142143);
    expect(m.toHost(65536)).toBeUndefined();
    expect(m.fromHost(123077608)).toBe(1000);
    expect(m.fromHost(0)).toBeUndefined();
    expect(m.fromHost(123142144)).toBeUndefined();
  });

  it("knows the initial namespace's map and several ranges", () => {
    const init = IdMap.parse("         0          0 4294967295\n");
    expect(init.identity).toBe(true);
    expect(init.toHost(42)).toBe(42);
    const two = IdMap.parse("0 1000 1\n1 100000 65535\n");
    expect(two.identity).toBe(false);
    expect(two.toHost(0)).toBe(1000);
    expect(two.toHost(5)).toBe(100004);
    expect(two.fromHost(1000)).toBe(0);
    expect(two.fromHost(100004)).toBe(5);
  });

  it("refuses a malformed map", () => {
    expect(() => IdMap.parse("0 1 x\n")).toThrow(/bad id map/);
    expect(IdMap.parse("").ranges).toEqual([]);
  });
});
