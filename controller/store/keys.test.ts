import { describe, expect, it } from "vitest";
import { FOLDERS, Keys, prefixEnd } from "./keys.js";

describe("key layout", () => {
  const k = new Keys("/protoctl/v1/");

  it("puts every collection in its own top-level folder", () => {
    expect(k.node("n1")).toBe("/protoctl/v1/nodes/n1");
    expect(k.nodeAlive("n1")).toBe("/protoctl/v1/node-alive/n1");
    expect(k.envSpec("web")).toBe("/protoctl/v1/env-specs/web");
    expect(k.envStatus("web")).toBe("/protoctl/v1/env-status/web");
    expect(k.baseVersion("debian", 3)).toBe("/protoctl/v1/base-versions/debian/0000000003");
    expect(k.export("debian", 3, "n1")).toBe("/protoctl/v1/exports/debian@3/n1");
    expect(k.seed("debian", 3)).toBe("/protoctl/v1/seeds/debian@3");
    expect(k.event(1700000000000, "c1", 7)).toBe("/protoctl/v1/events/1700000000000-c1-00000007");
  });

  it("never lets one folder's prefix cover another's keys", () => {
    const folders = Object.values(FOLDERS);
    for (const a of folders) for (const b of folders) if (a !== b) expect(b.startsWith(a)).toBe(false);
  });

  it("refuses names that could escape their folder", () => {
    expect(() => k.envSpec("../nodes/x")).toThrow(/invalid env name/);
    expect(() => k.node("a/b")).toThrow(/invalid node name/);
    expect(() => k.token("not-a-hash")).toThrow();
  });

  it("sorts base versions numerically and parses them back", () => {
    const keys = [10, 9, 100].map((v) => k.baseVersion("b", v)).sort();
    expect(keys.map((x) => k.parseBaseVersion(x)?.version)).toEqual([9, 10, 100]);
    expect(k.nameOf("envSpecs", "/protoctl/v1/env-specs/web")).toBe("web");
    expect(k.nameOf("envSpecs", "/other/env-specs/web")).toBeUndefined();
  });

  it("computes etcd prefix range ends", () => {
    expect(prefixEnd("/a/").toString()).toBe("/a0");
    expect(prefixEnd("ab").toString()).toBe("ac");
  });

  it("normalizes a prefix without a trailing slash", () => {
    expect(new Keys("/t/x").node("n")).toBe("/t/x/nodes/n");
  });
});
