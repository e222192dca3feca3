import { describe, expect, it } from "vitest";
import { hostsFor, type Membership } from "./machine-env-spec.js";

const member = (machine: string, nets: Record<string, string>): Membership => ({
  machine,
  addresses: new Map(Object.entries(nets)),
});

describe("hostsFor", () => {
  // a: x; b: x+y; c: y; d: z (alone).
  const all = [
    member("a", { x: "10.0.0.2" }),
    member("b", { y: "10.1.0.2", x: "10.0.0.3" }),
    member("c", { y: "10.1.0.3" }),
    member("d", { z: "10.2.0.2" }),
  ];

  it("lists only machines on shared networks", () => {
    expect(hostsFor("a", all)).toEqual({
      a: "10.0.0.2",
      "a.x": "10.0.0.2",
      b: "10.0.0.3",
      "b.x": "10.0.0.3",
    });
    expect(hostsFor("c", all)).toEqual({
      b: "10.1.0.2",
      "b.y": "10.1.0.2",
      c: "10.1.0.3",
      "c.y": "10.1.0.3",
    });
    expect(hostsFor("d", all)).toEqual({ d: "10.2.0.2", "d.z": "10.2.0.2" });
  });

  it("resolves a plain name on the first shared network in the machine's own order", () => {
    // b lists y first: a is only on x, so a resolves on x; c on y.
    expect(hostsFor("b", all)).toEqual({
      a: "10.0.0.2",
      "a.x": "10.0.0.2",
      b: "10.1.0.2",
      "b.x": "10.0.0.3",
      "b.y": "10.1.0.2",
      c: "10.1.0.3",
      "c.y": "10.1.0.3",
    });
  });

  it("is empty for an unknown machine", () => {
    expect(hostsFor("nope", all)).toEqual({});
  });
});
