import { describe, expect, it } from "vitest";
import { Code, type ProtoctlError } from "../../common/errors.js";
import { allocate, toIpamState, withPrefix } from "./ipam.js";

const net = { name: "front", subnet: "10.0.0.0/24" };
const ask = (...names: string[]) => names.map((machine) => ({ machine }));

describe("allocate", () => {
  it("gives the lowest free addresses, skipping network and gateway", () => {
    const r = allocate(net, ask("a", "b", "c"));
    expect([...r.allocations]).toEqual([
      ["a", "10.0.0.2"],
      ["b", "10.0.0.3"],
      ["c", "10.0.0.4"],
    ]);
    expect(r.released).toEqual([]);
  });

  it("keeps existing allocations and fills holes for new machines", () => {
    const first = allocate(net, ask("a", "b", "c"));
    // b leaves, d arrives: a and c keep theirs, d gets b's old address (lowest free).
    const second = allocate(net, ask("a", "c", "d"), first.allocations);
    expect(Object.fromEntries(second.allocations)).toEqual({ a: "10.0.0.2", c: "10.0.0.4", d: "10.0.0.3" });
    expect(second.released).toEqual(["b"]);
    expect(second.moved).toEqual([]);
    // Same input, same output; and order of the request does not move anyone who has an address.
    const again = allocate(net, ask("d", "c", "a"), second.allocations);
    expect(Object.fromEntries(again.allocations)).toEqual(Object.fromEntries(second.allocations));
  });

  it("honours fixed addresses, even over history", () => {
    const before = { a: "10.0.0.2", b: "10.0.0.3" };
    const r = allocate(
      net,
      [{ machine: "a" }, { machine: "b", fixed: "10.0.0.2" }, { machine: "c", fixed: "10.0.0.200" }],
      before,
    );
    // b takes .2 (fixed), so a loses it and moves to the lowest free: .3 (b's old one).
    expect(Object.fromEntries(r.allocations)).toEqual({ a: "10.0.0.3", b: "10.0.0.2", c: "10.0.0.200" });
    expect(r.moved.sort()).toEqual(["a", "b"]);
  });

  it("reallocates addresses that no longer fit after a subnet change", () => {
    const r = allocate({ name: "n", subnet: "10.0.0.0/25" }, ask("a", "b"), {
      a: "10.0.0.100",
      b: "10.0.0.200",
    });
    expect(Object.fromEntries(r.allocations)).toEqual({ a: "10.0.0.100", b: "10.0.0.2" });
    expect(r.moved).toEqual(["b"]);
  });

  it("never gives out reserved addresses found in stored state", () => {
    const r = allocate(net, ask("a", "b"), { a: "10.0.0.1", b: "10.0.0.255" });
    expect(Object.fromEntries(r.allocations)).toEqual({ a: "10.0.0.2", b: "10.0.0.3" });
  });

  it("fills a /30 with one machine and refuses the second", () => {
    const small = { name: "p2p", subnet: "10.9.0.0/30" };
    expect(Object.fromEntries(allocate(small, ask("a")).allocations)).toEqual({ a: "10.9.0.2" });
    try {
      allocate(small, ask("a", "b"));
      expect.unreachable();
    } catch (err) {
      expect((err as ProtoctlError).code).toBe(Code.RESOURCE_EXHAUSTED);
      expect((err as ProtoctlError).reason).toBe("SUBNET_FULL");
    }
  });

  it("refuses bad fixed addresses", () => {
    const bad =
      (fixed: string, others: Array<{ machine: string; fixed?: string }> = []) =>
      () =>
        allocate(net, [...others, { machine: "x", fixed }]);
    expect(bad("10.0.1.5")).toThrow(/outside/);
    expect(bad("10.0.0.1")).toThrow(/reserved/);
    expect(bad("10.0.0.0")).toThrow(/reserved/);
    expect(bad("nope")).toThrow(/not an IPv4/);
    expect(bad("10.0.0.9", [{ machine: "y", fixed: "10.0.0.9" }])).toThrow(/already fixed for machine 'y'/);
  });

  it("allocates a /16 worth of machines quickly and stably", () => {
    const many = Array.from({ length: 5000 }, (_, i) => ({ machine: `m-${i}` }));
    const big = { name: "big", subnet: "10.0.0.0/16" };
    const t0 = performance.now();
    const r = allocate(big, many);
    const again = allocate(big, many.slice(1), r.allocations);
    expect(performance.now() - t0).toBeLessThan(500);
    expect(r.allocations.get("m-4999")).toBe("10.0.19.137"); // 2 + 4999 = 5001 = 19*256 + 137
    expect(again.allocations.get("m-4999")).toBe("10.0.19.137");
    expect(again.released).toEqual(["m-0"]);
  });

  it("round-trips through JSON state", () => {
    const r = allocate(net, ask("a", "b"));
    const state = JSON.parse(JSON.stringify(toIpamState(net.subnet, r.allocations)));
    expect(state).toEqual({ subnet: "10.0.0.0/24", allocations: { a: "10.0.0.2", b: "10.0.0.3" } });
    expect(Object.fromEntries(allocate(net, ask("b", "a"), state.allocations).allocations)).toEqual(
      state.allocations,
    );
    expect(withPrefix("10.0.0.2", net.subnet)).toBe("10.0.0.2/24");
  });
});
