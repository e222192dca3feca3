import { describe, expect, it } from "vitest";
import { canonicalJson, digestOf } from "./canonical.js";

describe("canonicalJson", () => {
  it("sorts keys at every level, keeps array order and drops undefined", () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { z: 1, y: 2 }], c: undefined } })).toBe(
      '{"a":{"d":[2,{"y":2,"z":1}]},"b":1}',
    );
    expect(digestOf({ a: 1, b: 2 })).toBe(digestOf({ b: 2, a: 1 }));
    expect(digestOf([1, 2])).not.toBe(digestOf([2, 1]));
    expect(() => canonicalJson({ a: Number.NaN })).toThrow(/no JSON form/);
  });
});
